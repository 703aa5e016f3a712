// How the hot float kernels get SIMD code from a portable (-march-less) build.
//
// BPTT_ALWAYS_INLINE: for the elementwise functions (kernels/vmath.hpp) and the cells' kernel
// bodies. A call left inside a loop body stops vectorization of the whole loop, and GCC's
// inliner gives up on large bodies, so inlining is forced.
//
// BPTT_TARGET_CLONES: GCC function multi-versioning. On x86-64 the function is compiled three
// times (x86-64-v4: AVX-512; x86-64-v3: AVX2 + FMA; the baseline SSE2) and an ifunc picks one
// when the program loads, from the CPU it runs on. Put it on a non-template function that calls
// a BPTT_ALWAYS_INLINE template body; elsewhere it expands to nothing. The v3/v4 clones contract
// a·b + c into FMAs, so their float results may differ from the baseline's in the last bit; the
// accuracy bounds in vmath.hpp hold for all three (tests/kernels/test_vmath.cpp checks each one
// the machine can run).
#pragma once

#define BPTT_ALWAYS_INLINE [[gnu::always_inline]] inline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BPTT_HAVE_TARGET_CLONES 1
#define BPTT_TARGET_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BPTT_HAVE_TARGET_CLONES 0
#define BPTT_TARGET_CLONES
#endif
