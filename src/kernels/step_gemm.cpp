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

// acc[m] += A[m, 0..K) · P over the K rows of one panel.
template <int MR, class Real>
BPTT_ALWAYS_INLINE void accumulate(Vec<Real> (&acc)[MR][2], int K, const Real* __restrict A,
                                   int lda, const Real* __restrict P) {
  constexpr int L = int(64 / sizeof(Real));
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
}

// The second source of a tile: A2[MR, K2] · P2 added after the first (K2 = 0: none).
template <class Real>
struct Source {
  int K = 0;
  const Real* A = nullptr;
  int lda = 0;
  const Real* P = nullptr;
};

// C[MR rows, cols ≤ kPanel] = init + A[MR, K] · panel (+ second.A · second.P when given), where
// init is the row `bias` (the panel's part of it) when given, else C itself. Full: cols ==
// kPanel, so C and the bias are read and written straight from the registers; otherwise (only
// the last panel) through a zero-padded copy. Keeping the two apart matters: with one body GCC
// sent every full tile's accumulators through the stack on their way out.
template <int MR, bool Full, class Real>
BPTT_ALWAYS_INLINE void tile(int K, const Real* __restrict A, int lda, const Real* __restrict P,
                             const Real* __restrict bias, Real* __restrict C, int ldc, int cols,
                             Source<Real> second = {}) {
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
  accumulate<MR>(acc, K, A, lda, P);
  if (second.K > 0) accumulate<MR>(acc, second.K, second.A, second.lda, second.P);
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

// Rows [m, m + MR) of C = bias + A1·P1 + A2·P2 across every panel.
template <int MR, class Real>
BPTT_ALWAYS_INLINE void pair_rows(int m, int N, int K1, const Real* A1, int lda1, const Real* P1,
                                  int K2, const Real* A2, int lda2, const Real* P2,
                                  const Real* bias, Real* C, int ldc) {
  constexpr int NR = kPanel<Real>;
  const Real* a1 = A1 + std::size_t(m) * lda1;
  Real* c = C + std::size_t(m) * ldc;
  for (int n0 = 0; n0 < N; n0 += NR) {
    const int cols = std::min(NR, N - n0);
    const Source<Real> second{K2, A2 + std::size_t(m) * lda2, lda2, P2 + std::size_t(n0) * K2};
    const Real* p1 = P1 + std::size_t(n0) * K1;
    if (cols == NR)
      tile<MR, true>(K1, a1, lda1, p1, bias + n0, c + n0, ldc, cols, second);
    else
      tile<MR, false>(K1, a1, lda1, p1, bias + n0, c + n0, ldc, cols, second);
  }
}

// C = bias + A1·P1 + A2·P2, tile-major: each tile of rows goes across all panels, so its rows
// of A1 and A2 stay in L1 while the panels stream from L2 (panel-major, as in packed(), reread
// the rows of both sources for every panel and ran 2-5% slower in the step). pair_rows is a
// function, not a lambda: GCC compiled such a lambda out of line for the baseline target instead
// of the caller's clone, which made the step 30 times slower.
template <class Real>
BPTT_ALWAYS_INLINE void packed_pair(int M, int N, int K1, const Real* A1, int lda1, const Real* P1,
                                    int K2, const Real* A2, int lda2, const Real* P2,
                                    const Real* bias, Real* C, int ldc) {
  int m = 0;
  for (; m + 8 <= M; m += 8) pair_rows<8>(m, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);
  for (; m + 4 <= M; m += 4) pair_rows<4>(m, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);
  for (; m < M; ++m) pair_rows<1>(m, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);
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

BPTT_PER_CPU_LEVEL(void, gemm_packed,
                   (int M, int N, int K, const float* A, int lda, const float* P,
                    const float* bias, float* C, int ldc),
                   (M, N, K, A, lda, P, bias, C, ldc), packed(M, N, K, A, lda, P, bias, C, ldc);)

BPTT_PER_CPU_LEVEL(void, gemm_packed,
                   (int M, int N, int K, const double* A, int lda, const double* P,
                    const double* bias, double* C, int ldc),
                   (M, N, K, A, lda, P, bias, C, ldc), packed(M, N, K, A, lda, P, bias, C, ldc);)

BPTT_PER_CPU_LEVEL(void, gemm_packed_pair,
                   (int M, int N, int K1, const float* A1, int lda1, const float* P1, int K2,
                    const float* A2, int lda2, const float* P2, const float* bias, float* C,
                    int ldc),
                   (M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc),
                   packed_pair(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);)

BPTT_PER_CPU_LEVEL(void, gemm_packed_pair,
                   (int M, int N, int K1, const double* A1, int lda1, const double* P1, int K2,
                    const double* A2, int lda2, const double* P2, const double* bias, double* C,
                    int ldc),
                   (M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc),
                   packed_pair(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);)

template void pack_panels<float>(bool, int, int, const float*, int, float*);
template void pack_panels<double>(bool, int, int, const double*, int, double*);

}  // namespace bptt::kernels
