// Matrix products of a few rows: the per-step products of small batches (B ≤ kSmallRows), where
// a BLAS call costs more than its arithmetic (shape c of bench/: B = 1, H = 32, T = 1000).
#pragma once

namespace bptt::kernels {

// Batches up to this many rows take gemm_small_m in the time loop.
inline constexpr int kSmallRows = 4;

// C[M, N] += A[M, K] · Bt[K, N], all row-major with row strides lda, ldb, ldc (ACCUMULATES).
// The k loop is outermost, so each row of Bt is read once for all M rows, and the inner loop is
// an axpy over N that vectorizes without reassociating sums (no -ffast-math needed). Compiled per
// x86-64 level (BPTT_TARGET_CLONES, kernels/simd.hpp).
void gemm_small_m(int M, int N, int K, const float* A, int lda, const float* Bt, int ldb,
                  float* C, int ldc);
void gemm_small_m(int M, int N, int K, const double* A, int lda, const double* Bt, int ldb,
                  double* C, int ldc);

// out[c, r] = in[r, c] for in [rows, cols] (ASSIGNS out [cols, rows]).
template <class Real>
void transpose(int rows, int cols, const Real* in, Real* out);

}  // namespace bptt::kernels
