"""Time-consistent dropout and zoneout (issue 18): Model.grad and predict under masks given as a
data file gives them (masks={name: array}) against torch.autograd through
tools/fixtures/regularized_rnn.py, for every cell, one and two layers, bidirectional,
projections, layer norm, lengths and losses; float64 (1e-9) and float32 (2e-4). Zoneout without
flags is evaluation mode: the expectation with the model's probabilities."""

import numpy as np
import pytest

import bptt
from conftest import TOL, as_dtype, needs_torch, rel_err, targets
from test_layer_norm import expect_predict_and_stream, reference, torch_grad

pytestmark = needs_torch

MODELS = [
    ("elman", dict(cell="elman")),
    ("lstm_2l", dict(cell="lstm", num_layers=2)),
    ("gru_bi", dict(cell="gru", bidirectional=True)),
    ("lstm_bi_proj", dict(cell="lstm", bidirectional=True, proj_size=3)),
    ("gru_2l_ln", dict(cell="gru", num_layers=2, layer_norm=True)),
    ("lstm_ln_nobias", dict(cell="lstm", layer_norm=True, bias=False)),
]
KINDS = ["input", "recurrent", "output", "weight", "zoneout", "all"]


def draw(model, kinds, T, B, rng, p=0.3, z=0.25):
    """The masks of `kinds` for a batch of T steps and B sequences, as a data file holds them."""
    c = model.config
    U = c["num_layers"] * (2 if c["bidirectional"] else 1)
    H, HO = c["hidden_size"], c["proj_size"] or c["hidden_size"]
    drop = lambda *shape: np.where(rng.random(shape) < p, 0.0, 1 / (1 - p))
    m = {}
    if "input" in kinds:
        m["mask_input"] = drop(B, c["input_size"])
    if "recurrent" in kinds:
        m["mask_recurrent"] = drop(U, B, HO)
    if "output" in kinds:
        m["mask_output"] = drop(B, (U // c["num_layers"]) * HO)
    if "weight" in kinds:
        for k, v in model.state_dict().items():
            if k.startswith("rnn.weight_hh_l"):
                m["mask_" + k[4:]] = drop(*v.shape)
    if "zoneout" in kinds:
        m["zoneout_h"] = (rng.random((T, U, B, HO)) < z).astype(np.float64)
        if c["cell"] == "lstm":
            m["zoneout_c"] = (rng.random((T, U, B, H)) < z).astype(np.float64)
    return m


def check(model, tm, masks, loss, rng, T=6, B=3, lengths=None, tol=None, method="bptt"):
    import torch
    x = rng.standard_normal((T, B, model.config["input_size"]))
    y = targets(model, loss, T, B, rng)
    typed = {k: as_dtype(model, v) for k, v in masks.items()}
    L, g = model.grad(as_dtype(model, x), y if loss == "xent" else as_dtype(model, y), loss=loss,
                      lengths=lengths, masks=typed, method=method)
    tmasks = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in typed.items()}
    tm.forward_masks = tmasks
    L_ref, g_ref = torch_grad(model, tm, as_dtype(model, x),
                              y if loss == "xent" else as_dtype(model, y), loss, lengths=lengths)
    tol = tol or TOL[model.dtype]
    assert abs(L - L_ref) <= tol * max(1.0, abs(L_ref))
    for k in g_ref:
        err = rel_err(g[k], g_ref[k])
        assert err <= tol, f"{k}: {err:.2e}"


@pytest.fixture
def masked_reference(monkeypatch):
    """RegularizedRNN whose forward takes the masks set on it (torch_grad calls it plainly)."""
    from regularized_rnn import RegularizedRNN
    plain = RegularizedRNN.forward

    def forward(self, x, h0=None, c0=None, lengths=None, masks=None):
        return plain(self, x, h0=h0, c0=c0, lengths=lengths,
                     masks=masks if masks is not None else getattr(self, "forward_masks", None))
    monkeypatch.setattr(RegularizedRNN, "forward", forward)


def make(kw, dtype, rng, **extra):
    m = bptt.Model(input_size=3, hidden_size=5, output_size=4, dtype=dtype, seed=4, **kw, **extra)
    if kw.get("layer_norm"):
        sd = m.state_dict()
        for k, v in sd.items():
            if ".ln_" in k:
                sd[k] = (0.0 if "ln_c_bias" in k else 1.0) + 0.3 * rng.standard_normal(v.shape)
        m.load_state_dict(sd)
    return m


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,kw", MODELS, ids=[m[0] for m in MODELS])
def test_masks_equal_autograd(name, kw, kind, dtype, tmp_path, masked_reference):
    rng = np.random.default_rng(21)
    zo = kind in ("zoneout", "all")
    m = make(kw, dtype, rng, zoneout_h=0.2 if zo else 0.0,
             zoneout_c=0.1 if zo and kw["cell"] == "lstm" else 0.0)
    tm = reference(m, tmp_path)
    kinds = KINDS[:5] if kind == "all" else [kind]
    check(m, tm, draw(m, kinds, 6, 3, rng), "mse", rng)
    check(m, tm, draw(m, kinds, 7, 4, rng), "mse", rng, T=7, B=4,
          lengths=np.array([7, 2, 5, 1]))


# (Truncation's chains under masks are checked against the slow truncated reference in C++,
# tests/methods: a truncated gradient is not autograd's.)
@pytest.mark.parametrize("method", ["recompute:2", "recompute:3"])
@pytest.mark.parametrize("name,kw", MODELS, ids=[m[0] for m in MODELS])
def test_recompute_takes_the_masks(name, kw, method, tmp_path, masked_reference):
    rng = np.random.default_rng(12)
    m = make(kw, "f64", rng, zoneout_h=0.2, zoneout_c=0.1 if kw["cell"] == "lstm" else 0.0)
    tm = reference(m, tmp_path)
    check(m, tm, draw(m, KINDS[:5], 7, 4, rng), "mse", rng, T=7, B=4,
          lengths=np.array([7, 2, 5, 1]), method=method)


@pytest.mark.parametrize("loss,theta", [("bce", "sigmoid"), ("xent", "softmax")])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_losses(cell, loss, theta, tmp_path, masked_reference):
    rng = np.random.default_rng(8)
    m = bptt.Model(cell=cell, input_size=3, hidden_size=5, output_size=4, num_layers=2,
                   output_activation=theta, dtype="f64", zoneout_h=0.3)
    tm = reference(m, tmp_path)
    check(m, tm, draw(m, KINDS[:5], 6, 3, rng), loss, rng)


@pytest.mark.parametrize("name,kw", MODELS, ids=[m[0] for m in MODELS])
def test_zoneout_evaluation_is_the_expectation(name, kw, tmp_path):
    rng = np.random.default_rng(3)
    m = make(kw, "f64", rng, zoneout_h=0.3, zoneout_c=0.2 if kw["cell"] == "lstm" else 0.0)
    assert m.config["zoneout_h"] == 0.3
    tm = reference(m, tmp_path)  # loads zoneout_h, zoneout_c from the file
    # predict and (left to right) a stream evaluate with the expectation
    expect_predict_and_stream(m, tm, rng.standard_normal((6, 2, 3)),
                              stream=not kw.get("bidirectional"))
    check(m, tm, {}, "mse", rng)  # the gradient of the expectation


def test_masks_are_checked():
    m = bptt.Model(cell="gru", input_size=3, hidden_size=4, output_size=2, num_layers=2)
    x = np.zeros((3, 2, 3), dtype=np.float32)
    y = np.zeros((3, 2, 2), dtype=np.float32)
    for masks, kind, text in [
        ({"mask_input": np.ones((2, 4))}, "shape", "mask_input"),
        ({"zoneout_h": np.full((3, 2, 2, 4), 0.5)}, "value", "zoneout flags"),
        ({"zoneout_c": np.zeros((3, 2, 2, 4))}, "usage", "cell state"),
        ({"mask_weight_hh_l0": np.ones((12, 4))}, "usage", "not all"),
        ({"mask_hidden": np.ones(3)}, "usage", "not a mask of this model"),
        ({"mask_output": -np.ones((2, 4))}, "value", "finite and >= 0"),
    ]:
        with pytest.raises(bptt.Error) as e:
            m.grad(x, y, masks=masks)
        assert e.value.kind == kind and text in str(e.value), str(e.value)
    with pytest.raises(bptt.Error) as e:
        m.grad(x, y, masks={"mask_input": np.ones((2, 3))}, method="rtrl")
    assert e.value.kind == "usage" and "rtrl" in str(e.value)
