// Buffers that start at a cache line. A std::vector's storage from glibc's malloc starts 16 bytes
// past one (large blocks are mmap'ed pages behind a 16-byte header), so every 64-byte vector load
// and every row of an AMX tile read from it touches two lines. On a Xeon (Sapphire Rapids class)
// aligning the workspace and the bf16 kernels' buffers made LSTM shape b's bf16 training 1.6×
// faster and its float training 8% (docs/benchmarks.md, issue 19 part 9); Zen cores mind less.
//
// The vectors keep their element type and allocator: a buffer is sized with line_slack<T>()
// elements more than it needs, and its contents start at line_start(v.data()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace bptt::support {

inline constexpr std::size_t kCacheLine = 64;

// Elements of T in one cache line: the slack a buffer needs, and what offsets round up to.
template <class T>
constexpr std::size_t line_slack() {
  static_assert(kCacheLine % sizeof(T) == 0, "an element size that divides a cache line");
  return kCacheLine / sizeof(T);
}

// The first element of p's storage at or past p that starts a cache line (p itself when it
// does); p must be aligned to sizeof(T).
template <class T>
T* line_start(T* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  return p + (kCacheLine - at % kCacheLine) % kCacheLine / sizeof(T);
}

// n rounded up to whole cache lines of T: the offsets of buffers carved one after the other.
template <class T>
constexpr std::size_t whole_lines(std::size_t n) {
  return (n + line_slack<T>() - 1) / line_slack<T>() * line_slack<T>();
}

// An allocator whose blocks start at a cache line (glibc's large blocks start 16 bytes past one,
// so each 64-byte load of a packed panel or a row would read two lines), for buffers that the
// kernels stream: LineVector<T> is a std::vector of them.
template <class T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine)));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kCacheLine)); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const noexcept {
    return true;
  }
};
template <class T>
using LineVector = std::vector<T, LineAllocator<T>>;

}  // namespace bptt::support
