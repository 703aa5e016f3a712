#!/bin/sh
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs each for SECONDS
# (default 60), one after another, one process each. Usage: fuzz/run.sh [SECONDS] [NAME...]
# with NAME among model data snapshot csv ts text stream cli (default: all).
# Each fuzzer starts from the committed seeds (fuzz/corpus/NAME) plus what earlier runs found
# (build-fuzz/corpus/NAME, not committed); crashes are written to build-fuzz/artifacts/NAME/.
# Prints one line per fuzzer (time, executions, coverage) and exits 1 when any fuzzer failed.
# A finding becomes a fix and a regression input in fuzz/regressions/NAME/, which the normal
# test build replays (tests/fuzz/test_fuzz_replay.cpp) with every committed seed.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
[ $# -gt 0 ] && shift
names=${*:-model data snapshot csv ts text stream cli}
cmake --preset fuzz >/dev/null
targets=""
for n in $names; do targets="$targets fuzz_$n"; done
cmake --build --preset fuzz -j"${FUZZ_BUILD_JOBS:-2}" --target $targets >/dev/null
status=0
for n in $names; do
  corpus=build-fuzz/corpus/$n
  artifacts=build-fuzz/artifacts/$n
  mkdir -p "$corpus" "$artifacts"
  log=build-fuzz/fuzz-$n.log
  regressions=""  # inputs that once failed: replayed first, every run
  [ -d fuzz/regressions/"$n" ] && regressions=fuzz/regressions/$n
  # -rss_limit_mb / -malloc_limit_mb: an allocation a file's header asks for beyond 1 GB is a
  # finding (limits are checked before allocating). Seeds are up to ~6 KB; inputs up to 64 KB.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
     ./build-fuzz/fuzz/fuzz_"$n" "$corpus" fuzz/corpus/"$n" $regressions -max_total_time="$seconds" \
       -max_len=65536 -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log and $artifacts/)"
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  echo "fuzz_$n: ${seconds}s, ${execs:-?} executions, ${cov:-cov: ?}, $result"
done
exit $status
