"""state_dict round trips through torch.nn.LSTM/GRU/RNN (strict=True) with the same outputs,
files saved and loaded, and plain PyTorch state_dict files."""

import numpy as np
import pytest

import bptt
from conftest import TOL, as_dtype, needs_torch, rel_err, st, torch_forward, torch_module

MODELS = [
    dict(cell="elman", nonlinearity="relu", num_layers=2),
    dict(cell="lstm", bidirectional=True, proj_size=3, bias=False, num_layers=2),
    dict(cell="gru", bidirectional=True),
    dict(cell="lstm", initial_state="learned"),
    dict(cell="gru", head=False),
]
IDS = ["elman_relu_2l", "lstm_bi_proj_nobias", "gru_bi", "lstm_learned", "gru_headless"]


def make(kw, dtype):
    return bptt.Model(input_size=4, hidden_size=6, output_size=None if kw.get("head") is False
                      else 3, dtype=dtype, seed=8, **kw)


@needs_torch
@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("kw", MODELS, ids=IDS)
def test_state_dict_loads_into_torch_and_agrees(kw, dtype):
    import torch
    model = make(kw, dtype)
    sd = model.state_dict()
    for v in sd.values():
        assert v.dtype == (np.float32 if dtype == "f32" else np.float64)
    tm = torch_module(model)  # load_state_dict(strict=True) inside
    rng = np.random.default_rng(1)
    x = as_dtype(model, rng.standard_normal((9, 3, 4)))
    lengths = np.array([9, 4, 6])
    y_hat, h_n, c_n = model.predict(x, lengths=lengths)
    with torch.no_grad():
        z, h_ref, c_ref, _, _, _ = torch_forward(tm, model, x, lengths=lengths)
    valid = np.arange(9)[:, None] < lengths[None, :]
    assert rel_err(y_hat[valid], z.numpy()[valid]) <= TOL[dtype]
    assert rel_err(h_n, h_ref.numpy()) <= TOL[dtype]
    assert (c_n is None) == (model.config["cell"] != "lstm")
    if c_n is not None:
        assert rel_err(c_n, c_ref.numpy()) <= TOL[dtype]


@needs_torch
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_torch_state_dict_loads_into_bptt(cell):
    """A torch module's own parameters, through load_state_dict, give torch's outputs."""
    import torch
    torch.manual_seed(3)
    model = bptt.Model(cell=cell, input_size=4, hidden_size=6, num_layers=2, output_size=3,
                       bidirectional=True, dtype="f64", seed=1)
    tm = torch_module(model)
    for p in tm.parameters():  # new values, not the ones bptt gave it
        torch.nn.init.uniform_(p, -0.5, 0.5)
    model.load_state_dict(tm.state_dict())  # torch tensors are taken as they are
    x = np.random.default_rng(2).standard_normal((5, 2, 4))
    with torch.no_grad():
        z, h_ref, _, _, _, _ = torch_forward(tm, model, x)
    y_hat, h_n, _ = model.predict(x)
    assert rel_err(y_hat, z.numpy()) <= 1e-12
    assert rel_err(h_n, h_ref.numpy()) <= 1e-12
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy())


@pytest.mark.parametrize("kw", MODELS, ids=IDS)
def test_save_and_load_round_trip(kw, tmp_path):
    for dtype in ("f32", "f64"):
        model = make(kw, dtype)
        path = tmp_path / ("m_%s.safetensors" % dtype)
        model.save(path)
        back = bptt.load(str(path))
        assert back.config == model.config
        assert back.dtype == dtype
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(back.state_dict()[k], v)
        wide = bptt.load(path, dtype="f64")
        assert wide.dtype == "f64"
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(wide.state_dict()[k], v.astype(np.float64))


def test_plain_pytorch_state_dict_file(tmp_path):
    """A safetensors file of a torch module's state_dict, no bptt metadata: load() imports it."""
    rng = np.random.default_rng(4)
    I, H, O = 3, 5, 2
    tensors = {
        "encoder.gru.weight_ih_l0": rng.standard_normal((3 * H, I)),
        "encoder.gru.weight_hh_l0": rng.standard_normal((3 * H, H)),
        "encoder.gru.bias_ih_l0": rng.standard_normal(3 * H),
        "encoder.gru.bias_hh_l0": rng.standard_normal(3 * H),
        "decoder.weight": rng.standard_normal((O, H)),
        "decoder.bias": rng.standard_normal(O),
    }
    st.save_file(tensors, str(tmp_path / "plain.safetensors"))
    model = bptt.load(tmp_path / "plain.safetensors")
    c = model.config
    assert (c["cell"], c["input_size"], c["hidden_size"], c["output_size"]) == ("gru", I, H, O)
    assert model.dtype == "f64"
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["rnn.weight_hh_l0"], tensors["encoder.gru.weight_hh_l0"])
    np.testing.assert_array_equal(sd["head.weight"], tensors["decoder.weight"])


def test_state_dict_is_a_copy_and_load_state_dict_is_strict():
    model = make(MODELS[0], "f64")
    sd = model.state_dict()
    before = sd["head.bias"].copy()
    sd["head.bias"][:] = 7
    np.testing.assert_array_equal(model.state_dict()["head.bias"], before)
    model.load_state_dict(sd)
    np.testing.assert_array_equal(model.state_dict()["head.bias"], np.full(3, 7.0))
    missing = dict(sd)
    del missing["head.bias"]
    with pytest.raises(bptt.Error, match="head.bias: is missing") as e:
        model.load_state_dict(missing)
    assert e.value.kind == "format"
    with pytest.raises(bptt.Error, match="extra: is not a tensor of this model"):
        model.load_state_dict(dict(sd, extra=np.zeros(1)))
    with pytest.raises(bptt.Error, match="has shape") as e:
        model.load_state_dict(dict(sd, **{"head.bias": np.zeros(4)}))
    assert e.value.kind == "shape"
    bad = dict(sd, **{"head.bias": np.array([0.0, np.inf, 0.0])})
    with pytest.raises(bptt.Error, match="not finite") as e:
        model.load_state_dict(bad)
    assert e.value.kind == "value"
    np.testing.assert_array_equal(model.state_dict()["head.bias"], np.full(3, 7.0))  # unchanged
