// One case of "gemm_tn_pair's two products are two gemm() calls, bit for bit", for any pair of
// entry points (kernels::gemm_tn_pair / gemm, or a Products' members): the operands with padded
// strides, C holding NaN where beta = 0 assigns, alpha = 0.75.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <limits>
#include <string>

#include "support/random.hpp"

namespace bptt::test {

// pair(M, N1, N2, K, alpha, A, lda, B1, ldb1, B2, ldb2, beta, C1, ldc1, C2, ldc2) against
// tn(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) = C = alpha·Aᵀ·B + beta·C once per product;
// a mismatch is a fatal failure naming `what` (the caller checks HasFatalFailure()).
template <class Pair, class Tn>
void expect_tn_pair_is_two_products(int M, int N1, int N2, int K, float beta, Pair pair, Tn tn,
                                    const std::string& what) {
  const int lda = M + 3, ldb1 = N1 + 1, ldb2 = N2 + 2, ldc1 = N1 + 4, ldc2 = N2 + 5;
  const auto A = uniform(std::size_t(K) * lda, unsigned(M + K));
  const auto B1 = uniform(std::size_t(K) * ldb1, 3), B2 = uniform(std::size_t(K) * ldb2, 4);
  auto C1 = uniform(std::size_t(M) * ldc1, 5), C2 = uniform(std::size_t(M) * ldc2, 6);
  if (beta == 0.0f) C1[0] = C2[0] = std::numeric_limits<float>::quiet_NaN();
  auto R1 = C1, R2 = C2;
  pair(M, N1, N2, K, 0.75f, A.data(), lda, B1.data(), ldb1, B2.data(), ldb2, beta, C1.data(), ldc1,
       C2.data(), ldc2);
  tn(M, N1, K, 0.75f, A.data(), lda, B1.data(), ldb1, beta, R1.data(), ldc1);
  tn(M, N2, K, 0.75f, A.data(), lda, B2.data(), ldb2, beta, R2.data(), ldc2);
  for (std::size_t i = 0; i < C1.size(); ++i) ASSERT_EQ(C1[i], R1[i]) << what << " C1 " << i;
  for (std::size_t i = 0; i < C2.size(); ++i) ASSERT_EQ(C2[i], R2[i]) << what << " C2 " << i;
}

}  // namespace bptt::test
