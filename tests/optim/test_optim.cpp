// Optimizers, clipping and learning-rate schedules against torch.optim 1.13, on the fixtures that
// tools/fixtures/make_optim_fixtures.py writes into tests/fixtures/optim/ (see its docstring for
// the layout): parameter trajectories in float64 (≤ 1e-12 relative) and float32 (≤ 1e-5), the
// optimizer state after the last step, clip_grad_norm_ / clip_grad_value_, and the schedules
// expressed with torch.optim.lr_scheduler. Then the state() slots, resuming from state(), and
// OptimizerConfig::validate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/optim.hpp"
#include "bptt/safetensors.hpp"
#include "support/compare.hpp"

namespace bptt {
namespace {

using test::expect_close;
using test::Tol;

const std::string kDir = std::string(BPTT_FIXTURE_DIR) + "/optim/";

std::string meta(const safetensors::File& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) {
    ADD_FAILURE() << f.path() << ": no __metadata__." << key;
    return "0";
  }
  return it->second;
}

OptimizerConfig config_of(const safetensors::File& f) {
  OptimizerConfig c;
  c.kind = parse_optimizer(meta(f, "kind"), f.path());
  c.momentum = std::stod(meta(f, "momentum"));
  c.nesterov = meta(f, "nesterov") == "1";
  c.beta1 = std::stod(meta(f, "beta1"));
  c.beta2 = std::stod(meta(f, "beta2"));
  c.alpha = std::stod(meta(f, "alpha"));
  c.eps = std::stod(meta(f, "eps"));
  c.weight_decay = std::stod(meta(f, "weight_decay"));
  return c;
}

// ---------------------------------------------------------------------------------------------
// Trajectories
// ---------------------------------------------------------------------------------------------

class OptimFixture : public ::testing::TestWithParam<std::string> {
 protected:
  // Runs Optimizer<Real> over the fixture's gradients and compares every step with `ref_name`.
  template <class Real>
  void run(const std::string& ref_name, double tol) {
    const auto f = safetensors::File::read(kDir + GetParam() + ".safetensors");
    const OptimizerConfig cfg = config_of(f);
    const auto p0 = f.as_real<Real>("params0");
    const auto grads = f.as_real<Real>("grads");
    const auto lr = f.as_f64("lr");
    const auto ref = f.as_f64(ref_name);
    const std::size_t n = p0.size(), S = lr.size();
    ASSERT_EQ(grads.size(), S * n);
    ASSERT_EQ(ref.size(), S * n);

    Optimizer<Real> opt(cfg, n);
    std::vector<Real> p = p0;
    for (std::size_t s = 0; s < S; ++s) {
      const std::vector<Real> g(grads.begin() + std::ptrdiff_t(s * n),
                                grads.begin() + std::ptrdiff_t((s + 1) * n));
      const std::vector<Real> g_before = g;
      opt.step(p.data(), g.data(), lr[s]);
      EXPECT_EQ(g, g_before) << "step() modified the gradient";
      // float32: a floor of 1e-2, because a parameter that an update brings near 0 keeps the
      // absolute rounding error of its start (one float ulp of 0.1 is 7e-9).
      expect_close(GetParam() + " " + ref_name + ", after step " + std::to_string(s + 1),
                   p.data(), ref.data() + s * n, n, Tol{tol, sizeof(Real) == 8 ? 1e-3 : 1e-2});
    }
    EXPECT_EQ(opt.steps(), std::int64_t(S));

    // The state after the last step equals torch's optimizer.state[p], slot by slot.
    for (const auto& slot : opt.state()) {
      const std::string name = "state." + slot.name;
      if (slot.data->empty()) {
        EXPECT_FALSE(f.has(name)) << name << ": torch keeps it, we do not";
        continue;
      }
      ASSERT_TRUE(f.has(name)) << name << ": we keep it, torch does not";
      const auto want = f.as_f64(name);
      ASSERT_EQ(slot.data->size(), want.size()) << name;
      // The state is compared in both dtypes against the float64 run; float32 gets a looser
      // tolerance because Adam's exp_avg_sq of the 1e-6 gradients is ~1e-13 in magnitude.
      expect_close(GetParam() + " " + name, slot.data->data(), want.data(), want.size(),
                   Tol{sizeof(Real) == 8 ? tol : 1e-4, 1e-12});
    }
  }
};

TEST_P(OptimFixture, Float64MatchesTorch) { run<double>("params", 1e-12); }
TEST_P(OptimFixture, Float32MatchesTorchFloat32) { run<float>("params_f32", 1e-5); }
TEST_P(OptimFixture, Float32MatchesTorchFloat64) { run<float>("params", 1e-5); }

// Resuming from state() and set_steps() continues bit-identically (what snapshots rely on).
TEST_P(OptimFixture, ResumeFromStateIsBitIdentical) {
  const auto f = safetensors::File::read(kDir + GetParam() + ".safetensors");
  const OptimizerConfig cfg = config_of(f);
  const auto p0 = f.as_f64("params0");
  const auto grads = f.as_f64("grads");
  const auto lr = f.as_f64("lr");
  const std::size_t n = p0.size(), S = lr.size(), half = S / 2;

  Optimizer<double> straight(cfg, n);
  std::vector<double> a = p0;
  for (std::size_t s = 0; s < S; ++s) straight.step(a.data(), grads.data() + s * n, lr[s]);

  Optimizer<double> first(cfg, n);
  std::vector<double> b = p0;
  for (std::size_t s = 0; s < half; ++s) first.step(b.data(), grads.data() + s * n, lr[s]);
  Optimizer<double> second(cfg, n);
  auto from = first.state(), to = second.state();
  ASSERT_EQ(from.size(), to.size());
  for (std::size_t i = 0; i < from.size(); ++i) *to[i].data = *from[i].data;
  second.set_steps(first.steps());
  for (std::size_t s = half; s < S; ++s) second.step(b.data(), grads.data() + s * n, lr[s]);
  EXPECT_EQ(a, b);
  EXPECT_EQ(second.steps(), straight.steps());
}

const std::vector<std::string> kOptimizers = {
    "sgd",     "sgd_wd",         "sgd_momentum", "sgd_momentum_wd",  "sgd_nesterov",
    "adam",    "adam_wd",        "adam_betas_eps", "adamw",          "adamw_wd",
    "rmsprop", "rmsprop_momentum", "rmsprop_wd", "adagrad",          "adagrad_wd"};

INSTANTIATE_TEST_SUITE_P(Torch, OptimFixture, ::testing::ValuesIn(kOptimizers),
                         [](const auto& pi) { return pi.param; });

// torch computes the coefficient 1 − alpha in double and rounds it to float once
// (square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)): with alpha = 0.99 and g = 1 the
// first square_avg is float(0.01) = 0.0099999998f, not 1.0f − 0.99f = 0.0099999905f (1e-6 off,
// which float32 RMSprop then carries in every step). Adam's coefficients are already right.
TEST(OptimizerFloat32, CoefficientsRoundedOnceAsTorchDoes) {
  const std::vector<float> g(3, 1.0f);
  {
    OptimizerConfig c;
    c.kind = OptimizerKind::rmsprop;
    Optimizer<float> opt(c, 3);
    std::vector<float> p(3, 0.0f);
    opt.step(p.data(), g.data(), 0.01);
    EXPECT_EQ((*opt.state()[0].data)[0], float(1 - 0.99)) << "rmsprop square_avg";
  }
  {
    OptimizerConfig c;
    c.kind = OptimizerKind::adam;
    Optimizer<float> opt(c, 3);
    std::vector<float> p(3, 0.0f);
    opt.step(p.data(), g.data(), 0.01);
    EXPECT_EQ((*opt.state()[0].data)[0], float(1 - 0.9)) << "adam exp_avg";
    EXPECT_EQ((*opt.state()[1].data)[0], float(1 - 0.999)) << "adam exp_avg_sq";
  }
}

// ---------------------------------------------------------------------------------------------
// Clipping
// ---------------------------------------------------------------------------------------------

template <class Real>
void check_clipping(const char* suffix, double tol) {
  const auto f = safetensors::File::read(kDir + "clip.safetensors");
  const auto g = f.as_real<Real>("grad");
  const std::size_t n = g.size();
  const auto max_norm = f.as_f64("max_norm");
  const auto norm = f.as_f64(std::string("norm") + suffix);
  const auto clipped = f.as_f64(std::string("clipped") + suffix);
  EXPECT_NEAR(global_norm(g.data(), n), norm[0], tol * norm[0]);
  for (std::size_t k = 0; k < max_norm.size(); ++k) {
    std::vector<Real> c = g;
    const double returned = clip_by_norm(c.data(), n, max_norm[k]);
    EXPECT_NEAR(returned, norm[k], tol * norm[k]) << "max_norm " << max_norm[k];
    expect_close("clipped at max_norm " + std::to_string(max_norm[k]), c.data(),
                 clipped.data() + k * n, n, Tol{tol, 1e-12});
    if (max_norm[k] > norm[k]) {
      EXPECT_EQ(c, g) << "a gradient below max_norm must not change";
    }
  }
  const auto value = f.as_f64("clip_value");
  const auto value_clipped = f.as_f64(std::string("value_clipped") + suffix);
  for (std::size_t k = 0; k < value.size(); ++k) {
    std::vector<Real> c = g;
    clip_by_value(c.data(), n, value[k]);
    for (std::size_t i = 0; i < n; ++i)  // clamping is exact
      EXPECT_EQ(double(c[i]), value_clipped[k * n + i])
          << "clip_value " << value[k] << " [" << i << "]";
  }
}

TEST(Clip, Float64MatchesTorch) { check_clipping<double>("", 1e-12); }
TEST(Clip, Float32MatchesTorch) { check_clipping<float>("_f32", 1e-6); }

TEST(Clip, ZeroGradientIsLeftAlone) {
  std::vector<double> g(5, 0.0);
  EXPECT_EQ(clip_by_norm(g.data(), g.size(), 1.0), 0.0);
  EXPECT_EQ(g, std::vector<double>(5, 0.0));
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

Schedule schedule_of(const nlohmann::json& j) {
  Schedule s;
  s.kind = parse_schedule(j.at("kind").get<std::string>(), "fixture");
  s.lr = j.at("lr").get<double>();
  s.warmup = j.at("warmup").get<std::int64_t>();
  s.step_size = j.at("step_size").get<std::int64_t>();
  s.gamma = j.at("gamma").get<double>();
  s.total = j.at("total").get<std::int64_t>();
  s.min_lr = j.at("min_lr").get<double>();
  return s;
}

class ScheduleFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ScheduleFixture, MatchesTorchLrScheduler) {
  const auto f = safetensors::File::read(kDir + "schedules.safetensors");
  const Schedule s = schedule_of(nlohmann::json::parse(meta(f, GetParam())));
  const auto want = f.as_f64("lr." + GetParam());
  ASSERT_FALSE(want.empty());
  for (std::size_t k = 0; k < want.size(); ++k)
    EXPECT_TRUE(test::close(s.at(std::int64_t(k)), want[k], Tol{1e-12, s.lr * 1e-3}))
        << GetParam() << " step " << k << ": ours " << s.at(std::int64_t(k)) << ", torch "
        << want[k];
}

INSTANTIATE_TEST_SUITE_P(Torch, ScheduleFixture,
                         ::testing::Values("step", "step_warmup", "cosine", "cosine_warmup",
                                           "cosine_warmup_to_zero", "constant_warmup"),
                         [](const auto& pi) { return pi.param; });

// Past `total`, torch's CosineAnnealingLR climbs again; ours stays at min_lr (documented).
TEST(Schedule, CosineStaysAtMinLrAfterTotal) {
  Schedule s;
  s.kind = ScheduleKind::cosine;
  s.lr = 0.1;
  s.warmup = 3;
  s.total = 10;
  s.min_lr = 0.004;
  for (std::int64_t k = 10; k < 40; ++k) EXPECT_DOUBLE_EQ(s.at(k), 0.004) << k;
}

TEST(Schedule, CosineWithoutTotalIsConstant) {
  Schedule s;
  s.kind = ScheduleKind::cosine;
  s.lr = 0.02;
  for (std::int64_t k : {0, 1, 100, 100000}) EXPECT_EQ(s.at(k), 0.02);
  s.warmup = 4;
  s.total = 4;  // nothing left to decay over
  EXPECT_DOUBLE_EQ(s.at(0), 0.005);
  for (std::int64_t k : {3, 4, 50}) EXPECT_DOUBLE_EQ(s.at(k), 0.02);
}

TEST(Schedule, ConstantAndWarmupReachLr) {
  Schedule s;
  s.lr = 0.3;
  for (std::int64_t k : {0, 7, 1000}) EXPECT_EQ(s.at(k), 0.3);
  s.warmup = 6;
  for (std::int64_t k = 0; k < 6; ++k) EXPECT_DOUBLE_EQ(s.at(k), 0.3 * double(k + 1) / 6);
  EXPECT_EQ(s.at(5), 0.3);  // the last warm-up step already uses the full rate
  EXPECT_EQ(s.at(6), 0.3);
}

TEST(Schedule, Parse) {
  EXPECT_EQ(parse_schedule("constant", "x"), ScheduleKind::constant);
  EXPECT_EQ(parse_schedule("step", "x"), ScheduleKind::step);
  EXPECT_EQ(parse_schedule("cosine", "x"), ScheduleKind::cosine);
  EXPECT_THROW(parse_schedule("linear", "--lr-schedule"), Error);
  try {
    parse_schedule("Cosine", "--lr-schedule");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "--lr-schedule");
    EXPECT_NE(e.hint().find("cosine"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// state() and OptimizerConfig
// ---------------------------------------------------------------------------------------------

struct StateCase {
  OptimizerKind kind;
  double momentum;
  std::vector<std::pair<std::string, std::size_t>> slots;  // name, size for n = 7
};

TEST(OptimizerState, NamesAndSizes) {
  const std::size_t n = 7;
  const std::vector<StateCase> cases = {
      {OptimizerKind::sgd, 0, {{"momentum_buffer", 0}}},
      {OptimizerKind::sgd, 0.9, {{"momentum_buffer", n}}},
      {OptimizerKind::adam, 0, {{"exp_avg", n}, {"exp_avg_sq", n}}},
      {OptimizerKind::adamw, 0, {{"exp_avg", n}, {"exp_avg_sq", n}}},
      {OptimizerKind::rmsprop, 0, {{"square_avg", n}, {"momentum_buffer", 0}}},
      {OptimizerKind::rmsprop, 0.5, {{"square_avg", n}, {"momentum_buffer", n}}},
      {OptimizerKind::adagrad, 0, {{"sum", n}}},
  };
  for (const auto& c : cases) {
    OptimizerConfig cfg;
    cfg.kind = c.kind;
    cfg.momentum = c.momentum;
    Optimizer<float> f(cfg, n);
    Optimizer<double> d(cfg, n);
    const auto sf = f.state();
    const auto sd = d.state();
    ASSERT_EQ(sf.size(), c.slots.size()) << to_string(c.kind);
    ASSERT_EQ(sd.size(), c.slots.size()) << to_string(c.kind);
    for (std::size_t i = 0; i < c.slots.size(); ++i) {
      const std::string what = std::string(to_string(c.kind)) + " momentum " +
                               std::to_string(c.momentum) + " slot " + c.slots[i].first;
      EXPECT_EQ(sf[i].name, c.slots[i].first) << what;
      EXPECT_EQ(sd[i].name, c.slots[i].first) << what;
      EXPECT_EQ(sf[i].data->size(), c.slots[i].second) << what;
      EXPECT_EQ(sd[i].data->size(), c.slots[i].second) << what;
      for (float v : *sf[i].data) EXPECT_EQ(v, 0.0f) << what;
    }
    EXPECT_EQ(d.steps(), 0);
  }
}

TEST(OptimizerConfig, DefaultEpsIsPyTorchs) {
  OptimizerConfig c;
  c.kind = OptimizerKind::adagrad;
  EXPECT_EQ(Optimizer<double>(c, 3).config().eps, 1e-10);
  for (auto k : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw,
                 OptimizerKind::rmsprop}) {
    c.kind = k;
    EXPECT_EQ(Optimizer<double>(c, 3).config().eps, 1e-8) << to_string(k);
  }
  c.eps = 1e-4;
  EXPECT_EQ(Optimizer<double>(c, 3).config().eps, 1e-4);
}

TEST(OptimizerConfig, ParseAndName) {
  for (auto k : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw,
                 OptimizerKind::rmsprop, OptimizerKind::adagrad})
    EXPECT_EQ(parse_optimizer(to_string(k), "--optimizer"), k);
  try {
    parse_optimizer("adamax", "--optimizer");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "--optimizer");
    EXPECT_NE(std::string(e.what()).find("adamax"), std::string::npos);
    EXPECT_NE(e.hint().find("rmsprop"), std::string::npos);
  }
}

TEST(OptimizerConfig, ValidConfigsPass) {
  OptimizerConfig c;
  EXPECT_NO_THROW(c.validate());
  c.kind = OptimizerKind::sgd;
  c.momentum = 0.9;
  c.nesterov = true;
  EXPECT_NO_THROW(c.validate());
  c.beta1 = 0;
  c.beta2 = 0;
  c.alpha = 0;
  c.weight_decay = 0;
  EXPECT_NO_THROW(c.validate());
  c.eps = 0;  // PyTorch accepts eps = 0
  EXPECT_NO_THROW(c.validate());
}

struct BadConfig {
  const char* what;
  const char* field;  // Error::where()
  void (*apply)(OptimizerConfig&);
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(OptimizerConfig, RejectsWhatPyTorchRejects) {
  const std::vector<BadConfig> bad = {
      {"momentum < 0", "--momentum", [](OptimizerConfig& c) { c.momentum = -0.1; }},
      {"momentum NaN", "--momentum", [](OptimizerConfig& c) { c.momentum = kNaN; }},
      {"nesterov without momentum", "--nesterov",
       [](OptimizerConfig& c) { c.kind = OptimizerKind::sgd, c.nesterov = true, c.momentum = 0; }},
      {"beta1 = 1", "--beta1/--beta2", [](OptimizerConfig& c) { c.beta1 = 1; }},
      {"beta1 < 0", "--beta1/--beta2", [](OptimizerConfig& c) { c.beta1 = -0.5; }},
      {"beta2 = 1", "--beta1/--beta2", [](OptimizerConfig& c) { c.beta2 = 1; }},
      {"beta2 NaN", "--beta1/--beta2", [](OptimizerConfig& c) { c.beta2 = kNaN; }},
      {"alpha < 0", "--alpha",
       [](OptimizerConfig& c) { c.kind = OptimizerKind::rmsprop, c.alpha = -1; }},
      {"weight_decay < 0", "--weight-decay", [](OptimizerConfig& c) { c.weight_decay = -1e-4; }},
      {"weight_decay NaN", "--weight-decay",
       [](OptimizerConfig& c) { c.weight_decay = kNaN; }},
  };
  for (const auto& b : bad) {
    OptimizerConfig c;
    b.apply(c);
    try {
      c.validate();
      ADD_FAILURE() << b.what << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.where(), b.field) << b.what;
      EXPECT_FALSE(e.hint().empty()) << b.what;
    }
    EXPECT_THROW(Optimizer<double>(c, 4), Error) << b.what;
    EXPECT_THROW(Optimizer<float>(c, 4), Error) << b.what;
  }
}

// torch.optim rejects eps = NaN ("Invalid epsilon value: nan": `not 0.0 <= eps`) for Adam,
// AdamW, RMSprop and Adagrad. eps < 0 means "PyTorch's default" here, but NaN is neither.
TEST(OptimizerConfig, RejectsNaNEps) {
  for (auto k : {OptimizerKind::adam, OptimizerKind::adamw, OptimizerKind::rmsprop,
                 OptimizerKind::adagrad}) {
    OptimizerConfig c;
    c.kind = k;
    c.eps = kNaN;
    EXPECT_THROW(c.validate(), Error) << to_string(k);
    EXPECT_THROW(Optimizer<double>(c, 4), Error) << to_string(k);
  }
}

}  // namespace
}  // namespace bptt
