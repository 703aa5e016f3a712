#include "kernels/step_gemm.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/simd.hpp"

namespace bptt::kernels {

namespace {

// GCC vector extension: one 64-byte vector (a zmm register in the AVX-512 clone, two ymm or four
// xmm registers in the others; the code is the same).
typedef float VecF __attribute__((vector_size(64)));
typedef double VecD __attribute__((vector_size(64)));
template <class Real>
struct VecOf;
template <>
struct VecOf<float> {
  using type = VecF;
};
template <>
struct VecOf<double> {
  using type = VecD;
};
template <class Real>
using Vec = typename VecOf<Real>::type;

// C[MR rows, cols ≤ kPanel] = init + A[MR, K] · panel, where init is the row `bias` (the
// panel's part of it) when given, else C itself. Full: cols == kPanel, so C and the bias are
// read and written straight from the registers; otherwise (only the last panel) through a
// zero-padded copy. Keeping the two apart matters: with one body GCC sent every full tile's
// accumulators through the stack on their way out.
template <int MR, bool Full, class Real>
BPTT_ALWAYS_INLINE void tile(int K, const Real* __restrict A, int lda, const Real* __restrict P,
                             const Real* __restrict bias, Real* __restrict C, int ldc, int cols) {
  constexpr int L = int(64 / sizeof(Real));
  Vec<Real> acc[MR][2];
  // Two vectors from the first `cols` elements of src (zero beyond them unless Full).
  const auto load = [&](const Real* src, Vec<Real>& v0, Vec<Real>& v1) {
    if constexpr (Full) {
      std::memcpy(&v0, src, 64);
      std::memcpy(&v1, src + L, 64);
    } else {
      Real edge[2 * L] = {};
      std::copy(src, src + cols, edge);
      std::memcpy(&v0, edge, 64);
      std::memcpy(&v1, edge + L, 64);
    }
  };
  if (bias) {
    Vec<Real> b0, b1;
    load(bias, b0, b1);
    for (int m = 0; m < MR; ++m) acc[m][0] = b0, acc[m][1] = b1;
  } else {
    for (int m = 0; m < MR; ++m) load(C + std::size_t(m) * ldc, acc[m][0], acc[m][1]);
  }
  for (int k = 0; k < K; ++k) {
    Vec<Real> b0, b1;
    std::memcpy(&b0, P + std::size_t(k) * 2 * L, 64);
    std::memcpy(&b1, P + std::size_t(k) * 2 * L + L, 64);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const Real a = A[std::size_t(m) * lda + k];
      acc[m][0] += a * b0;
      acc[m][1] += a * b1;
    }
  }
  for (int m = 0; m < MR; ++m) {
    Real* c = C + std::size_t(m) * ldc;
    if constexpr (Full) {
      std::memcpy(c, &acc[m][0], 64);
      std::memcpy(c + L, &acc[m][1], 64);
    } else {
      Real edge[2 * L];
      std::memcpy(edge, &acc[m][0], 64);
      std::memcpy(edge + L, &acc[m][1], 64);
      std::copy(edge, edge + cols, c);
    }
  }
}

// Rows in blocks of kRowBlock, so that a block of A stays in cache while every panel passes
// over it (the per-step products have M = B rows: one block).
constexpr int kRowBlock = 64;

// Rows [m0, m1) of one panel's columns: tiles of 8 rows, then 4, then 1.
template <bool Full, class Real>
BPTT_ALWAYS_INLINE void tiles(int m0, int m1, int K, const Real* A, int lda, const Real* panel,
                              const Real* bias, Real* C, int ldc, int cols) {
  int m = m0;
  for (; m + 8 <= m1; m += 8)
    tile<8, Full>(K, A + std::size_t(m) * lda, lda, panel, bias, C + std::size_t(m) * ldc, ldc, cols);
  for (; m + 4 <= m1; m += 4)
    tile<4, Full>(K, A + std::size_t(m) * lda, lda, panel, bias, C + std::size_t(m) * ldc, ldc, cols);
  for (; m < m1; ++m)
    tile<1, Full>(K, A + std::size_t(m) * lda, lda, panel, bias, C + std::size_t(m) * ldc, ldc, cols);
}

template <class Real>
BPTT_ALWAYS_INLINE void packed(int M, int N, int K, const Real* A, int lda, const Real* P,
                               const Real* bias, Real* C, int ldc) {
  constexpr int NR = kPanel<Real>;
  for (int m0 = 0; m0 < M; m0 += kRowBlock) {
    const int m1 = std::min(M, m0 + kRowBlock);
    for (int n0 = 0; n0 < N; n0 += NR) {
      const Real* panel = P + std::size_t(n0) * K;
      const Real* b = bias ? bias + n0 : nullptr;
      const int cols = std::min(NR, N - n0);
      if (cols == NR)
        tiles<true>(m0, m1, K, A, lda, panel, b, C + n0, ldc, cols);
      else
        tiles<false>(m0, m1, K, A, lda, panel, b, C + n0, ldc, cols);
    }
  }
}

}  // namespace

template <class Real>
void pack_panels(bool trans, int N, int K, const Real* W, int ldw, Real* P) {
  constexpr int NR = kPanel<Real>;
  for (int n0 = 0; n0 < N; n0 += NR) {
    Real* panel = P + std::size_t(n0) * K;
    const int cols = std::min(NR, N - n0);
    if (trans) {  // column j of the panel is row n0 + j of W, read contiguously; in blocks of
                  // kKBlock rows of the panel, which stay in L1 while its columns are filled
      constexpr int kKBlock = 128;
      for (int k0 = 0; k0 < K; k0 += kKBlock) {
        const int k1 = std::min(K, k0 + kKBlock);
        for (int j = 0; j < cols; ++j) {
          const Real* w = W + std::size_t(n0 + j) * ldw;
          for (int k = k0; k < k1; ++k) panel[std::size_t(k) * NR + j] = w[k];
        }
      }
    } else {  // row k of the panel is part of row k of W
      for (int k = 0; k < K; ++k)
        std::copy(W + std::size_t(k) * ldw + n0, W + std::size_t(k) * ldw + n0 + cols,
                  panel + std::size_t(k) * NR);
    }
    if (cols < NR)
      for (int k = 0; k < K; ++k)
        std::fill(panel + std::size_t(k) * NR + cols, panel + std::size_t(k + 1) * NR, Real(0));
  }
}

BPTT_TARGET_CLONES void gemm_packed(int M, int N, int K, const float* A, int lda, const float* P,
                                    const float* bias, float* C, int ldc) {
  packed(M, N, K, A, lda, P, bias, C, ldc);
}

BPTT_TARGET_CLONES void gemm_packed(int M, int N, int K, const double* A, int lda,
                                    const double* P, const double* bias, double* C, int ldc) {
  packed(M, N, K, A, lda, P, bias, C, ldc);
}

template void pack_panels<float>(bool, int, int, const float*, int, float*);
template void pack_panels<double>(bool, int, int, const double*, int, double*);

}  // namespace bptt::kernels
