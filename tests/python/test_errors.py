"""Every bad argument raises bptt.Error (a ValueError) with a kind and one line, never a crash or
another exception; files the command refuses give the command's message. Then property tests
(python3-hypothesis): arbitrary arrays and keyword values either work or raise bptt.Error."""

import os
import re
import subprocess

import numpy as np
import pytest

import bptt
from conftest import BPTT_CLI, st

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as s
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CI"):
        raise
    given = None


def lstm(**kw):
    return bptt.Model(cell="lstm", input_size=3, hidden_size=4, output_size=2, **kw)


def raises(kind, match, call, *args, **kwargs):
    with pytest.raises(bptt.Error, match=match) as e:
        call(*args, **kwargs)
    assert isinstance(e.value, ValueError)
    assert re.fullmatch(kind, e.value.kind), (e.value.kind, str(e.value))
    assert "\n" not in str(e.value)
    return e.value


X = np.zeros((5, 2, 3), dtype=np.float32)
Y = np.zeros((5, 2, 2), dtype=np.float32)


def test_error_carries_kind_where_problem_and_hint():
    e = raises("shape", "grad: x: has shape", lstm().grad, np.zeros((5, 3)), Y)
    assert e.where == "grad: x"
    assert e.problem.startswith("has shape [5, 3]")
    assert e.hint
    assert str(e) == "%s: %s (hint: %s)" % (e.where, e.problem, e.hint)
    assert issubclass(bptt.Error, ValueError)


def test_bad_arrays():
    m = lstm()
    raises("shape", r"x: has shape \[5, 2, 4\], expected \[T, B, I = 3\]", m.predict,
           np.zeros((5, 2, 4)))
    raises("shape", "x: has shape", m.predict, np.zeros((0, 2, 3)))
    raises("value", "x: holds <U", m.predict, [[["a", "b", "c"]]])
    raises("value", "x: holds complex128", m.predict, np.zeros((2, 1, 3), dtype=complex))
    raises("value", "x: is not an array of numbers", m.predict, [[[1, 2], [3]]])
    raises("value", r"x: element \[t=1, b=0, i=2\] is nan", m.predict,
           np.where(np.arange(30).reshape(5, 2, 3) == 8, np.nan, 0))
    with np.errstate(over="ignore"):  # numpy's cast warns of what bptt then refuses
        raises("value", "is inf", m.predict, np.full((1, 1, 3), 1e300))  # beyond float32's range
    raises("shape", r"y: has shape", m.grad, X, np.zeros((5, 2, 3)))
    raises("usage", "y: is required", m.grad, X, None)
    raises("value", "y: holds float32, not integers", m.grad, X, np.zeros((5, 2), np.float32),
           loss="xent")
    raises("value", "outside", m.grad, X, np.full((5, 2), 2), loss="xent")  # class 2 of O = 2
    raises("value", "lengths", m.predict, X, lengths=[6, 1])
    raises("value", "lengths: holds float64", m.predict, X, lengths=[1.5, 2])
    raises("shape", "lengths: has shape", m.predict, X, lengths=[1, 2, 3])
    raises("value", "mask", m.grad, X, Y, mask=-np.ones((5, 2)))
    raises("shape", "h0: has shape", m.predict, X, h0=np.zeros((1, 2, 5)))
    raises("shape", "c0: has shape", m.predict, X, c0=np.zeros((2, 2, 4)))
    raises("usage", "c0: only an LSTM", bptt.Model(cell="gru", input_size=3, hidden_size=4,
                                                   output_size=2).predict, X, c0=np.zeros((1, 2, 4)))
    raises("value", "nothing to learn|weight", m.grad, X, Y, mask=np.zeros((5, 2)))


def test_bad_options():
    m = lstm()
    raises("usage", "grad: loss", m.grad, X, Y, loss="mae")
    raises("usage", "grad: method: unknown method 'adjoint'", m.grad, X, Y, method="adjoint")
    raises("usage", "truncated", m.grad, X, Y, method="truncated")
    raises("value|usage", "recompute:K", m.grad, X, Y, method="recompute:0")
    raises("usage", "grad: unknown keyword 'method_'", m.grad, X, Y, method_="bptt")
    raises("usage", "grad: loss: must be a string", m.grad, X, Y, loss=3)
    raises("usage", "grad: threads: must be an integer", m.grad, X, Y, threads=1.5)
    raises("value", "threads: is 0", m.grad, X, Y, threads=0)
    raises("usage", "predict: unknown keyword", m.predict, X, lenghts=[1, 2])
    raises("usage", "Model: cell", bptt.Model, cell="transformer", input_size=3, hidden_size=4,
           output_size=2)
    raises("usage", "Model: unknown keyword 'hidden'", bptt.Model, input_size=3, hidden=4,
           output_size=2)
    raises("usage", "hidden_size: is required", bptt.Model, input_size=3, output_size=2)
    raises("value|usage|shape", "Model", bptt.Model, input_size=0, hidden_size=4, output_size=2)
    raises("value|usage", "proj", bptt.Model, cell="gru", input_size=3, hidden_size=4,
           output_size=2, proj_size=2)
    raises("usage", "dtype", bptt.Model, input_size=3, hidden_size=4, output_size=2, dtype="f16")
    raises("value", "seed", bptt.Model, input_size=3, hidden_size=4, output_size=2, seed=-1)
    raises("usage", "stream: unknown keyword", m.stream, streams=2)
    raises("usage|value", "stream", m.stream, n=0)
    raises("usage", "bidirectional", bptt.Model(input_size=3, hidden_size=4, output_size=2,
                                                bidirectional=True).stream)
    raises("resource", "numeric would perturb", bptt.Model(
        input_size=64, hidden_size=256, output_size=8, dtype="f64").grad,  # 330k parameters
        np.zeros((2, 1, 64)), np.zeros((2, 1, 8)), method="numeric")
    raises("usage", "load_state_dict", m.load_state_dict, [1, 2])
    raises("usage", "save: path", m.save, 3)


def test_stream_arguments():
    s = lstm().stream(n=2)
    raises("shape", r"step: x: has shape \[3\], expected \[N = 2, I = 3\]", s.step, np.zeros(3))
    raises("shape", "step: out", s.step, np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    raises("value", "step: out: must be", s.step, np.zeros((2, 3)), np.zeros((2, 2)))  # f64 out
    raises("value", "reset: stream 2 is outside", s.reset, 2)


def test_files_give_the_commands_message(tmp_path):
    """A file that is not a model: the same message as `bptt predict --model FILE`."""
    bad = tmp_path / "notes.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    e = raises("format", str(bad), bptt.load, bad)
    missing = tmp_path / "missing.safetensors"
    e_missing = raises("io", "missing.safetensors", bptt.load, str(missing))
    data = tmp_path / "data.safetensors"
    st.save_file({"x": np.zeros((2, 1, 3), np.float32)}, str(data))
    tensors = tmp_path / "tensors.safetensors"
    st.save_file({"w": np.zeros(3, np.float32)}, str(tensors))
    e_tensors = raises("format", "tensors.safetensors", bptt.load, tensors)
    if not BPTT_CLI:
        pytest.skip("BPTT_CLI not set")
    for err, path in ((e, bad), (e_missing, missing), (e_tensors, tensors)):
        r = subprocess.run([BPTT_CLI, "predict", "--model", str(path), "--data", str(data),
                            "--out", str(tmp_path / "o.safetensors")], capture_output=True,
                           text=True)
        assert r.returncode == 2
        assert r.stderr == "bptt: error: %s\n" % err


def test_train_refuses_like_the_command(tmp_path):
    e = raises("usage", "train: unknown keyword 'hiden'", bptt.train, text="x.txt", hiden=3)
    assert e.hint.startswith("did you mean 'hidden'?") and "seq_len" in e.hint
    raises("usage", "explain: unknown keyword 'z'", bptt.explain, z=1)
    raises("io", "nonexistent.txt", bptt.train, text=str(tmp_path / "nonexistent.txt"), steps=1)
    raises("usage", "train: optimizer", bptt.train, text="x.txt", optimizer=object())
    raises("usage", "on_progress: must be callable", bptt.train, text="x.txt", on_progress=3)
    raises("usage", "--optimizer", bptt.train, text="x.txt", optimizer="lbfgs")


if given is not None:
    DTYPES = s.sampled_from([np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8,
                             np.bool_, np.complex64])

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)))
    def test_any_array_works_or_raises_bptt_error(x):
        m = lstm()
        try:
            y_hat, h_n, c_n = m.predict(x)
        except bptt.Error as e:
            assert e.kind in ("shape", "value")
            return
        assert x.ndim == 3 and x.shape[2] == 3 and x.shape[0] >= 1 and x.shape[1] >= 1
        assert y_hat.shape == (x.shape[0], x.shape[1], 2) and y_hat.dtype == np.float32
        assert h_n.shape == (1, x.shape[1], 4) and c_n.shape == (1, x.shape[1], 4)

    VALUES = s.one_of(s.none(), s.booleans(), s.integers(-2**40, 2**40),
                      s.floats(allow_nan=True), s.text(max_size=6),
                      s.sampled_from(["lstm", "gru", "elman", "tanh", "relu", "softmax",
                                      "learned", "final_state", "f64"]),
                      s.lists(s.integers(0, 3), max_size=2))

    @settings(max_examples=200, deadline=None)
    @given(s.dictionaries(s.sampled_from(["cell", "input_size", "hidden_size", "num_layers",
                                          "output_size", "output_activation", "nonlinearity",
                                          "bidirectional", "proj_size", "bias", "initial_state",
                                          "dtype", "seed", "readout", "head", "forget_bias",
                                          "bogus"]), VALUES))
    def test_any_model_keywords_work_or_raise_bptt_error(kw):
        base = dict(input_size=2, hidden_size=3, output_size=2)
        base.update(kw)
        for k in ("input_size", "hidden_size", "output_size", "num_layers", "proj_size"):
            v = base.get(k)  # keep the sizes small enough to allocate
            if isinstance(v, int) and not isinstance(v, bool) and v > 64:
                base[k] = v % 64
        try:
            m = bptt.Model(**base)
        except bptt.Error as e:
            assert e.kind in ("usage", "value", "shape")
            return
        y_hat, _, _ = m.predict(np.zeros((2, 1, m.config["input_size"])))
        assert y_hat.shape == (2, 1, m.config["output_size"])

    @settings(max_examples=100, deadline=None)
    @given(s.sampled_from(["mse", "bce", "xent", "nll", "", "MSE"]),
           s.sampled_from(["bptt", "recompute", "recompute:1", "recompute:99", "truncated:1",
                           "truncated:0", "truncated:x", "rtrl", "numeric", "numeric:2", ":",
                           "bptt "]),
           s.integers(-2, 4), s.sampled_from(["f32", "f64"]))
    def test_any_loss_and_method_work_or_raise_bptt_error(loss, method, threads, dtype):
        m = bptt.Model(cell="gru", input_size=2, hidden_size=3, output_size=2, dtype=dtype)
        x = np.ones((3, 2, 2))
        y = np.zeros((3, 2), np.int64) if loss == "xent" else np.full((3, 2, 2), 0.5)
        try:
            L, g = m.grad(x, y, loss=loss, method=method, threads=threads)
        except bptt.Error as e:
            assert e.kind in ("usage", "value")
            return
        assert np.isfinite(L) and g["x"].shape == (3, 2, 2)


def test_paths_that_are_not_utf8(tmp_path):
    """File names are bytes to the file system: any name works, and messages replace what is
    not UTF-8 instead of failing."""
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/m\xff\xfe.safetensors")
    m = lstm()
    m.save(name)
    assert bptt.load(name).config == m.config
    with open(name, "wb") as f:
        f.write(b"garbage that is not a model")
    e = raises("format", "header", bptt.load, name)
    assert "\ufffd" in str(e)
