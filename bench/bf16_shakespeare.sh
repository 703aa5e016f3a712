#!/bin/sh
# Issue 19's convergence check of bf16 training: the Tiny Shakespeare character model of
# bench/shakespeare.sh (2-layer LSTM, 256 hidden, seq-len 100, batch 32, Adam 2e-3, clip-norm 5,
# 10% validation) trained for the same number of steps with float products (--dtype f32) and with
# bf16 products (--dtype bf16), one after the other on this machine, the validation loss measured
# every EVAL steps. Reports both final validation losses (bf16/f32, issue 19 asks within 1%), and
# the wall time at which bf16 first reaches the float run's final validation loss against the
# float run's total (issue 19 asks at most 0.7). Needs a quiet machine: wall time is measured.
# Usage: bench/bf16_shakespeare.sh [STEPS] [THREADS] [EVAL]   (defaults 3000, 1, 100)
set -eu
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/data/tinyshakespeare.txt}
steps=${1:-3000}
threads=${2:-1}
every=${3:-100}
[ -f "$text" ] || { echo "bench/bf16_shakespeare.sh: $text not found (set TEXT=...)" >&2; exit 2; }
[ -x build/bptt ] || { echo "bench/bf16_shakespeare.sh: build first (cmake --preset default && cmake --build --preset default)" >&2; exit 2; }
out=build/bench-bf16-shakespeare
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), CPU family $(lscpu | sed -n 's/^CPU family: *//p'), $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" >&2
recipe="--val-fraction 0.1 --hidden 256 --layers 2 --seq-len 100 --batch 32 --lr 2e-3 --clip-norm 5 --steps $steps --eval-every $every --threads $threads --cell lstm --optimizer adam --seed 1"
for dtype in f32 bf16; do
  echo "training with --dtype $dtype ($steps steps) ..." >&2
  # shellcheck disable=SC2086
  ./build/bptt train --text "$text" $recipe --dtype "$dtype" \
    --out "$out/$dtype.safetensors" --metrics "$out/$dtype.csv" > "$out/$dtype.txt"
done
/usr/bin/python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
def curve(name):
    rows = [r for r in csv.DictReader(open(f"{out}/{name}.csv")) if r.get("val_loss") not in (None, "", "nan")]
    return [(int(r["step"]), float(r["elapsed_s"]), float(r["val_loss"])) for r in rows]
f, b = curve("f32"), curve("bf16")
f_step, f_time, f_loss = f[-1]
b_step, b_time, b_loss = b[-1]
reach = next(((s, t) for s, t, l in b if l <= f_loss), None)
print(f"| run | steps | wall s | final val loss | ms/step |")
print(f"|---|---:|---:|---:|---:|")
print(f"| f32 | {f_step} | {f_time:.1f} | {f_loss:.4f} | {1000 * f_time / f_step:.1f} |")
print(f"| bf16 | {b_step} | {b_time:.1f} | {b_loss:.4f} | {1000 * b_time / b_step:.1f} |")
print(f"bf16/f32 final validation loss: {b_loss / f_loss:.4f} (issue 19: within 1%)")
if reach:
    print(f"bf16 reaches f32's final validation loss {f_loss:.4f} at step {reach[0]}, {reach[1]:.1f} s: "
          f"{reach[1] / f_time:.3f} of f32's {f_time:.1f} s (issue 19: at most 0.7)")
else:
    print(f"bf16 does not reach f32's final validation loss {f_loss:.4f} within {b_step} steps")
PY
