// The fast path (forward/backward with hoisted GEMMs) against the slow reference, on the whole
// configuration grid and at sizes that cross the kernels' blocks (large_shapes), in float64
// (1e-12) and float32 (against the float64 reference, relative per element: kFloat32): loss, ŷ
// and every gradient. Then
// properties of the fast path that a gradient check cannot see: backward accumulates, the state
// carries across a split in time, a reused workspace holds nothing over, and a batch with nothing
// to learn from is an error.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/unroll.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

void compare_with_reference(const Case& c) {
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> ws(cfg, c.T, c.B);
  Gradients<double> fast(cfg, c.T, c.B);
  fast.zero();
  const double l_fast = loss_and_gradients(model, batch, c.loss.loss, ws, fast);
  const Float64Reference ref = float64_reference(c, model, batch);

  EXPECT_TRUE(close(l_fast, ref.loss, 1e-12)) << "loss: fast " << l_fast << " reference "
                                              << ref.loss;
  ASSERT_EQ(ref.yhat.size(), std::size_t(c.T) * c.B * c.O);
  expect_all_close("yhat", ws.yhat(), ref.yhat.data(), ref.yhat.size(), 1e-12,
                   [&](std::size_t i) { return index3("yhat", i, c.B, c.O); });
  expect_gradients_close(c, fast, ref.g, 1e-12);
}

// The float fast path against the float64 reference on the same float-rounded inputs: what is
// left is float arithmetic's own error (kFloat32, test_util.hpp).
void compare_float32_with_reference(const Case& c) {
  const ModelConfig cfg = c.config();
  const Model<float> model = make_model<float>(c);
  const Batch<float> batch = make_batch<float>(c);
  Workspace<float> ws(cfg, c.T, c.B);
  Gradients<float> fast(cfg, c.T, c.B);
  fast.zero();
  const double l_fast = loss_and_gradients(model, batch, c.loss.loss, ws, fast);
  expect_float32_matches(c, l_fast, ws.yhat(), fast, float64_reference(c, model, batch));
}

class FastVsReference : public testing::TestWithParam<Case> {};

TEST_P(FastVsReference, Float64) { compare_with_reference(GetParam()); }
TEST_P(FastVsReference, Float32) { compare_float32_with_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Grid, FastVsReference, testing::ValuesIn(grid({1, 2, 3}, {1, 3, 7})),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Shapes, FastVsReference, testing::ValuesIn(odd_shapes()), case_name);
INSTANTIATE_TEST_SUITE_P(Large, FastVsReference, testing::ValuesIn(large_shapes()), case_name);

// T = 150 spans three of backward's 64-step chunks (the gradient from above is formed a chunk at
// a time); B = 3 takes the small-batch product, B = 9 the BLAS one.
std::vector<Case> long_cases() {
  std::vector<Case> out;
  for (const CellVariant& cell : all_cells())
    for (int B : {3, 9}) out.push_back(Case{cell, {LossKind::mse, Activation::tanh}, 2, 150, B, 3, 4, 2});
  return out;
}
INSTANTIATE_TEST_SUITE_P(Long, FastVsReference, testing::ValuesIn(long_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Options, FastVsReference, testing::ValuesIn(option_cases()), case_name);

// The options at sizes that cross the kernels' blocking boundaries (large_shapes), for LSTM and
// GRU with every option at once that the cell takes; T = 150 for the chunks of backward.
std::vector<Case> large_option_cases() {
  std::vector<Case> out;
  for (const Case& base : large_shapes({37})) {
    if (base.cell.cell == CellKind::elman && base.cell.phi != Activation::tanh) continue;
    if (base.loss.loss != LossKind::xent && base.loss.theta != Activation::tanh) continue;
    Case c = base;
    c.opt = {.bi = true, .P = c.cell.cell == CellKind::lstm ? 20 : 0, .bias = false,
             .init = InitCase::learned_given};
    out.push_back(c);
  }
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::tanh}, 2, 150, 9, 3, 4, 2};
  c.opt = {.bi = true, .P = 3};
  out.push_back(c);
  // Head-less models at sizes of several tiles: the top layer's h is the output, its gradient
  // dL/dz itself (one and two directions, xent over the h of a GRU).
  out.push_back(c.with_headless());
  Case g{{CellKind::gru, Activation::tanh}, {LossKind::xent, Activation::softmax}, 2, 70, 18, 5, 37, 37};
  out.push_back(g.with_headless());
  // Layer norm over rows of 37·G entries (16-lane sums with remainders), T = 150, every cell.
  for (CellKind k : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
    Case n{{k, Activation::tanh}, {LossKind::xent, Activation::softmax}, 2, 150, 9, 40, 37, 9};
    n.opt = {.bi = k != CellKind::elman, .P = k == CellKind::lstm ? 20 : 0, .ln = true};
    out.push_back(n);
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(LargeOptions, FastVsReference, testing::ValuesIn(large_option_cases()),
                         case_name);

// ---- properties of the fast path, in float64 ----

class FastPath : public testing::TestWithParam<Case> {};

TEST_P(FastPath, BackwardTwiceGivesTwiceTheGradient) {
  const Case& c = GetParam();
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Workspace<double> ws(cfg, c.T, c.B);
  Gradients<double> once(cfg, c.T, c.B), twice(cfg, c.T, c.B);
  once.zero();
  twice.zero();
  const double l1 = loss_and_gradients(model, batch, c.loss.loss, ws, once);
  const double l2 = loss_and_gradients(model, batch, c.loss.loss, ws, twice);
  const double l3 = loss_and_gradients(model, batch, c.loss.loss, ws, twice);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(l2, l3);
  for (auto* v : {&once.params, &once.x, &once.h0, &once.c0})
    for (double& g : *v) g *= 2;
  expect_gradients_close(c, twice, once, 1e-13);
}

// Forward over [0, T) equals forward over [0, T/2) and then [T/2, T) started from the first
// half's h_n (and c_n): ŷ of every step and the final states agree.
TEST_P(FastPath, SplitInTimeWithCarriedStateMatches) {
  const Case& c = GetParam();
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  Batch<double> full = make_batch<double>(c);
  full.y.clear();
  full.classes.clear();
  full.mask.clear();
  full.validate(cfg, "full");
  if (cfg.bidirectional || cfg.readout == Readout::final_state)
    GTEST_SKIP() << "the outputs of a bidirectional model or a final-state head depend on the whole sequence";
  const int T1 = c.T / 2, T2 = c.T - T1, B = c.B, H = c.H, HO = c.HO(), L = c.L, I = c.I, O = c.O;
  ASSERT_GE(T1, 1);
  const bool lstm = cfg.cell == CellKind::lstm;

  Batch<double> first, second;
  first.T = T1;
  second.T = T2;
  first.B = second.B = B;
  first.x.assign(full.x.begin(), full.x.begin() + std::ptrdiff_t(T1) * B * I);
  second.x.assign(full.x.begin() + std::ptrdiff_t(T1) * B * I, full.x.end());
  for (std::int64_t len : full.lengths) {
    first.lengths.push_back(std::min<std::int64_t>(len, T1));
    second.lengths.push_back(std::max<std::int64_t>(len - T1, 0));
  }
  first.h0 = full.h0;
  first.c0 = full.c0;
  // Dropout masks belong to the sequences: both halves take them whole; zoneout flags per step.
  for (Batch<double>* half : {&first, &second}) {
    half->mask_input = full.mask_input;
    half->mask_recurrent = full.mask_recurrent;
    half->mask_output = full.mask_output;
    half->mask_weight_hh = full.mask_weight_hh;
  }
  const auto split = [&](const std::vector<double>& flags, std::vector<double>& a,
                         std::vector<double>& b) {
    const auto mid = flags.begin() + std::ptrdiff_t(flags.size() / std::size_t(c.T) * T1);
    a.assign(flags.begin(), mid);
    b.assign(mid, flags.end());
  };
  split(full.zoneout_h, first.zoneout_h, second.zoneout_h);
  split(full.zoneout_c, first.zoneout_c, second.zoneout_c);
  first.validate(cfg, "first half");

  Workspace<double> ws_full(cfg, c.T, B), ws1(cfg, T1, B), ws2(cfg, T2, B);
  forward(model, full, ws_full);
  forward(model, first, ws1);
  const std::size_t BH = std::size_t(B) * H, BHO = std::size_t(B) * HO;
  for (int k = 0; k < L; ++k) {
    second.h0.insert(second.h0.end(), ws1.h(k) + T1 * BHO, ws1.h(k) + (T1 + 1) * BHO);
    if (lstm) second.c0.insert(second.c0.end(), ws1.c(k) + T1 * BH, ws1.c(k) + (T1 + 1) * BH);
  }
  second.validate(cfg, "second half");
  forward(model, second, ws2);

  const std::size_t BO = std::size_t(B) * O;
  const auto yname = [&](std::size_t i) { return index3("yhat", i, B, O); };
  expect_all_close("yhat first half", ws1.yhat(), ws_full.yhat(), T1 * BO, 1e-12, yname);
  expect_all_close("yhat second half", ws2.yhat(), ws_full.yhat() + T1 * BO, T2 * BO, 1e-12,
                   [&](std::size_t i) { return yname(i + T1 * BO); });
  for (int k = 0; k < L; ++k) {
    const auto name = [&](std::size_t i) { return "layer " + std::to_string(k) + " " +
                                                  index3("h_n", i, B, HO); };
    expect_all_close("h_n", ws2.h(k) + T2 * BHO, ws_full.h(k) + c.T * BHO, BHO, 1e-12, name);
    if (lstm)
      expect_all_close("c_n", ws2.c(k) + T2 * BH, ws_full.c(k) + c.T * BH, BH, 1e-12, name);
  }
}

// A workspace that ran another batch first (longer sequences, other data) gives exactly what a
// fresh one gives.
TEST_P(FastPath, ReusedWorkspaceMatchesFresh) {
  const Case& c = GetParam();
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  Batch<double> other = make_batch<double>(c, 7);
  other.lengths.assign(c.B, c.T);
  other.mask.clear();
  const Batch<double> batch = make_batch<double>(c);

  Workspace<double> reused(cfg, c.T, c.B), fresh(cfg, c.T, c.B);
  Gradients<double> g_other(cfg, c.T, c.B), g_reused(cfg, c.T, c.B), g_fresh(cfg, c.T, c.B);
  g_other.zero();
  g_reused.zero();
  g_fresh.zero();
  loss_and_gradients(model, other, c.loss.loss, reused, g_other);
  const double l_reused = loss_and_gradients(model, batch, c.loss.loss, reused, g_reused);
  const double l_fresh = loss_and_gradients(model, batch, c.loss.loss, fresh, g_fresh);
  EXPECT_TRUE(close(l_reused, l_fresh, 1e-14)) << l_reused << " vs " << l_fresh;
  expect_all_close("yhat", reused.yhat(), fresh.yhat(), std::size_t(c.T) * c.B * c.O, 1e-14,
                   [&](std::size_t i) { return index3("yhat", i, c.B, c.O); });
  expect_gradients_close(c, g_reused, g_fresh, 1e-14);
}

std::vector<Case> property_grid() {
  std::vector<Case> out;
  for (const Case& c : grid({1, 2}, {2, 6, 7}))
    if (c.L == 2 || c.loss.loss == LossKind::xent) out.push_back(c);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Grid, FastPath, testing::ValuesIn(property_grid()), case_name);
INSTANTIATE_TEST_SUITE_P(Shapes, FastPath, testing::ValuesIn(odd_shapes()), case_name);
INSTANTIATE_TEST_SUITE_P(Large, FastPath, testing::ValuesIn(large_shapes()), case_name);
INSTANTIATE_TEST_SUITE_P(Options, FastPath, testing::ValuesIn(option_cases()), case_name);

// Σ w = 0 (every step masked, or every sequence empty): nothing to learn from, an error from
// Batch::validate and, should a caller skip it, from the loss itself.
TEST(FastPathErrors, BatchWithZeroTotalWeightThrows) {
  for (const CellVariant& cell : all_cells()) {
    for (const LossPair& loss : all_losses()) {
      const Case c{cell, loss, 2, 3};
      SCOPED_TRACE(c.name());
      const ModelConfig cfg = c.config();
      const Model<double> model = make_model<double>(c);
      Batch<double> masked = make_batch<double>(c);
      masked.mask.assign(masked.mask.size(), 0.0);
      Batch<double> empty = make_batch<double>(c);
      empty.lengths.assign(c.B, 0);
      for (const Batch<double>* b : {&masked, &empty}) {
        EXPECT_THROW(b->validate(cfg, loss.loss, "test batch"), bptt::Error);
        Workspace<double> ws(cfg, c.T, c.B);
        Gradients<double> g(cfg, c.T, c.B);
        g.zero();
        EXPECT_THROW(loss_and_gradients(model, *b, loss.loss, ws, g), bptt::Error);
        EXPECT_THROW(reference_loss_and_gradients(model, *b, loss.loss, g), bptt::Error);
      }
    }
  }
}

}  // namespace
// backward() refuses masks that no forward() on the workspace applied (its buffers for them
// do not exist): an Error, not a wild read.
TEST(FastPathMasks, BackwardRefusesMasksForwardDidNotApply) {
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 5};
  c.opt.drop = true;
  const ModelConfig cfg = c.config();
  const Model<double> model = make_model<double>(c);
  const Batch<double> masked = make_batch<double>(c);
  Batch<double> plain = masked;
  plain.mask_input.clear();
  plain.mask_recurrent.clear();
  plain.mask_output.clear();
  plain.mask_weight_hh.clear();
  Workspace<double> ws(cfg, c.T, c.B);
  Gradients<double> g(cfg, c.T, c.B);
  g.zero();
  forward(model, plain, ws);
  loss_and_dz(c.loss.loss, cfg, plain, ws.z(), ws.yhat(), ws.dz());
  try {
    backward(model, masked, ws, g);
    ADD_FAILURE() << "backward took masks forward did not apply";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage) << e.what();
    EXPECT_NE(std::string(e.what()).find("forward()"), std::string::npos) << e.what();
  }
}

}  // namespace bptt::test
