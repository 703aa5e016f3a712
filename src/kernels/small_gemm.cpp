#include "kernels/small_gemm.hpp"

#include <cstddef>

#include "kernels/simd.hpp"

namespace bptt::kernels {

namespace {

template <class Real>
BPTT_ALWAYS_INLINE void small_m(int M, int N, int K, const Real* __restrict A, int lda,
                                const Real* __restrict Bt, int ldb, Real* __restrict C, int ldc) {
  for (int k = 0; k < K; ++k) {
    const Real* b = Bt + std::size_t(k) * ldb;
    for (int m = 0; m < M; ++m) {
      const Real a = A[std::size_t(m) * lda + k];
      Real* c = C + std::size_t(m) * ldc;
      for (int n = 0; n < N; ++n) c[n] += a * b[n];
    }
  }
}

}  // namespace

BPTT_TARGET_CLONES void gemm_small_m(int M, int N, int K, const float* A, int lda,
                                     const float* Bt, int ldb, float* C, int ldc) {
  small_m(M, N, K, A, lda, Bt, ldb, C, ldc);
}

BPTT_TARGET_CLONES void gemm_small_m(int M, int N, int K, const double* A, int lda,
                                     const double* Bt, int ldb, double* C, int ldc) {
  small_m(M, N, K, A, lda, Bt, ldb, C, ldc);
}

template <class Real>
void transpose(int rows, int cols, const Real* in, Real* out) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      out[std::size_t(c) * rows + r] = in[std::size_t(r) * cols + c];
}

template void transpose<float>(int, int, const float*, float*);
template void transpose<double>(int, int, const double*, double*);

}  // namespace bptt::kernels
