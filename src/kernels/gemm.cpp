#include "kernels/gemm.hpp"

#include "bptt/types.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "bptt/threads.hpp"
#include "kernels/sgemm.hpp"
#include "kernels/simd.hpp"

namespace bptt::kernels {

namespace {

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

void blas(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, std::max(lda, 1), B,
              std::max(ldb, 1), beta, C, std::max(ldc, 1));
}
void blas(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, std::max(lda, 1), B,
              std::max(ldb, 1), beta, C, std::max(ldc, 1));
}

}  // namespace

int product_threads(int M, int N, int K) {
  if (omp_in_parallel()) return 1;
  const double flops = 2.0 * M * N * K;
  return std::max(1, std::min(ThreadCount::current(), int(flops / kMinFlopsPerThread)));
}

namespace {

// C = alpha·op(A)·op(B) + beta·C through OpenBLAS on our threads (split_product). One threading
// model: OpenBLAS is set to one thread once, before its first call here, so its own pool never
// competes with our parallel regions.
template <class Real>
void blas_on_our_threads(bool ta, bool tb, int M, int N, int K, Real alpha, const Real* A,
                         int lda, const Real* B, int ldb, Real beta, Real* C, int ldc) {
  static const bool single = (openblas_set_num_threads(1), true);
  (void)single;
  split_product(ta, tb, M, N, K, A, lda, B, ldb, C, ldc,
                [&](int m, int n, const Real* a, const Real* b, Real* c) {
                  blas(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, c, ldc);
                });
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale(M, N, beta, C, ldc);
  // At the AVX-512 level our blocked kernel (kernels/sgemm.hpp): it replaced oneDNN's dnnl_sgemm,
  // which ran the weight-gradient products of LSTM shape b at 62-68% of a Zen 5 core's FMA peak;
  // on an AVX2 CPU, and for float64, OpenBLAS.
  if (sgemm::native()) return sgemm::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  blas_on_our_threads(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                  const double* B, int ldb, double beta, double* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale(M, N, beta, C, ldc);
  blas_on_our_threads(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class Real>
void gemm_tn_pair(int M, int N1, int N2, int K, Real alpha, const Real* A, int lda, const Real* B1,
                  int ldb1, const Real* B2, int ldb2, Real beta, Real* C1, int ldc1, Real* C2,
                  int ldc2) {
  if constexpr (std::is_same_v<Real, float>)
    if (sgemm::native() && N1 > 0 && N2 > 0)
      return sgemm::gemm_tn_pair(M, N1, N2, K, alpha, A, lda, B1, ldb1, B2, ldb2, beta, C1, ldc1,
                                 C2, ldc2);
  gemm<Real>(true, false, M, N1, K, alpha, A, lda, B1, ldb1, beta, C1, ldc1);
  gemm<Real>(true, false, M, N2, K, alpha, A, lda, B2, ldb2, beta, C2, ldc2);
}

template <class Real>
void scale(int M, int N, Real beta, Real* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      Real& c = C[std::size_t(i) * ldc + j];
      c = beta == Real(0) ? Real(0) : beta * c;
    }
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
  template void gemm_tn_pair<Real>(int, int, int, int, Real, const Real*, int, const Real*, int, \
                                   const Real*, int, Real, Real*, int, Real*, int);             \
  template void scale<Real>(int, int, Real, Real*, int);                                       \
  template void gemm_naive<Real>(bool, bool, int, int, int, Real, const Real*, int, const Real*, \
                                 int, Real, Real*, int);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt::kernels
