#!/bin/sh
# Builds bench/onednn/onednn_rnn.cpp into build/bench/onednn_rnn against Debian's oneDNN 2.6
# (libdnnl-dev), or, with ONEDNN_ROOT=DIR (a oneDNN 3.x installed there: DIR/include,
# DIR/lib), into build/bench/onednn_rnn_v3 against that one (its results say impl "onednn3";
# bench/compare.sh runs it beside 2.6 when it exists). The program takes both APIs.
# Usage: bench/onednn/build.sh   (CXX=... to pick the compiler)
set -eu
cd "$(dirname "$0")/../.."
cxx=${CXX:-g++}
mkdir -p build/bench
if [ -n "${ONEDNN_ROOT:-}" ]; then
  if [ ! -f "$ONEDNN_ROOT/include/oneapi/dnnl/dnnl.hpp" ]; then
    echo "bench/onednn/build.sh: no $ONEDNN_ROOT/include/oneapi/dnnl/dnnl.hpp (ONEDNN_ROOT: a oneDNN install)" >&2
    exit 2
  fi
  lib=$ONEDNN_ROOT/lib
  [ -d "$lib" ] || lib=$ONEDNN_ROOT/lib64
  "$cxx" -O3 -march=native -std=c++17 -Wall -Wextra -I"$ONEDNN_ROOT/include" bench/onednn/onednn_rnn.cpp \
    -L"$lib" -Wl,-rpath,"$lib" -ldnnl -fopenmp -o build/bench/onednn_rnn_v3
  echo "built build/bench/onednn_rnn_v3 against $ONEDNN_ROOT" >&2
  exit 0
fi
if [ ! -f /usr/include/oneapi/dnnl/dnnl.hpp ]; then
  echo "bench/onednn/build.sh: oneDNN's header <oneapi/dnnl/dnnl.hpp> is missing; install it with" >&2
  echo "  apt-get install -y libdnnl-dev" >&2
  exit 2
fi
"$cxx" -O3 -march=native -std=c++17 -Wall -Wextra bench/onednn/onednn_rnn.cpp -ldnnl -fopenmp \
  -o build/bench/onednn_rnn
echo "built build/bench/onednn_rnn" >&2
