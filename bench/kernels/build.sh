#!/bin/sh
# Builds build/bench/gemm_kernels (bench/kernels/gemm_kernels.cpp) against the library in build/
# (cmake --build --preset default first) and Debian's oneDNN and OpenBLAS. Usage:
#   bench/kernels/build.sh && build/bench/fma_peak && build/bench/gemm_kernels [SECONDS]
set -eu
cd "$(dirname "$0")/../.."
[ -f build/libbptt.a ] || { echo "bench/kernels/build.sh: build the library first (cmake --build --preset default)" >&2; exit 2; }
mkdir -p build/bench
${CXX:-g++} -O2 -std=c++20 -fopenmp -Iinclude -Ibuild/include -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread \
  bench/kernels/gemm_kernels.cpp build/libbptt.a -ldnnl -lopenblas -lfmt -o build/bench/gemm_kernels
[ -x build/bench/fma_peak ] || ${CXX:-g++} -O2 bench/peak/fma_peak.cpp -o build/bench/fma_peak
