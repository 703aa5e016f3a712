#!/usr/bin/python3
"""Markdown table of benchmark JSON lines (bench/compare.sh's build/bench/results.jsonl).

    python3 bench/report.py results.jsonl

One row per (shape, mode, threads), in the order they first appear: ms/step of bptt, PyTorch and
oneDNN, bptt's GFLOP/s, and the ratios PyTorch/bptt and oneDNN/bptt of the ms/step (> 1: bptt is
faster). Stream rows (--mode stream: one step of B streams) get a table of their own in
microseconds per step, with bptt's steps per second and the rate it reads its weights at (one
stream's floor). A line without "impl" is bptt's (`bptt bench --json`). If a configuration was run more
than once by an implementation (compare.sh's rounds), its fastest median counts: other load on
the machine only ever adds time. The last column says how many runs each row had. Lines of
a oneDNN 3.x build (impl "onednn3": bench/onednn/build.sh with ONEDNN_ROOT) add the columns
"oneDNN 3 ms" and "oneDNN3/bptt" beside Debian's oneDNN 2.6; bptt's lines with "dtype": "bf16"
(bptt bench --dtype bf16) add "bptt bf16 ms" and "f32/bf16" (> 1: bf16 is faster); oneDNN's
(onednn_rnn --dtype bf16) add "oneDNN bf16 ms" and "oneDNN bf16/bptt bf16" (> 1: bptt's bf16 is
faster), and the same for a oneDNN 3.x build.
"""
import json, sys

IMPLS = ("bptt", "pytorch", "onednn", "onednn3", "bptt_bf16", "onednn_bf16", "onednn3_bf16")


def ms(v):
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def ratio(a, b):
    return "–" if a is None or b is None or b <= 0 else f"{a / b:.2f}"


def main():
    if len(sys.argv) != 2:
        print("usage: report.py RESULTS.jsonl", file=sys.stderr)
        sys.exit(2)
    rows, order = {}, []
    with open(sys.argv[1]) as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                j = json.loads(text)
                key = (j["shape"], j["mode"], int(j["threads"]))
                impl = j.get("impl", "bptt")
                if j.get("dtype") == "bf16":  # --dtype bf16: columns of their own
                    impl += "_bf16"
                float(j["ms_per_step"])
            except (ValueError, KeyError, TypeError) as e:
                print(f"report.py: {sys.argv[1]}:{n}: not a benchmark line ({e})", file=sys.stderr)
                sys.exit(2)
            if key not in rows:
                rows[key] = {}
                order.append(key)
            runs = rows[key].setdefault("runs", {})
            runs[impl] = runs.get(impl, 0) + 1
            if impl not in rows[key] or float(j["ms_per_step"]) < rows[key][impl]["ms_per_step"]:
                rows[key][impl] = j
    steps = [k for k in order if k[1] != "stream"]
    streams = [k for k in order if k[1] == "stream"]
    v3 = any("onednn3" in r for r in rows.values())
    h3 = (" oneDNN 3 ms |", " oneDNN3/bptt |", "---:|", "---:|") if v3 else ("", "", "", "")
    b16 = any("bptt_bf16" in r for r in rows.values())
    if b16:  # bptt with bf16 products: its ms and its speed-up over bptt's f32
        h3 = (h3[0] + " bptt bf16 ms |", h3[1] + " f32/bf16 |", h3[2] + "---:|", h3[3] + "---:|")
    # oneDNN's bf16 primitives, against bptt's bf16
    low = [i for i in ("onednn_bf16", "onednn3_bf16") if any(i in r for r in rows.values())]
    names = {"onednn_bf16": "oneDNN bf16", "onednn3_bf16": "oneDNN 3 bf16"}
    for i in low:
        h3 = (h3[0] + f" {names[i]} ms |", h3[1] + f" {names[i]}/bptt bf16 |", h3[2] + "---:|", h3[3] + "---:|")
    if steps:
        print(f"| shape | mode | threads | bptt ms | PyTorch ms | oneDNN ms |{h3[0]} bptt GFLOP/s | PyTorch/bptt | oneDNN/bptt |{h3[1]} runs |")
        print(f"|---|---|---:|---:|---:|---:|{h3[2]}---:|---:|---:|{h3[3]}---:|")
    for key in steps:
        r = rows[key]
        t = {i: (r[i]["ms_per_step"] if i in r else None) for i in IMPLS}
        gf = f"{r['bptt']['gflops']:.1f}" if "bptt" in r else "–"
        c3 = (f" {ms(t['onednn3'])} |", f" {ratio(t['onednn3'], t['bptt'])} |") if v3 else ("", "")
        if b16:
            c3 = (c3[0] + f" {ms(t['bptt_bf16'])} |", c3[1] + f" {ratio(t['bptt'], t['bptt_bf16'])} |")
        for i in low:
            c3 = (c3[0] + f" {ms(t[i])} |", c3[1] + f" {ratio(t[i], t['bptt_bf16'])} |")
        print(f"| {key[0]} | {key[1]} | {key[2]} | {ms(t['bptt'])} | {ms(t['pytorch'])} | {ms(t['onednn'])} |{c3[0]}"
              f" {gf} | {ratio(t['pytorch'], t['bptt'])} | {ratio(t['onednn'], t['bptt'])} |{c3[1]}"
              f" {max(r['runs'].values())} |")
    if streams:
        if steps:
            print()
        h3s = (" oneDNN 3 µs |", " oneDNN3/bptt |", "---:|", "---:|") if v3 else ("", "", "", "")
        print(f"| shape (stream) | threads | bptt µs | PyTorch µs | oneDNN µs |{h3s[0]} bptt steps/s | bptt weights GB/s | PyTorch/bptt | oneDNN/bptt |{h3s[1]} runs |")
        print(f"|---|---:|---:|---:|---:|{h3s[2]}---:|---:|---:|---:|{h3s[3]}---:|")
    for key in streams:
        r = rows[key]
        t = {i: (1000 * r[i]["ms_per_step"] if i in r else None) for i in IMPLS}
        b = r.get("bptt", {})
        sps = f"{1000 / b['ms_per_step']:.0f}" if b else "–"
        gbs = f"{b['weight_gb_per_second']:.1f}" if "weight_gb_per_second" in b else "–"
        c3 = (f" {ms(t['onednn3'])} |", f" {ratio(t['onednn3'], t['bptt'])} |") if v3 else ("", "")
        print(f"| {key[0]} | {key[2]} | {ms(t['bptt'])} | {ms(t['pytorch'])} | {ms(t['onednn'])} |{c3[0]}"
              f" {sps} | {gbs} | {ratio(t['pytorch'], t['bptt'])} | {ratio(t['onednn'], t['bptt'])} |{c3[1]}"
              f" {max(r['runs'].values())} |")

if __name__ == "__main__":
    main()
