"""Layer-normalized cells (issue 18): Model.grad against torch.autograd through
tools/fixtures/regularized_rnn.py, which loads the model file with strict=True. Every cell, one
and two layers, bidirectional, projections, bias-free layers, a head-less model, lengths, masks,
given initial states and every loss; float64 (1e-9) and float32 (2e-4); every method that takes
layer norm. The gains γ and β_c are drawn at random, not left at their initial 1 and 0."""

import numpy as np
import pytest

import bptt
from conftest import TOL, as_dtype, needs_torch, rel_err, targets, torch_loss

pytestmark = needs_torch

MODELS = [
    ("elman", dict(cell="elman")),
    ("elman_relu_2l_bi", dict(cell="elman", nonlinearity="relu", num_layers=2, bidirectional=True)),
    ("lstm", dict(cell="lstm")),
    ("gru", dict(cell="gru")),
    ("lstm_2l_bi", dict(cell="lstm", num_layers=2, bidirectional=True)),
    ("gru_2l_nobias", dict(cell="gru", num_layers=2, bias=False)),
    ("lstm_proj_bi", dict(cell="lstm", proj_size=3, bidirectional=True)),
    ("gru_headless", dict(cell="gru", head=False, num_layers=2)),
]


def make(kw, dtype, rng, output_activation="identity"):
    output_size = None if kw.get("head") is False else 4
    m = bptt.Model(input_size=3, hidden_size=5, output_size=output_size, dtype=dtype, seed=3,
                   output_activation=output_activation, layer_norm=True, **kw)
    sd = m.state_dict()
    for k, v in sd.items():  # gains away from 1, β_c away from 0
        if ".ln_" in k:
            sd[k] = (0.0 if k.startswith("rnn.ln_c_bias") else 1.0) + 0.4 * rng.standard_normal(v.shape)
    m.load_state_dict(sd)
    return m


def reference(model, tmp_path):
    import torch  # noqa: F401
    from regularized_rnn import load_bptt_file
    path = tmp_path / "ln.safetensors"
    model.save(path)
    return load_bptt_file(str(path))  # float64, strict=True


def torch_grad(model, tm, x, y, loss, mask=None, lengths=None, h0=None, c0=None):
    import torch
    c = model.config
    T, B = x.shape[0], x.shape[1]
    U = c["num_layers"] * (2 if c["bidirectional"] else 1)
    HO, H = c["proj_size"] or c["hidden_size"], c["hidden_size"]
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    dh = torch.zeros(U, B, HO, dtype=torch.float64, requires_grad=True)
    dc = torch.zeros(U, B, H, dtype=torch.float64, requires_grad=True)
    hs = dh + (0 if h0 is None else torch.tensor(np.asarray(h0, dtype=np.float64)))
    cs = dc + (0 if c0 is None else torch.tensor(np.asarray(c0, dtype=np.float64)))
    tm.zero_grad(set_to_none=True)
    z, _, _ = tm(xt, h0=hs, c0=cs if c["cell"] == "lstm" else None, lengths=lengths)
    L = torch_loss(model, z, y, loss, mask, lengths)
    L.backward()
    g = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    g["x"], g["h0"] = xt.grad.numpy(), dh.grad.numpy()
    if c["cell"] == "lstm":
        g["c0"] = dc.grad.numpy()
    return float(L), g


def check(model, tm, loss, method, rng, T=6, B=3, tol=None, **extra):
    x = rng.standard_normal((T, B, model.config["input_size"]))
    y = targets(model, loss, T, B, rng)
    args = {k: (as_dtype(model, v) if k in ("mask", "h0", "c0") else v) for k, v in extra.items()}
    L, g = model.grad(as_dtype(model, x), y if loss == "xent" else as_dtype(model, y), loss=loss,
                      method=method, **args)
    L_ref, g_ref = torch_grad(model, tm, as_dtype(model, x),
                              y if loss == "xent" else as_dtype(model, y), loss, **args)
    tol = tol or TOL[model.dtype]
    assert sorted(g) == sorted(g_ref)
    assert abs(L - L_ref) <= tol * max(1.0, abs(L_ref))
    for k in g_ref:
        err = rel_err(g[k], g_ref[k])
        assert err <= tol, f"{k}: {err:.2e}"


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("name,kw", MODELS, ids=[m[0] for m in MODELS])
def test_layer_norm_equals_autograd(name, kw, dtype, tmp_path):
    rng = np.random.default_rng(7)
    m = make(kw, dtype, rng)
    tm = reference(m, tmp_path)
    check(m, tm, "mse", "bptt", rng)
    check(m, tm, "mse", "bptt", rng, T=7, B=4, lengths=np.array([7, 2, 5, 1]))


@pytest.mark.parametrize("loss,theta", [("mse", "tanh"), ("bce", "sigmoid"), ("xent", "softmax")])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_losses_masks_and_initial_states(cell, loss, theta, tmp_path):
    rng = np.random.default_rng(5)
    m = make(dict(cell=cell, num_layers=2), "f64", rng, output_activation=theta)
    tm = reference(m, tmp_path)
    U, B = 2, 3
    check(m, tm, loss, "bptt", rng, B=B, mask=rng.random((6, B)), lengths=np.array([6, 4, 3]),
          h0=rng.standard_normal((U, B, 5)),
          **({"c0": rng.standard_normal((U, B, 5))} if cell == "lstm" else {}))


@pytest.mark.parametrize("method", ["recompute", "recompute:2", "numeric"])
@pytest.mark.parametrize("name,kw", [MODELS[2], MODELS[4], MODELS[5]], ids=["lstm", "lstm_2l_bi", "gru_2l_nobias"])
def test_every_method_equals_autograd(name, kw, method, tmp_path):
    rng = np.random.default_rng(9)
    m = make(kw, "f64", rng)
    # Central differences of step 1e-6 are exact to O(step²·f''') only: near a zero initial
    # state layer norm divides by √ε, whose third derivatives bring the error to 2e-6 (h0 of a
    # 2-layer bidirectional LSTM); 1e-5 still tells a wrong gradient (errors of order 1e-1).
    check(m, reference(m, tmp_path), "mse", method, rng, lengths=np.array([6, 3, 5]),
          tol=1e-5 if method == "numeric" else None)


def expect_predict_and_stream(m, tm, x, stream=True):
    """m.predict(x) and, unless stream=False, a Stream step by step equal tm's forward pass."""
    import torch
    y_hat, h_n, _ = m.predict(x)
    with torch.no_grad():
        z, h_ref, _ = tm(torch.from_numpy(x))
    np.testing.assert_allclose(y_hat, z.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, h_ref.numpy(), rtol=0, atol=1e-12)
    if stream:
        s = m.stream(x.shape[1])
        for t in range(x.shape[0]):
            np.testing.assert_allclose(s.step(x[t]), z.numpy()[t], rtol=0, atol=1e-12)


def test_predict_and_stream_equal_the_reference(tmp_path):
    rng = np.random.default_rng(2)
    m = make(dict(cell="lstm", num_layers=2, proj_size=3), "f64", rng)
    tm = reference(m, tmp_path)
    expect_predict_and_stream(m, tm, rng.standard_normal((8, 2, 3)))


def test_rtrl_refuses_layer_norm():
    m = bptt.Model(cell="lstm", input_size=3, hidden_size=4, output_size=2, layer_norm=True)
    x = np.zeros((3, 1, 3), dtype=np.float32)
    with pytest.raises(bptt.Error) as e:
        m.grad(x, np.zeros((3, 1, 2), dtype=np.float32), method="rtrl")
    assert e.value.kind == "usage" and "layer-normalized" in str(e.value)


def test_file_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    m = make(dict(cell="gru", bidirectional=True), "f32", rng)
    assert m.config["layer_norm"] is True
    names = [k for k in m.state_dict() if ".ln_" in k]
    assert names == ["rnn.ln_ih_weight_l0", "rnn.ln_hh_weight_l0", "rnn.ln_ih_weight_l0_reverse",
                     "rnn.ln_hh_weight_l0_reverse"]
    m.save(tmp_path / "m.safetensors")
    back = bptt.load(tmp_path / "m.safetensors")
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    fresh = bptt.Model(cell="lstm", input_size=2, hidden_size=3, output_size=1, layer_norm=True)
    sd = fresh.state_dict()
    assert (sd["rnn.ln_ih_weight_l0"] == 1).all() and (sd["rnn.ln_c_bias_l0"] == 0).all()
    assert sd["rnn.ln_c_weight_l0"].shape == (3,) and sd["rnn.ln_hh_weight_l0"].shape == (12,)
