#!/usr/bin/python3
"""What the Python module adds to the engine (issue 17), side by side in one process:

  grad     m.grad(x, y) against loss_and_gradients through the C++ API, and PyTorch's time for
           the same gradient (nn.LSTM + nn.Linear, MSE, backward to the parameters, x, h0, c0)
  predict  m.predict(x) against forward() and the final state through the C++ API
  step     one Stream.step(x_t) against Stream::step, for 1 and 32 streams

on shape a (lstm_l1_t100_b32_i64_h128_o64, float32). The C++ side keeps its batch, workspace and
gradients between calls, as a program that calls it repeatedly does (module.cpp, cpp_timings);
the Python side converts its arguments and allocates its results on every call. Rounds
alternate the implementations; the medians of all calls are reported.

  PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--rounds 5] [--reps 20]
      [--threads 1] [--no-torch]

Prints one JSON line per measurement, then a markdown table (docs/benchmarks.md).
"""

import argparse
import json
import os
import statistics
import sys
import time


def median_us(seconds):
    return statistics.median(seconds) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20, help="calls per round (steps: x100)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))  # before numpy and torch load
    import numpy as np
    import bptt
    from bptt import _bptt

    T, B, I, H, O = 100, 32, 64, 128, 64
    m = bptt.Model(cell="lstm", input_size=I, hidden_size=H, output_size=O, seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.standard_normal((T, B, O)).astype(np.float32)

    torch_step = None
    if not a.no_torch:
        try:
            import torch
        except ImportError:
            print("note: no torch here; its column is left out", file=sys.stderr)
        else:
            torch.set_num_threads(a.threads)
            rnn, head = torch.nn.LSTM(I, H), torch.nn.Linear(H, O)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def torch_step():
                xg = xt.clone().requires_grad_(True)
                h0 = torch.zeros(1, B, H, requires_grad=True)
                c0 = torch.zeros(1, B, H, requires_grad=True)
                rnn.zero_grad()
                head.zero_grad()
                out, _ = rnn(xg, (h0, c0))
                torch.nn.functional.mse_loss(head(out), yt).backward()

    def py_timings(call, reps):
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
        return out

    times = {k: [] for k in ("grad_py", "grad_cpp", "grad_torch", "predict_py", "predict_cpp",
                             "step1_py", "step1_cpp", "step32_py", "step32_cpp")}
    streams = {n: m.stream(n=n, threads=a.threads) for n in (1, 32)}
    xs = {n: np.ascontiguousarray(x[0, :n]) for n in (1, 32)}
    ys = {n: np.ascontiguousarray(y[0:1, :n]) for n in (1, 32)}
    # Warm-up: the first calls allocate the workspace and fault its pages in.
    m.grad(x, y, threads=a.threads)
    m.predict(x, threads=a.threads)
    for r in range(a.rounds):
        times["grad_cpp"] += _bptt._cpp_timings(m._m, x, y, "mse", "grad", a.reps, a.threads)
        times["grad_py"] += py_timings(lambda: m.grad(x, y, threads=a.threads), a.reps)
        if torch_step:
            times["grad_torch"] += py_timings(torch_step, a.reps)
        times["predict_cpp"] += _bptt._cpp_timings(m._m, x, y, "mse", "predict", a.reps,
                                                   a.threads)
        times["predict_py"] += py_timings(lambda: m.predict(x, threads=a.threads), a.reps)
        for n in (1, 32):
            s, xn = streams[n], xs[n]
            times["step%d_cpp" % n] += _bptt._cpp_timings(
                m._m, xn[None], ys[n], "mse", "step", a.reps * 100, a.threads)
            times["step%d_py" % n] += py_timings(lambda: s.step(xn), a.reps * 100)

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    med = {k: median_us(v) for k, v in times.items() if v}
    for k, v in med.items():
        print(json.dumps({"what": k, "us_median": round(v, 2), "calls": len(times[k]),
                          "threads": a.threads, "cpu": cpu}))
    print()
    print("Shape a, lstm_l1_t100_b32_i64_h128_o64, float32, %d thread(s); %s" % (a.threads, cpu))
    print()
    print("| call | C++ API | Python | Python − C++ | Python / C++ |" +
          (" PyTorch | PyTorch / Python |" if "grad_torch" in med else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if "grad_torch" in med else ""))
    for name, key in (("m.grad (full BPTT)", "grad"), ("m.predict", "predict"),
                      ("Stream.step, 1 stream", "step1"), ("Stream.step, 32 streams", "step32")):
        c, p = med[key + "_cpp"], med[key + "_py"]
        row = "| %s | %.1f µs | %.1f µs | %+.1f µs | %.3f |" % (name, c, p, p - c, p / c)
        if "grad_torch" in med:
            row += (" %.0f µs | %.1f× |" % (med["grad_torch"], med["grad_torch"] / p)
                    if key == "grad" else " | |")
        print(row)


if __name__ == "__main__":
    main()
