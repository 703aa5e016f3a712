#!/bin/sh
# Installs everything bptt needs to build and test, from Debian 12's packages. Run as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  cmake make g++ pkg-config \
  libopenblas-dev libdnnl-dev libcli11-dev nlohmann-json3-dev libfmt-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  libopenmpi-dev openmpi-bin \
  clang libclang-rt-14-dev libomp-dev \
  gnuplot-nox fortunes \
  python3-torch python3-numpy python3-dev pybind11-dev python3-pytest python3-hypothesis
