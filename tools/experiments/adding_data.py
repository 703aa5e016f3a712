#!/usr/bin/python3
"""Write one adding-problem (or, with --task copy, copy-task) batch as a bptt data file
(docs/file_format.md), stdlib only.

The same definition as the built-in task (`bptt train --task adding`, src/train/synthetic_task.cpp,
docs/training.md): T steps of two channels, channel 0 a value uniform in [0, 1), channel 1 a marker
that is 1 at one step uniform in [0, floor(T/2)) and one uniform in [floor(T/2), T); the target is
the sum of the two marked values at the last step. y is given at every step (0 before the last)
and `mask` is 1 only at t = T-1, so the loss is the MSE at the last step, as in training. The
numbers come from Python's random (seeded), not from bptt's hash_uniform: the same distribution,
not the same sequences.

With --task copy --T D (the delay): the built-in copy task's layout (docs/training.md): D + 20
steps, one-hot x [T, B, 10] (10 data symbols uniform in 1..8, D - 1 blanks, the delimiter 9, 10
blanks) and class targets y [T, B] (I32): blank for the first D + 10 steps, then the 10 symbols.

usage: adding_data.py OUT.safetensors [--task adding|copy] [--T 100] [--B 32] [--seed 1]
                      [--dtype F32|F64]
"""
import argparse
import json
import random
import struct
import sys
from array import array


def write_safetensors(path, tensors, metadata, dtype):
    """tensors: name -> (shape, flat list of numbers[, its dtype: F32, F64 or I32; else dtype]).
    Header padded with spaces to 8 bytes."""
    header, blobs, offset = {}, [], 0
    for name, (shape, values, *own) in tensors.items():
        kind = own[0] if own else dtype
        code, size = {"F32": ("f", 4), "F64": ("d", 8), "I32": ("i", 4)}[kind]
        a = array(code, values)
        if sys.byteorder != "little":
            a.byteswap()
        blob = a.tobytes()
        assert len(blob) == len(values) * size
        header[name] = {"dtype": kind, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for blob in blobs:
            f.write(blob)


def adding_batch(T, B, rng, dtype="F32"):
    """x [T, B, 2], y [T, B, 1], mask [T, B] as flat row-major lists."""
    store = (lambda v: array("f", [v])[0]) if dtype == "F32" else float
    x = [0.0] * (T * B * 2)
    y = [0.0] * (T * B)
    mask = [0.0] * (T * B)
    half = T // 2
    for b in range(B):
        for t in range(T):
            x[(t * B + b) * 2] = store(rng.random())
        p1 = min(half - 1, int(rng.random() * half))
        p2 = half + min(T - half - 1, int(rng.random() * (T - half)))
        x[(p1 * B + b) * 2 + 1] = 1.0
        x[(p2 * B + b) * 2 + 1] = 1.0
        # the sum of the values as stored (after rounding to dtype), like the built-in task
        y[(T - 1) * B + b] = x[(p1 * B + b) * 2] + x[(p2 * B + b) * 2]
        mask[(T - 1) * B + b] = 1.0
    return x, y, mask


def copy_batch(D, B, rng):
    """x [D + 20, B, 10] one-hot, y [D + 20, B] classes, as flat row-major lists."""
    T, K = D + 20, 10
    x = [0.0] * (T * B * 10)
    y = [0] * (T * B)
    for b in range(B):
        for t in range(T):
            symbol = 0
            if t < K:
                symbol = 1 + min(7, int(rng.random() * 8))
                y[(D + K + t) * B + b] = symbol
            elif t == D + K - 1:
                symbol = 9
            x[(t * B + b) * 10 + symbol] = 1.0
    return x, y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--task", choices=["adding", "copy"], default="adding")
    p.add_argument("--T", type=int, default=100, help="steps (adding) or the delay D (copy)")
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dtype", choices=["F32", "F64"], default="F32")
    a = p.parse_args()
    if a.T < 2 or a.B < 1:
        p.error("need T >= 2 and B >= 1")
    meta = {"task": a.task, "T": str(a.T), "B": str(a.B), "seed": str(a.seed),
            "generator": "tools/experiments/adding_data.py"}
    if a.task == "copy":
        x, y = copy_batch(a.T, a.B, random.Random(a.seed))
        write_safetensors(a.out, {"x": ([a.T + 20, a.B, 10], x), "y": ([a.T + 20, a.B], y, "I32")},
                          meta, a.dtype)
        return
    x, y, mask = adding_batch(a.T, a.B, random.Random(a.seed), a.dtype)
    write_safetensors(a.out, {"x": ([a.T, a.B, 2], x), "y": ([a.T, a.B, 1], y),
                              "mask": ([a.T, a.B], mask)}, meta, a.dtype)


if __name__ == "__main__":
    main()
