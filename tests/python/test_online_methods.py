"""Issue 20's online approximations against tools/fixtures/online_methods.py, the slow reference
written from the papers' equations with dense Jacobians from torch.autograd (docs/math.md 8e):
Model.grad(method=M, seed=S) and `bptt grad --method M --seed S` equal it to 1e-9 in float64 for
every cell, one and two layers (uoro, kf-rtrl), lengths, a mask, given initial states, biases or
none, every loss; float32 within 2e-4. The reference checks itself against BPTT (its RTRL) and
the methods' defining properties (`online_methods.py --self-test`, run here too)."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import bptt
from conftest import BPTT_CLI, FIXTURES, TOL, needs_torch, rel_err, st, targets

pytestmark = needs_torch

METHODS = ["uoro", "kf-rtrl", "snap1", "eprop"]
CELLS = [("elman", "tanh"), ("elman", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def model_of(cell, phi, L, dtype="f64", bias=True, head=True, seed=3, O=2, theta="identity"):
    H = 3
    m = bptt.Model(cell=cell, nonlinearity=phi, input_size=2, hidden_size=H, num_layers=L,
                   output_size=O if head else H, output_activation=theta, bias=bias, head=head,
                   dtype=dtype, seed=seed)
    # Parameters larger than PyTorch's ±1/√H, so the recurrence matters over the steps.
    rng = np.random.default_rng(seed)
    m.load_state_dict({k: rng.uniform(-0.8, 0.8, np.shape(v)) for k, v in m.state_dict().items()})
    return m


def batch(m, loss, rng, T=5, B=3):
    c = m.config
    L, H = c["num_layers"], c["hidden_size"]
    d = {"x": rng.standard_normal((T, B, c["input_size"])), "y": targets(m, loss, T, B, rng),
         "lengths": np.array([T, T - 2, 1]), "mask": rng.choice([0.0, 0.5, 1.0, 2.0], (T, B)),
         "h0": 0.5 * rng.standard_normal((L, B, H))}
    d["mask"][0, 0] = 1.0
    if c["cell"] == "lstm":
        d["c0"] = 0.5 * rng.standard_normal((L, B, H))
    return d


def reference(m, data, loss, method, seed):
    sys.path.insert(0, FIXTURES)
    import online_methods
    meta = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in m.config.items()}
    params = {k: np.asarray(v, dtype=np.float64) for k, v in m.state_dict().items()}
    return online_methods.compute(meta, params, data, loss, method, seed)


def ours(m, data, loss, method, seed):
    cast = (lambda a: np.asarray(a, np.float32)) if m.dtype == "f32" else (lambda a: a)
    y = data["y"] if loss == "xent" else cast(data["y"])
    return m.grad(cast(data["x"]), y, loss=loss, mask=cast(data["mask"]),
                  lengths=data["lengths"], h0=cast(data["h0"]),
                  c0=cast(data["c0"]) if "c0" in data else None, method=method, seed=seed)


CASES = [(method, cell, phi, L, loss)
         for method in METHODS for cell, phi in CELLS
         for L in ((1, 2) if method in ("uoro", "kf-rtrl") else (1,))
         for loss in ("mse", "xent")]


@pytest.mark.parametrize("method,cell,phi,L,loss", CASES)
def test_grad_equals_the_reference(method, cell, phi, L, loss):
    rng = np.random.default_rng(len(method) * 100 + L * 10 + len(cell))
    m = model_of(cell, phi, L, theta="softmax" if loss == "xent" else "tanh")
    data = batch(m, loss, rng)
    for seed in (1, 12345678901234):
        L_ours, g = ours(m, data, loss, method, seed)
        ref = reference(m, data, loss, method, seed)
        assert abs(L_ours - ref["loss"][0]) <= 1e-12 * max(1.0, abs(ref["loss"][0]))
        assert set(g) == set(m.state_dict()), "parameters only"
        for k in m.state_dict():
            err = rel_err(g[k], ref[k])
            assert err <= TOL["f64"], f"{k}: {err:.2e}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("variant", ["nobias", "headless", "bce", "f32"])
def test_variants(method, variant):
    rng = np.random.default_rng(7)
    loss = "bce" if variant == "bce" else "mse"
    m = model_of("lstm" if variant != "headless" else "gru", "tanh", 1,
                 dtype="f32" if variant == "f32" else "f64", bias=variant != "nobias",
                 head=variant != "headless", theta="sigmoid" if loss == "bce" else "identity")
    data = batch(m, loss, rng)
    _, g = ours(m, data, loss, method, 9)
    ref = reference(m, data, loss, method, 9)
    for k in m.state_dict():
        err = rel_err(g[k], ref[k])
        assert err <= TOL[m.dtype], f"{k}: {err:.2e}"


@pytest.mark.skipif(not BPTT_CLI, reason="needs the command (BPTT_CLI)")
@pytest.mark.parametrize("method", METHODS)
def test_the_command(method):
    """`bptt grad --method M --seed S` writes the parameters' gradients, loss, and no x/h0/c0."""
    rng = np.random.default_rng(11)
    m = model_of("lstm", "tanh", 1)
    data = batch(m, "mse", rng)
    with tempfile.TemporaryDirectory() as d:
        mp, dp, gp = (os.path.join(d, n) for n in ("m.safetensors", "d.safetensors", "g.safetensors"))
        m.save(mp)
        st.save_file({k: (np.asarray(v, np.int64) if k == "lengths" else np.asarray(v, np.float64))
                      for k, v in data.items()}, dp)
        subprocess.run([BPTT_CLI, "grad", "--model", mp, "--data", dp, "--loss", "mse",
                        "--method", method, "--seed", "42", "--out", gp], check=True)
        got, meta = st.load_file(gp)
    ref = reference(m, data, "mse", method, 42)
    assert "x" not in got and "h0" not in got and "c0" not in got
    assert meta.get("method") == method
    for k in m.state_dict():
        assert rel_err(got[k], ref[k]) <= TOL["f64"], k
    assert abs(got["loss"][0] - ref["loss"][0]) <= 1e-12


def test_refusals():
    m = model_of("lstm", "tanh", 2)
    rng = np.random.default_rng(1)
    data = batch(m, "mse", rng)
    for method in ("snap1", "eprop"):
        with pytest.raises(bptt.Error, match="one layer"):
            ours(m, data, "mse", method, 1)
    with pytest.raises(bptt.Error):
        ours(m, data, "mse", "nonsense", 1)


def test_the_reference_checks_itself():
    p = subprocess.run([sys.executable, os.path.join(FIXTURES, "online_methods.py"),
                        "--self-test", "--quick"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.skipif(not BPTT_CLI, reason="needs the command (BPTT_CLI)")
def test_diagnose_methods():
    """`bptt diagnose --methods`: its cosine, norm ratio, bias and variance recomputed here from
    the reference's gradients and BPTT's (Model.grad)."""
    import json
    rng = np.random.default_rng(13)
    m = model_of("gru", "tanh", 1)
    data = batch(m, "mse", rng)
    with tempfile.TemporaryDirectory() as d:
        mp, dp = os.path.join(d, "m.safetensors"), os.path.join(d, "d.safetensors")
        m.save(mp)
        st.save_file({k: (np.asarray(v, np.int64) if k == "lengths" else np.asarray(v, np.float64))
                      for k, v in data.items()}, dp)
        p = subprocess.run([BPTT_CLI, "diagnose", "--model", mp, "--data", dp, "--loss", "mse",
                            "--methods", "uoro,snap1", "--samples", "4", "--seed", "3", "--json"],
                           capture_output=True, text=True, check=True)
        out = os.path.join(d, "out")
        subprocess.run([BPTT_CLI, "diagnose", "--model", mp, "--data", dp, "--loss", "mse",
                        "--methods", "eprop", "--out", out], capture_output=True, check=True)
        assert {"methods.json", "methods.dat", "methods.gp", "methods.png"} <= set(os.listdir(out))
    got = {r["method"]: r for r in json.loads(p.stdout)["methods"]}
    assert got["uoro"]["samples"] == 4 and got["snap1"]["samples"] == 1
    _, exact = ours(m, data, "mse", "bptt", 1)
    names = [k for k in m.state_dict() if k.endswith("_l0")]
    g = np.concatenate([np.ravel(exact[k]) for k in names])
    for method, seeds in (("uoro", (3, 4, 5, 6)), ("snap1", (3,))):
        s = np.array([np.concatenate([np.ravel(reference(m, data, "mse", method, k)[n])
                                      for n in names]) for k in seeds])
        mean = s.mean(0)
        want = {"cosine": np.mean([v @ g / (np.linalg.norm(v) * np.linalg.norm(g)) for v in s]),
                "norm_ratio": np.mean([np.linalg.norm(v) / np.linalg.norm(g) for v in s]),
                "bias": np.linalg.norm(mean - g) / np.linalg.norm(g),
                "variance": (((s - mean) ** 2).sum() / (len(seeds) - 1) / (g @ g)
                             if len(seeds) > 1 else 0.0)}
        l0 = next(p for p in got[method]["layers"] if p["name"] == "l0")
        for k, v in want.items():
            assert abs(l0[k] - v) <= 1e-9 * max(1.0, abs(v)), (method, k, l0[k], v)
        head = next(p for p in got[method]["layers"] if p["name"] == "head")
        assert abs(head["cosine"] - 1) < 1e-12 and head["bias"] < 1e-12
