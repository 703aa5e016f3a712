#!/usr/bin/python3
"""The PyTorch side of `bptt bench` (bench/compare.sh): times the same training or inference
step on the same shapes and prints the same JSON line per shape.

    /usr/bin/python3 bench/torch_rnn.py SHAPE... [--mode train|infer|stream] [--threads N]
        [--min-steps N] [--min-time S] [--max-steps N] [--seed S]

SHAPE is CELL[-PHI]_lL_tT_bB_iI_hH_oO[_LOSS][_bi][_pP][_nobias][_ln] (include/bptt/bench.hpp;
_ln: PyTorch's layer-normalized LSTM, bench/torch_ln_lstm.py),
e.g. lstm_l1_t100_b32_i64_h128_o64, lstm_l2_t100_b32_i65_h256_o65_xent or
lstm_l1_t100_b64_i256_h512_o256_bi_p128. The model is torch.nn.RNN(nonlinearity=PHI)/LSTM/
GRU(I, H, L, bidirectional, proj_size=P, bias), time-major, then Linear(D*H_out, O) at every
step, float32, PyTorch's default CPU path and default initialization.

train step: forward over the whole sequence from a zero state, the loss at every step (mse:
MSELoss(mean) vs a random target; bce: BCE-with-logits vs random 0/1 targets; xent:
cross_entropy vs random classes, one-hot random symbols in), full backward (x needs no
gradient), and torch.optim.SGD(lr=1e-6) (plain p -= lr * grad), gradients set to None first.
infer step: the forward and the readout (with its sigmoid/softmax for bce/xent, as bptt's
forward) under torch.no_grad().
stream step (bptt's --mode stream, bptt::Stream::step): ONE time step of the B sequences, the
same module called on x_t [1, B, I] with the state it returned last time, then the readout,
under torch.no_grad() (T is unused: the inputs of the random sequence are fed in turn). Timed in
runs of consecutive steps of about 0.2 ms, reported per step, as bptt does.

Threads: torch.set_num_threads(N), and OPENBLAS_NUM_THREADS=N set before torch is imported:
Debian's torch does its matrix products in OpenBLAS (pthreads), which set_num_threads does not
reach, so without it a "1 thread" run still has a second OpenBLAS thread (bptt keeps OpenBLAS
at one thread and splits its products over its own N threads).

Timing: one warm-up step, then steps until at least --min-steps and --min-time seconds (at most
--max-steps); the median is reported. peak_rss_mib is this process's ru_maxrss after the shape.
"""
import argparse, json, os, re, resource, sys, time

torch = None  # imported in main(), after OPENBLAS_NUM_THREADS is set

SHAPE = re.compile(r"^(elman|lstm|gru)(?:-(\w+))?_l(\d+)_t(\d+)_b(\d+)_i(\d+)_h(\d+)_o(\d+)"
                   r"(?:_(mse|bce|xent))?((?:_bi|_p\d+|_nobias|_ln)*)$")
HINT = ("write CELL[-PHI]_lL_tT_bB_iI_hH_oO[_LOSS][_bi][_pP][_nobias][_ln], e.g. "
        "lstm_l1_t100_b32_i64_h128_o64")
GATES = {"elman": 1, "lstm": 4, "gru": 3}


def fail(msg):
    print(f"torch_rnn.py: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_shape(s):
    m = SHAPE.match(s)
    if not m:
        fail(f"shape {s}: not a shape ({HINT})")
    cell, phi, *dims, loss, options = m.groups()
    L, T, B, I, H, O = (int(v) for v in dims)
    opts = [o for o in options.split("_") if o]
    if len(set(o[0] for o in opts)) != len(opts):
        fail(f"shape {s}: an option repeats ({HINT})")
    bi = "bi" in opts
    bias = "nobias" not in opts
    P = next((int(o[1:]) for o in opts if o.startswith("p")), 0)
    if P and (cell != "lstm" or not 0 < P < H):
        fail(f"shape {s}: a projection needs an LSTM and 0 < P < H")
    if phi is not None and cell != "elman":
        fail(f"shape {s}: only elman takes a nonlinearity")
    phi = phi or "tanh"
    if phi not in ("tanh", "relu"):
        fail(f"shape {s}: torch.nn.RNN has no nonlinearity '{phi}' (use tanh or relu)")
    if min(L, T, B, I, H, O) < 1:
        fail(f"shape {s}: sizes must be at least 1")
    ln = "ln" in opts
    if ln and (cell != "lstm" or bi or P or not bias):
        fail(f"shape {s}: the layer-normalized peer (bench/torch_ln_lstm.py) is a plain LSTM "
             "stack: no _bi, _p or _nobias")
    return dict(name=s, cell=cell, phi=phi, L=L, T=T, B=B, I=I, H=H, O=O, loss=loss or "mse",
                bi=bi, P=P, bias=bias, ln=ln)


def flops(s, mode):  # matrix products only, as bptt::bench_flops (stream: one step)
    TB, GH = (1 if mode == "stream" else s["T"]) * s["B"], GATES[s["cell"]] * s["H"]
    D, HO = (2 if s["bi"] else 1), (s["P"] or s["H"])
    f = 2 * TB * D * HO * s["O"]
    for k in range(s["L"]):
        f += D * 2 * TB * (GH * ((s["I"] if k == 0 else D * HO) + HO) + s["P"] * s["H"])
    return f if mode != "train" else 3 * f - D * 2 * TB * GH * s["I"]


def build(s, seed):
    torch.manual_seed(seed)
    T, B, I, H, O, L = s["T"], s["B"], s["I"], s["H"], s["O"], s["L"]
    kw = dict(bidirectional=s["bi"], bias=s["bias"])
    if s["ln"]:  # PyTorch has no fused layer-normalized LSTM: fastrnns' TorchScript one
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from torch_ln_lstm import ln_lstm
        rnn = ln_lstm(I, H, L)
    elif s["cell"] == "elman":
        rnn = torch.nn.RNN(I, H, L, nonlinearity=s["phi"], **kw)
    elif s["cell"] == "lstm":
        rnn = torch.nn.LSTM(I, H, L, proj_size=s["P"], **kw)
    else:
        rnn = torch.nn.GRU(I, H, L, **kw)
    head = torch.nn.Linear((2 if s["bi"] else 1) * (s["P"] or H), O)
    if s["loss"] == "xent":  # one-hot random symbols in, random classes out
        x = torch.nn.functional.one_hot(torch.randint(0, I, (T, B)), I).float()
        target = torch.randint(0, O, (T * B,))
    elif s["loss"] == "bce":
        x = torch.rand(T, B, I) * 2 - 1
        target = (torch.rand(T, B, O) > 0.5).float()
    else:
        x = torch.rand(T, B, I) * 2 - 1
        target = torch.rand(T, B, O) * 2 - 1
    return rnn, head, x, target


def readout(head, out, loss):
    z = head(out)
    if loss == "xent":
        z = torch.softmax(z, dim=-1)
    elif loss == "bce":
        z = torch.sigmoid(z)
    return z


def make_step(s, mode, rnn, head, x, target):
    O, loss = s["O"], s["loss"]
    F = torch.nn.functional
    if mode == "stream":
        carried = {"t": 0, "state": None}

        def stream():
            t = carried["t"]
            with torch.no_grad():
                out, carried["state"] = rnn(x[t:t + 1], carried["state"])
                z = readout(head, out, loss)
            carried["t"] = (t + 1) % s["T"]
            return z
        return stream
    if mode == "infer":
        def infer():
            with torch.no_grad():
                out, _ = rnn(x)  # zero initial state
                z = readout(head, out, loss)
            return z
        return infer

    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-6)

    def train():
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        z = head(out)
        if loss == "xent":
            l = F.cross_entropy(z.reshape(-1, O), target)
        elif loss == "bce":
            l = F.binary_cross_entropy_with_logits(z, target)
        else:
            l = F.mse_loss(z, target)
        l.backward()
        opt.step()
        return l
    return train


def time_steps(step, min_steps, min_time, max_steps):
    step()  # warm-up
    ms = []
    start = time.perf_counter()
    while len(ms) < max_steps and (len(ms) < min_steps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def time_runs(step, min_steps, min_time, max_steps):
    """Per-step times of runs of consecutive steps, each run about 0.2 ms or more."""
    step()  # warm-up
    run = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(run):
            step()
        if time.perf_counter() - t0 >= 2e-4 or run >= 1 << 20:
            break
        run *= 2
    ms = []
    start = time.perf_counter()
    while len(ms) < max_steps and (len(ms) < min_steps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        for _ in range(run):
            step()
        ms.append((time.perf_counter() - t0) * 1000 / run)
    return ms, run


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("shapes", nargs="+")
    p.add_argument("--mode", choices=["train", "infer", "stream"], default="train")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-steps", type=int, default=5)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.threads < 1 or a.min_steps < 1 or a.max_steps < a.min_steps or a.min_time < 0:
        fail("--threads and --min-steps must be >= 1, --max-steps >= --min-steps, --min-time >= 0")
    shapes = [parse_shape(s) for s in a.shapes]  # all checked before any is run
    if a.mode == "stream" and any(s["ln"] for s in shapes):
        fail("--mode stream does not take _ln shapes (the TorchScript peer runs whole sequences)")
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
    global torch
    import torch
    torch.set_num_threads(a.threads)
    for s in shapes:
        rnn, head, x, target = build(s, a.seed)
        step = make_step(s, a.mode, rnn, head, x, target)
        if a.mode == "stream":
            ms, run = time_runs(step, a.min_steps, a.min_time, a.max_steps)
        else:
            ms, run = time_steps(step, a.min_steps, a.min_time, a.max_steps), 1
        med = median(ms)
        f = flops(s, a.mode)
        tokens = (1 if a.mode == "stream" else s["T"]) * s["B"]
        line = {
            "impl": "pytorch", "shape": s["name"], "mode": a.mode, "threads": a.threads,
            "dtype": "f32", "steps": len(ms) * run, "ms_per_step": med, "ms_min": min(ms),
            "ms_max": max(ms), "tokens_per_second": tokens / (med / 1000), "gflop_per_step": f / 1e9,
            "gflops": f / (med * 1e6),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch": torch.__version__}
        if a.mode == "stream":
            weights = 4 * sum(p.numel() for p in list(rnn.parameters()) + list(head.parameters()))
            line.update({"streams": s["B"], "us_per_step": med * 1000,
                         "steps_per_second": 1000 / med, "weight_bytes": weights,
                         "weight_gb_per_second": weights / (med * 1e6)})
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
