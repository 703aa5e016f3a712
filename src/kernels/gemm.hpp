// The matrix kernels. gemm() is the project's one BLAS call site (and, at the AVX-512 level, the
// door to our own float kernel, kernels/sgemm.hpp); gemm_naive() is the obvious triple loop it is
// tested against.
//
// Row-major: C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C, where op(A) = A or Aᵀ
// (trans_a) and lda/ldb/ldc are row strides of the matrices as stored. beta = 0 assigns (C's old
// contents are ignored, even NaN); beta = 1 accumulates.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>

namespace bptt::kernels {

// A product of fewer FLOPs than this per thread runs on one thread: about 0.1 ms of work. Below
// it, on shape c of the benchmarks (B = 1, H = 32: products of 1-8 MFLOP), two threads were
// slower than one; 2e6 still left LSTM training there 5% slower.
inline constexpr double kMinFlopsPerThread = 1e7;

// How many threads a product of M·N·K gets: the calling thread's count (bptt/threads.hpp), fewer
// when each would have less than kMinFlopsPerThread, one inside a parallel region (a direction's
// share of the threads, or a caller's own team).
int product_threads(int M, int N, int K);

// A product C[M, N] (+)= op(A)·op(B) on product_threads(M, N, K) threads: C's rows (or its
// columns, when it has more of them) cut into one contiguous part per thread, each part
// part(m, n, A', B', C') of m × n with the same strides, a single-threaded call. Part boundaries
// fall on multiples of 16 elements (whole vectors of the kernels), the last part
// taking the rest.
template <class Real, class Part>
void split_product(bool ta, bool tb, int M, int N, int K, const Real* A, int lda, const Real* B,
                   int ldb, Real* C, int ldc, Part part) {
  const int parts = product_threads(M, N, K);
  if (parts == 1) return part(M, N, A, B, C);
  const bool by_rows = M >= N;
  const int n = by_rows ? M : N;
  const auto edge = [&](int p) { return p == parts ? n : (n * p / parts) / 16 * 16; };
#pragma omp parallel for num_threads(parts) schedule(static)
  for (int p = 0; p < parts; ++p) {
    const int a = edge(p), b = edge(p + 1);
    if (b <= a) continue;
    if (by_rows)  // rows a..b of op(A) and C
      part(b - a, N, ta ? A + a : A + std::size_t(a) * lda, B, C + std::size_t(a) * ldc);
    else  // columns a..b of op(B) and C
      part(M, b - a, A, tb ? B + std::size_t(a) * ldb : B + a, C + a);
  }
}

template <class Real>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, Real alpha, const Real* A, int lda,
          const Real* B, int ldb, Real beta, Real* C, int ldc);

// C[M, N] = beta · C (row stride ldc); beta = 0 assigns 0, whatever C held (even NaN).
template <class Real>
void scale(int M, int N, Real beta, Real* C, int ldc);

// Two products with one Aᵀ: C1 = alpha·Aᵀ·B1 + beta·C1 and C2 = alpha·Aᵀ·B2 + beta·C2, with A
// [K, M] (row stride lda), B1 [K, N1] and B2 [K, N2] (row strides ldb1, ldb2), each with gemm()'s
// contract: a layer's weight gradients dW_hh = dGᵀ·H and dW_ih = dGᵀ·X from one gradient dG (an
// Elman or LSTM layer, whose h-side and x-side pre-activation gradients are the same). The
// blocked kernels (kernels/sgemm.hpp, kernels/bf16.hpp) read and pack Aᵀ once for both;
// elsewhere it is two gemm() calls.
template <class Real>
void gemm_tn_pair(int M, int N1, int N2, int K, Real alpha, const Real* A, int lda, const Real* B1,
                  int ldb1, const Real* B2, int ldb2, Real beta, Real* C1, int ldc1, Real* C2,
                  int ldc2);

// One product of a blocked kernel's call: C[·, N] (row stride ldc) from op(B) [K, N] (B's row
// stride ldb). A call forms one (gemm) or two (gemm_tn_pair) from the same op(A); each block of
// op(A) is packed once for all of them, their panels one product after the other.
template <class Real>
struct BlockedOut {
  const Real* B = nullptr;
  int ldb = 0, N = 0;
  Real* C = nullptr;
  int ldc = 0;
};

// Panel p of NR columns across the products outs, in order: its product and first column.
template <class Real>
struct PanelOf {
  const BlockedOut<Real>* out;
  int n0, cols;
};
template <class Real>
PanelOf<Real> panel_of(int p, int NR, const BlockedOut<Real>* outs, int count) {
  for (int i = 0; i + 1 < count; ++i) {
    const int panels = (outs[i].N + NR - 1) / NR;
    if (p < panels) return {&outs[i], p * NR, std::min(NR, outs[i].N - p * NR)};
    p -= panels;
  }
  return {&outs[count - 1], p * NR, std::min(NR, outs[count - 1].N - p * NR)};
}

// The panels of NR columns that outs[0..count) take together.
template <class Real>
int panel_count(int NR, const BlockedOut<Real>* outs, int count) {
  int panels = 0;
  for (int i = 0; i < count; ++i) panels += (outs[i].N + NR - 1) / NR;
  return panels;
}

// gemm() through a blocked single-threaded kernel of ours (kernels/sgemm.hpp, kernels/bf16.hpp):
// part(ta, tb, m, K, alpha, A', lda, assign, outs, count) forms each out's
// C'[m, N'] = alpha·op(A')·op(B') + (assign ? 0 : C') with the strides of A, B and C. beta = 0 assigns (C's old contents are
// ignored, even NaN) inside the kernel, in its first k block, unless there is none; another beta
// scales C first. The rows or columns go to the threads by split_product.
template <class Real, class Part>
void blocked_gemm(bool ta, bool tb, int M, int N, int K, Real alpha, const Real* A, int lda,
                  const Real* B, int ldb, Real beta, Real* C, int ldc, Part part) {
  if (M == 0 || N == 0) return;
  const bool assign = beta == Real(0) && K > 0 && alpha != Real(0);
  if (beta != Real(1) && !assign) scale(M, N, beta, C, ldc);
  if (K == 0 || alpha == Real(0)) return;
  split_product(ta, tb, M, N, K, A, lda, B, ldb, C, ldc,
                [&](int m, int n, const Real* a, const Real* b, Real* c) {
                  const BlockedOut<Real> out{b, ldb, n, c, ldc};
                  part(ta, tb, m, K, alpha, a, lda, assign, &out, 1);
                });
}

// gemm_tn_pair() through a blocked kernel, part as blocked_gemm's with two products. The rows of
// op(A) go to the threads (never the columns: they are two matrices).
template <class Real, class Part>
void blocked_gemm_tn_pair(int M, int N1, int N2, int K, Real alpha, const Real* A, int lda,
                          const Real* B1, int ldb1, const Real* B2, int ldb2, Real beta, Real* C1,
                          int ldc1, Real* C2, int ldc2, Part part) {
  if (M == 0) return;
  const bool assign = beta == Real(0) && K > 0 && alpha != Real(0);
  if (beta != Real(1) && !assign) {
    scale(M, N1, beta, C1, ldc1);
    scale(M, N2, beta, C2, ldc2);
  }
  if (K == 0 || alpha == Real(0)) return;
  const int parts = product_threads(M, N1 + N2, K);
  const auto edge = [&](int p) { return p == parts ? M : (M * p / parts) / 16 * 16; };
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
  for (int p = 0; p < parts; ++p) {
    const int a = edge(p), b = edge(p + 1);
    const BlockedOut<Real> outs[2] = {{B1, ldb1, N1, C1 + std::size_t(a) * ldc1, ldc1},
                                      {B2, ldb2, N2, C2 + std::size_t(a) * ldc2, ldc2}};
    if (b > a) part(true, false, b - a, K, alpha, A + a, lda, assign, outs, 2);
  }
}

template <class Real>
void gemm_naive(bool trans_a, bool trans_b, int M, int N, int K, Real alpha, const Real* A,
                int lda, const Real* B, int ldb, Real beta, Real* C, int ldc);

// out[c] += Σ_r in[r, c] (the bias gradient of a batch of rows); in and out do not overlap.
// The float version is compiled per x86-64 level (kernels/simd.hpp).
template <class Real>
void sum_rows(int rows, int cols, const Real* in, Real* out);

}  // namespace bptt::kernels
