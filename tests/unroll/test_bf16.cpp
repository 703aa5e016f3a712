// bf16 products (bptt/precision.hpp, kernels/matmul.hpp): the rounding itself, the products
// against float64 products of the rounded operands, and the gradients of every cell and option
// against float64 within the bound docs/conventions.md states.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/infer.hpp"
#include "bptt/precision.hpp"
#include "bptt/stream.hpp"
#include "bptt/unroll.hpp"
#include "kernels/gemm.hpp"
#include "kernels/matmul.hpp"
#include "kernels/step_gemm.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

using kernels::round_bf16;

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(round_bf16(1.0f), 1.0f);
  EXPECT_EQ(round_bf16(-2.5f), -2.5f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa, 1.
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f), 1.0f);
  // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(round_bf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);  // past halfway: up
  EXPECT_EQ(round_bf16(0.0f), 0.0f);
  EXPECT_EQ(bits(round_bf16(-0.0f)), bits(-0.0f));
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(round_bf16(inf), inf);
  EXPECT_EQ(round_bf16(-inf), -inf);
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::max()), inf);  // past the largest bf16
  EXPECT_TRUE(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(round_bf16(std::bit_cast<float>(0x7f800001u))));  // a NaN of low bits
  // Random values: one of the two bf16 neighbours (x with its low 16 bits cut, and one bf16
  // ulp further from 0), the nearer one, the even one at a tie.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1e3f, 1e3f);
  for (int i = 0; i < 100000; ++i) {
    const float x = u(rng), r = round_bf16(x);
    const float down = std::bit_cast<float>(bits(x) & 0xffff0000u),
                away = std::bit_cast<float>((bits(x) & 0xffff0000u) + 0x10000u);
    ASSERT_TRUE(r == down || r == away) << x;
    const double dr = std::abs(double(r) - x), other = std::abs(double(r == down ? away : down) - x);
    ASSERT_LE(dr, other) << x;
    if (dr == other) {
      ASSERT_EQ(bits(r) & 0x10000u, 0u) << x;
    }
  }
}

// Products{.bf16 = true} against float64 products of the rounded operands, every transposition
// and the packed kernels; the difference is float accumulation alone.
TEST(Bf16, ProductsAreFloatSumsOfRoundedOperands) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int M = 37, N = 29, K = 53;
  std::vector<float> A(std::size_t(M) * K + 64), Bm(std::size_t(K) * N + 64), C(std::size_t(M) * N);
  for (float& v : A) v = u(rng);
  for (float& v : Bm) v = u(rng);
  const kernels::Products mm{.bf16 = true};
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int lda = ta ? M : K, ldb = tb ? K : N;
      mm.gemm(ta, tb, M, N, K, 1.0f, A.data(), lda, Bm.data(), ldb, 0.0f, C.data(), N);
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          double ref = 0;
          for (int k = 0; k < K; ++k)
            ref += double(round_bf16(ta ? A[std::size_t(k) * lda + i] : A[std::size_t(i) * lda + k])) *
                   double(round_bf16(tb ? Bm[std::size_t(j) * ldb + k] : Bm[std::size_t(k) * ldb + j]));
          ASSERT_NEAR(C[std::size_t(i) * N + j], ref, 1e-5) << ta << tb << " " << i << "," << j;
        }
    }
  // The packed kernel: C = bias + A·Wᵀ, W [N, K].
  std::vector<float> P(kernels::packed_size<float>(N, K)), bias(N, 0.25f);
  mm.pack(true, N, K, Bm.data(), K, P.data());
  mm.packed(M, N, K, A.data(), K, P.data(), bias.data(), C.data(), N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double ref = 0.25;
      for (int k = 0; k < K; ++k)
        ref += double(round_bf16(A[std::size_t(i) * K + k])) *
               double(round_bf16(Bm[std::size_t(j) * K + k]));
      ASSERT_NEAR(C[std::size_t(i) * N + j], ref, 1e-5) << i << "," << j;
    }
  // Without bf16 the products are the plain float ones.
  const kernels::Products plain;
  std::vector<float> C2(C.size());
  plain.gemm(false, false, M, N, K, 1.0f, A.data(), K, Bm.data(), N, 0.0f, C2.data(), N);
  kernels::gemm(false, false, M, N, K, 1.0f, A.data(), K, Bm.data(), N, 0.0f, C.data(), N);
  EXPECT_EQ(C, C2);
}

// ‖a − b‖₂ / ‖b‖₂ (0 when both are zero).
double normwise(const float* a, const double* b, std::size_t n) {
  double d = 0, r = 0;
  for (std::size_t i = 0; i < n; ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    r += b[i] * b[i];
  }
  return r > 0 ? std::sqrt(d / r) : std::sqrt(d);
}

// The bounds on bf16 gradients against float64 (docs/conventions.md, "bf16"), in the 2-norm
// relative to the float64 gradient: each tensor within 6e-2 and all of them together within
// 2e-2, for cells whose gradients are smooth functions of the rounded operands; a ReLU Elman
// (a rounding moves units across the kink) and a layer norm over rows narrower than 16 entries
// (which amplifies its inputs' rounding several hundred times, as in float32) only together
// within 0.3. Measured worst over the cases below: 0.029, 0.0098 and 0.21 (a 3-unit ReLU
// network under dropout masks). The loss within 1e-2 relative.
constexpr double kBf16Tensor = 6e-2, kBf16All = 2e-2, kBf16AllIllConditioned = 0.3,
                 kBf16Loss = 1e-2;

std::vector<Case> bf16_cases() {
  std::vector<Case> out = option_cases();
  for (const Case& c : large_shapes({16, 37})) out.push_back(c);
  return out;
}

class Bf16Cases : public testing::TestWithParam<Case> {};

TEST_P(Bf16Cases, GradientsWithinTheBoundOfFloat64) {
  const Case& c = GetParam();
  const Model<float> model = make_model<float>(c);
  const Batch<float> batch = make_batch<float>(c);
  const Float64Reference ref = float64_reference(c, model, batch);
  Gradients<float> g(c.config(), c.T, c.B);
  g.zero();
  double loss = 0;
  {
    const MatmulScope bf16(Matmul::bf16);
    Workspace<float> ws(model.cfg, c.T, c.B);
    ASSERT_EQ(ws.matmul(), Matmul::bf16);
    loss = loss_and_gradients(model, batch, c.loss.loss, ws, g);
  }
  EXPECT_LE(std::abs(loss - ref.loss), kBf16Loss * std::abs(ref.loss)) << c.name();
  double worst = 0;
  std::string which;
  const auto check = [&](const std::string& name, const float* a, const double* b, std::size_t n) {
    const double e = normwise(a, b, n);
    if (e > worst) worst = e, which = name;
  };
  for (const ParamInfo& p : param_layout(model.cfg))
    check(p.name, g.params.data() + p.offset, ref.g.params.data() + p.offset, p.size);
  check("x", g.x.data(), ref.g.x.data(), g.x.size());
  check("h0", g.h0.data(), ref.g.h0.data(), g.h0.size());
  check("c0", g.c0.data(), ref.g.c0.data(), g.c0.size());
  // Case-wide: the largest |Δ| of any gradient element against the largest |g| of the case.
  double dmax = 0, gmax = 0, d2 = 0, g2 = 0;
  const auto acc = [&](const float* a, const double* b, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      dmax = std::max(dmax, std::abs(double(a[i]) - b[i]));
      gmax = std::max(gmax, std::abs(b[i]));
      d2 += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      g2 += b[i] * b[i];
    }
  };
  acc(g.params.data(), ref.g.params.data(), g.params.size());
  acc(g.x.data(), ref.g.x.data(), g.x.size());
  acc(g.h0.data(), ref.g.h0.data(), g.h0.size());
  acc(g.c0.data(), ref.g.c0.data(), g.c0.size());
  const double all = std::sqrt(d2 / g2);
  if (std::getenv("BPTT_BF16_REPORT"))  // the measurement behind the bounds
    std::printf("bf16 %s tensor %.3g (d %s) all %.3g max %.3g\n", c.name().c_str(), worst,
                which.c_str(), all, dmax / gmax);
  const bool ill = c.cell.phi == Activation::relu || (c.opt.ln && c.config().gates() * c.H < 16);
  if (ill) {
    EXPECT_LE(all, kBf16AllIllConditioned) << c.name();
  } else {
    EXPECT_LE(worst, kBf16Tensor) << c.name() << ": d " << which;
    EXPECT_LE(all, kBf16All) << c.name();
  }
}

INSTANTIATE_TEST_SUITE_P(Options, Bf16Cases, testing::ValuesIn(bf16_cases()), case_name);

// The products differ from float's (the rounding is applied), and a double model refuses bf16.
TEST(Bf16, ChangesTheProductsAndRefusesDouble) {
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::identity}, 1, 4, 3, 5, 16, 3};
  c.opt.lengths = false;
  const Model<float> model = make_model<float>(c);
  const Batch<float> batch = make_batch<float>(c);
  Workspace<float> plain(model.cfg, c.T, c.B);
  forward(model, batch, plain);
  Workspace<float> ws(model.cfg, c.T, c.B);
  ws.set_matmul(Matmul::bf16);
  forward(model, batch, ws);
  double diff = 0;
  for (std::size_t i = 0; i < std::size_t(c.T) * c.B * c.O; ++i)
    diff = std::max(diff, double(std::abs(ws.yhat()[i] - plain.yhat()[i])));
  EXPECT_GT(diff, 1e-6);
  EXPECT_LT(diff, 5e-2);
  // Inference and Stream at bf16 give forward's bf16 results.
  {
    const MatmulScope bf16(Matmul::bf16);
    Inference<float> inf(model.cfg, c.B);
    inf.run(model, batch);
    for (std::size_t i = 0; i < inf.yhat().size(); ++i)
      ASSERT_NEAR(inf.yhat()[i], ws.yhat()[i], 1e-6) << i;
    Stream<float> s(model, c.B);
    std::copy(batch.h0.begin(), batch.h0.end(), s.h().begin());
    std::copy(batch.c0.begin(), batch.c0.end(), s.c().begin());
    std::vector<float> y(std::size_t(c.B) * c.O);
    for (int t = 0; t < c.T; ++t) {
      s.step(batch.x.data() + std::size_t(t) * c.B * c.I, y.data());
      for (std::size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], ws.yhat()[std::size_t(t) * c.B * c.O + i], 1e-6) << t << " " << i;
    }
  }
  const Model<double> m64 = make_model<double>(c);
  Workspace<double> ws64(m64.cfg, c.T, c.B);
  EXPECT_THROW(ws64.set_matmul(Matmul::bf16), Error);
  const MatmulScope bf16(Matmul::bf16);
  EXPECT_THROW(Workspace<double>(m64.cfg, c.T, c.B), Error);
  EXPECT_THROW(Inference<double>(m64.cfg, c.B), Error);
  EXPECT_THROW(Stream<double>(m64, c.B), Error);
}

}  // namespace
}  // namespace bptt::test
