// The matrix kernels. gemm() is the project's one BLAS call site; gemm_naive() is the obvious
// triple loop it is tested against.
//
// Row-major: C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C, where op(A) = A or Aᵀ
// (trans_a) and lda/ldb/ldc are row strides of the matrices as stored. beta = 0 assigns (C's old
// contents are ignored, even NaN); beta = 1 accumulates.
#pragma once

namespace bptt::kernels {

// A product of fewer FLOPs than this per thread runs on one thread: about 0.1 ms of work. Below
// it, on shape c of the benchmarks (B = 1, H = 32: products of 1-8 MFLOP), two threads were
// slower than one; 2e6 still left LSTM training there 5% slower.
inline constexpr double kMinFlopsPerThread = 1e7;

template <class Real>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, Real alpha, const Real* A, int lda,
          const Real* B, int ldb, Real beta, Real* C, int ldc);

template <class Real>
void gemm_naive(bool trans_a, bool trans_b, int M, int N, int K, Real alpha, const Real* A,
                int lda, const Real* B, int ldb, Real beta, Real* C, int ldc);

// out[c] += Σ_r in[r, c] (the bias gradient of a batch of rows); in and out do not overlap.
// The float version is compiled per x86-64 level (kernels/simd.hpp).
template <class Real>
void sum_rows(int rows, int cols, const Real* in, Real* out);

}  // namespace bptt::kernels
