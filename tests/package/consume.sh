#!/bin/sh
# The installed package as a user's own project meets it (ctest: package_consumer):
#   1. `cmake --install` of this build into an empty prefix (and `import bptt` from its
#      dist-packages when the Python module is built);
#   2. examples/ configured and built on its own with find_package(bptt CONFIG REQUIRED) and
#      bptt::bptt, against that prefix only, and run (forecast; stream on a PyTorch checkpoint);
#   3. the same two compiled with nothing but `pkg-config --cflags --libs bptt`, and run.
# Usage: consume.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -eu
build=$1 src=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
step() { echo "package_consumer: $*"; }
fail() { echo "package_consumer FAILED: $1 (log: $2)" >&2; tail -n 30 "$2" >&2; exit 1; }

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 || fail "install" "$work/install.log"
for f in include/bptt/bptt.hpp include/bptt/version.hpp lib/cmake/bptt/bpttConfig.cmake \
         lib/cmake/bptt/bpttConfigVersion.cmake lib/cmake/bptt/bpttTargets.cmake lib/pkgconfig/bptt.pc; do
  [ -f "$prefix/$f" ] || { echo "package_consumer FAILED: $prefix/$f was not installed" >&2; exit 1; }
done
# The command's own headers are not part of the package.
for f in bench.hpp explain.hpp dist.hpp; do
  [ ! -e "$prefix/include/bptt/$f" ] || { echo "package_consumer FAILED: include/bptt/$f is installed" >&2; exit 1; }
done

if [ -n "${BPTT_PYTHON:-}" ]; then
  step "import bptt from $prefix/$BPTT_PYTHON_DIR"
  [ -f "$prefix/$BPTT_PYTHON_DIR/bptt/__init__.py" ] || { echo "package_consumer FAILED: bptt/__init__.py was not installed in $prefix/$BPTT_PYTHON_DIR" >&2; exit 1; }
  (cd "$work" && PYTHONPATH="$prefix/$BPTT_PYTHON_DIR" "$BPTT_PYTHON" -c "
import bptt, numpy
assert bptt.__file__.startswith('$prefix'), bptt.__file__
m = bptt.Model(cell='gru', input_size=2, hidden_size=3, output_size=1)
print('installed bptt', bptt.__version__, m.predict(numpy.zeros((2, 1, 2)))[0].shape)
") > "$work/python.log" 2>&1 || fail "import the installed Python module" "$work/python.log"
fi

step "examples/ against the installed package (find_package)"
cmake -S "$src/examples" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  > "$work/configure.log" 2>&1 || fail "configure examples/" "$work/configure.log"
cmake --build "$work/cmake" -j2 > "$work/build.log" 2>&1 || fail "build examples/" "$work/build.log"
"$work/cmake/forecast" --steps 3 > "$work/forecast.log" 2>&1 || fail "run forecast" "$work/forecast.log"
grep -q "test RMSE" "$work/forecast.log" || fail "forecast's output" "$work/forecast.log"
checkpoint=$src/fuzz/corpus/model/plain_state_dict_gru.safetensors  # a PyTorch state_dict as it is
"$work/cmake/stream" "$checkpoint" 100 > "$work/stream.log" 2>&1 || fail "run stream" "$work/stream.log"
grep -q "the first output repeats" "$work/stream.log" || fail "stream's output" "$work/stream.log"

step "an example with pkg-config"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
c++ -std=c++20 -O1 "$src/examples/forecast.cpp" -o "$work/forecast_pc" $(pkg-config --cflags --libs bptt) \
  > "$work/pkgconfig.log" 2>&1 || fail "compile with pkg-config ($(pkg-config --cflags --libs bptt))" "$work/pkgconfig.log"
"$work/forecast_pc" --steps 3 > "$work/forecast_pc.log" 2>&1 || fail "run forecast_pc" "$work/forecast_pc.log"
grep -q "test RMSE" "$work/forecast_pc.log" || fail "forecast_pc's output" "$work/forecast_pc.log"
# shellcheck disable=SC2046
c++ -std=c++20 -O1 "$src/examples/stream.cpp" -o "$work/stream_pc" $(pkg-config --cflags --libs bptt) \
  > "$work/pkgconfig_stream.log" 2>&1 || fail "compile stream.cpp with pkg-config" "$work/pkgconfig_stream.log"
"$work/stream_pc" "$checkpoint" 100 > "$work/stream_pc.log" 2>&1 || fail "run stream_pc" "$work/stream_pc.log"
grep -q "the first output repeats" "$work/stream_pc.log" || fail "stream_pc's output" "$work/stream_pc.log"
step "ok"
