// How the hot float kernels get SIMD code from a portable (-march-less) build.
//
// BPTT_ALWAYS_INLINE: for the elementwise functions (kernels/vmath.hpp) and the cells' kernel
// bodies. A call left inside a loop body stops vectorization of the whole loop, and GCC's
// inliner gives up on large bodies, so inlining is forced.
//
// BPTT_PER_CPU_LEVEL(RET, NAME, (PARAMS), (ARGS), BODY...): defines `RET NAME(PARAMS)` whose
// BODY is compiled three times on x86-64 with GCC (arch=x86-64-v4: AVX-512; x86-64-v3: AVX2 +
// FMA; the baseline SSE2) and dispatches every call on bptt::cpu_level() (bptt/cpu.hpp: the
// highest level the CPU has, or the one BPTT_CPU_LEVEL or set_cpu_level() forces, so that tests
// can run each). Use it on a non-template function whose BODY calls a BPTT_ALWAYS_INLINE template
// (the body is then compiled for the level); elsewhere it defines NAME with BODY once. The v3/v4
// versions contract a·b + c into FMAs, so their float results may differ from the baseline's in
// the last bit; the accuracy bounds in vmath.hpp hold for all three (tests/kernels/test_vmath.cpp
// checks each one the machine can run). The dispatch is one relaxed atomic load and a switch per
// call, next to kernels that each process a whole step (B rows).
#pragma once

#define BPTT_ALWAYS_INLINE [[gnu::always_inline]] inline

#include "bptt/cpu.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BPTT_HAVE_CPU_LEVELS 1
#define BPTT_PER_CPU_LEVEL(RET, NAME, PARAMS, ARGS, ...)             \
  [[gnu::target("arch=x86-64-v4")]] RET NAME##_x86_64_v4 PARAMS {    \
    __VA_ARGS__                                                      \
  }                                                                  \
  [[gnu::target("arch=x86-64-v3")]] RET NAME##_x86_64_v3 PARAMS {    \
    __VA_ARGS__                                                      \
  }                                                                  \
  RET NAME##_baseline PARAMS { __VA_ARGS__ }                         \
  RET NAME PARAMS {                                                  \
    switch (::bptt::cpu_level()) {                                   \
      case ::bptt::CpuLevel::x86_64_v4: return NAME##_x86_64_v4 ARGS; \
      case ::bptt::CpuLevel::x86_64_v3: return NAME##_x86_64_v3 ARGS; \
      case ::bptt::CpuLevel::baseline: break;                        \
    }                                                                \
    return NAME##_baseline ARGS;                                     \
  }
#else
#define BPTT_HAVE_CPU_LEVELS 0
#define BPTT_PER_CPU_LEVEL(RET, NAME, PARAMS, ARGS, ...) \
  RET NAME PARAMS { __VA_ARGS__ }
#endif
