"""tools/fixtures/regularized_rnn.py, the PyTorch reference of issue 18's layer-normalized cells,
dropout masks and zoneout: without them it is torch.nn's RNN/LSTM/GRU and bptt's own model (a
bptt file loads into it with strict=True and gives bptt's predictions); the masks and zoneout
flags do what their definitions say."""

import numpy as np
import pytest

import bptt
from conftest import needs_torch

pytestmark = needs_torch

CASES = [
    dict(cell="elman", num_layers=2),
    dict(cell="lstm", bidirectional=True, proj_size=3),
    dict(cell="gru", bidirectional=True, num_layers=2, bias=False),
    dict(cell="lstm", num_layers=2),
]
IDS = ["elman_2l", "lstm_bi_proj", "gru_bi_2l_nobias", "lstm_2l"]


def reference():
    import torch
    from regularized_rnn import RegularizedRNN, layer_norm, load_bptt_file
    return torch, RegularizedRNN, layer_norm, load_bptt_file


@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_without_options_it_is_bptts_model(kw, tmp_path):
    torch, _, _, load_bptt_file = reference()
    m = bptt.Model(input_size=4, hidden_size=6, output_size=3, dtype="f64", seed=5, **kw)
    m.save(tmp_path / "m.safetensors")
    ref = load_bptt_file(str(tmp_path / "m.safetensors"))  # strict=True inside
    x = np.random.default_rng(1).standard_normal((7, 3, 4))
    lengths = np.array([7, 2, 5])
    y_hat, h_n, c_n = m.predict(x, lengths=lengths)
    with torch.no_grad():
        z, h_ref, c_ref = ref(torch.from_numpy(x), lengths=lengths)
    valid = np.arange(7)[:, None] < lengths[None, :]
    np.testing.assert_allclose(z.numpy()[valid], y_hat[valid], rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_ref.numpy(), h_n, rtol=0, atol=1e-12)
    if c_n is not None:
        np.testing.assert_allclose(c_ref.numpy(), c_n, rtol=0, atol=1e-12)


def test_layer_norm_is_torchs():
    torch, _, layer_norm, _ = reference()
    v = torch.randn(5, 12, dtype=torch.float64) * 3 + 1
    ref = torch.nn.functional.layer_norm(v, (12,), eps=1e-5)
    assert torch.allclose(layer_norm(v), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_layer_norm_parameters_and_scale_invariance(cell):
    torch, RegularizedRNN, _, _ = reference()
    torch.manual_seed(0)
    m = RegularizedRNN(cell, 4, 5, num_layers=2, output_size=2, layer_norm=True,
                       bidirectional=True)
    names = {k for k, _ in m.named_parameters()}
    G = {"elman": 1, "lstm": 4, "gru": 3}[cell]
    for s in ("_l0", "_l1_reverse"):
        assert m.rnn.get_parameter("ln_ih_weight" + s).shape == (G * 5,)
        assert torch.all(m.rnn.get_parameter("ln_hh_weight" + s) == 1)
        assert ("rnn.ln_c_weight" + s in names) == (cell == "lstm")
        assert ("rnn.ln_c_bias" + s in names) == (cell == "lstm")
    # LN removes the scale of each product: once the products' variance dwarfs the eps (W_ih
    # and W_hh scaled by 1000, variance ×1e6), doubling them again changes nothing.
    x = torch.randn(6, 2, 4, dtype=torch.float64)

    def scaled(factor):
        with torch.no_grad():
            for k, p in m.named_parameters():
                if "weight_ih" in k or "weight_hh" in k:
                    p.mul_(factor)
            return m(x)[0]

    z1 = scaled(1.0)
    z2 = scaled(1000.0)
    z3 = scaled(2.0)
    assert torch.allclose(z2, z3, rtol=0, atol=1e-9)
    assert torch.allclose(z1, z2, rtol=0, atol=1e-3)  # at scale 1 the eps's share shows
    assert not torch.allclose(z1, z2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_masks_and_zoneout_do_what_they_say(cell):
    torch, RegularizedRNN, _, _ = reference()
    torch.manual_seed(1)
    T, B, I, H = 5, 3, 4, 6
    m = RegularizedRNN(cell, I, H, num_layers=2, output_size=2, zoneout_h=0.3,
                       zoneout_c=0.2 if cell == "lstm" else 0.0)
    plain = RegularizedRNN(cell, I, H, num_layers=2, output_size=2)
    plain.load_state_dict(m.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    U = 2
    ones = {"mask_input": torch.ones(B, I), "mask_recurrent": torch.ones(U, B, H),
            "mask_output": torch.ones(B, H), "zoneout_h": torch.zeros(T, U, B, H),
            "mask_weight_hh_l0": torch.ones(m.rnn.weight_hh_l0.shape),
            "mask_weight_hh_l1": torch.ones(m.rnn.weight_hh_l1.shape)}
    if cell == "lstm":
        ones["zoneout_c"] = torch.zeros(T, U, B, H)
    with torch.no_grad():
        z_plain, h_plain, _ = plain(x)
        z, h, _ = m(x, masks={k: v.double() for k, v in ones.items()})
        assert torch.allclose(z, z_plain, rtol=0, atol=1e-14)  # neutral masks: training = plain
        # Keeping every unit at every step keeps the initial state.
        keep = {"zoneout_h": torch.ones(T, U, B, H, dtype=torch.float64)}
        if cell == "lstm":
            keep["zoneout_c"] = torch.ones(T, U, B, H, dtype=torch.float64)
        _, h_kept, _ = m(x, masks=keep)
        assert torch.all(h_kept == 0)
        # Evaluation: the expectation z·prev + (1 − z)·new, step by step.
        z_eval, _, _ = m(x)
        assert not torch.allclose(z_eval, z_plain)
        # A recurrent mask of zeros cuts h from W_hh (the first step's product) at every step;
        # a weight mask of zeros on W_hh does the same.
        cut = {"mask_recurrent": torch.zeros(U, B, H, dtype=torch.float64)}
        wcut = {"mask_weight_hh_l0": torch.zeros(m.rnn.weight_hh_l0.shape, dtype=torch.float64),
                "mask_weight_hh_l1": torch.zeros(m.rnn.weight_hh_l1.shape, dtype=torch.float64)}
        m.zoneout_h = m.zoneout_c = 0.0
        z_cut, _, _ = m(x, masks=cut)
        z_wcut, _, _ = m(x, masks=wcut)
        assert torch.allclose(z_cut, z_wcut, rtol=0, atol=1e-14)
        assert not torch.allclose(z_cut, z_plain)
