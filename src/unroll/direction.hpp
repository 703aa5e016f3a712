// The time frame of a right-to-left unit (bidirectional layers, include/bptt/unroll.hpp).
//
// Row τ of such a unit's buffers holds data step π_b(τ) = len_b − 1 − τ of sequence b for
// τ < len_b, and step τ itself past the length. π_b is its own inverse, and it maps a sequence's
// valid steps onto valid steps, so the unit runs the same forward recursion over τ as a left-to-
// right unit over t, with the same valid mask, and starts at the sequence's last valid step
// exactly as PyTorch's packed sequences do. Converting a buffer between the frames is one
// permutation of its rows, done by permute_steps in either direction.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace bptt::unroll {

// The data step of row τ of a right-to-left unit, for a sequence of length len (and back).
inline int reversed_step(int tau, int len) { return tau < len ? len - 1 - tau : tau; }

// Moves the rows of steps t in [t0, t1) between a unit's frame and data order, for every
// sequence b, with s = π_b(t) when reverse, else s = t: Scatter false (gather) sets
// dst[t − t0, b, ·] from src[s, b, ·]; Scatter true sets dst[s, b, ·] from src[t − t0, b, ·]
// (accumulate: += instead of =). Rows of src are lds apart, of dst ldd apart (either may be a
// column block of a wider matrix); they do not overlap.
template <bool Scatter, class Real>
void move_steps(bool reverse, const std::vector<int>& len, int t0, int t1, int B, int width,
                const Real* src, std::size_t lds, Real* dst, std::size_t ldd, bool accumulate) {
  for (int t = t0; t < t1; ++t)
    for (int b = 0; b < B; ++b) {
      const std::size_t s = std::size_t(reverse ? reversed_step(t, len[std::size_t(b)]) : t);
      const std::size_t from_step = Scatter ? std::size_t(t - t0) : s,
                        to_step = Scatter ? s : std::size_t(t - t0);
      const Real* from = src + (from_step * B + std::size_t(b)) * lds;
      Real* to = dst + (to_step * B + std::size_t(b)) * ldd;
      if (accumulate)
        for (int j = 0; j < width; ++j) to[j] += from[j];
      else
        std::copy(from, from + width, to);
    }
}

// Rows t0..t1 of a unit's frame gathered from a buffer in data order (or data order from the
// frame: π is its own inverse).
template <class Real>
void permute_steps(bool reverse, const std::vector<int>& len, int t0, int t1, int B, int width,
                   const Real* src, std::size_t lds, Real* dst, std::size_t ldd,
                   bool accumulate = false) {
  move_steps<false>(reverse, len, t0, t1, B, width, src, lds, dst, ldd, accumulate);
}

// The inverse of permute_steps: rows t0..t1 of a unit's frame (src, from its row 0) put back in
// data order.
template <class Real>
void scatter_steps(bool reverse, const std::vector<int>& len, int t0, int t1, int B, int width,
                   const Real* src, std::size_t lds, Real* dst, std::size_t ldd,
                   bool accumulate = false) {
  move_steps<true>(reverse, len, t0, t1, B, width, src, lds, dst, ldd, accumulate);
}

// A unit's buffer [T, B, width] (its own frame) in data order, contiguous.
template <class Real>
void to_data_order(bool reverse, const std::vector<int>& len, int T, int B, int width,
                   const Real* src, Real* dst) {
  permute_steps(reverse, len, 0, T, B, width, src, std::size_t(width), dst, std::size_t(width));
}

}  // namespace bptt::unroll
