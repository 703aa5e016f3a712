#!/bin/sh
# One adding-problem run of docs/experiments.md, section 1.
# usage: tools/experiments/adding_run.sh CELL T [extra bptt train options...]
# Writes $RUNS/adding_<cell>_t<T>.{csv,safetensors,log} (RUNS default build-exp/runs) and times
# the run with /usr/bin/time -v. BPTT default build-exp/bptt.
set -eu
cell=$1; T=$2; shift 2
BPTT=${BPTT:-build-exp/bptt}
RUNS=${RUNS:-build-exp/runs}
TAG=${TAG:-adding_${cell}_t${T}}
mkdir -p "$RUNS"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
set -x
/usr/bin/time -v "$BPTT" train --task adding --seq-len "$T" --cell "$cell" --threads 1 \
  --metrics "$RUNS/$TAG.csv" --eval-every 250 --out "$RUNS/$TAG.safetensors" "$@" \
  > "$RUNS/$TAG.log" 2>&1
