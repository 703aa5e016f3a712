#!/bin/sh
# Issue 20's experiments (docs/experiments.md, section 5): every online method against BPTT and
# exact RTRL.
#   1. learning curves at equal wall time (--time-budget SECONDS each, one thread, one run at a
#      time) on the adding problem (T = 20), the copy task (delay 10) and Tiny Shakespeare (1×64
#      LSTM, windows of 50), each method at the same learning rate. No evaluation interrupts
#      the clock: the curve is the training loss (--log-every; a mean over the steps since the
#      last row; on the synthetic tasks every batch is fresh, so it estimates the test loss),
#      and the held-out loss is measured once, at the end (the last lines of each log);
#   2. the gradient alignment over training on the adding problem and the copy task: a model
#      trained by BPTT, saved every 100 steps, and `bptt diagnose --methods` of each save on one
#      fixed batch (cosine with BPTT's gradient; for uoro and kf-rtrl the mean over 16 seeds);
#   3. UORO's and KF-RTRL's variance against H (random LSTMs, tools/experiments/online_variance.py).
# Writes build/online-exp/ (CSVs, logs, alignment_*.jsonl and .dat) and the figures
# docs/img/online_{adding,copy,text,alignment}.png (IMG=DIR for elsewhere); prints the tables.
# Usage: tools/experiments/online_methods.sh [SECONDS]   (default 120: 35 minutes on a Zen 5)
set -eu
cd "$(dirname "$0")/../.."
budget=${1:-120}
bptt=${BPTT:-build/bptt}
out=build/online-exp
img=${IMG:-docs/img}
text=${TEXT:-../shared/data/tinyshakespeare.txt}
methods=${METHODS:-"bptt rtrl uoro kf-rtrl snap1 eprop"}
mkdir -p "$out" "$img"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), CPU family $(lscpu | sed -n 's/^CPU family: *//p'), $(nproc) cores; budget ${budget}s per run, 1 thread"

train() {  # name method [bptt train options]
  name=$1 method=$2
  shift 2
  case $method in  # a row of the curve every so many steps: tens of rows even for the slow ones
    bptt) every=100 ;; rtrl) every=2 ;; kf-rtrl) every=10 ;; *) every=20 ;;
  esac
  if ! "$bptt" train "$@" --layers 1 --method "$method" --time-budget "$budget" --threads 1 \
      --seed 1 --log-every "$every" --metrics "$out/$name.csv" --out "$out/$name.safetensors" \
      > "$out/$name.log" 2>&1; then
    echo "$name failed: $(tail -n 1 "$out/$name.log")" >&2
  fi
}

# 1. Learning curves.
for m in $methods; do
  train "adding_$m" "$m" --task adding --seq-len 20 --cell lstm --hidden 32 --batch 16 --lr 1e-2
  train "copy_$m" "$m" --task copy --seq-len 10 --cell lstm --hidden 32 --batch 16 --lr 1e-2
  if [ -f "$text" ]; then
    train "text_$m" "$m" --text "$text" --val-fraction 0.1 --cell lstm --hidden 64 \
      --seq-len 50 --batch 8 --lr 3e-3
  fi
done
for task in adding copy text; do
  csvs=""
  for m in $methods; do [ -f "$out/${task}_$m.csv" ] && csvs="$csvs $out/${task}_$m.csv"; done
  [ -n "$csvs" ] || continue
  printf '\n%s after %ss each: the last two lines of each run\n\n' "$task" "$budget"
  for m in $methods; do
    [ -f "$out/${task}_$m.log" ] && printf '%-8s %s\n' "$m" "$(tail -n 2 "$out/${task}_$m.log" | tr '\n' ' ')"
  done
  logy=--log-y  # the synthetic tasks' losses span decades
  [ "$task" = text ] && logy=""
  # shellcheck disable=SC2086
  "$bptt" plot --metrics $csvs --x elapsed $logy \
    --title "$task: training loss against wall time (${budget} s each, 1 thread)" \
    --out "$img/online_$task.png" || true
done

# 2. Alignment over training (BPTT's trajectory; every method's gradient on one fixed batch).
align() {  # task loss [train options]
  task=$1 loss=$2
  shift 2
  snap="$out/align_${task}_snapshot.safetensors"
  rm -f "$snap"
  : > "$out/alignment_$task.jsonl"
  steps=0
  while [ "$steps" -lt 1000 ]; do
    steps=$((steps + 100))
    resume=""
    [ -f "$snap" ] && resume="--resume $snap"
    # shellcheck disable=SC2086
    "$bptt" train --task "$task" "$@" --cell lstm --hidden 32 --layers 1 --batch 16 --lr 1e-2 \
      --steps "$steps" --threads 1 --seed 1 $resume --snapshot "$snap" \
      --out "$out/align_${task}_model.safetensors" > "$out/align_${task}_train.log" 2>&1
    "$bptt" diagnose --model "$out/align_${task}_model.safetensors" \
      --data "$out/${task}_batch.safetensors" --loss "$loss" \
      --methods uoro,kf-rtrl,snap1,eprop,truncated:1,truncated:5 --samples 16 --json |
      /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); d['step'] = $steps; print(json.dumps(d))" \
      >> "$out/alignment_$task.jsonl"
  done
}
/usr/bin/python3 tools/experiments/adding_data.py "$out/adding_batch.safetensors" --T 20 --B 32 --seed 5
/usr/bin/python3 tools/experiments/adding_data.py "$out/copy_batch.safetensors" --task copy --T 10 --B 32 --seed 5
align adding mse --seq-len 20
align copy xent --seq-len 10
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for task, what in (("adding", "adding problem, T = 20"), ("copy", "copy task, delay 10: T = 30")):
    rows = [json.loads(l) for l in open(f"{out}/alignment_{task}.jsonl")]
    names = [m["method"] for m in rows[0]["methods"]]
    print(f"\ncosine with BPTT's gradient of layer l0 along BPTT's training ({what}, H = 32)\n")
    print("| step | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    with open(f"{out}/alignment_{task}.dat", "w") as dat:
        dat.write("step " + " ".join(names) + "\n")
        for r in rows:
            cos = {m["method"]: next(p["cosine"] for p in m["layers"] if p["name"] == "l0")
                   for m in r["methods"]}
            print(f"| {r['step']} | " + " | ".join(f"{cos[n]:.3f}" for n in names) + " |")
            dat.write(f"{r['step']} " + " ".join(f"{cos[n]:.6g}" for n in names) + "\n")
PY
if command -v gnuplot > /dev/null; then
  gnuplot -e "out='$out'; img='$img'" tools/experiments/online_alignment.gp
fi

# 3. Variance against H.
PYTHONPATH=build/python /usr/bin/python3 tools/experiments/online_variance.py
