// Dropout between stacked layers (bptt::Dropout, src/unroll/full.cpp): with a fixed
// (p, seed, stream) the mask is fixed, so the loss is a smooth function of the parameters and
// the gradients must be exact: central differences in float64 through loss_and_gradients. Then
// the masks themselves: reproducible from (seed, stream), different between streams, seeds and
// layers, values in {0, 1/(1−p)}, the fraction dropped ≈ p; p = 0 and L = 1 are no-ops; a
// workspace without dropout buffers refuses dropout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/unroll.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

constexpr double kStep = 1e-6;
constexpr double kTol = 1e-6;

Case dropout_case(CellVariant cell, LossPair loss, int L, int T = 3, int B = 3) {
  Case c;
  c.cell = cell;
  c.loss = loss;
  c.L = L;
  c.T = T;
  c.B = B;
  c.H = 4;  // 4·T·B = 36 mask elements per layer: both kept and dropped ones are certain
  return c;
}

std::vector<Case> dropout_grid() {
  std::vector<Case> out;
  for (CellVariant cell : {CellVariant{CellKind::elman, Activation::tanh},
                           CellVariant{CellKind::lstm, Activation::tanh},
                           CellVariant{CellKind::gru, Activation::tanh}})
    for (LossPair loss : {LossPair{LossKind::xent, Activation::softmax},
                          LossPair{LossKind::mse, Activation::identity}})
      for (int L : {2, 3}) out.push_back(dropout_case(cell, loss, L));
  // T = 70 spans two of backward's 64-step chunks, where the mask is applied per chunk.
  for (CellVariant cell : {CellVariant{CellKind::lstm, Activation::tanh},
                           CellVariant{CellKind::gru, Activation::tanh}})
    out.push_back(dropout_case(cell, {LossKind::mse, Activation::identity}, 2, 70, 2));
  return out;
}

// The mask of layer k (k >= 1) as the last forward pass left it.
std::vector<double> mask_of(Workspace<double>& ws, int k, int H) {
  const double* m = ws.drop_mask(k);
  return std::vector<double>(m, m + std::size_t(ws.T()) * ws.B() * H);
}

class DropoutGradCheck : public testing::TestWithParam<Case> {};

TEST_P(DropoutGradCheck, FiniteDifferencesWithAFixedMask) {
  const Case& c = GetParam();
  const ModelConfig cfg = c.config();
  const LossKind loss = c.loss.loss;
  Model<double> model = make_model<double>(c);
  Batch<double> batch = make_batch<double>(c);
  const Dropout dropout{0.4, 0x5eedull, 17};

  Workspace<double> ws(cfg, c.T, c.B, /*with_dropout=*/true);
  Gradients<double> g(cfg, c.T, c.B), plain(cfg, c.T, c.B), scratch(cfg, c.T, c.B);
  g.zero();
  plain.zero();
  loss_and_gradients(model, batch, loss, ws, plain);
  const double L0 = loss_and_gradients(model, batch, loss, ws, g, &dropout);
  ASSERT_TRUE(ws.dropout_active);

  // The masks really drop and keep something in every layer above the first, so the check
  // below exercises both branches; and the gradient differs from the one without dropout.
  for (int k = 1; k < c.L; ++k) {
    int zeros = 0, kept = 0;
    for (double m : mask_of(ws, k, c.H)) (m == 0 ? zeros : kept) += 1;
    EXPECT_GT(zeros, 0) << "layer " << k;
    EXPECT_GT(kept, 0) << "layer " << k;
  }
  EXPECT_NE(g.params, plain.params);

  int checked = 0, failed = 0;
  std::string msg;
  const auto check = [&](const std::string& name, double* v, double analytic) {
    const double v0 = *v;
    *v = v0 + kStep;
    const double lp = loss_and_gradients(model, batch, loss, ws, scratch, &dropout);
    *v = v0 - kStep;
    const double lm = loss_and_gradients(model, batch, loss, ws, scratch, &dropout);
    *v = v0;
    const double numeric = (lp - lm) / (2 * kStep);
    ++checked;
    if (close(analytic, numeric, kTol)) return;
    if (++failed <= 12)
      msg += "\n  " + name + ": analytic " + std::to_string(analytic) + " numeric " +
             std::to_string(numeric);
  };
  for (std::size_t i = 0; i < model.params.size(); ++i)
    check(param_name(cfg, i), &model.params[i], g.params[i]);
  for (std::size_t i = 0; i < batch.x.size(); ++i)
    check(index3("x", i, c.B, c.I), &batch.x[i], g.x[i]);
  for (std::size_t i = 0; i < batch.h0.size(); ++i)
    check(index3("h0", i, c.B, c.H), &batch.h0[i], g.h0[i]);
  for (std::size_t i = 0; i < batch.c0.size(); ++i)
    check(index3("c0", i, c.B, c.H), &batch.c0[i], g.c0[i]);
  EXPECT_EQ(failed, 0) << failed << " of " << checked << " gradient elements differ" << msg;
  EXPECT_GT(checked, 0);

  // The pass is deterministic: the same dropout gives the same loss, bit for bit.
  EXPECT_EQ(loss_and_gradients(model, batch, loss, ws, scratch, &dropout), L0);
}

INSTANTIATE_TEST_SUITE_P(Cells, DropoutGradCheck, testing::ValuesIn(dropout_grid()), case_name);

const Case kLstm3 = dropout_case({CellKind::lstm, Activation::tanh},
                                 {LossKind::xent, Activation::softmax}, 3, 5, 4);

// Runs one forward pass with `d` and returns the masks of layers 1..L-1, concatenated.
std::vector<double> masks(const Case& c, const Dropout& d) {
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> ws(c.config(), c.T, c.B, true);
  forward(model, batch, ws, &d);
  std::vector<double> out;
  for (int k = 1; k < c.L; ++k) {
    const auto m = mask_of(ws, k, c.H);
    out.insert(out.end(), m.begin(), m.end());
  }
  return out;
}

TEST(DropoutMask, ReproducibleFromSeedAndStream) {
  const Dropout d{0.3, 42, 7};
  const auto a = masks(kLstm3, d), b = masks(kLstm3, d);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0);
  for (double m : a) EXPECT_TRUE(m == 0 || m == 1 / (1 - 0.3)) << m;
}

TEST(DropoutMask, DiffersBetweenStreamsSeedsAndLayers) {
  const auto base = masks(kLstm3, {0.5, 42, 7});
  EXPECT_NE(base, masks(kLstm3, {0.5, 42, 8}));
  EXPECT_NE(base, masks(kLstm3, {0.5, 42, 0}));
  EXPECT_NE(base, masks(kLstm3, {0.5, 43, 7}));
  // Layers 1 and 2 draw their own masks.
  const std::size_t n = base.size() / 2;
  EXPECT_NE(std::vector<double>(base.begin(), base.begin() + std::ptrdiff_t(n)),
            std::vector<double>(base.begin() + std::ptrdiff_t(n), base.end()));
  // Consecutive streams (the trainer passes the step number) are not shifted copies of each
  // other: compare the dropped positions of stream s and s+1 over many streams.
  int equal = 0;
  for (std::uint64_t s = 0; s < 20; ++s)
    if (masks(kLstm3, {0.5, 1, s}) == masks(kLstm3, {0.5, 1, s + 1})) ++equal;
  EXPECT_EQ(equal, 0);
}

TEST(DropoutMask, FractionDroppedIsP) {
  Case c = dropout_case({CellKind::gru, Activation::tanh}, {LossKind::xent, Activation::softmax},
                        3, 40, 8);
  for (double p : {0.1, 0.5, 0.8}) {
    double dropped = 0, n = 0;
    for (std::uint64_t stream = 0; stream < 10; ++stream)  // 10 × 2 layers × 1280 elements
      for (double m : masks(c, {p, 99, stream})) {
        dropped += m == 0;
        n += 1;
      }
    // Binomial standard deviation sqrt(p(1-p)/n) <= 0.0032 for n = 25600; allow 5 of them.
    EXPECT_NEAR(dropped / n, p, 0.016) << "p = " << p;
  }
}

// Loss and every gradient bit-identical (memcmp).
void expect_same(const Gradients<double>& a, const Gradients<double>& b, const std::string& what) {
  const auto same = [](const std::vector<double>& x, const std::vector<double>& y) {
    return x.size() == y.size() &&
           (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0);
  };
  EXPECT_TRUE(same(a.params, b.params)) << what << ": params";
  EXPECT_TRUE(same(a.x, b.x)) << what << ": x";
  EXPECT_TRUE(same(a.h0, b.h0)) << what << ": h0";
  EXPECT_TRUE(same(a.c0, b.c0)) << what << ": c0";
}

TEST(Dropout, PZeroEqualsNoDropout) {
  const Case& c = kLstm3;
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> plain_ws(cfg, c.T, c.B), drop_ws(cfg, c.T, c.B, true);
  Gradients<double> a(cfg, c.T, c.B), b(cfg, c.T, c.B);
  a.zero();
  b.zero();
  const Dropout none{0.0, 42, 3};
  const double la = loss_and_gradients(model, batch, c.loss.loss, plain_ws, a);
  const double lb = loss_and_gradients(model, batch, c.loss.loss, drop_ws, b, &none);
  EXPECT_FALSE(drop_ws.dropout_active);
  EXPECT_EQ(la, lb);
  expect_same(a, b, "p = 0");
  // p = 0 needs no dropout buffers either.
  Gradients<double> d(cfg, c.T, c.B);
  d.zero();
  EXPECT_EQ(loss_and_gradients(model, batch, c.loss.loss, plain_ws, d, &none), la);
  expect_same(a, d, "p = 0 without buffers");
}

TEST(Dropout, SingleLayerIgnoresDropout) {
  for (CellVariant cell : {CellVariant{CellKind::elman, Activation::tanh},
                           CellVariant{CellKind::lstm, Activation::tanh},
                           CellVariant{CellKind::gru, Activation::tanh}}) {
    const Case c = dropout_case(cell, {LossKind::xent, Activation::softmax}, 1);
    const ModelConfig cfg = c.config();
    const Model<double> model = make_model<double>(c);
    const Batch<double> batch = make_batch<double>(c);
    Workspace<double> ws(cfg, c.T, c.B);  // no dropout buffers: L = 1 must not need them
    Gradients<double> a(cfg, c.T, c.B), b(cfg, c.T, c.B);
    a.zero();
    b.zero();
    const Dropout d{0.7, 5, 5};
    const double la = loss_and_gradients(model, batch, c.loss.loss, ws, a);
    double lb = 0;
    EXPECT_NO_THROW(lb = loss_and_gradients(model, batch, c.loss.loss, ws, b, &d)) << c.name();
    EXPECT_FALSE(ws.dropout_active);
    EXPECT_EQ(la, lb) << c.name();
    expect_same(a, b, c.name());
  }
}

TEST(Dropout, WorkspaceWithoutBuffersThrows) {
  const Case& c = kLstm3;
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> ws(cfg, c.T, c.B);
  EXPECT_EQ(ws.drop_mask(1), nullptr);
  EXPECT_EQ(ws.drop_in(1), nullptr);
  Gradients<double> g(cfg, c.T, c.B);
  g.zero();
  const Dropout d{0.2, 1, 1};
  EXPECT_THROW(forward(model, batch, ws, &d), Error);
  try {
    loss_and_gradients(model, batch, c.loss.loss, ws, g, &d);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("with_dropout"), std::string::npos) << e.what();
  }
  // float too
  const Model<float> mf = make_model<float>(c);
  const Batch<float> bf = make_batch<float>(c);
  Workspace<float> wf(cfg, c.T, c.B);
  EXPECT_THROW(forward(mf, bf, wf, &d), Error);
}

// A pass without dropout after one with it, on the same workspace, is a plain pass.
TEST(Dropout, LaterPassWithoutDropoutIsPlain) {
  const Case& c = kLstm3;
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> fresh(cfg, c.T, c.B), reused(cfg, c.T, c.B, true);
  Gradients<double> a(cfg, c.T, c.B), b(cfg, c.T, c.B), scratch(cfg, c.T, c.B);
  a.zero();
  b.zero();
  scratch.zero();
  const Dropout d{0.5, 3, 9};
  loss_and_gradients(model, batch, c.loss.loss, reused, scratch, &d);
  const double lb = loss_and_gradients(model, batch, c.loss.loss, reused, b);
  const double la = loss_and_gradients(model, batch, c.loss.loss, fresh, a);
  EXPECT_FALSE(reused.dropout_active);
  EXPECT_EQ(la, lb);
  expect_same(a, b, "after a dropout pass");
}

// The masked input really is what layer k reads: drop_in = h(k-1) ⊙ mask.
TEST(Dropout, DropInIsMaskedLowerLayerOutput) {
  const Case& c = kLstm3;
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> ws(c.config(), c.T, c.B, true);
  const Dropout d{0.25, 11, 2};
  forward(model, batch, ws, &d);
  const std::size_t BH = std::size_t(c.B) * c.H, n = std::size_t(c.T) * BH;
  for (int k = 1; k < c.L; ++k)
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_EQ(ws.drop_in(k)[i], ws.h(k - 1)[BH + i] * ws.drop_mask(k)[i]) << k << " " << i;
}

}  // namespace
}  // namespace bptt::test
