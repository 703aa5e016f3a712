// The float GEMM, gemm<float>() (kernels/gemm.hpp), at every CPU level this machine runs: the
// blocked AVX-512 kernel of kernels/sgemm.hpp at x86-64-v4, OpenBLAS below. Each result against
// the float64 sum, within the bound of float summation: |C − ref| ≤ (K + 2)·2⁻²⁴·(|init| +
// |alpha|·Σ|a·b|) per element. Shapes cross every edge of the blocked kernel: tiles of 12 rows
// and the 8, 4, 2, 1 that finish a block, more rows than a row block (96), partial panels
// (N mod 32), K past one depth block (256) and odd, every transpose, alpha and beta (beta = 0
// over NaN: assigned, never read), strides wider than the rows, one and two threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bptt/cpu.hpp"
#include "bptt/threads.hpp"
#include "kernels/gemm.hpp"
#include "kernels/sgemm.hpp"
#include "support/random.hpp"
#include "support/tn_pair.hpp"

namespace bptt::kernels {
namespace {

using test::expect_tn_pair_is_two_products;
using test::uniform;

class FloatGemm : public testing::Test {
 protected:
  void SetUp() override { saved_ = cpu_level(); }
  void TearDown() override { set_cpu_level(saved_); }

 private:
  CpuLevel saved_ = CpuLevel::baseline;
};

TEST_F(FloatGemm, AgainstFloat64AtEveryLevel) {
  struct Shape {
    int M, N, K;
  };
  for (CpuLevel level : supported_cpu_levels()) {
    set_cpu_level(level);
    for (int threads : {1, 2}) {
      ThreadCount scope(threads);
      for (Shape s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{12, 32, 256}, Shape{13, 33, 257},
                      Shape{27, 70, 40}, Shape{200, 47, 300}, Shape{97, 96, 600},
                      Shape{40, 300, 1}, Shape{255, 16, 33},
                      // a k block's panels past 1 MB: the kernel's panel-major order
                      Shape{13, 1100, 300}})
        for (bool ta : {false, true})
          for (bool tb : {false, true})
            for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{1.0f, 1.0f},
                                       std::pair{0.5f, 1.0f}, std::pair{-0.75f, 0.25f}}) {
              const int lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 1, ldc = s.N + 4;
              const auto A = uniform(std::size_t(ta ? s.K : s.M) * lda, unsigned(s.M + s.K));
              const auto B = uniform(std::size_t(tb ? s.N : s.K) * ldb, unsigned(s.N * 5 + s.K));
              std::vector<float> C0 = uniform(std::size_t(s.M) * ldc, 17);
              if (beta == 0.0f)  // assigned: NaN in C must not reach the result
                for (int i = 0; i < s.M; ++i)
                  for (int j = 0; j < s.N; ++j)
                    C0[std::size_t(i) * ldc + j] = std::numeric_limits<float>::quiet_NaN();
              std::vector<float> C = C0;
              gemm<float>(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta,
                          C.data(), ldc);
              const std::string what = std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " M " +
                                       std::to_string(s.M) + " N " + std::to_string(s.N) + " K " +
                                       std::to_string(s.K) + " alpha " + std::to_string(alpha) +
                                       " beta " + std::to_string(beta) + " level " +
                                       std::string(to_string(level)) + " threads " +
                                       std::to_string(threads);
              for (int i = 0; i < s.M; ++i) {
                for (int j = 0; j < s.N; ++j) {
                  double ref = 0, mag = 0;
                  for (int k = 0; k < s.K; ++k) {
                    const double a = ta ? A[std::size_t(k) * lda + i] : A[std::size_t(i) * lda + k];
                    const double b = tb ? B[std::size_t(j) * ldb + k] : B[std::size_t(k) * ldb + j];
                    ref += a * b;
                    mag += std::abs(a * b);
                  }
                  const double init =
                      beta == 0.0f ? 0.0 : double(beta) * C0[std::size_t(i) * ldc + j];
                  ref = init + alpha * ref;
                  const double bound =
                      (s.K + 2) * 0x1p-24 * (std::abs(init) + std::abs(alpha) * mag) + 1e-30;
                  ASSERT_LE(std::abs(C[std::size_t(i) * ldc + j] - ref), bound)
                      << what << " at " << i << "," << j;
                }
                for (int j = s.N; j < ldc; ++j)  // past the last column: untouched
                  ASSERT_EQ(C[std::size_t(i) * ldc + j], C0[std::size_t(i) * ldc + j]) << what;
              }
            }
    }
  }
}

// gemm_tn_pair's two products are gemm()'s, bit for bit: the blocked kernel packs Aᵀ once for
// both, and each element's sum runs over the same k blocks in the same order either way.
TEST_F(FloatGemm, TnPairIsTwoProducts) {
  struct Shape {
    int M, N1, N2, K;
  };
  for (CpuLevel level : supported_cpu_levels()) {
    set_cpu_level(level);
    for (int threads : {1, 2})
      for (Shape s : {Shape{1, 1, 1, 1}, Shape{12, 32, 32, 256}, Shape{97, 65, 33, 300},
                      Shape{200, 47, 5, 600}, Shape{40, 300, 64, 7}})
        for (float beta : {0.0f, 1.0f, 0.5f}) {
          ThreadCount scope(threads);
          const std::string what = "M " + std::to_string(s.M) + " N1 " + std::to_string(s.N1) +
                                   " N2 " + std::to_string(s.N2) + " K " + std::to_string(s.K) +
                                   " beta " + std::to_string(beta) + " level " +
                                   std::string(to_string(level)) + " threads " +
                                   std::to_string(threads);
          expect_tn_pair_is_two_products(
              s.M, s.N1, s.N2, s.K, beta, &gemm_tn_pair<float>,
              [](int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                 int ldb, float bt, float* c, int ldc) {
                gemm<float>(true, false, m, n, k, alpha, a, lda, b, ldb, bt, c, ldc);
              },
              what);
          if (HasFatalFailure()) return;
        }
  }
}

// The blocked kernel serves exactly the x86-64-v4 level (where the CPU has it).
TEST_F(FloatGemm, NativeAtTheAvx512LevelOnly) {
  for (CpuLevel level : supported_cpu_levels()) {
    set_cpu_level(level);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    EXPECT_EQ(sgemm::native(), level == CpuLevel::x86_64_v4) << to_string(level);
#else
    EXPECT_FALSE(sgemm::native());
#endif
  }
}

}  // namespace
}  // namespace bptt::kernels
