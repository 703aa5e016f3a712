#!/usr/bin/python3
"""UORO's and KF-RTRL's variance against the hidden size (issue 20, docs/experiments.md 5):
for random one-layer LSTMs (PyTorch's initialization, I = 4, O = 4, T = 20, B = 4, MSE on
random targets), the relative variance E||g_s - mean||^2 / ||g||^2 of each method's gradient
over 32 seeds against the exact gradient g, and the cosine of one sample with g; SnAp-1 and
e-prop (deterministic) give their cosine. Needs the Python module (PYTHONPATH=build/python).

usage: PYTHONPATH=build/python python3 tools/experiments/online_variance.py [--samples 32]
"""
import argparse

import numpy as np

import bptt


def flat(g, names):
    return np.concatenate([np.ravel(g[n]) for n in names])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--sizes", default="8,16,32,64")
    a = ap.parse_args()
    print("| H | uoro variance | uoro cosine | kf-rtrl variance | kf-rtrl cosine | snap1 cosine | eprop cosine |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for H in (int(v) for v in a.sizes.split(",")):
        m = bptt.Model(cell="lstm", input_size=4, hidden_size=H, output_size=4, dtype="f64", seed=H)
        rng = np.random.default_rng(H)
        x, y = rng.standard_normal((20, 4, 4)), rng.standard_normal((20, 4, 4))
        names = [n for n in m.state_dict() if n.startswith("rnn.")]
        g = flat(m.grad(x, y)[1], names)
        row = [str(H)]
        for method in ("uoro", "kf-rtrl"):
            s = np.array([flat(m.grad(x, y, method=method, seed=k)[1], names)
                          for k in range(1, a.samples + 1)])
            var = ((s - s.mean(0)) ** 2).sum(1).mean() * a.samples / (a.samples - 1) / (g @ g)
            cos = np.mean([v @ g / (np.linalg.norm(v) * np.linalg.norm(g)) for v in s])
            row += [f"{var:.3g}", f"{cos:.3f}"]
        for method in ("snap1", "eprop"):
            v = flat(m.grad(x, y, method=method)[1], names)
            row.append(f"{v @ g / (np.linalg.norm(v) * np.linalg.norm(g)):.3f}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
