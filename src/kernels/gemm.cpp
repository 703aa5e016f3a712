#include "kernels/gemm.hpp"

#include "bptt/types.hpp"

#include <cblas.h>
#include <omp.h>
#ifdef BPTT_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#include <algorithm>
#include <cstddef>
#include <string>

#include "bptt/error.hpp"
#include "kernels/simd.hpp"

namespace bptt {
// Our parallel regions and oneDNN use OpenMP's threads; OpenBLAS (float64) has its own pool.
void set_num_threads(int n) {
  openblas_set_num_threads(n);
  omp_set_num_threads(n);
}
}  // namespace bptt

namespace bptt::kernels {

namespace {

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

template <class Real>
void scale(int M, int N, Real beta, Real* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      Real& c = C[std::size_t(i) * ldc + j];
      c = beta == Real(0) ? Real(0) : beta * c;
    }
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale(M, N, beta, C, ldc);
#ifdef BPTT_HAVE_DNNL
  // oneDNN's sgemm is row-major like ours and JIT-compiled for the machine's widest vectors
  // (AVX-512 here): about twice OpenBLAS's Haswell kernels on our shapes (docs/benchmarks.md).
  // It splits work over OpenMP's threads; a product too small to pay for waking them runs on
  // this one (shape c of the benchmarks was slower with two threads than with one).
  const int threads = omp_get_max_threads();
  const bool alone = threads > 1 && 2.0 * M * N * K < kMinFlopsPerThread * threads;
  if (alone) omp_set_num_threads(1);
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A,
                                      std::max(lda, 1), B, std::max(ldb, 1), beta, C,
                                      std::max(ldc, 1));
  if (alone) omp_set_num_threads(threads);
  if (st != dnnl_success)
    throw Error("dnnl_sgemm", "failed with status " + std::to_string(int(st)),
                "report this with the model's sizes");
#else
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, std::max(lda, 1), B,
              std::max(ldb, 1), beta, C, std::max(ldc, 1));
#endif
}

template <>
void gemm<double>(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                  const double* B, int ldb, double beta, double* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale(M, N, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, std::max(lda, 1), B,
              std::max(ldb, 1), beta, C, std::max(ldc, 1));
}

template <class Real>
void gemm_naive(bool ta, bool tb, int M, int N, int K, Real alpha, const Real* A, int lda,
                const Real* B, int ldb, Real beta, Real* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      Real acc = 0;
      for (int k = 0; k < K; ++k) {
        Real a = ta ? A[std::size_t(k) * lda + i] : A[std::size_t(i) * lda + k];
        Real b = tb ? B[std::size_t(j) * ldb + k] : B[std::size_t(k) * ldb + j];
        acc += a * b;
      }
      Real& c = C[std::size_t(i) * ldc + j];
      c = alpha * acc + (beta == Real(0) ? Real(0) : beta * c);
    }
}

namespace {

template <class Real>
BPTT_ALWAYS_INLINE void sum_rows_body(int rows, int cols, const Real* __restrict in,
                                      Real* __restrict out) {
  for (int r = 0; r < rows; ++r) {
    const Real* __restrict i = in + std::size_t(r) * cols;
    for (int c = 0; c < cols; ++c) out[c] += i[c];
  }
}

BPTT_PER_CPU_LEVEL(void, sum_rows_f32, (int rows, int cols, const float* in, float* out),
                   (rows, cols, in, out), sum_rows_body(rows, cols, in, out);)

}  // namespace

template <>
void sum_rows<float>(int rows, int cols, const float* in, float* out) {
  sum_rows_f32(rows, cols, in, out);
}

template <>
void sum_rows<double>(int rows, int cols, const double* in, double* out) {
  sum_rows_body(rows, cols, in, out);
}

#define BPTT_INSTANTIATE(Real)                                                                 \
  template void gemm_naive<Real>(bool, bool, int, int, int, Real, const Real*, int, const Real*, \
                                 int, Real, Real*, int);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt::kernels
