// Which instruction-set level bptt's own float kernels run at.
//
// The float pointwise cell kernels (src/cells/), the packed per-step products (kernels/
// step_gemm, float and double) and the float row sums of the bias gradients are compiled once
// per x86-64 level: `baseline` (SSE2), `x86-64-v3` (AVX2 + FMA) and `x86-64-v4` (AVX-512).
// Each call runs the version of the level that is active: by default the highest one this CPU
// supports. The float64 cells (which call libm) have one version, and the matrix products of
// the libraries (OpenBLAS; oneDNN's sgemm) pick their own code (OPENBLAS_CORETYPE,
// ONEDNN_MAX_CPU_ISA).
//
// The levels round differently in the last bit (v3 and v4 contract a·b + c into FMAs); each
// gives results within the bounds the tests state, and the tests run every level the CPU has.
//
// Forcing a level, to test or to compare:
//   - the environment variable BPTT_CPU_LEVEL=baseline|x86-64-v3|x86-64-v4, read once at the
//     first kernel call (or the first call below); an unknown name or a level this CPU cannot
//     run is a bptt::Error naming the variable, never a silent fallback;
//   - set_cpu_level(), which overrides it from then on.
// Threads: the level is one process-wide setting, read with a relaxed atomic load by every
// kernel call. Change it between computations, not while another thread runs one (a call in
// flight finishes at the level it started with, the next calls may run at another).
//
// On a machine other than x86-64 (or a compiler without GCC's target attributes) only
// `baseline` is compiled.
#pragma once

#include <string_view>
#include <vector>

namespace bptt {

enum class CpuLevel { baseline, x86_64_v3, x86_64_v4 };

// "baseline", "x86-64-v3", "x86-64-v4" (the names GCC and BPTT_CPU_LEVEL use).
std::string_view to_string(CpuLevel level);

// The inverse of to_string; throws bptt::Error(ErrorKind::usage, where, ...) listing the names
// for anything else.
CpuLevel parse_cpu_level(std::string_view name, std::string_view where);

// Whether this build has `level` compiled and this CPU can run it.
bool cpu_supports(CpuLevel level);

// Every level cpu_supports(), lowest first (always starts with baseline).
std::vector<CpuLevel> supported_cpu_levels();

// The level kernel calls run at now: set_cpu_level()'s, else BPTT_CPU_LEVEL's, else the highest
// supported. Throws bptt::Error if BPTT_CPU_LEVEL names an unknown or unsupported level.
CpuLevel cpu_level();

// Makes every later kernel call run at `level`. Throws bptt::Error (and changes nothing) when
// !cpu_supports(level).
void set_cpu_level(CpuLevel level);

}  // namespace bptt
