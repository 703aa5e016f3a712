// Issue 20's online approximations of RTRL (docs/math.md, section 8e), each held to the property
// that defines it, in float64 through the whole time loop (T = 7, lengths, a mask, nonzero
// h0/c0, every cell):
//   snap1 equals rtrl when every gate block of W_hh is diagonal, and differs otherwise;
//   eprop equals bptt when W_hh = 0, and differs otherwise;
//   uoro and kf-rtrl average to rtrl over seeds, the error of the mean shrinking like 1/√N;
//   every method's head gradient is bptt's; a seed gives one gradient, another seed another;
//   OnlineGradient's steps sum to online_loss_and_gradients, and a run split in two with its
//   carried arrays and counter handed over equals the whole; f32 follows f64;
//   the work per step grows with H as each paper says (online::work, a count).
// The reference written from the papers (tools/fixtures/online_methods.py) is compared with
// `bptt grad` to 1e-9 in tests/python/test_online_methods.py.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "methods/online.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

constexpr OnlineMethod kAll[] = {OnlineMethod::uoro, OnlineMethod::kf_rtrl, OnlineMethod::snap1,
                                 OnlineMethod::eprop};

bool stacks(OnlineMethod m) { return m == OnlineMethod::uoro || m == OnlineMethod::kf_rtrl; }

// Every cell × two losses, one layer, and two layers where the method stacks; one bias-free case.
std::vector<Case> online_grid(bool stacked) {
  std::vector<Case> out;
  const CellVariant cells[] = {{CellKind::elman, Activation::tanh},
                               {CellKind::elman, Activation::sigmoid},
                               {CellKind::lstm, Activation::tanh},
                               {CellKind::gru, Activation::tanh}};
  for (const CellVariant& c : cells)
    for (const LossPair& l : {LossPair{LossKind::mse, Activation::tanh},
                              LossPair{LossKind::xent, Activation::softmax}})
      for (int L : {1, 2})
        if (L == 1 || stacked) out.push_back(Case{c, l, L, 7});
  Case nobias{{CellKind::lstm, Activation::tanh}, {LossKind::bce, Activation::sigmoid}, 1, 7};
  nobias.opt.bias = false;
  out.push_back(nobias);
  return out;
}

template <class Real>
Gradients<Real> estimate(OnlineMethod m, std::uint64_t seed, const Case& c, const Model<Real>& model,
                       const Batch<Real>& b, double* loss = nullptr) {
  Gradients<Real> g(c.config(), c.T, c.B);
  g.zero();
  const double l = online_loss_and_gradients(m, seed, model, b, c.loss.loss, g);
  if (loss) *loss = l;
  return g;
}

Gradients<double> rtrl(const Case& c, const Model<double>& model, const Batch<double>& b) {
  Gradients<double> g(c.config(), c.T, c.B);
  g.zero();
  rtrl_loss_and_gradients(model, b, c.loss.loss, g);
  return g;
}

Gradients<double> bptt_grad(const Case& c, const Model<double>& model, const Batch<double>& b) {
  Workspace<double> ws(c.config(), c.T, c.B);
  Gradients<double> g(c.config(), c.T, c.B);
  g.zero();
  loss_and_gradients(model, b, c.loss.loss, ws, g);
  return g;
}

// max |a − b| over [from, to) of the parameter arena, relative to max(1, max |b|).
double rel(const std::vector<double>& a, const std::vector<double>& b, std::size_t from = 0,
           std::size_t to = std::size_t(-1)) {
  to = std::min(to, b.size());
  double d = 0, s = 1;
  for (std::size_t i = from; i < to; ++i) {
    d = std::max(d, std::abs(a[i] - b[i]));
    s = std::max(s, std::abs(b[i]));
  }
  return d / s;
}

std::size_t rec_end(const ModelConfig& cfg) { return online::recurrent_count(cfg); }

// Every gate block of every W_hh made diagonal (or zero).
void shape_w_hh(Model<double>& m, bool zero) {
  const int H = m.cfg.hidden_size, G = m.cfg.gates();
  for (auto& p : m.views().layers)
    for (int r = 0; r < G * H; ++r)
      for (int c = 0; c < H; ++c)
        if (zero || c != r % H) p.w_hh[std::size_t(r) * H + c] = 0;
}

class Online : public testing::TestWithParam<Case> {};

TEST_P(Online, Snap1IsRtrlWhenEachUnitSeesOnlyItself) {
  const Case& c = GetParam();
  if (c.L != 1) GTEST_SKIP() << "snap1 is defined for one layer";
  Model<double> m = make_model<double>(c);
  const Batch<double> b = make_batch<double>(c);
  // Dense W_hh: an approximation, visibly off.
  EXPECT_GT(rel(estimate(OnlineMethod::snap1, 1, c, m, b).params, rtrl(c, m, b).params), 1e-6);
  shape_w_hh(m, false);
  const auto g = estimate(OnlineMethod::snap1, 1, c, m, b);
  EXPECT_LE(rel(g.params, rtrl(c, m, b).params), 1e-12);
}

TEST_P(Online, EpropIsBpttWithoutRecurrentWeights) {
  const Case& c = GetParam();
  if (c.L != 1) GTEST_SKIP() << "eprop is defined for one layer";
  Model<double> m = make_model<double>(c);
  const Batch<double> b = make_batch<double>(c);
  EXPECT_GT(rel(estimate(OnlineMethod::eprop, 1, c, m, b).params, bptt_grad(c, m, b).params), 1e-6);
  shape_w_hh(m, true);
  EXPECT_LE(rel(estimate(OnlineMethod::eprop, 1, c, m, b).params, bptt_grad(c, m, b).params), 1e-12);
}

// Unbiased: with V = Σ_s ‖g_s − ḡ‖² / (N − 1) the samples' total variance, the mean of n
// independent samples misses the exact gradient by ‖ḡ_n − g‖² ≈ V/n on average. Checked over the
// 16 disjoint groups of 16 (their mean squared error within [0.5, 2]·V/16) and for all 256
// (‖ḡ_256 − g‖² < 6·V/256): the error of the mean shrinks like 1/√n. A bias b adds ‖b‖² to
// both, which the second bound catches once ‖b‖² > 5·V/256.
TEST_P(Online, UoroAndKfRtrlAverageToRtrl) {
  const Case& c = GetParam();
  const Model<double> m = make_model<double>(c);
  const Batch<double> b = make_batch<double>(c);
  const std::vector<double> exact = rtrl(c, m, b).params;
  const std::size_t P = rec_end(c.config());
  constexpr int N = 256, n = 16;
  for (OnlineMethod method : {OnlineMethod::uoro, OnlineMethod::kf_rtrl}) {
    SCOPED_TRACE(to_string(method));
    std::vector<std::vector<double>> g;
    for (int s = 1; s <= N; ++s) {
      g.push_back(estimate(method, std::uint64_t(s), c, m, b).params);
      g.back().resize(P);
    }
    EXPECT_GT(rel(g[0], exact, 0, P), 1e-6) << "one estimate is exact";
    const auto mean_of = [&](int from, int count) {
      std::vector<double> mu(P, 0.0);
      for (int s = from; s < from + count; ++s)
        for (std::size_t i = 0; i < P; ++i) mu[i] += g[std::size_t(s)][i] / count;
      return mu;
    };
    const auto sq_err = [&](const std::vector<double>& mu) {
      double e = 0;
      for (std::size_t i = 0; i < P; ++i) e += (mu[i] - exact[i]) * (mu[i] - exact[i]);
      return e;
    };
    const std::vector<double> all = mean_of(0, N);
    double V = 0;
    for (const auto& gs : g)
      for (std::size_t i = 0; i < P; ++i) V += (gs[i] - all[i]) * (gs[i] - all[i]) / (N - 1);
    double groups = 0;
    for (int k = 0; k < N / n; ++k) groups += sq_err(mean_of(k * n, n)) / (N / n);
    EXPECT_GT(groups, 0.5 * V / n) << "V " << V;
    EXPECT_LT(groups, 2.0 * V / n) << "V " << V;
    EXPECT_LT(sq_err(all), 6.0 * V / N) << "V " << V << ": biased";
  }
}

TEST_P(Online, HeadIsExactAndSeedsRepeat) {
  const Case& c = GetParam();
  const Model<double> m = make_model<double>(c);
  const Batch<double> b = make_batch<double>(c);
  const auto full = bptt_grad(c, m, b);
  const std::size_t P = rec_end(c.config());
  double loss_bptt = 0;
  {
    Workspace<double> ws(c.config(), c.T, c.B);
    Gradients<double> g(c.config(), c.T, c.B);
    g.zero();
    loss_bptt = loss_and_gradients(m, b, c.loss.loss, ws, g);
  }
  for (OnlineMethod method : kAll) {
    if (c.L > 1 && !stacks(method)) continue;
    SCOPED_TRACE(to_string(method));
    double loss = 0;
    const auto g1 = estimate(method, 7, c, m, b, &loss);
    EXPECT_NEAR(loss, loss_bptt, 1e-12 * std::max(1.0, std::abs(loss_bptt)));
    EXPECT_LE(rel(g1.params, full.params, P), 1e-12) << "the head's gradient";
    EXPECT_EQ(rel(estimate(method, 7, c, m, b).params, g1.params), 0.0) << "seed 7 twice";
    const double other = rel(estimate(method, 8, c, m, b).params, g1.params, 0, P);
    if (method == OnlineMethod::uoro || method == OnlineMethod::kf_rtrl) {
      EXPECT_GT(other, 1e-9) << "seeds 7 and 8 gave the same estimate";
    } else {
      EXPECT_EQ(other, 0.0) << "a deterministic method depends on the seed";
    }
    for (double v : g1.x) EXPECT_EQ(v, 0.0) << "the online methods give no dL/dx";
  }
}

TEST_P(Online, StepsSumToTheGradientAndHalvesCarryOver) {
  const Case& c = GetParam();
  const Model<double> m = make_model<double>(c);
  Batch<double> b = make_batch<double>(c);
  const ModelConfig cfg = c.config();
  const int I = c.I, O = c.O, T = c.T, B = c.B;
  const double norm = total_weight<double>(b);
  for (OnlineMethod method : kAll) {
    if (c.L > 1 && !stacks(method)) continue;
    SCOPED_TRACE(to_string(method));
    const auto whole = estimate(method, 3, c, m, b);
    // Steps [0, T/2) in one object, then its state, estimate and counter into a fresh one.
    auto first = std::make_unique<OnlineGradient<double>>(method, cfg, B, 3);
    std::vector<double> h0, c0;
    initial_states(m, b, h0, c0);
    first->reset(h0, c0);
    std::vector<double> sum(m.params.size(), 0.0), g, w(static_cast<std::size_t>(B));
    std::vector<unsigned char> valid(static_cast<std::size_t>(B));
    OnlineGradient<double>* run = first.get();
    std::unique_ptr<OnlineGradient<double>> second;
    for (int t = 0; t < T; ++t) {
      if (t == T / 2) {
        second = std::make_unique<OnlineGradient<double>>(method, cfg, B, 3);
        std::vector<double> h, cc;
        first->state(h, cc);
        second->reset(h, cc);
        auto from = first->carried(), to = second->carried();
        ASSERT_EQ(from.size(), to.size());
        for (std::size_t i = 0; i < from.size(); ++i) *to[i].second = *from[i].second;
        second->set_step_count(first->step_count());
        first.reset();
        run = second.get();
      }
      for (int bb = 0; bb < B; ++bb) {
        w[std::size_t(bb)] = b.weight(t, bb);
        valid[std::size_t(bb)] = b.valid(t, bb);
      }
      const std::size_t tb = std::size_t(t) * B;
      run->step(m, c.loss.loss, b.x.data() + tb * I, b.y.empty() ? nullptr : b.y.data() + tb * O,
                b.classes.empty() ? nullptr : b.classes.data() + tb, w.data(), norm, g,
                valid.data());
      for (std::size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
    }
    EXPECT_LE(rel(sum, whole.params), 1e-14);
  }
}

TEST_P(Online, Float32FollowsFloat64) {
  const Case& c = GetParam();
  const Model<double> m = make_model<double>(c);
  const Model<float> mf = make_model<float>(c);
  const Batch<double> b = make_batch<double>(c);
  const Batch<float> bf = make_batch<float>(c);
  for (OnlineMethod method : kAll) {
    if (c.L > 1 && !stacks(method)) continue;
    SCOPED_TRACE(to_string(method));
    const auto g64 = estimate(method, 5, c, m, b);
    const auto g32 = estimate(method, 5, c, mf, bf);
    std::vector<double> wide(g32.params.begin(), g32.params.end());
    EXPECT_LE(rel(wide, g64.params), 1e-4);
  }
}

std::string case_name(const testing::TestParamInfo<Case>& info) { return info.param.name(); }

INSTANTIATE_TEST_SUITE_P(Grid, Online, testing::ValuesIn(online_grid(true)), case_name);

TEST(OnlineRefusals, OptionsTheMethodsDoNotHandle) {
  const auto refuses = [](OnlineMethod m, const ModelConfig& cfg, const std::string& what) {
    try {
      OnlineGradient<double> g(m, cfg, 2, 1);
      ADD_FAILURE() << to_string(m) << " took " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::usage) << e.what();
      EXPECT_NE(std::string(e.what()).find(to_string(m)), std::string::npos) << e.what();
    }
  };
  ModelConfig base;
  base.cell = CellKind::lstm;
  base.input_size = 2, base.hidden_size = 4, base.output_size = 2;
  for (OnlineMethod m : kAll) {
    ModelConfig c = base;
    c.bidirectional = true;
    refuses(m, c, "a bidirectional model");
    c = base, c.proj_size = 2;
    refuses(m, c, "a projection");
    c = base, c.layer_norm = true;
    refuses(m, c, "layer norm");
    c = base, c.initial_state = InitialState::learned;
    refuses(m, c, "a learned initial state");
    c = base, c.zoneout_h = 0.1;
    refuses(m, c, "zoneout");
    c = base, c.num_layers = 2;
    if (!stacks(m)) refuses(m, c, "two layers");
  }
}

// The work of one step (online::work) at H and 2H, for H = 64, with I = 8 and B = 2: the
// exponent log₂(work(2H)/work(H)) is what each paper says, within 0.3: UORO, SnAp-1 and e-prop
// O(P) = O(H²) per step, KF-RTRL O(H³) (its A has S·G·H entries, each moved by a product of
// length H).
TEST(OnlineCost, WorkPerStepGrowsAsThePapersSay) {
  const auto per_step = [](OnlineMethod m, int H) {
    ModelConfig cfg;
    cfg.cell = CellKind::lstm;
    cfg.input_size = 8, cfg.hidden_size = H, cfg.output_size = 4;
    Model<double> model(cfg);
    model.init_uniform(1);
    const int B = 2;
    OnlineGradient<double> g(m, cfg, B, 1);
    g.reset({}, {});
    std::vector<double> x(std::size_t(B) * 8, 0.5), y(std::size_t(B) * 4, 0.1), grad;
    g.step(model, LossKind::mse, x.data(), y.data(), nullptr, nullptr, B, grad);
    const std::int64_t before = online::work;
    g.step(model, LossKind::mse, x.data(), y.data(), nullptr, nullptr, B, grad);
    return double(online::work - before);
  };
  const std::pair<OnlineMethod, double> papers[] = {{OnlineMethod::uoro, 2.0},
                                                    {OnlineMethod::kf_rtrl, 3.0},
                                                    {OnlineMethod::snap1, 2.0},
                                                    {OnlineMethod::eprop, 2.0}};
  for (const auto& [m, exponent] : papers) {
    const double measured = std::log2(per_step(m, 128) / per_step(m, 64));
    EXPECT_NEAR(measured, exponent, 0.3) << to_string(m);
  }
}

}  // namespace
}  // namespace bptt::test
