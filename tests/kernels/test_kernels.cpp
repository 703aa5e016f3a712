// The kernels against obvious references: BLAS gemm against the triple loop for every
// transpose/beta combination, and the float tanh against double-precision tanh.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/activations.hpp"
#include "kernels/gemm.hpp"
#include "support/compare.hpp"

namespace bptt::kernels {
namespace {

template <class Real>
void check_gemm(bool ta, bool tb, Real beta) {
  const int M = 7, N = 5, K = 9;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Real> A(M * K), B(K * N), C1(M * N), C2;
  for (auto* v : {&A, &B, &C1})
    for (Real& x : *v) x = Real(u(rng));
  C2 = C1;
  const int lda = ta ? M : K, ldb = tb ? K : N;
  gemm(ta, tb, M, N, K, Real(0.7), A.data(), lda, B.data(), ldb, beta, C1.data(), N);
  gemm_naive(ta, tb, M, N, K, Real(0.7), A.data(), lda, B.data(), ldb, beta, C2.data(), N);
  // K = 9 products of numbers below 1 in size: rounding below 1e-5 of max(|C|, 1).
  test::expect_close("gemm", C1, C2, test::Tol{1e-5, 1.0});
}

TEST(Kernels, GemmMatchesNaiveForEveryTransposeAndBeta) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (double beta : {0.0, 1.0, 0.5}) {
        check_gemm<double>(ta, tb, beta);
        check_gemm<float>(ta, tb, float(beta));
      }
}

// sum_rows (compiled per CPU level in float) against a double loop: column counts around the
// 16-float vectors, rows from one to past a block; it accumulates into out.
TEST(Kernels, SumRowsAccumulatesEveryColumn) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int rows : {1, 9, 130})
    for (int cols : {1, 15, 16, 17, 70, 280}) {
      std::vector<float> in(std::size_t(rows) * cols), out(static_cast<std::size_t>(cols));
      for (float& x : in) x = float(u(rng));
      for (float& x : out) x = float(u(rng));
      std::vector<double> want(out.begin(), out.end());
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) want[std::size_t(c)] += in[std::size_t(r) * cols + c];
      sum_rows(rows, cols, in.data(), out.data());
      // rows + 1 float additions in order: rounding at most (rows + 1)·2⁻²⁴ of Σ|terms| ≤ rows + 1
      test::expect_close("sum_rows " + std::to_string(rows) + "x" + std::to_string(cols), out,
                         want, test::Tol{(rows + 1) * 6e-8, double(rows + 1)});
    }
}

TEST(Kernels, GemmWithBetaZeroIgnoresNaNInOutput) {
  std::vector<double> A = {1, 2}, B = {3, 4}, C = {std::nan("")};
  gemm(false, true, 1, 1, 2, 1.0, A.data(), 2, B.data(), 2, 0.0, C.data(), 1);
  EXPECT_EQ(C[0], 11.0);
  C = {std::nan("")};
  gemm(false, true, 1, 1, 0, 1.0, A.data(), 2, B.data(), 2, 0.0, C.data(), 1);
  EXPECT_EQ(C[0], 0.0);
}

TEST(Kernels, FloatTanhIsAccurateToAboutOneUlp) {
  double worst = 0;
  auto check = [&](float x) {
    const double exact = std::tanh(double(x));
    const double got = kernels::tanh(x);
    const double e = test::rel_error(got, exact, 1e-300);  // +inf for a non-finite result
    if (!(e <= worst)) worst = e;
    EXPECT_EQ(kernels::tanh(-x), -got) << x;  // odd
  };
  for (float x = 0; x < 12.0f; x += 1e-4f) check(x);
  for (float x = 1e-30f; x < 0.1f; x *= 1.05f) check(x);
  EXPECT_LT(worst, 2.5e-7);  // float epsilon is 1.19e-7
  EXPECT_EQ(kernels::tanh(0.0f), 0.0f);
  EXPECT_EQ(kernels::tanh(100.0f), 1.0f);
}

TEST(Kernels, SigmoidIsStableForLargeArguments) {
  EXPECT_EQ(sigmoid(1000.0), 1.0);
  EXPECT_EQ(sigmoid(-1000.0), 0.0);
  EXPECT_NEAR(sigmoid(-30.0), std::exp(-30.0), 1e-25);
  EXPECT_NEAR(sigmoid(0.3f), 1 / (1 + std::exp(-0.3)), 1e-7);
}

}  // namespace
}  // namespace bptt::kernels
