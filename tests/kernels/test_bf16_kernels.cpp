// The bf16 products (kernels/matmul.hpp, kernels/bf16.hpp) at every CPU level this machine runs:
// the AVX512-BF16 kernels where the CPU has them (x86-64-v4; there both on the AMX tiles and on
// vdpbf16ps where the CPU has AMX-BF16 too), the float emulation elsewhere. Each
// result against the float64 sum of the exact products of the rounded operands, within the
// bound of float summation: |C − ref| ≤ (K + 2)·2⁻²⁴·(|init| + Σ|a·w|) per element. Shapes cross
// every edge of the kernels: 1, odd and even K (pairs), K past one depth block (512), partial
// panels (N mod 32), row tiles of 8, 4, 2 and 1 (and the tiles' 32 and 16 rows, depths that are
// not whole tiles, K at the tiles' lower limit 32), more rows than a row block (64), column parts
// of a packed buffer, strides wider than the rows, both threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "bptt/cpu.hpp"
#include "bptt/precision.hpp"
#include "bptt/threads.hpp"
#include "kernels/bf16.hpp"
#include "kernels/matmul.hpp"
#include "kernels/step_gemm.hpp"
#include "support/random.hpp"
#include "support/tn_pair.hpp"

namespace bptt::test {
namespace {

using kernels::round_bf16;

using test::uniform;

// Checks C[M, N] (row stride ldc) against init(i, j) + alpha · Σ_k a(i, k)·w(k, j) of rounded
// operands in float64.
template <class InitF, class AF, class WF>
void expect_sums(const char* what, int M, int N, int K, const float* C, int ldc, float alpha,
                 InitF init, AF a, WF w) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double ref = 0, mag = 0;
      for (int k = 0; k < K; ++k) {
        const double t = double(round_bf16(a(i, k))) * double(round_bf16(w(k, j)));
        ref += t;
        mag += std::abs(t);
      }
      const double i0 = init(i, j);
      ref = i0 + alpha * ref;
      const double bound = (K + 2) * 0x1p-24 * (std::abs(i0) + std::abs(alpha) * mag) + 1e-30;
      const double got = C[std::size_t(i) * ldc + j];
      ASSERT_LE(std::abs(got - ref), bound)
          << what << " M " << M << " N " << N << " K " << K << " at " << i << "," << j << " level "
          << to_string(cpu_level());
    }
}

// Runs the body at every CPU level the machine runs, and at x86-64-v4 both with and without the
// AMX tiles where the CPU has them; restores the level and the tiles after.
class Bf16Kernels : public testing::Test {
 protected:
  void SetUp() override {
    saved_ = cpu_level();
    saved_amx_ = kernels::bf16::set_amx(true);
  }
  void TearDown() override {
    set_cpu_level(saved_);
    kernels::bf16::set_amx(saved_amx_);
  }
  template <class Body>
  void at_every_level(Body body) {
    for (CpuLevel l : supported_cpu_levels()) {
      set_cpu_level(l);
      for (bool tiles : {false, true}) {
        if (tiles && !(l == CpuLevel::x86_64_v4 && kernels::bf16::amx_available())) continue;
        kernels::bf16::set_amx(tiles);
        body();
        if (HasFatalFailure()) return;
      }
    }
  }

 private:
  CpuLevel saved_ = CpuLevel::baseline;
  bool saved_amx_ = false;
};

TEST_F(Bf16Kernels, NativeWhereTheCpuHasIt) {
  const bool v4 = cpu_supports(CpuLevel::x86_64_v4);
  if (v4) set_cpu_level(CpuLevel::x86_64_v4);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  EXPECT_EQ(kernels::bf16::native(), v4 && cpu_has_bf16());
#else
  EXPECT_FALSE(kernels::bf16::native());
#endif
  if (!kernels::bf16::native())
    std::printf("note: no AVX512-BF16 kernels on this CPU or build; the emulation alone is tested\n");
  else if (!kernels::bf16::amx_available())
    std::printf("note: no AMX-BF16 tiles on this CPU, build or kernel; vdpbf16ps alone is tested\n");
  // The tiles only where the bf16 kernels run, and only when asked for.
  kernels::bf16::set_amx(true);
  EXPECT_EQ(kernels::bf16::amx(), kernels::bf16::native() && kernels::bf16::amx_available());
  kernels::bf16::set_amx(false);
  EXPECT_FALSE(kernels::bf16::amx());
  if (cpu_supports(CpuLevel::x86_64_v3)) {
    set_cpu_level(CpuLevel::x86_64_v3);
    EXPECT_FALSE(kernels::bf16::native());
  }
}

TEST_F(Bf16Kernels, PackedAndPairAgainstFloat64) {
  const kernels::Products mm{.bf16 = true};
  at_every_level([&] {
    for (int M : {1, 2, 3, 8, 13, 16, 50, 64, 71})
      for (int N : {1, 17, 32, 33, 70})
        for (int K : {1, 2, 5, 31, 33, 64, 129, 513})
          for (bool trans : {true, false}) {
            const int ldw = trans ? K + 3 : N + 5, lda = K + 1, ldc = N + 2;
            const auto W = uniform(std::size_t(trans ? N : K) * ldw, unsigned(M * 7 + N * 3 + K));
            const auto A = uniform(std::size_t(M) * lda, unsigned(K * 11 + M));
            const auto bias = uniform(std::size_t(N), 5);
            std::vector<float> P(kernels::packed_size<float>(N, K));
            mm.pack(trans, N, K, W.data(), ldw, P.data());
            const auto w = [&](int k, int j) {
              return trans ? W[std::size_t(j) * ldw + k] : W[std::size_t(k) * ldw + j];
            };
            const auto a = [&](int i, int k) { return A[std::size_t(i) * lda + k]; };
            std::vector<float> C(std::size_t(M) * ldc, std::numeric_limits<float>::quiet_NaN());
            mm.packed(M, N, K, A.data(), lda, P.data(), bias.data(), C.data(), ldc);
            expect_sums("packed, bias", M, N, K, C.data(), ldc, 1.0f,
                        [&](int, int j) { return double(bias[std::size_t(j)]); }, a, w);
            const std::vector<float> C0 = uniform(C.size(), 9);
            C = C0;
            mm.packed(M, N, K, A.data(), lda, P.data(), static_cast<const float*>(nullptr), C.data(), ldc);
            expect_sums("packed, accumulating", M, N, K, C.data(), ldc, 1.0f,
                        [&](int i, int j) { return double(C0[std::size_t(i) * ldc + j]); }, a, w);
            // A column part from the second panel on, as a thread's share of the columns.
            if (const int c0 = kernels::panel_width<float>(); N > c0) {
              C = C0;
              mm.packed(M, N - c0, K, A.data(), lda, P.data() + std::size_t(c0) * K,
                        bias.data() + c0, C.data() + c0, ldc);
              expect_sums("packed, from the second panel", M, N - c0, K, C.data() + c0, ldc, 1.0f,
                          [&](int, int j) { return double(bias[std::size_t(j + c0)]); }, a,
                          [&](int k, int j) { return w(k, j + c0); });
              for (int i = 0; i < M; ++i)
                for (int j = 0; j < c0; ++j)
                  ASSERT_EQ(C[std::size_t(i) * ldc + j], C0[std::size_t(i) * ldc + j]);
            }
            if (HasFatalFailure()) return;
          }
    // The pair: bias + A1·op(W1) + A2·op(W2), K1 and K2 of both parities.
    for (int M : {1, 5, 8, 19, 40})
      for (int N : {7, 32, 45})
        for (auto [K1, K2] : {std::pair{3, 4}, std::pair{64, 33}, std::pair{1, 600},
                              std::pair{512, 256}}) {
          const auto W1 = uniform(std::size_t(N) * K1, 21), W2 = uniform(std::size_t(N) * K2, 22);
          const auto A1 = uniform(std::size_t(M) * K1, 23), A2 = uniform(std::size_t(M) * K2, 24);
          const auto bias = uniform(std::size_t(N), 25);
          std::vector<float> P1(kernels::packed_size<float>(N, K1)), P2(kernels::packed_size<float>(N, K2));
          mm.pack(true, N, K1, W1.data(), K1, P1.data());
          mm.pack(true, N, K2, W2.data(), K2, P2.data());
          std::vector<float> C(std::size_t(M) * N, std::numeric_limits<float>::quiet_NaN());
          mm.packed_pair(M, N, K1, A1.data(), K1, P1.data(), K2, A2.data(), K2, P2.data(),
                         bias.data(), C.data(), N);
          // As one product over the concatenated k: [A1 | A2] · [W1 | W2]ᵀ.
          expect_sums("pair", M, N, K1 + K2, C.data(), N, 1.0f,
                      [&](int, int j) { return double(bias[std::size_t(j)]); },
                      [&](int i, int k) {
                        return k < K1 ? A1[std::size_t(i) * K1 + k] : A2[std::size_t(i) * K2 + k - K1];
                      },
                      [&](int k, int j) {
                        return k < K1 ? W1[std::size_t(j) * K1 + k] : W2[std::size_t(j) * K2 + k - K1];
                      });
          if (HasFatalFailure()) return;
        }
  });
}

TEST_F(Bf16Kernels, GemmAgainstFloat64) {
  const kernels::Products mm{.bf16 = true};
  struct Shape {
    int M, N, K;
  };
  at_every_level([&] {
    for (int threads : {1, 2}) {
      ThreadCount scope(threads);
      for (Shape s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{9, 33, 2}, Shape{64, 32, 64},
                      Shape{70, 65, 513}, Shape{67, 40, 1100}, Shape{20, 300, 129},
                      Shape{96, 160, 64}})
        for (bool ta : {false, true})
          for (bool tb : {false, true})
            for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{1.0f, 1.0f},
                                       std::pair{0.5f, 0.25f}}) {
              const int lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 1, ldc = s.N + 4;
              const auto A = uniform(std::size_t(ta ? s.K : s.M) * lda, unsigned(s.M + s.K));
              const auto B = uniform(std::size_t(tb ? s.N : s.K) * ldb, unsigned(s.N * 5 + s.K));
              std::vector<float> C0 = uniform(std::size_t(s.M) * ldc, 17);
              if (beta == 0.0f) C0.assign(C0.size(), std::numeric_limits<float>::quiet_NaN());
              std::vector<float> C = C0;
              mm.gemm(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
              expect_sums(
                  ta ? (tb ? "gemm TT" : "gemm TN") : (tb ? "gemm NT" : "gemm NN"), s.M, s.N, s.K,
                  C.data(), ldc, alpha,
                  [&](int i, int j) {
                    return beta == 0.0f ? 0.0 : double(beta) * C0[std::size_t(i) * ldc + j];
                  },
                  [&](int i, int k) {
                    return ta ? A[std::size_t(k) * lda + i] : A[std::size_t(i) * lda + k];
                  },
                  [&](int k, int j) {
                    return tb ? B[std::size_t(j) * ldb + k] : B[std::size_t(k) * ldb + j];
                  });
              // Past the last column of each row: untouched.
              for (int i = 0; i < s.M; ++i)
                for (int j = s.N; j < ldc; ++j) {
                  const float got = C[std::size_t(i) * ldc + j], was = C0[std::size_t(i) * ldc + j];
                  ASSERT_TRUE(got == was || (std::isnan(got) && std::isnan(was)));
                }
              if (HasFatalFailure()) return;
            }
    }
  });
}

// gemm_tn_pair's two bf16 products are gemm()'s, bit for bit (Aᵀ rounded once for both; each
// element's sum over the same k blocks in the same order), at every level (emulated below v4).
TEST_F(Bf16Kernels, TnPairIsTwoProducts) {
  const kernels::Products mm{.bf16 = true};
  struct Shape {
    int M, N1, N2, K;
  };
  at_every_level([&] {
    for (int threads : {1, 2}) {
      ThreadCount scope(threads);
      for (Shape s : {Shape{1, 1, 1, 1}, Shape{12, 32, 32, 512}, Shape{97, 65, 33, 1100},
                      Shape{40, 300, 64, 7}})
        for (float beta : {0.0f, 1.0f}) {
          expect_tn_pair_is_two_products(
              s.M, s.N1, s.N2, s.K, beta,
              [&](auto... args) { mm.gemm_tn_pair<float>(args...); },
              [&](int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                  int ldb, float bt, float* c, int ldc) {
                mm.gemm<float>(true, false, m, n, k, alpha, a, lda, b, ldb, bt, c, ldc);
              },
              "M " + std::to_string(s.M) + " K " + std::to_string(s.K));
          if (HasFatalFailure()) return;
        }
    }
  });
}

}  // namespace
}  // namespace bptt::test
