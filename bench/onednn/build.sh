#!/bin/sh
# Builds bench/onednn/onednn_rnn.cpp into build/bench/onednn_rnn against Debian's oneDNN 2.6
# (libdnnl-dev). Usage: bench/onednn/build.sh   (CXX=... to pick the compiler)
set -eu
cd "$(dirname "$0")/../.."
cxx=${CXX:-g++}
if [ ! -f /usr/include/oneapi/dnnl/dnnl.hpp ]; then
  echo "bench/onednn/build.sh: oneDNN's header <oneapi/dnnl/dnnl.hpp> is missing; install it with" >&2
  echo "  apt-get install -y libdnnl-dev" >&2
  exit 2
fi
mkdir -p build/bench
"$cxx" -O3 -march=native -std=c++17 -Wall -Wextra bench/onednn/onednn_rnn.cpp -ldnnl -fopenmp \
  -o build/bench/onednn_rnn
echo "built build/bench/onednn_rnn" >&2
