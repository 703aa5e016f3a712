#!/bin/sh
# Does recompute's extra time grow with T? `bptt grad --method bptt | recompute:K` on a small
# LSTM (B = 16, I = 64, H = 128, O = 64) at T = 1000 and 10 000, one OpenMP thread, 3 rounds;
# /usr/bin/time's user seconds and peak RSS (the times include reading and writing the files).
# usage: tools/experiments/recompute_scaling.sh [DIR]   (default /tmp/rc; BPTT default build-exp/bptt)
set -eu
BPTT=${BPTT:-build-exp/bptt}
D=${1:-/tmp/rc}
mkdir -p "$D"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_NUM_THREADS=1
for T in 1000 10000; do /usr/bin/python3 tools/experiments/random_data.py "$D/t$T.safetensors" $T 16 64 64; done
# any LSTM with I = 64, H = 128, O = 64 will do: one training step on the data
"$BPTT" train --data "$D/t1000.safetensors" --loss mse --cell lstm --hidden 128 --layers 1 \
  --seq-len 1000 --steps 1 --threads 1 --out "$D/model.safetensors" > /dev/null
for T in 1000 10000; do for m in bptt recompute:32 recompute:100; do for r in 1 2 3; do
  /usr/bin/time -f "T=$T $m user %U s wall %e s peak RSS %M KB" "$BPTT" grad --model "$D/model.safetensors" \
    --data "$D/t$T.safetensors" --loss mse --method "$m" --out "$D/grad.safetensors" 2>&1 >/dev/null
done; done; done
