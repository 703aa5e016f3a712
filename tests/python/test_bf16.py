"""dtype="bf16": a float32 model whose matrix products take bfloat16 operands (issue 19):
float32 arrays in and out, results within the documented bounds of the float64 ones and unlike
float32's, the same precision through predict, grad by the BPTT methods, streams and load, and
refusals where a method keeps its own precision."""

import numpy as np
import pytest

import bptt


def pair(cell="lstm", **kw):
    m32 = bptt.Model(cell=cell, input_size=3, hidden_size=16, output_size=2, seed=4, **kw)
    m16 = bptt.Model(cell=cell, input_size=3, hidden_size=16, output_size=2, dtype="bf16",
                     seed=4, **kw)
    m64 = bptt.Model(cell=cell, input_size=3, hidden_size=16, output_size=2, dtype="f64",
                     seed=4, **kw)
    m16.load_state_dict(m32.state_dict())
    m64.load_state_dict({k: v.astype(np.float64) for k, v in m32.state_dict().items()})
    return m32, m16, m64


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_predict_and_grad_are_bf16_products(cell):
    m32, m16, m64 = pair(cell)
    assert m16.dtype == "bf16" and m32.dtype == "f32"
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (7, 4, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (7, 4, 2)).astype(np.float32)
    y32, _, _ = m32.predict(x)
    y16, h16, _ = m16.predict(x)
    y64, _, _ = m64.predict(x.astype(np.float64))
    assert y16.dtype == np.float32 and h16.dtype == np.float32
    assert 1e-6 < np.abs(y16 - y32).max() < 5e-2  # rounded products, not float's
    assert np.abs(y16 - y64).max() < 5e-2
    for method in ("bptt", "recompute:2", "truncated:3"):
        l16, g16 = m16.grad(x, y, method=method)
        l64, g64 = m64.grad(x.astype(np.float64), y.astype(np.float64), method=method)
        assert abs(l16 - l64) <= 1e-2 * abs(l64)
        num = sum(float(np.sum((g16[k].astype(np.float64) - g64[k]) ** 2)) for k in g64)
        den = sum(float(np.sum(g64[k] ** 2)) for k in g64)
        assert np.sqrt(num / den) < 2e-2, (method, np.sqrt(num / den))


def test_stream_and_load_keep_bf16(tmp_path):
    m32, m16, _ = pair("gru")
    x = np.random.default_rng(1).uniform(-1, 1, (5, 1, 3)).astype(np.float32)
    y16, _, _ = m16.predict(x)
    s = m16.stream(1)
    out = np.stack([s.step(x[t]) for t in range(5)])
    assert np.abs(out - y16).max() < 1e-6
    path = str(tmp_path / "m.safetensors")
    m32.save(path)
    again = bptt.load(path, dtype="bf16")
    assert again.dtype == "bf16"
    assert np.abs(again.predict(x)[0] - y16).max() == 0


def test_refusals():
    _, m16, _ = pair("lstm")
    x = np.zeros((3, 2, 3), np.float32)
    y = np.zeros((3, 2, 2), np.float32)
    for method in ("rtrl", "numeric"):
        with pytest.raises(bptt.Error):
            m16.grad(x, y, method=method)
