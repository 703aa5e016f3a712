#!/bin/sh
# Issue 20's cost table: a training window of each online method (an update after every time
# step) against full BPTT on the same window, per time step, with `bptt bench --method`:
#   1. LSTM H = 256, B = 32 (lstm_l1_t20_b32_i64_h256_o64): bptt, uoro, snap1, eprop;
#   2. LSTM H = 64, B = 32 (lstm_l1_t10_b32_i64_h64_o64): every method and exact RTRL;
#   3. the time per step at H = 32, 64, 128 (B = 8, I = 16) and its measured exponent in H,
#      against the papers' (uoro, snap1, eprop 2; kf-rtrl 3; rtrl 4).
# Prints the machine, its FMA peak (bench/peak/fma_peak.cpp) and its memory-stream rate
# (bench/peak/stream_peak.cpp: the per-sequence methods' ceiling at H = 256) first, then markdown
# tables.
# Usage: bench/online_methods.sh [THREADS]   (default 1; a quiet machine: no builds beside it)
set -eu
cd "$(dirname "$0")/.."
threads=${1:-1}
bptt=${BPTT:-build/bptt}
[ -x "$bptt" ] || { echo "bench/online_methods.sh: build first (cmake --build --preset default)" >&2; exit 2; }
out=build/bench/online_methods.jsonl
mkdir -p build/bench
: > "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), CPU family $(lscpu | sed -n 's/^CPU family: *//p'), $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; $threads thread(s)"
for probe in fma_peak stream_peak; do
  if [ ! -x "build/bench/$probe" ] || [ -n "$(find "bench/peak/$probe.cpp" -newer "build/bench/$probe")" ]; then
    flags="-O2"
    [ "$probe" = stream_peak ] && flags="-O3 -march=native"
    # shellcheck disable=SC2086
    ${CXX:-g++} $flags "bench/peak/$probe.cpp" -o "build/bench/$probe" || exit 2
  fi
done
build/bench/fma_peak 2>&1 | tail -n 3
build/bench/stream_peak
run() {  # shape method [extra bench options]
  shape=$1 method=$2
  shift 2
  "$bptt" bench "$shape" --method "$method" --threads "$threads" --json "$@" >> "$out"
}
for m in bptt uoro snap1 eprop; do run lstm_l1_t20_b32_i64_h256_o64 "$m" --min-steps 3 --min-time 2; done
for m in bptt uoro snap1 eprop kf-rtrl; do run lstm_l1_t10_b32_i64_h64_o64 "$m" --min-steps 3 --min-time 2; done
run lstm_l1_t10_b32_i64_h64_o64 rtrl --min-steps 1 --max-steps 2 --min-time 0
for H in 32 64 128; do
  for m in bptt uoro snap1 eprop kf-rtrl; do run "lstm_l1_t10_b8_i16_h${H}_o16" "$m" --min-steps 3 --min-time 1; done
  if [ "$H" -le 64 ]; then run "lstm_l1_t10_b8_i16_h${H}_o16" rtrl --min-steps 1 --max-steps 3 --min-time 0; fi
done
/usr/bin/python3 - "$out" <<'EOF'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def ms(shape, method):
    for r in rows:
        if r["shape"] == shape and r.get("method", "bptt") == method:
            return r["ms_per_step"] / int(shape.split("_t")[1].split("_")[0])  # per time step
    return None
for shape, methods in (("lstm_l1_t20_b32_i64_h256_o64", ["bptt", "uoro", "snap1", "eprop"]),
                       ("lstm_l1_t10_b32_i64_h64_o64", ["bptt", "uoro", "snap1", "eprop", "kf-rtrl", "rtrl"])):
    base, rtrl = ms(shape, "bptt"), ms(shape, "rtrl")
    print(f"\n{shape} (per time step; bptt: one window / T)\n")
    print("| method | ms per time step | / bptt | rtrl / method |")
    print("|---|---:|---:|---:|")
    for m in methods:
        v = ms(shape, m)
        print(f"| {m} | {v:.3f} | {v / base:.2f} | " + (f"{rtrl / v:.0f}" if rtrl else "-") + " |")
print("\nexponent of the time per step in H (B = 8, I = 16): log2 of t(2H)/t(H)\n")
print("| method | H=32 ms | H=64 ms | H=128 ms | 32->64 | 64->128 | paper |")
print("|---|---:|---:|---:|---:|---:|---:|")
paper = {"bptt": 2, "uoro": 2, "snap1": 2, "eprop": 2, "kf-rtrl": 3, "rtrl": 4}
for m in ["bptt", "uoro", "snap1", "eprop", "kf-rtrl", "rtrl"]:
    t = [ms(f"lstm_l1_t10_b8_i16_h{H}_o16", m) for H in (32, 64, 128)]
    e = [f"{math.log2(b / a):.2f}" if a and b else "-" for a, b in zip(t, t[1:])]
    print(f"| {m} | " + " | ".join(f"{v:.3f}" if v else "-" for v in t) + f" | {e[0]} | {e[1]} | {paper[m]} |")
EOF
