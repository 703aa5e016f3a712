#!/bin/sh
# Issue 18's quality comparison: a 2×512 character LSTM on Tiny Shakespeare (10% validation)
# trained for the same wall-clock budget at 2 threads, (a) by bptt without regularization,
# (b) by bptt with the recommended regularization, (c) by PyTorch with nn.LSTM's between-layer
# dropout, each at every learning rate of a small sweep; prints each run's best validation loss
# (evaluated every EVAL_EVERY steps) and writes every run's metrics CSV for `bptt plot`.
#
# Usage: bench/regularization.sh [SECONDS] [THREADS]     (defaults 1800, 2)
# Environment: LRS="1e-3 2e-3 4e-3" (the sweep), REG="..." (bptt's regularization flags),
#   TORCH_DROPOUT=0.25, EVAL_EVERY=200, TEXT=path, RUNS="plain reg torch" (which to run).
# A run of each at the default budget takes 30 minutes: the default sweep is 4.5 hours. Timings
# need a quiet machine (no builds beside it).
set -eu
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/data/tinyshakespeare.txt}
budget=${1:-1800}
threads=${2:-2}
lrs=${LRS:-"1e-3 2e-3 4e-3"}
reg=${REG:-"--layer-norm --recurrent-dropout 0.25 --weight-drop 0.3 --zoneout-c 0.05"}
torch_dropout=${TORCH_DROPOUT:-0.25}
eval_every=${EVAL_EVERY:-200}
runs=${RUNS:-"plain reg torch"}
[ -f "$text" ] || { echo "bench/regularization.sh: $text not found (set TEXT=...)" >&2; exit 2; }
[ -x build/bptt ] || { echo "bench/regularization.sh: build first (cmake --preset default && cmake --build --preset default)" >&2; exit 2; }
out=build/bench-regularization
mkdir -p "$out"
recipe="--val-fraction 0.1 --hidden 512 --layers 2 --seq-len 100 --batch 32 --clip-norm 5 --time-budget $budget --threads $threads"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" >&2
echo "recipe: $recipe; regularization: $reg; PyTorch dropout $torch_dropout" >&2
best() {  # the smallest val_loss of a metrics CSV
  awk -F, 'NR > 1 && $4 != "" { if (b == "" || $4 < b) b = $4 } END { print b }' "$1"
}
echo "| run | lr | best validation loss | steps |"
echo "|---|---:|---:|---:|"
for lr in $lrs; do
  for run in $runs; do
    name=$run-lr$lr
    case $run in
      plain | reg)
        flags=""
        [ "$run" = reg ] && flags=$reg
        # shellcheck disable=SC2086
        ./build/bptt train --text "$text" $recipe --lr "$lr" $flags --eval-every "$eval_every" \
          --seed 1 --out "$out/$name.safetensors" --metrics "$out/$name.csv" > "$out/$name.log" 2>&1
        steps=$(sed -n 's/.*trained \([0-9]*\) steps.*/\1/p' "$out/$name.log" | tail -n 1) ;;
      torch)
        # shellcheck disable=SC2086
        /usr/bin/python3 bench/torch_char_lm.py --text "$text" $recipe --lr "$lr" \
          --dropout "$torch_dropout" --eval-every "$eval_every" --metrics "$out/$name.csv" \
          > "$out/$name.json"
        steps=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["steps"])' "$out/$name.json") ;;
      *) echo "bench/regularization.sh: unknown run $run" >&2; exit 2 ;;
    esac
    echo "| $run | $lr | $(best "$out/$name.csv") | $steps |"
  done
done
echo "curves: build/bptt plot --metrics $out/*.csv --x elapsed --out regularization.svg" >&2
