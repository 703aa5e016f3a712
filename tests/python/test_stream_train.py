"""Streams against predict, threads, training with progress and Ctrl-C, and the verbs' JSON
(explain, diagnose) against the command's."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import bptt
from conftest import BPTT_CLI, st


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_stream_steps_equal_predict(cell, dtype):
    m = bptt.Model(cell=cell, input_size=3, hidden_size=6, num_layers=2, output_size=2,
                   dtype=dtype, seed=5, proj_size=4 if cell == "lstm" else 0)
    real = np.float32 if dtype == "f32" else np.float64
    x = np.random.default_rng(1).standard_normal((8, 3, 3)).astype(real)
    y_hat, h_n, c_n = m.predict(x)
    s = m.stream(n=3)
    assert s.streams == 3 and s.threads == 1
    out = np.stack([s.step(x[t]) for t in range(8)])
    np.testing.assert_allclose(out, y_hat, rtol=1e-5 if dtype == "f32" else 1e-12, atol=1e-6)
    np.testing.assert_allclose(s.h, h_n, rtol=1e-5, atol=1e-6)
    assert (s.c is None) == (cell != "lstm")
    # reset(n): that stream alone starts again; reset(): all of them.
    s.reset(1)
    y1 = s.step(x[0])
    np.testing.assert_allclose(y1[1], y_hat[0, 1], rtol=1e-5, atol=1e-6)
    s.reset()
    buf = np.empty((3, 2), real)
    assert s.step(x[0], out=buf) is buf
    np.testing.assert_allclose(buf, y_hat[0], rtol=1e-5, atol=1e-6)
    # The states are the stream's own memory: setting them sets where the next step starts.
    s.reset()
    s.h[:] = h_n
    if s.c is not None:
        s.c[:] = c_n
    s2 = m.stream(n=3)
    for t in range(8):
        s2.step(x[t])
    np.testing.assert_array_equal(s.step(x[0]), s2.step(x[0]))
    # Non-contiguous and other-dtype inputs are converted.
    np.testing.assert_allclose(s.step(np.asfortranarray(x[1].astype(np.float16))),
                               s2.step(x[1].astype(np.float16).astype(real)), rtol=1e-5)


def test_stream_on_two_threads_equals_one():
    m = bptt.Model(cell="lstm", input_size=16, hidden_size=256, num_layers=2, output_size=8,
                   seed=2)
    x = np.random.default_rng(3).standard_normal((5, 1, 16)).astype(np.float32)
    a, b = m.stream(n=1), m.stream(n=1, threads=2)
    assert b.threads == 2
    for t in range(5):
        np.testing.assert_array_equal(a.step(x[t]), b.step(x[t]))


def test_stream_is_a_snapshot():
    m = bptt.Model(cell="gru", input_size=2, hidden_size=3, output_size=1)
    s = m.stream()
    x = np.ones((1, 2), np.float32)
    sd = m.state_dict()
    m.load_state_dict({k: v * 0 for k, v in sd.items()})
    s.reset()
    assert s.step(x)[0, 0] != 0.0


def test_threads_and_concurrent_calls_agree():
    """Python threads share one model (the GIL is released while the engine runs)."""
    m = bptt.Model(cell="lstm", input_size=8, hidden_size=32, num_layers=2, output_size=4,
                   dtype="f64")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((20, 8, 8)), rng.standard_normal((20, 8, 4))
    L0, g0 = m.grad(x, y)
    L2, g2 = m.grad(x, y, threads=2)
    assert abs(L0 - L2) <= 1e-12
    for k in g0:
        np.testing.assert_allclose(g2[k], g0[k], rtol=1e-10, atol=1e-13)
    results = [None] * 6

    def work(i):
        results[i] = m.grad(x, y, method=["bptt", "recompute:5"][i % 2])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for L, g in results:
        assert abs(L - L0) <= 1e-12
        for k in g0:
            np.testing.assert_allclose(g[k], g0[k], rtol=1e-9, atol=1e-12)


def write_text(tmp_path):
    path = tmp_path / "input.txt"
    rng = np.random.default_rng(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "cat"]
    path.write_text(" ".join(rng.choice(words, 6000)) + "\n")
    return path


def test_train_returns_the_metrics_rows(tmp_path):
    text = write_text(tmp_path)
    seen = []
    rows = bptt.train(out=tmp_path / "m.safetensors", text=text, hidden=16, layers=1, steps=12,
                      seq_len=16, batch=4, log_every=4, eval_every=8, metrics=tmp_path / "m.csv",
                      on_progress=seen.append)
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert seen == rows
    assert rows[0]["val_loss"] is None and rows[1]["val_loss"] is not None
    assert set(rows[0]) == {"step", "elapsed_s", "train_loss", "val_loss", "lr", "grad_norm",
                            "throughput"}
    # The rows are the --metrics file's.
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput"
    assert [int(l.split(",")[0]) for l in lines[1:]] == [4, 8, 12]
    m = bptt.load(tmp_path / "m.safetensors")
    assert m.config["hidden_size"] == 16 and m.metadata["task"] == "text"
    assert m.config["task"] == "text" and m.config["vocab"] == m.metadata["vocab"]
    # A callback's exception stops training and propagates.
    def boom(row):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here"):
        bptt.train(text=text, hidden=8, layers=1, steps=50, seq_len=8, batch=2, log_every=1,
                   on_progress=boom)


def test_ctrl_c_stops_training_cleanly(tmp_path):
    """SIGINT during bptt.train: the snapshot and the model are written, then KeyboardInterrupt."""
    text = write_text(tmp_path)
    script = textwrap.dedent("""
        import sys, bptt
        def progress(row):
            if row["step"] == 3:
                print("training", flush=True)
        try:
            bptt.train(out=sys.argv[2], snapshot=sys.argv[3], text=sys.argv[1], hidden=32,
                       layers=1, seq_len=32, batch=8, time_budget=120, log_every=1,
                       on_progress=progress)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            sys.exit(0)
        print("finished without interruption", flush=True)
        sys.exit(1)
    """)
    out, snap = tmp_path / "m.safetensors", tmp_path / "snap.safetensors"
    p = subprocess.Popen([sys.executable, "-c", script, str(text), str(out), str(snap)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ))
    assert p.stdout.readline().strip() == "training"
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, (stdout, stderr)
    assert "KeyboardInterrupt" in stdout
    assert "interrupted: saving the snapshot" in stderr
    assert out.exists() and snap.exists()
    assert bptt.load(out).config["hidden_size"] == 32


@pytest.mark.skipif(not BPTT_CLI, reason="BPTT_CLI not set")
def test_explain_is_the_commands_json():
    cases = [{}, dict(w=0.8, v=0.5), dict(w=-1.5, x=[1, -0.5, 2], y=[0, 1, 0.25], phi="relu")]
    for kw in cases:
        args = [BPTT_CLI, "explain", "--json"] + [
            "--%s=%s" % (k, ",".join(map(str, v)) if isinstance(v, list) else v)
            for k, v in kw.items()]
        ref = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
        assert bptt.explain(**kw) == ref
    with pytest.raises(bptt.Error) as e:
        bptt.explain(phi="softmax")
    assert e.value.kind in ("usage", "value")


@pytest.mark.skipif(not BPTT_CLI, reason="BPTT_CLI not set")
def test_diagnose_is_the_commands_json(tmp_path):
    m = bptt.Model(cell="gru", input_size=3, hidden_size=5, num_layers=2, output_size=4,
                   output_activation="softmax", seed=3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 3, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=(12, 3))
    m.save(tmp_path / "m.safetensors")
    st.save_file({"x": x, "y": y.astype(np.int64)}, str(tmp_path / "d.safetensors"))
    ref = json.loads(subprocess.run(
        [BPTT_CLI, "diagnose", "--model", str(tmp_path / "m.safetensors"), "--data",
         str(tmp_path / "d.safetensors"), "--loss", "xent", "--json", "--probes", "4"],
        check=True, capture_output=True, text=True).stdout)
    assert m.diagnose(x, y, loss="xent", probes=4) == ref
