"""Shared pieces of the Python module's tests (ctest runs each test_*.py file with pytest).

The reference is PyTorch (Debian's python3-torch): a bptt.Model's state_dict() loads into the
matching torch.nn module with strict=True, and torch.autograd differentiates bptt's loss
(include/bptt/loss.hpp) written out in torch. Without torch the tests that need it skip, except
under CI (the environment variable CI set), where its absence is a failure.
"""

import os
import sys

import numpy as np
import pytest

import bptt

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CI"):
        raise
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs Debian's python3-torch")

# The command, for comparisons with the verbs (ctest passes its path).
BPTT_CLI = os.environ.get("BPTT_CLI", "")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "fixtures")
sys.path.insert(0, FIXTURES)
import st  # noqa: E402  (the fixtures' safetensors reader and writer)

# The engine's bounds against torch.autograd (docs/python.md): relative to max(1, max |ref|).
TOL = {"f64": 1e-9, "f32": 2e-4}


def rel_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - ref))) / max(1.0, float(np.max(np.abs(ref))))


def torch_module(model):
    """The torch.nn module of a bptt.Model, in float64, with its parameters (strict=True)."""
    c = model.config
    I, H, L, O = c["input_size"], c["hidden_size"], c["num_layers"], c["output_size"]
    D, P = (2 if c["bidirectional"] else 1), c["proj_size"]
    m = torch.nn.Module()
    kw = dict(num_layers=L, bias=c["bias"], bidirectional=c["bidirectional"])
    if c["cell"] == "lstm":
        m.rnn = torch.nn.LSTM(I, H, proj_size=P, **kw)
    elif c["cell"] == "gru":
        m.rnn = torch.nn.GRU(I, H, **kw)
    else:
        m.rnn = torch.nn.RNN(I, H, nonlinearity=c["nonlinearity"], **kw)
    if c["head"]:
        m.head = torch.nn.Linear(D * (P or H), O)
    if c["initial_state"] == "learned":
        m.init = torch.nn.Module()
        m.init.h0 = torch.nn.Parameter(torch.zeros(L * D, P or H))
        if c["cell"] == "lstm":
            m.init.c0 = torch.nn.Parameter(torch.zeros(L * D, H))
    m.double()
    m.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64))
                       for k, v in model.state_dict().items()}, strict=True)
    return m


def theta(name, z):
    return {"identity": lambda v: v, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "relu": torch.relu, "softmax": lambda v: torch.softmax(v, -1)}[name](z)


def torch_forward(tm, model, x, lengths=None, h0=None, c0=None):
    """(z, h_n, c_n, h0 leaf, c0 leaf, x leaf): torch's forward pass as bptt defines it."""
    c = model.config
    T, B = x.shape[0], x.shape[1]
    U = c["num_layers"] * (2 if c["bidirectional"] else 1)
    HO, H = c["proj_size"] or c["hidden_size"], c["hidden_size"]
    lstm = c["cell"] == "lstm"
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    # Leaves for dL/dh0 and dL/dc0, added to the initial state the sequences start from.
    dh = torch.zeros(U, B, HO, dtype=torch.float64, requires_grad=True)
    dc = torch.zeros(U, B, H, dtype=torch.float64, requires_grad=True)
    learned = c["initial_state"] == "learned"
    if h0 is not None:
        hs = torch.tensor(np.asarray(h0, dtype=np.float64)) + dh
    elif learned:
        hs = tm.init.h0[:, None, :].expand(U, B, HO) + dh
    else:
        hs = dh
    if lstm:
        if c0 is not None:
            cs = torch.tensor(np.asarray(c0, dtype=np.float64)) + dc
        elif learned:
            cs = tm.init.c0[:, None, :].expand(U, B, H) + dc
        else:
            cs = dc
        state = (hs, cs)
    else:
        state = hs
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(np.asarray(lengths, dtype=np.int64)), enforce_sorted=False)
    out, fin = tm.rnn(inp, state)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    z = tm.head(out) if c["head"] else out
    h_n, c_n = (fin if lstm else (fin, None))
    return z, h_n, c_n, dh, dc, xt


def torch_loss(model, z, y, loss, mask=None, lengths=None):
    """bptt's loss (include/bptt/loss.hpp): Σ w_tb ℓ_tb / Σ w_tb."""
    T, B = z.shape[0], z.shape[1]
    F = torch.nn.functional
    if loss == "mse":
        yt = torch.tensor(np.asarray(y, dtype=np.float64))
        step = ((theta(model.config["output_activation"], z) - yt) ** 2).mean(-1)
    elif loss == "bce":
        yt = torch.tensor(np.asarray(y, dtype=np.float64))
        step = F.binary_cross_entropy_with_logits(z, yt, reduction="none").mean(-1)
    else:
        yt = torch.tensor(np.asarray(y, dtype=np.int64))
        step = F.cross_entropy(z.reshape(T * B, -1), yt.reshape(-1), reduction="none").reshape(T, B)
    w = torch.ones(T, B, dtype=torch.float64)
    if mask is not None:
        w = w * torch.tensor(np.asarray(mask, dtype=np.float64))
    if lengths is not None:
        steps = torch.arange(T)[:, None]
        w = w * (steps < torch.tensor(np.asarray(lengths))[None, :]).double()
    return (w * step).sum() / w.sum()


def torch_grad(model, x, y, loss, mask=None, lengths=None, h0=None, c0=None):
    """(loss, {name: gradient}) by torch.autograd, under the names of Model.grad."""
    tm = torch_module(model)
    z, _, _, dh, dc, xt = torch_forward(tm, model, x, lengths, h0, c0)
    L = torch_loss(model, z, y, loss, mask, lengths)
    L.backward()
    # A parameter the loss does not reach (a learned initial state under a given h0) has none.
    grads = {k: (p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape)))
             for k, p in tm.named_parameters()}
    grads["x"] = xt.grad.numpy()
    grads["h0"] = dh.grad.numpy()
    if model.config["cell"] == "lstm":
        grads["c0"] = dc.grad.numpy()
    return float(L), grads


def targets(model, loss, T, B, rng):
    O = model.config["output_size"]
    if loss == "xent":
        return rng.integers(0, O, size=(T, B))
    if loss == "bce":
        return rng.random((T, B, O))
    return rng.standard_normal((T, B, O))


def as_dtype(model, a):
    return None if a is None else np.asarray(a, dtype=np.float32 if model.dtype == "f32" else np.float64)
