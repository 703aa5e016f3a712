#!/bin/sh
# Issue 3's comparison: bptt and PyTorch train the same 2-layer LSTM (256 hidden) on Tiny
# Shakespeare with the same recipe (seq-len 100, batch 32, Adam 2e-3, clip-norm 5, 10% validation)
# for the same wall-clock budget, one after the other on this machine, and report the validation
# loss of each. Usage: bench/shakespeare.sh [SECONDS] [THREADS]   (defaults 300, 1)
set -eu
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/data/tinyshakespeare.txt}
budget=${1:-300}
threads=${2:-1}
[ -f "$text" ] || { echo "bench/shakespeare.sh: $text not found (set TEXT=...)" >&2; exit 2; }
[ -x build/bptt ] || { echo "bench/shakespeare.sh: build first (cmake --preset default && cmake --build --preset default)" >&2; exit 2; }
out=build/bench-shakespeare
mkdir -p "$out"
recipe="--val-fraction 0.1 --hidden 256 --layers 2 --seq-len 100 --batch 32 --lr 2e-3 --clip-norm 5 --time-budget $budget --threads $threads"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" >&2
./build/bptt train --text "$text" $recipe --cell lstm --optimizer adam --seed 1 \
  --out "$out/bptt-model.safetensors" --metrics "$out/bptt-metrics.csv" > "$out/bptt.txt"
cat "$out/bptt.txt"
/usr/bin/python3 bench/torch_char_lm.py --text "$text" $recipe > "$out/pytorch.json"
cat "$out/pytorch.json"
./build/bptt eval --model "$out/bptt-model.safetensors" --text "$text" --val-fraction 0.1 --json > "$out/bptt.json"
/usr/bin/python3 - "$out" <<'PY'
import json, sys, re
out = sys.argv[1]
b = json.load(open(f"{out}/bptt.json"))
p = json.load(open(f"{out}/pytorch.json"))
steps = re.search(r"trained (\d+) steps", open(f"{out}/bptt.txt").read()).group(1)
print(f"| bptt    | {steps} steps | val loss {b['loss']:.4f} | {b['bits_per_char']:.3f} bits/char |")
print(f"| pytorch | {p['steps']} steps | val loss {p['val_loss']:.4f} | {p['bits_per_char']:.3f} bits/char |")
print(f"bptt/pytorch validation loss ratio: {b['loss'] / p['val_loss']:.3f}")
PY
echo "--- sample from the bptt model ---"
./build/bptt sample --model "$out/bptt-model.safetensors" --length 400 --temperature 0.8 --seed 3
