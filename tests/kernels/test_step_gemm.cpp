// The time loop's per-step product (kernels/step_gemm.hpp) against the triple loop: every row
// tail of the 8/4/2/1-row tiles, column counts below, at and across a panel of every level's
// width (6, 12, 16, 24 or 32 columns; the suite runs at each level), both packings
// (forward: op(W) = Wᵀ; backward: op(W) = W), float and double, with a row stride larger than
// the row (the unroller passes rows of wider buffers), accumulation into C and assignment from a
// bias row, and M across the 64-row blocks (the hoisted products over all T·B rows).
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/step_gemm.hpp"
#include "support/compare.hpp"

namespace bptt::kernels {
namespace {

template <class Real>
void check(int M, int N, int K, bool trans, bool with_bias) {
  std::mt19937 rng(unsigned(M * 1000 + N * 10 + K));
  std::uniform_real_distribution<double> u(-1, 1);
  const int lda = K + 3, ldc = N + 2, ldw = trans ? K + 1 : N + 1;
  std::vector<Real> A(std::size_t(M) * lda), W(std::size_t(trans ? N : K) * ldw),
      C(std::size_t(M) * ldc);
  for (auto* v : {&A, &W, &C})
    for (Real& x : *v) x = Real(u(rng));
  std::vector<Real> bias(static_cast<std::size_t>(N));
  for (Real& x : bias) x = Real(u(rng));
  std::vector<Real> expect = C;
  if (with_bias)
    for (int m = 0; m < M; ++m)
      std::copy(bias.begin(), bias.end(), expect.begin() + std::ptrdiff_t(m) * ldc);
  gemm_naive(false, trans, M, N, K, Real(1), A.data(), lda, W.data(), ldw, Real(1), expect.data(),
             ldc);
  std::vector<Real> P(packed_size<Real>(N, K), Real(-99));
  pack_panels(trans, N, K, W.data(), ldw, P.data());
  if (with_bias)  // C is assigned: what was there must not matter
    for (int m = 0; m < M; ++m)
      std::fill(C.begin() + std::ptrdiff_t(m) * ldc, C.begin() + std::ptrdiff_t(m) * ldc + N,
                std::numeric_limits<Real>::quiet_NaN());
  gemm_packed(M, N, K, A.data(), lda, P.data(), with_bias ? bias.data() : nullptr, C.data(), ldc);
  // Sums of K products of numbers below 1 in size (plus C or the bias): the rounding of either
  // order of summation is below tol·(1 + K), relative to |expect| where that is larger. The
  // padding columns of C (n >= N) must be untouched: compared too.
  const double tol = sizeof(Real) == 4 ? 1e-5 : 1e-13;
  test::expect_close("M " + std::to_string(M) + " N " + std::to_string(N) + " K " +
                         std::to_string(K) + (trans ? " Wᵀ" : " W") +
                         (with_bias ? " with bias" : ""),
                     C, expect, test::Tol{tol, double(1 + K)}, [&](std::size_t i) {
                       return "C[" + std::to_string(i / std::size_t(ldc)) + "," +
                              std::to_string(i % std::size_t(ldc)) + "]";
                     });
}

TEST(StepGemm, MatchesTheTripleLoop) {
  for (int M : {1, 3, 4, 5, 8, 9, 13, 16, 19})
    for (int N : {1, 6, 7, 11, 12, 13, 16, 23, 24, 25, 31, 32, 33, 48, 64, 70})
      for (int K : {1, 5, 64})
        for (bool trans : {true, false})
          for (bool with_bias : {false, true}) {
            check<float>(M, N, K, trans, with_bias);
            check<double>(M, N, K, trans, with_bias);
          }
}

// pack_panels against its definition (step_gemm.hpp): P[p][k][j] = op(W)[k][p·NR + j], zero
// past N, exactly; K with and without a tail past the 16-row blocks that the x86-64-v4 float
// packing of Wᵀ transposes in registers, partial last panels, a row stride larger than the row.
template <class Real>
void check_layout(int N, int K, bool trans) {
  const int NR = panel_width<Real>(), ldw = trans ? K + 3 : N + 3;
  std::vector<Real> W(std::size_t(trans ? N : K) * std::size_t(ldw));
  for (std::size_t i = 0; i < W.size(); ++i) W[i] = Real(i + 1);  // every value its own
  std::vector<Real> P(packed_size<Real>(N, K), Real(-99));
  pack_panels(trans, N, K, W.data(), ldw, P.data());
  const int panels = (N + NR - 1) / NR;
  for (int p = 0; p < panels; ++p)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < NR; ++j) {
        const int n = p * NR + j;
        const Real expect = n >= N ? Real(0)
                            : trans ? W[std::size_t(n) * ldw + k]
                                    : W[std::size_t(k) * ldw + n];
        const Real got = P[(std::size_t(p) * K + k) * NR + j];
        if (got != expect) {
          ADD_FAILURE() << "N " << N << " K " << K << (trans ? " Wᵀ" : " W") << ": panel " << p
                        << " row " << k << " column " << j << " holds " << got << ", expected "
                        << expect;
          return;
        }
      }
}

TEST(StepGemm, PackPanelsIsTheLayout) {
  for (int N : {1, 31, 32, 33, 64, 70, 96})
    for (int K : {1, 15, 16, 17, 37, 64})
      for (bool trans : {true, false}) {
        check_layout<float>(N, K, trans);
        check_layout<double>(N, K, trans);
      }
}

TEST(StepGemm, LargeMAcrossRowBlocks) {
  for (int M : {64, 65, 130, 203})
    for (bool with_bias : {false, true}) {
      check<float>(M, 70, 33, true, with_bias);
      check<double>(M, 70, 33, false, with_bias);
    }
}

// gemm_packed_pair: C = bias + A1·W1ᵀ + A2·W2ᵀ (the step's [x_t | h_{t-1}] product) against
// the triple loop, with K1 and K2 apart (K1 = 0 too), the same row tails, panel edges and
// strides as above, M across the 64-row blocks of the panel-major order; C is assigned, its
// padding untouched; tile-major and panel-major give the same bits.
template <class Real>
void check_pair(int M, int N, int K1, int K2) {
  std::mt19937 rng(unsigned(M * 100000 + N * 1000 + K1 * 31 + K2));
  std::uniform_real_distribution<double> u(-1, 1);
  const int lda1 = K1 + 2, lda2 = K2 + 3, ldc = N + 2, ldw1 = K1 + 1, ldw2 = K2 + 4;
  std::vector<Real> A1(std::size_t(M) * lda1), A2(std::size_t(M) * lda2),
      W1(std::size_t(N) * ldw1), W2(std::size_t(N) * ldw2), C(std::size_t(M) * ldc),
      bias(static_cast<std::size_t>(N));
  for (auto* v : {&A1, &A2, &W1, &W2, &C, &bias})
    for (Real& x : *v) x = Real(u(rng));
  std::vector<Real> expect = C;
  for (int m = 0; m < M; ++m)
    std::copy(bias.begin(), bias.end(), expect.begin() + std::ptrdiff_t(m) * ldc);
  gemm_naive(false, true, M, N, K1, Real(1), A1.data(), lda1, W1.data(), ldw1, Real(1),
             expect.data(), ldc);
  gemm_naive(false, true, M, N, K2, Real(1), A2.data(), lda2, W2.data(), ldw2, Real(1),
             expect.data(), ldc);
  std::vector<Real> P1(packed_size<Real>(N, K1), Real(-99)),
      P2(packed_size<Real>(N, K2), Real(-99));
  pack_panels(true, N, K1, W1.data(), ldw1, P1.data());
  pack_panels(true, N, K2, W2.data(), ldw2, P2.data());
  for (int m = 0; m < M; ++m)
    std::fill(C.begin() + std::ptrdiff_t(m) * ldc, C.begin() + std::ptrdiff_t(m) * ldc + N,
              std::numeric_limits<Real>::quiet_NaN());
  // Both orders (tile-major, panel-major): each against the triple loop, and the same bits.
  std::vector<Real> by_tiles;
  for (PairOrder order : {PairOrder::tiles, PairOrder::panels}) {
    const PairOrder saved = set_pair_order(order);
    gemm_packed_pair(M, N, K1, A1.data(), lda1, P1.data(), K2, A2.data(), lda2, P2.data(),
                     bias.data(), C.data(), ldc);
    set_pair_order(saved);
    const std::string what = "M " + std::to_string(M) + " N " + std::to_string(N) + " K1 " +
                             std::to_string(K1) + " K2 " + std::to_string(K2) +
                             (order == PairOrder::tiles ? " tile-major" : " panel-major");
    const double tol = sizeof(Real) == 4 ? 1e-5 : 1e-13;  // as in check() above
    test::expect_close(what, C, expect, test::Tol{tol, double(1 + K1 + K2)}, [&](std::size_t i) {
      return "C[" + std::to_string(i / std::size_t(ldc)) + "," +
             std::to_string(i % std::size_t(ldc)) + "]";
    });
    if (order == PairOrder::tiles) {
      by_tiles = C;
      for (int m = 0; m < M; ++m)
        std::fill(C.begin() + std::ptrdiff_t(m) * ldc, C.begin() + std::ptrdiff_t(m) * ldc + N,
                  std::numeric_limits<Real>::quiet_NaN());
    } else {
      for (std::size_t i = 0; i < C.size(); ++i)
        if (C[i] != by_tiles[i]) {
          ADD_FAILURE() << what << ": C[" << i << "] = " << C[i] << ", tile-major " << by_tiles[i];
          return;
        }
    }
  }
}

TEST(StepGemm, PairMatchesTheTripleLoop) {
  for (int M : {1, 3, 4, 5, 8, 9, 13, 16, 19, 70, 131})
    for (int N : {1, 7, 12, 24, 25, 32, 33, 70})
      for (auto [K1, K2] : {std::pair{0, 5}, {1, 1}, {3, 64}, {65, 7}}) {
        check_pair<float>(M, N, K1, K2);
        check_pair<double>(M, N, K1, K2);
      }
}

}  // namespace
}  // namespace bptt::kernels
