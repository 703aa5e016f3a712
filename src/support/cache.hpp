// What the size rules of the kernels and the unroller read about the machine: one core's L2
// cache and whether the CPU is Intel's (where the same rule measured differently than on AMD's;
// the rules that ask say what was measured).
#pragma once

#include <unistd.h>

#include <cstddef>

namespace bptt::support {

// One core's L2 cache in bytes; 0 where the system does not say (the rules then keep a default).
inline std::size_t l2_bytes() {
  static const std::size_t bytes = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? std::size_t(l2) : std::size_t(0);
  }();
  return bytes;
}

// An Intel CPU (x86-64 with GCC or clang; false elsewhere).
inline bool intel_cpu() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool intel = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") != 0;
  }();
  return intel;
#else
  return false;
#endif
}

}  // namespace bptt::support
