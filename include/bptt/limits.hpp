// Limits checked before allocating: what a file or the options ask for is compared with the
// memory the machine has, so that an absurd size is refused with an error saying how much it
// needed instead of failing (or thrashing) halfway through an allocation.
#pragma once

#include <cstdint>
#include <string>

namespace bptt {

// The bytes this process may allocate: the machine's physical memory (sysconf), lowered by
// RLIMIT_AS / RLIMIT_DATA when those are set, and by the environment variable
// BPTT_MEMORY_LIMIT_MB when it holds a positive number (for tests and shared machines).
std::uint64_t memory_limit_bytes();

// Throws bptt::Error(ErrorKind::resource, where,
//                    "<what> needs <N> MB but only <M> MB of memory are available", hint)
// when `bytes` exceeds memory_limit_bytes(). Sizes computed in double (`bytes` may be an
// estimate that would overflow 64 bits) are accepted as they are.
void check_memory(double bytes, const std::string& where, const std::string& what,
                  const std::string& hint);

// "12.3 MB", "4.5 GB", "1.2e+09 GB": a byte count for error messages.
std::string format_bytes(double bytes);

}  // namespace bptt
