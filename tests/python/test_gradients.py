"""Model.grad by every method against torch.autograd on random models: every cell,
bidirectional, projections, bias-free, learned initial states, head-less, masks, lengths and
given initial states, in float64 (1e-9) and float32 (2e-4)."""

import numpy as np
import pytest

import bptt
from conftest import TOL, as_dtype, needs_torch, rel_err, targets, torch_grad

pytestmark = needs_torch

# (name, Model keywords): each option alone on the cells that take it, then together.
MODELS = [
    ("elman_tanh", dict(cell="elman")),
    ("elman_relu_2l", dict(cell="elman", nonlinearity="relu", num_layers=2)),
    ("lstm", dict(cell="lstm")),
    ("gru", dict(cell="gru")),
    ("lstm_2l", dict(cell="lstm", num_layers=2)),
    ("gru_2l_nobias", dict(cell="gru", num_layers=2, bias=False)),
    ("lstm_bi", dict(cell="lstm", bidirectional=True)),
    ("gru_bi_2l", dict(cell="gru", bidirectional=True, num_layers=2)),
    ("elman_bi_nobias", dict(cell="elman", bidirectional=True, bias=False)),
    ("lstm_proj", dict(cell="lstm", proj_size=3)),
    ("lstm_learned", dict(cell="lstm", initial_state="learned", num_layers=2)),
    ("gru_headless", dict(cell="gru", head=False)),
    ("lstm_all", dict(cell="lstm", bidirectional=True, proj_size=3, bias=False,
                      initial_state="learned", num_layers=2)),
]
METHODS = ["bptt", "recompute", "recompute:2", "rtrl", "numeric"]


def make(kw, dtype, seed=1, output_activation="identity"):
    output_size = None if kw.get("head") is False else 4  # head-less: the top layer's width
    return bptt.Model(input_size=3, hidden_size=5, output_size=output_size, dtype=dtype, seed=seed,
                      output_activation=output_activation, **kw)


def check(model, loss, method, rng, T=6, B=3, **extra):
    x = rng.standard_normal((T, B, model.config["input_size"]))
    y = targets(model, loss, T, B, rng)
    args = {k: (as_dtype(model, v) if k in ("mask", "h0", "c0") else v)
            for k, v in extra.items()}
    L, g = model.grad(as_dtype(model, x), y if loss == "xent" else as_dtype(model, y), loss=loss,
                      method=method, **args)
    L_ref, g_ref = torch_grad(model, as_dtype(model, x), as_dtype(model, y) if loss != "xent" else y,
                              loss, **args)
    tol = TOL[model.dtype]
    assert sorted(g) == sorted(g_ref)
    assert abs(L - L_ref) <= tol * max(1.0, abs(L_ref))
    for k in g_ref:
        assert g[k].dtype == (np.float32 if model.dtype == "f32" else np.float64)
        err = rel_err(g[k], g_ref[k])
        assert err <= tol, f"{k}: {err:.2e}"


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("name,kw", MODELS, ids=[m[0] for m in MODELS])
def test_bptt_equals_autograd(name, kw, dtype):
    rng = np.random.default_rng(11)
    check(make(kw, dtype), "mse", "bptt", rng)


@pytest.mark.parametrize("name,kw", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_equals_autograd(name, kw, method):
    rng = np.random.default_rng(5)
    model = make(kw, "f64", seed=2)
    try:
        check(model, "mse", method, rng)
    except bptt.Error as e:  # a method that does not take this model says so, as a usage error
        assert e.kind == "usage", str(e)
        assert method == "rtrl" and model.config["bidirectional"], str(e)


@pytest.mark.parametrize("loss,theta", [("mse", "tanh"), ("mse", "sigmoid"), ("bce", "sigmoid"),
                                        ("xent", "softmax")])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_losses(cell, loss, theta):
    rng = np.random.default_rng(3)
    for dtype in ("f64", "f32"):
        check(make(dict(cell=cell, num_layers=2), dtype, output_activation=theta), loss, "bptt", rng)


@pytest.mark.parametrize("name,kw", [m for m in MODELS if m[0] in
                                     ("lstm_2l", "gru_bi_2l", "elman_relu_2l", "lstm_all")],
                         ids=["lstm_2l", "gru_bi_2l", "elman_relu_2l", "lstm_all"])
@pytest.mark.parametrize("method", ["bptt", "recompute:2"])
def test_mask_lengths_and_initial_states(name, kw, method):
    rng = np.random.default_rng(7)
    model = make(kw, "f64", seed=4)
    c = model.config
    U = c["num_layers"] * (2 if c["bidirectional"] else 1)
    T, B = 7, 4
    lengths = np.array([7, 3, 1, 5])
    mask = rng.random((T, B))
    h0 = rng.standard_normal((U, B, c["proj_size"] or c["hidden_size"]))
    extra = dict(mask=mask, lengths=lengths, h0=h0)
    if c["cell"] == "lstm":
        extra["c0"] = rng.standard_normal((U, B, c["hidden_size"]))
    check(model, "mse", method, rng, T=T, B=B, **extra)


def truncated_reference(model, x, y, K):
    """The K-truncated gradient from torch: each step's loss through the last K steps only,
    from the exact (detached) states K steps back; the initial state where t <= K."""
    import torch
    from conftest import torch_module, torch_forward
    T, B = x.shape[0], x.shape[1]
    tm = torch_module(model)
    total = {k: np.zeros(p.shape) for k, p in tm.named_parameters()}
    total["x"] = np.zeros(x.shape)
    U, H = model.config["num_layers"], model.config["hidden_size"]
    total["h0"] = np.zeros((U, B, H))
    if model.config["cell"] == "lstm":
        total["c0"] = np.zeros((U, B, H))
    L_sum = 0.0
    for t in range(1, T + 1):
        s = max(0, t - K)
        tm.zero_grad()
        if s == 0:
            z, _, _, dh, dc, xt = torch_forward(tm, model, x[:t])
        else:
            with torch.no_grad():
                _, h_s, c_s, _, _, _ = torch_forward(tm, model, x[:s])
            z, _, _, dh, dc, xt = torch_forward(tm, model, x[s:t], h0=h_s.numpy(),
                                                c0=None if c_s is None else c_s.numpy())
        yt = torch.tensor(y[t - 1])
        step = ((z[-1] - yt) ** 2).mean(-1).sum() / (T * B)
        step.backward()
        L_sum += float(step)
        for k, p in tm.named_parameters():
            total[k] += p.grad.numpy()
        total["x"][s:t] += xt.grad.numpy()
        if s == 0:
            total["h0"] += dh.grad.numpy()
            if "c0" in total:
                total["c0"] += dc.grad.numpy()
    return L_sum, total


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("K", [1, 2, 4, 9])
def test_truncated_equals_autograd_on_windows(cell, K):
    rng = np.random.default_rng(K)
    model = make(dict(cell=cell, num_layers=2), "f64", seed=6)
    T, B = 6, 3
    x = rng.standard_normal((T, B, 3))
    y = rng.standard_normal((T, B, 4))
    L, g = model.grad(x, y, loss="mse", method="truncated:%d" % K)
    L_ref, g_ref = truncated_reference(model, x, y, K)
    assert abs(L - L_ref) <= 1e-9 * max(1.0, abs(L_ref))
    assert sorted(g) == sorted(g_ref)
    for k in g_ref:
        assert rel_err(g[k], g_ref[k]) <= 1e-9, k


def test_grad_equals_the_grad_verb(tmp_path):
    """m.grad returns what `bptt grad` writes for the same model and data."""
    import subprocess
    from conftest import BPTT_CLI, st
    if not BPTT_CLI:
        pytest.skip("BPTT_CLI not set")
    rng = np.random.default_rng(9)
    model = make(dict(cell="gru", num_layers=2, bidirectional=True), "f32")
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    y = rng.standard_normal((5, 2, 4)).astype(np.float32)
    model.save(tmp_path / "m.safetensors")
    st.save_file({"x": x, "y": y}, str(tmp_path / "d.safetensors"))
    subprocess.run([BPTT_CLI, "grad", "--model", str(tmp_path / "m.safetensors"), "--data",
                    str(tmp_path / "d.safetensors"), "--loss", "mse", "--out",
                    str(tmp_path / "g.safetensors")], check=True)
    ref, _ = st.load_file(str(tmp_path / "g.safetensors"))
    L, g = model.grad(x, y, loss="mse")
    assert L == ref["loss"][0]
    assert sorted(g) == sorted(k for k in ref if k != "loss")
    for k in g:
        np.testing.assert_array_equal(g[k], ref[k])
