#!/bin/sh
# Issue 20's experiments (docs/experiments.md, section 5): every online method against BPTT and
# exact RTRL.
#   1. learning curves at equal wall time (--time-budget SECONDS each, one thread) on the adding
#      problem (T = 20), the copy task (delay 10) and Tiny Shakespeare (1×64 LSTM, windows of
#      50), each method at the same learning rate; curves with `bptt plot --x elapsed`;
#   2. the gradient alignment over training: a model trained by BPTT on the adding problem,
#      saved every 100 steps, and `bptt diagnose --methods` of each save on one fixed batch;
#   3. UORO's and KF-RTRL's variance against H (random LSTMs, tools/experiments/online_variance.py).
# Usage: tools/experiments/online_methods.sh [SECONDS]   (default 300; build/online-exp/)
set -eu
cd "$(dirname "$0")/../.."
budget=${1:-300}
bptt=${BPTT:-build/bptt}
out=build/online-exp
text=${TEXT:-../shared/data/tinyshakespeare.txt}
methods=${METHODS:-"bptt rtrl uoro kf-rtrl snap1 eprop"}
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; budget ${budget}s per run, 1 thread" >&2

train() {  # name method [bptt train options]
  name=$1 method=$2
  shift 2
  if ! "$bptt" train "$@" --method "$method" --time-budget "$budget" --threads 1 --seed 1 \
      --metrics "$out/$name.csv" --out "$out/$name.safetensors" > "$out/$name.log" 2>&1; then
    echo "$name failed: $(tail -n 1 "$out/$name.log")" >&2
  fi
}

# 1. Learning curves.
for m in $methods; do
  train "adding_$m" "$m" --task adding --seq-len 20 --cell lstm --hidden 32 --batch 16 \
    --lr 1e-2 --eval-every 25
  train "copy_$m" "$m" --task copy --seq-len 10 --cell lstm --hidden 32 --batch 16 \
    --lr 1e-2 --eval-every 25
  if [ -f "$text" ]; then
    train "text_$m" "$m" --text "$text" --val-fraction 0.1 --cell lstm --hidden 64 \
      --seq-len 50 --batch 16 --lr 3e-3 --eval-every 25
  fi
done
for task in adding copy text; do
  ls "$out"/"${task}"_*.csv > /dev/null 2>&1 || continue
  # shellcheck disable=SC2046
  "$bptt" plot --metrics $(ls "$out"/"${task}"_*.csv) --x elapsed --out "$out/$task.svg" || true
done

# 2. Alignment over training (BPTT's trajectory; every method's gradient on one batch).
/usr/bin/python3 tools/experiments/adding_data.py "$out/adding_batch.safetensors" --T 20 --B 32 --seed 5
steps=0
rm -f "$out/align_snapshot.safetensors"
: > "$out/alignment.jsonl"
while [ "$steps" -lt 1000 ]; do
  steps=$((steps + 100))
  resume=""
  [ -f "$out/align_snapshot.safetensors" ] && resume="--resume $out/align_snapshot.safetensors"
  # shellcheck disable=SC2086
  "$bptt" train --task adding --seq-len 20 --cell lstm --hidden 32 --batch 16 --lr 1e-2 \
    --steps "$steps" --threads 1 --seed 1 $resume --snapshot "$out/align_snapshot.safetensors" \
    --out "$out/align_model.safetensors" > "$out/align_train.log" 2>&1
  "$bptt" diagnose --model "$out/align_model.safetensors" --data "$out/adding_batch.safetensors" \
    --loss mse --methods uoro,kf-rtrl,snap1,eprop,truncated:1,truncated:5 --samples 16 --json |
    /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); d['step'] = $steps; print(json.dumps(d))" \
    >> "$out/alignment.jsonl"
done
/usr/bin/python3 - "$out/alignment.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = [m["method"] for m in rows[0]["methods"]]
print("\ncosine with BPTT's gradient of layer l0 over BPTT training (adding, T = 20, H = 32)\n")
print("| step | " + " | ".join(names) + " |")
print("|---:|" + "---:|" * len(names))
for r in rows:
    cos = {m["method"]: next(p["cosine"] for p in m["layers"] if p["name"] == "l0") for m in r["methods"]}
    print(f"| {r['step']} | " + " | ".join(f"{cos[n]:.3f}" for n in names) + " |")
EOF

# 3. Variance against H.
PYTHONPATH=build/python /usr/bin/python3 tools/experiments/online_variance.py
