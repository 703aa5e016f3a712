#!/bin/sh
# Issue 4's comparison: the same RNN training and inference steps timed by bptt (`bptt bench`),
# PyTorch (bench/torch_rnn.py) and oneDNN's RNN primitives (bench/onednn/onednn_rnn), side by
# side, then a markdown table (bench/report.py).
#
# Usage: bench/compare.sh [--quick]        (environment: SHAPES="..." to run other shapes,
#                                            STREAM_SHAPES="..." other --mode stream shapes
#                                            ("" for none), BF16_SHAPES="..." the shapes bptt
#                                            and oneDNN also run with --dtype bf16 ("" for none),
#                                            BPTT=path to use another bptt binary,
#                                            ROUNDS=N rounds, default 3; --quick: 1;
#                                            build/bench/onednn_rnn_v3, when bench/onednn/build.sh
#                                            built it with ONEDNN_ROOT, runs beside oneDNN 2.6)
#   shapes a: CELL_l1_t100_b32_i64_h128_o64   b: CELL_l1_t100_b64_i256_h512_o256
#          c: CELL_l1_t1000_b1_i1_h32_o1      (CELL = elman, lstm, gru)
#          d: lstm_l2_t100_b32_i65_h256_o65_xent   (bptt and PyTorch only: oneDNN side is mse-only)
#          bidirectional (issue 15): lstm and gru on a and b with _bi (oneDNN: bidirectional_concat),
#          and lstm on b with _bi_p128 (an LSTM projection; oneDNN: its LSTM with weights_projection)
#          layer norm (issue 18): lstm on b with _ln (PyTorch: its TorchScript LN-LSTM,
#          bench/torch_ln_lstm.py; oneDNN has none)
#   modes train and infer, threads 1 and 2 (--quick: threads 1 and --min-time 0.2); then mode
#   stream (one Stream::step of B streams; bptt::Stream, PyTorch's module called once per step
#   with its state carried, oneDNN's forward primitive of one step) on LSTM and GRU with L1 H32,
#   L1 H128 and L2 H256, B = 1 and 64, 1 thread.
# The whole sweep runs ROUNDS times and each configuration keeps its fastest median: on a shared
# (virtual) machine the neighbours' noise only ever adds time, and one sweep's medians were seen
# to move by 10-20% between runs.
# Each implementation runs every configuration in its own process (peak memory is per shape),
# alternating bptt, PyTorch, oneDNN configuration by configuration, so a slow drift of the
# machine hits all three alike. Lines go to build/bench/results.jsonl (the previous file is kept
# as results.prev.jsonl). OPENBLAS_CORETYPE is left as the environment sets it.
set -u
cd "$(dirname "$0")/.." || exit 2

min_time=1
threads_list="1 2"
rounds=${ROUNDS:-3}
case "${1:-}" in
  --quick) min_time=0.2; threads_list="1"; rounds=${ROUNDS:-1} ;;
  "") ;;
  *) echo "usage: bench/compare.sh [--quick]" >&2; exit 2 ;;
esac

py=/usr/bin/python3
bptt=${BPTT:-build/bptt}
onednn=build/bench/onednn_rnn
onednn3=build/bench/onednn_rnn_v3  # a oneDNN 3.x build of the same program, if made
[ -x "$onednn3" ] || onednn3=""
out=build/bench
results=$out/results.jsonl

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
# The ceilings every GFLOP/s below is read against: the float FMA peak and, on a CPU with
# AVX512-BF16, the bf16 one (bench/peak/fma_peak.cpp).
mkdir -p build/bench
if [ ! -x build/bench/fma_peak ] || [ -n "$(find bench/peak/fma_peak.cpp -newer build/bench/fma_peak)" ]; then
  ${CXX:-g++} -O2 bench/peak/fma_peak.cpp -o build/bench/fma_peak || exit 2
fi
build/bench/fma_peak
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  echo "warning: OPENBLAS_CORETYPE is unset; bptt's and PyTorch's OpenBLAS pick their kernels by" >&2
  echo "  CPU detection. For the numbers this project reports: export OPENBLAS_CORETYPE=Haswell" >&2
fi

if ! "$bptt" bench --help > /dev/null 2>&1; then
  echo "bench/compare.sh: $bptt has no bench verb; build first (cmake --preset default && cmake --build --preset default)" >&2
  exit 2
fi
"$py" -c "import torch" 2> /dev/null || {
  echo "bench/compare.sh: $py cannot import torch (apt-get install -y python3-torch)" >&2
  exit 2
}
if [ ! -x "$onednn" ] || [ -n "$(find bench/onednn/onednn_rnn.cpp -newer "$onednn")" ]; then
  bench/onednn/build.sh || exit 2
fi
mkdir -p "$out"
# oneDNN's kernels are its own JIT code for the best ISA it finds (AVX-512 where there is one),
# whatever OPENBLAS_CORETYPE says; ONEDNN_MAX_CPU_ISA=AVX2 caps it (e.g. to match OpenBLAS's Haswell
# kernels). Say which one it uses.
isa=$(ONEDNN_VERBOSE=1 "$onednn" elman_l1_t2_b1_i1_h1_o1 --min-steps 1 --max-steps 1 --min-time 0 2> /dev/null |
  sed -n 's/^onednn_verbose,info,cpu,isa://p')
echo "oneDNN ISA: ${isa:-unknown} (ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset})"
if [ -n "$onednn3" ]; then
  isa3=$(ONEDNN_VERBOSE=1 "$onednn3" elman_l1_t2_b1_i1_h1_o1 --min-steps 1 --max-steps 1 --min-time 0 2> /dev/null |
    sed -n 's/^onednn_verbose,[^,]*,info,cpu,isa://p; s/^onednn_verbose,info,cpu,isa://p' | head -n 1)
  echo "oneDNN 3.x ($onednn3) ISA: ${isa3:-unknown}"
fi

cells="elman lstm gru"
shapes=""
for c in $cells; do shapes="$shapes ${c}_l1_t100_b32_i64_h128_o64"; done
for c in $cells; do shapes="$shapes ${c}_l1_t100_b64_i256_h512_o256"; done
for c in $cells; do shapes="$shapes ${c}_l1_t1000_b1_i1_h32_o1"; done
shapes="$shapes lstm_l2_t100_b32_i65_h256_o65_xent"
for c in lstm gru; do
  shapes="$shapes ${c}_l1_t100_b32_i64_h128_o64_bi ${c}_l1_t100_b64_i256_h512_o256_bi"
done
shapes="$shapes lstm_l1_t100_b64_i256_h512_o256_bi_p128"
shapes="$shapes lstm_l1_t100_b64_i256_h512_o256_ln"
shapes=${SHAPES:-$shapes}
# Streaming latency: LSTM and GRU at L1 H32, L1 H128 and L2 H256 (I = O = H), one stream and 64.
stream_shapes=""
for c in lstm gru; do
  for b in 1 64; do
    stream_shapes="$stream_shapes ${c}_l1_t100_b${b}_i32_h32_o32 ${c}_l1_t100_b${b}_i128_h128_o128"
    stream_shapes="$stream_shapes ${c}_l2_t100_b${b}_i256_h256_o256"
  done
done
stream_shapes=${STREAM_SHAPES-$stream_shapes}
# bf16 products (bptt --dtype bf16): LSTM and GRU on a and b.
bf16_shapes=""
for c in lstm gru; do
  bf16_shapes="$bf16_shapes ${c}_l1_t100_b32_i64_h128_o64 ${c}_l1_t100_b64_i256_h512_o256"
done
bf16_shapes=${BF16_SHAPES-$bf16_shapes}
onednn_shapes=""
for s in $shapes; do
  # The oneDNN side is mse-only, with biases and a zero initial state (the options in any place).
  case ${s}_ in *_xent_* | *_bce_* | *_nobias_* | *_learn_* | *_ln_*) ;;
    *) onednn_shapes="$onednn_shapes $s" ;; esac
done

# oneDNN's own check (forward vs a plain loop, gradients vs the loss, on tiny versions and short
# versions of the shapes) before any of its numbers is trusted.
if [ -n "$onednn_shapes" ]; then
  echo "checking the oneDNN program (log: $out/onednn_check.log) ..."
  # shellcheck disable=SC2086
  if ! "$onednn" $onednn_shapes --check --min-steps 1 --max-steps 1 --min-time 0 > /dev/null 2> "$out/onednn_check.log"; then
    grep FAIL "$out/onednn_check.log" >&2
    echo "bench/compare.sh: the oneDNN check failed (see $out/onednn_check.log)" >&2
    exit 1
  fi
  tail -n 1 "$out/onednn_check.log"
  if [ -n "$onednn3" ]; then
    # shellcheck disable=SC2086
    if ! "$onednn3" $onednn_shapes --check --min-steps 1 --max-steps 1 --min-time 0 > /dev/null 2> "$out/onednn3_check.log"; then
      grep FAIL "$out/onednn3_check.log" >&2
      echo "bench/compare.sh: the oneDNN 3.x check failed (see $out/onednn3_check.log)" >&2
      exit 1
    fi
    echo "oneDNN 3.x: $(tail -n 1 "$out/onednn3_check.log")"
  fi
fi
# The bf16 side: bf16 readouts against the plain loop, each gradient against the f32 program's.
if [ -n "$bf16_shapes" ]; then
  for prog in "$onednn" $onednn3; do
    # shellcheck disable=SC2086
    if ! "$prog" $bf16_shapes --dtype bf16 --check --min-steps 1 --max-steps 1 --min-time 0 > /dev/null 2> "$out/onednn_bf16_check.log"; then
      grep FAIL "$out/onednn_bf16_check.log" >&2
      echo "bench/compare.sh: the oneDNN bf16 check of $prog failed (see $out/onednn_bf16_check.log)" >&2
      exit 1
    fi
    echo "$prog bf16: $(tail -n 1 "$out/onednn_bf16_check.log")"
  done
fi

[ -f "$results" ] && mv "$results" "$out/results.prev.jsonl"
: > "$results"

run() {  # run IMPL COMMAND...: append its JSON line(s), say what happened
  impl=$1
  shift
  if line=$("$@" 2> "$out/last_stderr.txt"); then
    printf '%s\n' "$line" >> "$results"
    printf '  %-9s %s\n' "$impl" "$("$py" -c 'import json, sys
j = json.loads(sys.argv[1])
print("%10.3f ms/step %7.1f GFLOP/s %7.1f MiB peak" % (j["ms_per_step"], j["gflops"], j["peak_rss_mib"]))' "$line")" >&2
  else
    echo "  $impl FAILED: $*" >&2
    sed 's/^/    /' "$out/last_stderr.txt" >&2
  fi
}

for round in $(seq "$rounds"); do
for threads in $threads_list; do
  for mode in train infer; do
    for s in $shapes; do
      echo "$s $mode threads=$threads (round $round of $rounds)" >&2
      common="--mode $mode --threads $threads --min-time $min_time"
      # shellcheck disable=SC2086
      run bptt "$bptt" bench "$s" $common --json
      case " $bf16_shapes " in  # bptt with bf16 products (issue 19), beside its f32
        *" $s "*)
          # shellcheck disable=SC2086
          run bptt-bf16 "$bptt" bench "$s" $common --dtype bf16 --json
          # oneDNN's bf16 RNN primitives (checked above for these shapes)
          # shellcheck disable=SC2086
          run onednn-bf16 "$onednn" "$s" $common --dtype bf16
          # shellcheck disable=SC2086
          [ -z "$onednn3" ] || run onednn3-bf16 "$onednn3" "$s" $common --dtype bf16 ;;
      esac
      # shellcheck disable=SC2086
      run pytorch "$py" bench/torch_rnn.py "$s" $common
      case " $onednn_shapes " in
        *" $s "*)
          # shellcheck disable=SC2086
          run onednn "$onednn" "$s" $common
          # shellcheck disable=SC2086
          [ -z "$onednn3" ] || run onednn3 "$onednn3" "$s" $common ;;
      esac
    done
  done
done
# Streaming (issue 16): one time step of B streams, 1 thread (a service's one request); one
# stream again on 2 threads (bptt splits the products by columns, the others their own way).
for s in $stream_shapes; do
  thread_counts=1
  case "$s" in *_b1_*) thread_counts="1 2" ;; esac
  for t in $thread_counts; do
    echo "$s stream threads=$t (round $round of $rounds)" >&2
    common="--mode stream --threads $t --min-time $min_time"
    # shellcheck disable=SC2086
    run bptt "$bptt" bench "$s" $common --json
    # shellcheck disable=SC2086
    run pytorch "$py" bench/torch_rnn.py "$s" $common
    # shellcheck disable=SC2086
    run onednn "$onednn" "$s" $common
    # shellcheck disable=SC2086
    [ -z "$onednn3" ] || run onednn3 "$onednn3" "$s" $common
  done
done
done

echo
"$py" bench/report.py "$results"
