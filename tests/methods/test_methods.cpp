// The other gradient methods against full BPTT and against their slow references, in float64:
//   recompute:K equals bptt (1e-12) for every K, with dropout too;
//   truncated:K equals bptt for K >= T, and the slow per-step reference for K < T (1e-12);
//   rtrl equals bptt (1e-9); online RTRL summed over a stream equals rtrl's parameter gradient;
// and in float32, recompute and rtrl against the float64 reference (kFloat32, test_util.hpp).
// Small cases and the large sizes that cross the kernels' blocks (large_shapes).
// Every case has T > 1, nonzero h0/c0, variable lengths and a mask (tests/unroll/test_util.hpp).
#include <gtest/gtest.h>

#include <algorithm>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

// Every cell with two losses, L = 1 and 2, T = 7 (and T = 13 for the segment boundaries).
std::vector<Case> method_grid() {
  std::vector<Case> out;
  for (const CellVariant& c : all_cells())
    for (const LossPair& l : {LossPair{LossKind::mse, Activation::tanh},
                              LossPair{LossKind::xent, Activation::softmax}})
      for (int L : {1, 2}) out.push_back(Case{c, l, L, 7});
  for (const CellVariant& c : all_cells())
    out.push_back(Case{c, {LossKind::bce, Activation::sigmoid}, 2, 13, 4, 4, 5, 2});
  return out;
}

// RTRL carries the influence of every parameter on every state: O(H⁴) work per step, so its
// large cases stay at H = 16 (G·H = 64 for the LSTM still spans two panels): every cell × loss.
std::vector<Case> rtrl_grid() {
  std::vector<Case> out = method_grid();
  for (const Case& c : large_shapes({16})) out.push_back(c);
  return out;
}

template <class Real>
struct Full {
  double loss;
  Gradients<Real> g;
};

template <class Real>
Full<Real> full_bptt(const Case& c, const Model<Real>& m, const Batch<Real>& b,
                     const Dropout* d = nullptr) {
  Workspace<Real> ws(c.config(), c.T, c.B, d != nullptr);
  Full<Real> f{0, Gradients<Real>(c.config(), c.T, c.B)};
  f.g.zero();
  f.loss = loss_and_gradients(m, b, c.loss.loss, ws, f.g, d);
  return f;
}

// Whether a method refuses a case's model options today (require_options in methods.hpp): the
// tests then check the refusal, a usage bptt::Error naming the method, in place of the result.
bool refused(const Case& c, const std::string& method) {
  const Options& o = c.opt;
  if (method == "recompute") return false;
  if (method == "truncated") return o.bi || o.final_readout;
  // RTRL's Jacobians know neither masks nor zoneout.
  if (method == "rtrl") return o.bi || o.final_readout || o.drop || o.zoneout || o.zoneout_eval;
  return false;
}

template <class F>
void expect_refusal(const std::string& method, F&& call) {
  try {
    call();
    ADD_FAILURE() << method << " took a model it does not support";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(method), std::string::npos) << e.what();
    EXPECT_EQ(e.kind(), ErrorKind::usage) << e.what();
  }
}

class Methods : public testing::TestWithParam<Case> {};

TEST_P(Methods, RecomputeEqualsBptt) {
  const Case& c = GetParam();
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  if (refused(c, "recompute"))
    return expect_refusal("recompute", [&] {
      Recompute<double> r(c.config(), c.T, c.B, 2);
      Gradients<double> g(c.config(), c.T, c.B);
      r.loss_and_gradients(m, b, c.loss.loss, g);
    });
  const auto full = full_bptt(c, m, b);
  for (int K : {1, 2, 3, default_recompute_interval(c.T), c.T - 1, c.T, c.T + 4}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    Recompute<double> r(c.config(), c.T, c.B, K);
    Gradients<double> g(c.config(), c.T, c.B);
    g.zero();
    const double l = r.loss_and_gradients(m, b, c.loss.loss, g);
    EXPECT_TRUE(close(l, full.loss, 1e-12)) << l << " vs " << full.loss;
    expect_gradients_close(c, g, full.g, 1e-12);
    // The final state is the full pass's h_n.
    Workspace<double> ws(c.config(), c.T, c.B);
    forward(m, b, ws);
    std::vector<double> h, cc, h_full, c_full;
    r.final_state(h, cc);
    ws.state_at(c.T, h_full, c_full);
    expect_all_close("h_n", h.data(), h_full.data(), h.size(), 1e-13,
                     [](std::size_t i) { return std::to_string(i); });
  }
}

TEST_P(Methods, RecomputeWithDropoutEqualsBptt) {
  Case c = GetParam();
  if (refused(c, "recompute")) GTEST_SKIP() << "refused (RecomputeEqualsBptt checks how)";
  c.L = std::max(c.L, 2);  // dropout acts between layers
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  const Dropout d{0.4, 7, 3};
  const auto full = full_bptt(c, m, b, &d);
  Recompute<double> r(c.config(), c.T, c.B, 3, true);
  Gradients<double> g(c.config(), c.T, c.B);
  g.zero();
  EXPECT_TRUE(close(r.loss_and_gradients(m, b, c.loss.loss, g, &d), full.loss, 1e-12));
  expect_gradients_close(c, g, full.g, 1e-12);
}

TEST_P(Methods, TruncatedAtLeastTEqualsBptt) {
  const Case& c = GetParam();
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  if (refused(c, "truncated"))
    return expect_refusal("truncated", [&] {
      Gradients<double> g(c.config(), c.T, c.B);
      truncated_loss_and_gradients(m, b, c.loss.loss, 2, g);
    });
  const auto full = full_bptt(c, m, b);
  for (int K : {c.T, c.T + 3}) {
    Gradients<double> g(c.config(), c.T, c.B);
    g.zero();
    EXPECT_TRUE(close(truncated_loss_and_gradients(m, b, c.loss.loss, K, g), full.loss, 1e-12));
    expect_gradients_close(c, g, full.g, 1e-12);
  }
}

TEST_P(Methods, TruncatedEqualsSlowReference) {
  const Case& c = GetParam();
  if (refused(c, "truncated")) GTEST_SKIP() << "refused (TruncatedAtLeastTEqualsBptt checks how)";
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  const auto full = full_bptt(c, m, b);
  for (int K : {1, 2, 3, c.T - 1}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    Gradients<double> fast(c.config(), c.T, c.B), slow(c.config(), c.T, c.B);
    fast.zero();
    slow.zero();
    const double lf = truncated_loss_and_gradients(m, b, c.loss.loss, K, fast);
    const double ls = truncated_reference_loss_and_gradients(m, b, c.loss.loss, K, slow);
    EXPECT_TRUE(close(lf, full.loss, 1e-12));
    EXPECT_TRUE(close(ls, full.loss, 1e-12));
    expect_gradients_close(c, fast, slow, 1e-12);
    // A short window really cuts something: W_hh's gradient is not full BPTT's. (With K = T − 1
    // the one cut path can be too small to see after 12 steps of a sigmoid Elman network; the
    // option cases' T <= 5 leave their few longer chains on steps the mask weighs 0.)
    if (K > 3 || c.T < 7) continue;
    double diff = 0;
    const auto P = ParamViews<const double>(c.config(), fast.params.data());
    const auto F = ParamViews<const double>(c.config(), full.g.params.data());
    const std::size_t n = std::size_t(c.config().gates()) * c.H * c.H;
    for (std::size_t i = 0; i < n; ++i) diff += std::abs(P.layers[0].w_hh[i] - F.layers[0].w_hh[i]);
    EXPECT_GT(diff, 1e-9) << "truncation left the gradient unchanged";
  }
}

// Float32 recompute against the float64 reference on the same rounded inputs (kFloat32).
TEST_P(Methods, Float32RecomputeMatchesReference) {
  const Case& c = GetParam();
  if (refused(c, "recompute")) GTEST_SKIP() << "refused (RecomputeEqualsBptt checks how)";
  const auto m = make_model<float>(c);
  const auto b = make_batch<float>(c);
  Recompute<float> r(c.config(), c.T, c.B, 2);
  Gradients<float> g(c.config(), c.T, c.B);
  g.zero();
  const double l = r.loss_and_gradients(m, b, c.loss.loss, g);
  Workspace<float> ws(c.config(), c.T, c.B);  // recompute keeps no ŷ: the full pass's
  forward(m, b, ws);
  expect_float32_matches(c, l, ws.yhat(), g, float64_reference(c, m, b));
}

INSTANTIATE_TEST_SUITE_P(Grid, Methods, testing::ValuesIn(method_grid()), case_name);
INSTANTIATE_TEST_SUITE_P(Large, Methods, testing::ValuesIn(large_shapes_rotated()), case_name);
// The torch.nn options; T >= 4 in every one, so that K = 1, 2, 3 and T − 1 are all segments.
INSTANTIATE_TEST_SUITE_P(Options, Methods, testing::ValuesIn(option_cases()), case_name);

class Rtrl : public testing::TestWithParam<Case> {};

TEST_P(Rtrl, EqualsBptt) {
  const Case& c = GetParam();
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  const auto full = full_bptt(c, m, b);
  Gradients<double> g(c.config(), c.T, c.B);
  g.zero();
  EXPECT_TRUE(close(rtrl_loss_and_gradients(m, b, c.loss.loss, g), full.loss, 1e-12));
  expect_gradients_close(c, g, full.g, 1e-9);
}

// Float32 RTRL against the float64 reference on the same rounded inputs (kFloat32).
TEST_P(Rtrl, Float32MatchesReference) {
  const Case& c = GetParam();
  const auto m = make_model<float>(c);
  const auto b = make_batch<float>(c);
  Gradients<float> g(c.config(), c.T, c.B);
  g.zero();
  const double l = rtrl_loss_and_gradients(m, b, c.loss.loss, g);
  Workspace<float> ws(c.config(), c.T, c.B);
  forward(m, b, ws);
  expect_float32_matches(c, l, ws.yhat(), g, float64_reference(c, m, b));
}

INSTANTIATE_TEST_SUITE_P(Grid, Rtrl, testing::ValuesIn(rtrl_grid()), case_name);
// The options RTRL takes: projections, bias-free layers and learned initial states.
std::vector<Case> rtrl_option_cases() {
  std::vector<Case> out;
  for (const Case& c : option_cases())
    if (!refused(c, "rtrl") && !c.opt.ln) out.push_back(c);
  return out;
}
INSTANTIATE_TEST_SUITE_P(Options, Rtrl, testing::ValuesIn(rtrl_option_cases()), case_name);

// RTRL refuses a layer-normalized model, zoneout and dropout masks (its Jacobians know the plain
// cells), in one line that names the methods that take them.
TEST(Rtrl, RefusesLayerNormMasksAndZoneout) {
  const auto expect_usage = [](const std::string& what, const std::function<void()>& call) {
    try {
      call();
      ADD_FAILURE() << what << " was taken";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::usage) << e.what();
      EXPECT_NE(std::string(e.what()).find("rtrl"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bptt"), std::string::npos) << e.what();
    }
  };
  for (const Case& c : option_cases()) {
    const bool regularized = c.opt.ln || c.opt.drop || c.opt.zoneout || c.opt.zoneout_eval;
    if (!regularized || c.opt.bi || c.opt.final_readout) continue;
    SCOPED_TRACE(c.name());
    const auto m = make_model<double>(c);
    const auto b = make_batch<double>(c);
    Gradients<double> g(c.config(), c.T, c.B);
    expect_usage("rtrl_loss_and_gradients", [&] { rtrl_loss_and_gradients(m, b, c.loss.loss, g); });
    const ModelConfig cfg = c.config();
    if (cfg.layer_norm || cfg.zoneout_h > 0)  // the model itself (masks come with batches)
      expect_usage("RtrlStream", [&] { RtrlStream<double>(cfg, c.B); });
  }
}

// A bidirectional model, or a head that reads the final state, is refused by every causal
// method, with a message that says why.
TEST(CausalMethods, RefuseBidirectionalModels) {
  for (const Case& c : option_cases()) {
    if (!c.opt.bi && !c.opt.final_readout) continue;
    SCOPED_TRACE(c.name());
    const auto m = make_model<double>(c);
    const auto b = make_batch<double>(c);
    Gradients<double> g(c.config(), c.T, c.B);
    for (const auto& [name, call] : std::vector<std::pair<std::string, std::function<void()>>>{
             {"truncated", [&] { truncated_loss_and_gradients(m, b, c.loss.loss, 2, g); }},
             {"truncated", [&] { truncated_reference_loss_and_gradients(m, b, c.loss.loss, 2, g); }},
             {"rtrl", [&] { rtrl_loss_and_gradients(m, b, c.loss.loss, g); }},
             {"rtrl", [&] { RtrlStream<double>(c.config(), c.B); }}}) {
      try {
        call();
        ADD_FAILURE() << name << " took a bidirectional model";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(c.opt.bi ? "bidirectional" : "final"),
                  std::string::npos) << e.what();
        EXPECT_NE(std::string(e.where()).find(name), std::string::npos) << e.where();
      }
    }
  }
}

// Online RTRL over a stream, with the parameters held fixed, sums to rtrl's parameter gradient:
// each step's gradient is that step's loss's, and the sensitivities carry across steps.
TEST(RtrlStream, StepsSumToTheWholeGradient) {
  std::vector<Case> cases;
  for (const CellVariant& cell : all_cells())
    cases.push_back(Case{cell, {LossKind::xent, Activation::softmax}, 2, 6});
  // A learned initial state (the stream starts from it: its parameters get the sensitivity),
  // a projection and no biases.
  Case learned{{CellKind::lstm, Activation::tanh}, {LossKind::xent, Activation::softmax}, 2, 6};
  learned.opt = {.P = 2, .bias = false, .init = InitCase::learned};
  cases.push_back(learned);
  learned.cell = {CellKind::gru, Activation::tanh};
  learned.opt.P = 0;
  cases.push_back(learned);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name());
    const auto m = make_model<double>(c);
    auto b = make_batch<double>(c);
    b.lengths.clear();
    b.mask.clear();
    const auto full = full_bptt(c, m, b);
    RtrlStream<double> s(c.config(), c.B);
    s.reset(m, b.h0, b.c0);
    std::vector<double> sum(m.params.size(), 0.0), g;
    const double norm = double(c.T) * c.B;
    double loss = 0;
    for (int t = 0; t < c.T; ++t) {
      const std::size_t tb = std::size_t(t) * c.B;
      loss += s.step(m, c.loss.loss, b.x.data() + tb * c.I, nullptr, b.classes.data() + tb,
                     nullptr, norm, g);
      for (std::size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
    }
    EXPECT_TRUE(close(loss, full.loss, 1e-12));
    expect_all_close("params", sum.data(), full.g.params.data(), sum.size(), 1e-9,
                     [&](std::size_t i) { return param_name(c.config(), i); });
    std::vector<double> h, cc, hf, cf;
    s.state(h, cc);
    Workspace<double> ws(c.config(), c.T, c.B);
    forward(m, b, ws);
    ws.state_at(c.T, hf, cf);
    expect_all_close("h_n", h.data(), hf.data(), h.size(), 1e-13,
                     [](std::size_t i) { return std::to_string(i); });
  }
}

// backward()'s trace is the total dL/dh_t: at the last step only the head's part, and at a step
// t < T the head's part plus what the steps after t send back (the dL/dh0 of the sequence that
// starts at t + 1 from the state at t + 1).
TEST(BackwardTrace, IsTheTotalGradientOfEachState) {
  const Case c{{CellKind::gru, Activation::tanh}, {LossKind::mse, Activation::identity}, 1, 6};
  const ModelConfig cfg = c.config();
  const auto m = make_model<double>(c);
  auto b = make_batch<double>(c);
  b.lengths.clear();
  Workspace<double> ws(cfg, c.T, c.B);
  forward(m, b, ws);
  loss_and_dz(c.loss.loss, cfg, b, ws.z(), ws.yhat(), ws.dz());
  std::vector<double> head(std::size_t(c.T) * c.B * c.H, 0.0);
  const auto P = m.views();
  for (std::size_t r = 0; r < std::size_t(c.T) * c.B; ++r)
    for (int o = 0; o < c.O; ++o)
      for (int j = 0; j < c.H; ++j)
        head[r * c.H + j] += ws.dz()[r * c.O + o] * P.w_o[std::size_t(o) * c.H + j];
  std::vector<double> trace(std::size_t(c.T) * c.B * c.H);
  Gradients<double> g(cfg, c.T, c.B);
  g.zero();
  BackwardOptions<double> opts;
  opts.dh_trace = trace.data();
  backward(m, b, ws, g, opts);
  const std::size_t BH = std::size_t(c.B) * c.H;
  const int t = 3;  // steps [t+1, T) as a sequence of their own, from the state after step t
  Batch<double> tail;
  slice_steps(b, t + 1, c.T, tail);
  std::vector<double> cc;
  Workspace<double> full(cfg, c.T, c.B);
  forward(m, b, full);
  full.state_at(t + 1, tail.h0, cc);
  // The tail's loss is normalized by its own weight; the whole loss by the batch's.
  const double scale = total_weight<double>(tail) / total_weight<double>(b);
  Workspace<double> ws2(cfg, tail.T, c.B);
  Gradients<double> g2(cfg, tail.T, c.B);
  g2.zero();
  loss_and_gradients(m, tail, c.loss.loss, ws2, g2);
  for (std::size_t i = 0; i < BH; ++i) {
    EXPECT_NEAR(trace[std::size_t(c.T - 1) * BH + i], head[std::size_t(c.T - 1) * BH + i], 1e-14);
    EXPECT_NEAR(trace[std::size_t(t) * BH + i], head[std::size_t(t) * BH + i] + scale * g2.h0[i],
                1e-13);
  }
}

TEST(GradMethod, ParsesNamesAndWindows) {
  EXPECT_EQ(parse_grad_method("bptt").method, GradMethod::bptt);
  EXPECT_EQ(parse_grad_method("recompute").K, 0);
  EXPECT_EQ(parse_grad_method("recompute:16").K, 16);
  EXPECT_EQ(parse_grad_method("truncated:5").method, GradMethod::truncated);
  EXPECT_EQ(parse_grad_method("truncated:5").K, 5);
  EXPECT_EQ(parse_grad_method("rtrl").method, GradMethod::rtrl);
  EXPECT_EQ(parse_grad_method("numeric").method, GradMethod::numeric);
  for (const char* bad : {"", "bpt", "truncated", "truncated:0", "truncated:-2", "truncated:x",
                          "recompute:", "recompute:3.5", "rtrl:4", "bptt:2"})
    EXPECT_THROW(parse_grad_method(bad), Error) << bad;
  EXPECT_EQ(to_string(parse_grad_method("truncated:7")), "truncated:7");
}

TEST(RecomputeBudget, ChoosesTheLargestIntervalThatFits) {
  ModelConfig cfg;
  cfg.cell = CellKind::lstm;
  cfg.input_size = 256, cfg.hidden_size = 512, cfg.output_size = 256;
  const int T = 1000, B = 64;
  const std::size_t full = full_bptt_bytes(cfg, T, B, 4);
  EXPECT_EQ(recompute_interval_for_budget(cfg, T, B, 4, full), T);
  const int K = recompute_interval_for_budget(cfg, T, B, 4, full / 5);
  EXPECT_LT(K, T);
  EXPECT_LE(recompute_bytes(cfg, T, B, K, 4), full / 5);
  EXPECT_GT(recompute_bytes(cfg, T, B, K + 1, 4), full / 5);
  const std::size_t least = recompute_bytes(cfg, T, B, default_recompute_interval(T), 4);
  EXPECT_LT(least, full / 10);
  EXPECT_THROW(recompute_interval_for_budget(cfg, T, B, 4, 1'000'000), Error);
  EXPECT_EQ(default_recompute_interval(1000), 32);
  EXPECT_EQ(default_recompute_interval(1), 1);
}

// A long bidirectional LSTM (shape b of the benchmarks, T = 1000): recompute keeps the layers'
// outputs and checkpoints in place of every unit's gates and states, and says so by the same
// layout it allocates.
TEST(RecomputeBudget, BidirectionalKeepsLayerOutputsOnly) {
  ModelConfig cfg;
  cfg.cell = CellKind::lstm;
  cfg.input_size = 256, cfg.hidden_size = 512, cfg.output_size = 256, cfg.num_layers = 2;
  cfg.bidirectional = true;
  const int T = 1000, B = 64, K = default_recompute_interval(T);
  const std::size_t full = full_bptt_bytes(cfg, T, B, 4);
  const std::size_t least = recompute_bytes(cfg, T, B, K, 4);
  EXPECT_LT(least, full / 3) << double(least) / 1e6 << " MB against full BPTT's " << double(full) / 1e6;
  const int k = recompute_interval_for_budget(cfg, T, B, 4, full / 2);
  EXPECT_LT(k, T);
  EXPECT_LE(recompute_bytes(cfg, T, B, k, 4), full / 2);
  // The estimate bounds what the object holds once it has run (small sizes, so that it runs
  // quickly), and not by much.
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 40, 3, 5, 6, 3};
  c.opt = {.bi = true, .P = 4};
  for (bool dropout : {false, true}) {
    Recompute<float> r(c.config(), c.T, c.B, 7, dropout);
    Gradients<float> g(c.config(), c.T, c.B);
    const Dropout d{0.3, 1, 2};
    r.loss_and_gradients(make_model<float>(c), make_batch<float>(c), c.loss.loss, g,
                         dropout ? &d : nullptr);
    const double estimate = double(recompute_bytes(c.config(), c.T, c.B, 7, sizeof(float), dropout));
    EXPECT_LE(double(r.bytes()), estimate);
    EXPECT_GE(double(r.bytes()), 0.9 * estimate);
  }
}

}  // namespace
}  // namespace bptt::test
