// bptt::explain (include/bptt/explain.hpp) and the `bptt explain` verb.
//
// The backward recursion is checked against things that share none of its code: a direct
// re-implementation of the forward pass in this file, differentiated by forward-mode sensitivities
// (dh_t/dp carried forward in time, as RTRL does) and by central differences of per-step
// perturbations of s_t and h_t; and two cases worked out by hand.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bptt/error.hpp"
#include "explain/explain.hpp"
#include "bptt/types.hpp"

#ifdef BPTT_CLI_PATH
constexpr bool kCliPathFromBuild = true;
#else
#define BPTT_CLI_PATH "build/bptt"
constexpr bool kCliPathFromBuild = false;
#endif

namespace {

using bptt::Activation;
using bptt::ExplainResult;
using bptt::ScalarRnn;

// ---- An independent forward pass -----------------------------------------------------------

double act(Activation f, double a) {
  switch (f) {
    case Activation::identity: return a;
    case Activation::tanh: return std::tanh(a);
    case Activation::relu: return std::max(a, 0.0);
    case Activation::sigmoid: return 1.0 / (1.0 + std::exp(-a));
    case Activation::softmax: break;
  }
  ADD_FAILURE() << "softmax in the scalar network";
  return 0.0;
}

// f'(a) from the input a (the library uses the saved output; this is the textbook form).
double act_prime(Activation f, double a) {
  switch (f) {
    case Activation::identity: return 1.0;
    case Activation::tanh: return 1.0 / (std::cosh(a) * std::cosh(a));
    case Activation::relu: return a > 0.0 ? 1.0 : 0.0;
    case Activation::sigmoid: return std::exp(-a) / ((1.0 + std::exp(-a)) * (1.0 + std::exp(-a)));
    case Activation::softmax: break;
  }
  ADD_FAILURE() << "softmax in the scalar network";
  return 0.0;
}

// L with s_t += ds[t-1] and h_t += dh[t-1] added on the way (empty: no perturbation).
double direct_loss(const ScalarRnn& n, const std::vector<double>& ds = {},
                   const std::vector<double>& dh = {}) {
  double h = n.h0, loss = 0.0;
  for (std::size_t t = 0; t < n.x.size(); ++t) {
    double s = n.w * h + n.v * n.x[t];
    if (!ds.empty()) s += ds[t];
    h = act(n.phi, s);
    if (!dh.empty()) h += dh[t];
    const double e = act(n.theta, h) - n.y[t];
    loss += 0.5 * e * e;
  }
  return loss;
}

// Exact gradient by forward-mode differentiation: carry dh_t/dp for p = w, v, h0 forward in time.
bptt::ScalarGradient forward_mode_gradient(const ScalarRnn& n) {
  double h = n.h0, dh_dw = 0.0, dh_dv = 0.0, dh_dh0 = 1.0;
  bptt::ScalarGradient g;
  for (std::size_t t = 0; t < n.x.size(); ++t) {
    const double s = n.w * h + n.v * n.x[t];
    const double p = act_prime(n.phi, s);
    dh_dw = p * (h + n.w * dh_dw);  // uses h_{t-1}, so before h is updated
    dh_dv = p * (n.x[t] + n.w * dh_dv);
    dh_dh0 = p * n.w * dh_dh0;
    h = act(n.phi, s);
    const double dL_dh = (act(n.theta, h) - n.y[t]) * act_prime(n.theta, h);
    g.w += dL_dh * dh_dw;
    g.v += dL_dh * dh_dv;
    g.h0 += dL_dh * dh_dh0;
  }
  return g;
}

// Smallest |s_t| of the direct forward pass: how far the data are from relu's kink. For every
// phi here h_t = phi(s_t) reaches theta's kink at h = 0 only where s_t does (or stays there on a
// flat piece, where finite differences see the same zero slope).
double distance_to_kink(const ScalarRnn& n) {
  double h = n.h0, d = INFINITY;
  for (std::size_t t = 0; t < n.x.size(); ++t) {
    const double s = n.w * h + n.v * n.x[t];
    h = act(n.phi, s);
    d = std::min(d, std::abs(s));
  }
  return d;
}

void expect_close(double got, double want, double tol, const std::string& what) {
  EXPECT_NEAR(got, want, tol * std::max(1.0, std::abs(want))) << what;
}

// A second, longer example with every sign of x and y (T = 7).
ScalarRnn long_example(Activation phi, Activation theta) {
  ScalarRnn n;
  n.w = -0.7;
  n.v = 1.3;
  n.h0 = -0.4;
  n.phi = phi;
  n.theta = theta;
  n.x = {0.9, -0.6, 1.7, 0.35, -1.2, 2.1, -0.8};
  n.y = {0.2, -0.5, 0.8, 1.1, -0.3, 0.6, 0.05};
  return n;
}

ScalarRnn builtin_with(Activation phi, Activation theta) {
  ScalarRnn n = bptt::builtin_example();
  n.phi = phi;
  n.theta = theta;
  return n;
}

// ---- The built-in example ------------------------------------------------------------------

TEST(ExplainBuiltin, IsTheDocumentedExample) {
  const ScalarRnn n = bptt::builtin_example();
  EXPECT_EQ(n.w, 0.8);
  EXPECT_EQ(n.v, 0.5);
  EXPECT_EQ(n.h0, 0.1);
  EXPECT_EQ(n.phi, Activation::tanh);
  EXPECT_EQ(n.theta, Activation::identity);
  EXPECT_EQ(n.x, (std::vector<double>{1.0, 0.5, -1.5, 2.0}));
  EXPECT_EQ(n.y, (std::vector<double>{0.0, 1.0, 0.5, -1.5}));
  EXPECT_NO_THROW(bptt::validate(n));
}

TEST(ExplainBuiltin, RowsRunForwardThenBackwardFromT) {
  const ScalarRnn n = bptt::builtin_example();
  const ExplainResult r = bptt::explain(n);
  const std::size_t T = n.x.size();
  ASSERT_EQ(r.forward.size(), T);
  ASSERT_EQ(r.backward.size(), T);
  for (std::size_t i = 0; i < T; ++i) {
    EXPECT_EQ(r.forward[i].t, static_cast<int>(i + 1));
    EXPECT_EQ(r.backward[i].t, static_cast<int>(T - i));
  }
  EXPECT_EQ(r.backward.front().carry, 0.0) << "dL/ds_{T+1} = 0";
  for (std::size_t i = 1; i < T; ++i)
    EXPECT_DOUBLE_EQ(r.backward[i].carry, n.w * r.backward[i - 1].dL_ds);
  EXPECT_DOUBLE_EQ(r.grad.h0, n.w * r.backward.back().dL_ds);
  EXPECT_DOUBLE_EQ(r.loss, bptt::scalar_loss(n));
  EXPECT_DOUBLE_EQ(r.loss, direct_loss(n));
}

// Every row of the backward table is a derivative of L: perturb s_t or h_t alone and watch L.
TEST(ExplainBuiltin, EachRowIsTheDerivativeOfTheLoss) {
  for (const ScalarRnn& n : {bptt::builtin_example(),
                             long_example(Activation::sigmoid, Activation::tanh)}) {
    const ExplainResult r = bptt::explain(n);
    const std::size_t T = n.x.size();
    const double e = 1e-6;
    for (const bptt::ScalarBackwardRow& b : r.backward) {
      const std::size_t i = static_cast<std::size_t>(b.t - 1);
      std::vector<double> plus(T, 0.0), minus(T, 0.0);
      plus[i] = e;
      minus[i] = -e;
      const double dL_ds = (direct_loss(n, plus) - direct_loss(n, minus)) / (2 * e);
      const double dL_dh = (direct_loss(n, {}, plus) - direct_loss(n, {}, minus)) / (2 * e);
      const std::string at = "t = " + std::to_string(b.t);
      expect_close(b.dL_ds, dL_ds, 1e-7, "dL/ds at " + at);
      expect_close(b.dL_dh, dL_dh, 1e-7, "dL/dh at " + at);
      EXPECT_DOUBLE_EQ(b.dL_dyhat, r.forward[i].y_hat - n.y[i]) << at;
    }
  }
}

// ---- Cases worked out by hand --------------------------------------------------------------

// T = 1, tanh/identity: L = 1/2 (tanh(w h0 + v x) - y)^2.
TEST(ExplainByHand, OneStepTanh) {
  ScalarRnn n;
  n.w = 0.3;
  n.v = -1.2;
  n.h0 = 0.7;
  n.phi = Activation::tanh;
  n.theta = Activation::identity;
  n.x = {0.4};
  n.y = {0.25};
  const double s = 0.3 * 0.7 - 1.2 * 0.4, h = std::tanh(s), e = h - 0.25;
  const double dL_ds = e * (1.0 - h * h);
  const ExplainResult r = bptt::explain(n);
  EXPECT_NEAR(r.loss, 0.5 * e * e, 1e-15);
  EXPECT_NEAR(r.grad.w, dL_ds * 0.7, 1e-15);
  EXPECT_NEAR(r.grad.v, dL_ds * 0.4, 1e-15);
  EXPECT_NEAR(r.grad.h0, dL_ds * 0.3, 1e-15);
}

// T = 2, identity/identity: h1 = w h0 + v x1, h2 = w h1 + v x2, a polynomial in w, v, h0.
TEST(ExplainByHand, TwoStepsLinear) {
  ScalarRnn n;
  n.w = 1.5;
  n.v = 0.5;
  n.h0 = -2.0;
  n.phi = Activation::identity;
  n.theta = Activation::identity;
  n.x = {3.0, -1.0};
  n.y = {1.0, 2.0};
  // h1 = -3 + 1.5 = -1.5, h2 = -2.25 - 0.5 = -2.75, e1 = -2.5, e2 = -4.75.
  const double h1 = -1.5, h2 = -2.75, e1 = h1 - 1.0, e2 = h2 - 2.0;
  const double w = n.w, h0 = n.h0, x1 = 3.0, x2 = -1.0;
  const ExplainResult r = bptt::explain(n);
  EXPECT_DOUBLE_EQ(r.loss, 0.5 * e1 * e1 + 0.5 * e2 * e2);
  EXPECT_DOUBLE_EQ(r.grad.w, e1 * h0 + e2 * (h1 + w * h0));
  EXPECT_DOUBLE_EQ(r.grad.v, e1 * x1 + e2 * (w * x1 + x2));
  EXPECT_DOUBLE_EQ(r.grad.h0, e1 * w + e2 * w * w);
  // The table: dL/ds_2 = e2, dL/ds_1 = e1 + w e2.
  EXPECT_DOUBLE_EQ(r.backward[0].dL_ds, e2);
  EXPECT_DOUBLE_EQ(r.backward[1].dL_ds, e1 + w * e2);
}

// theta' applies to h: with theta = sigmoid, d yhat/dh = sigmoid(h)(1 - sigmoid(h)), not phi'.
TEST(ExplainByHand, ReadoutDerivativeIsThetaPrimeOfH) {
  ScalarRnn n;
  n.w = 0.0;
  n.v = 1.0;
  n.h0 = 0.0;
  n.phi = Activation::tanh;
  n.theta = Activation::sigmoid;
  n.x = {0.9};
  n.y = {0.0};
  const double h = std::tanh(0.9), yhat = 1.0 / (1.0 + std::exp(-h));
  const ExplainResult r = bptt::explain(n);
  EXPECT_NEAR(r.backward[0].theta_prime, yhat * (1.0 - yhat), 1e-15);
  EXPECT_NEAR(r.backward[0].phi_prime, 1.0 - h * h, 1e-15);
  EXPECT_NEAR(r.grad.v, yhat * yhat * (1.0 - yhat) * (1.0 - h * h) * 0.9, 1e-15);
}

// ---- Every phi x theta ---------------------------------------------------------------------

class ExplainCombos : public ::testing::TestWithParam<std::tuple<Activation, Activation>> {};

TEST_P(ExplainCombos, AnalyticMatchesNumericAndForwardMode) {
  const auto [phi, theta] = GetParam();
  for (const ScalarRnn& n : {builtin_with(phi, theta), long_example(phi, theta)}) {
    if (phi == Activation::relu || theta == Activation::relu) {
      ASSERT_GT(distance_to_kink(n), 1e-3) << "test data too close to relu's kink";
    }
    const ExplainResult r = bptt::explain(n);
    expect_close(r.grad.w, r.numeric.w, 1e-5, "w: analytic vs numeric");
    expect_close(r.grad.v, r.numeric.v, 1e-5, "v: analytic vs numeric");
    expect_close(r.grad.h0, r.numeric.h0, 1e-5, "h0: analytic vs numeric");
    const bptt::ScalarGradient exact = forward_mode_gradient(n);
    expect_close(r.grad.w, exact.w, 1e-12, "w: backward vs forward mode");
    expect_close(r.grad.v, exact.v, 1e-12, "v: backward vs forward mode");
    expect_close(r.grad.h0, exact.h0, 1e-12, "h0: backward vs forward mode");
    EXPECT_DOUBLE_EQ(r.loss, direct_loss(n));
  }
}

const Activation kScalarActivations[] = {Activation::identity, Activation::tanh, Activation::relu,
                                         Activation::sigmoid};

INSTANTIATE_TEST_SUITE_P(
    PhiTheta, ExplainCombos,
    ::testing::Combine(::testing::ValuesIn(kScalarActivations),
                       ::testing::ValuesIn(kScalarActivations)),
    [](const ::testing::TestParamInfo<std::tuple<Activation, Activation>>& combo) {
      return "phi_" + std::string(bptt::to_string(std::get<0>(combo.param))) + "_theta_" +
             std::string(bptt::to_string(std::get<1>(combo.param)));
    });

// ---- Validation ----------------------------------------------------------------------------

std::string error_where(const ScalarRnn& n) {
  try {
    bptt::explain(n);
  } catch (const bptt::Error& e) {
    EXPECT_FALSE(e.problem().empty());
    return e.where();
  }
  ADD_FAILURE() << "no bptt::Error thrown";
  return "(none)";
}

TEST(ExplainValidation, RejectsBadNetworks) {
  ScalarRnn n = bptt::builtin_example();
  n.x.clear();
  n.y.clear();
  EXPECT_EQ(error_where(n), "x");

  n = bptt::builtin_example();
  n.y.pop_back();
  EXPECT_EQ(error_where(n), "y");

  n = bptt::builtin_example();
  n.w = NAN;
  EXPECT_EQ(error_where(n), "w");
  n = bptt::builtin_example();
  n.v = INFINITY;
  EXPECT_EQ(error_where(n), "v");
  n = bptt::builtin_example();
  n.h0 = -INFINITY;
  EXPECT_EQ(error_where(n), "h0");
  n = bptt::builtin_example();
  n.x[2] = NAN;
  EXPECT_EQ(error_where(n), "x");
  n = bptt::builtin_example();
  n.y[0] = INFINITY;
  EXPECT_EQ(error_where(n), "y");

  n = bptt::builtin_example();
  n.phi = Activation::identity;
  n.w = 1e300;
  EXPECT_EQ(error_where(n), "") << "overflow is reported, not returned as inf";
}

TEST(ExplainValidation, SoftmaxIsRejectedWithAReason) {
  for (const char* field : {"phi", "theta"}) {
    ScalarRnn n = bptt::builtin_example();
    (std::string(field) == "phi" ? n.phi : n.theta) = Activation::softmax;
    try {
      bptt::validate(n);
      ADD_FAILURE() << field << " = softmax accepted";
    } catch (const bptt::Error& e) {
      EXPECT_EQ(e.where(), field);
      EXPECT_NE(e.hint().find("always 1"), std::string::npos) << e.hint();
    }
  }
}

// ---- The CLI, end to end -------------------------------------------------------------------

struct CliRun {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

CliRun run_cli(const std::string& args) {
  static int counter = 0;
  const auto dir = std::filesystem::temp_directory_path();
  const std::string stem = "bptt_explain_test_" + std::to_string(::getpid()) + "_" +
                           std::to_string(counter++);
  const auto out = dir / (stem + ".out"), err = dir / (stem + ".err");
  const std::string cmd = "'" + std::string(BPTT_CLI_PATH) + "' " + args + " >'" + out.string() +
                          "' 2>'" + err.string() + "'";
  const int raw = std::system(cmd.c_str());
  CliRun r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

class ExplainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(BPTT_CLI_PATH)) {
      if (kCliPathFromBuild) FAIL() << "CLI not found at " << BPTT_CLI_PATH;
      GTEST_SKIP() << "CLI not built at " << BPTT_CLI_PATH;
    }
  }
};

// The JSON output carries the library's numbers (to 1e-9) and gradients agree with numeric.
void expect_json_matches(const std::string& text, const ScalarRnn& n) {
  const nlohmann::json j = nlohmann::json::parse(text);  // throws (fails the test) if not JSON
  const ExplainResult r = bptt::explain(n);
  ASSERT_TRUE(j.is_object());
  for (const char* key : {"loss", "forward", "backward", "grad", "numeric"})
    ASSERT_TRUE(j.contains(key)) << key;
  EXPECT_NEAR(j["loss"].get<double>(), r.loss, 1e-9);
  ASSERT_EQ(j["forward"].size(), r.forward.size());
  ASSERT_EQ(j["backward"].size(), r.backward.size());
  for (std::size_t i = 0; i < r.forward.size(); ++i) {
    const nlohmann::json& f = j["forward"][i];
    EXPECT_EQ(f["t"].get<int>(), static_cast<int>(i + 1));
    EXPECT_NEAR(f["x"].get<double>(), r.forward[i].x, 1e-9);
    EXPECT_NEAR(f["s"].get<double>(), r.forward[i].s, 1e-9);
    EXPECT_NEAR(f["h"].get<double>(), r.forward[i].h, 1e-9);
    EXPECT_NEAR(f["y_hat"].get<double>(), r.forward[i].y_hat, 1e-9);
  }
  for (std::size_t i = 0; i < r.backward.size(); ++i) {
    const nlohmann::json& b = j["backward"][i];
    EXPECT_EQ(b["t"].get<int>(), static_cast<int>(r.forward.size() - i)) << "rows run T..1";
    EXPECT_NEAR(b["dL_dyhat"].get<double>(), r.backward[i].dL_dyhat, 1e-9);
    EXPECT_NEAR(b["dL_dh"].get<double>(), r.backward[i].dL_dh, 1e-9);
    EXPECT_NEAR(b["dL_ds"].get<double>(), r.backward[i].dL_ds, 1e-9);
  }
  for (const char* p : {"w", "v", "h0"}) {
    const double g = j["grad"][p].get<double>(), num = j["numeric"][p].get<double>();
    EXPECT_NEAR(g, p[0] == 'w' ? r.grad.w : p[0] == 'v' ? r.grad.v : r.grad.h0, 1e-9) << p;
    EXPECT_NEAR(g, num, 1e-5 * std::max(1.0, std::abs(g))) << p;
  }
}

TEST_F(ExplainCli, JsonOfTheBuiltinExample) {
  const CliRun r = run_cli("explain --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  // Exactly one JSON object and nothing else on stdout: one line.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  expect_json_matches(r.out, bptt::builtin_example());
}

TEST_F(ExplainCli, JsonWithOptionsAndNegativeLists) {
  ScalarRnn n;
  n.w = -0.5;
  n.v = 1.25;
  n.h0 = -0.3;
  n.phi = Activation::sigmoid;
  n.theta = Activation::tanh;
  n.x = {-1.0, 2.0, -0.5};
  n.y = {-0.25, 0.5, 0.75};
  const std::string opts =
      " --w -0.5 --v 1.25 --phi sigmoid --theta tanh --y -0.25,0.5,0.75 --json";
  for (const char* xh : {"--h0 -0.3 --x -1,2,-0.5", "--h0=-0.3 --x=-1,2,-0.5",
                                "--h0 -.3 --x -1,2,-.5", "--h0 -0.3 --x '-1, 2, -0.5'"}) {
    const CliRun r = run_cli(std::string("explain ") + xh + opts);
    ASSERT_EQ(r.status, 0) << xh << ": " << r.err;
    expect_json_matches(r.out, n);
  }
}

TEST_F(ExplainCli, TextShowsTheRecursion) {
  const CliRun r = run_cli("explain");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("dL/ds_{T+1} = 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dL/dh0"), std::string::npos) << r.out;
  // The backward table starts at t = T and ends at t = 1.
  const auto t4 = r.out.find("\n     4 ", r.out.find("Backward"));
  const auto t1 = r.out.find("\n     1 ", r.out.find("Backward"));
  ASSERT_NE(t4, std::string::npos) << r.out;
  ASSERT_NE(t1, std::string::npos) << r.out;
  EXPECT_LT(t4, t1);
}

TEST_F(ExplainCli, HelpDescribesTheModel) {
  const CliRun r = run_cli("explain --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("dL/ds_{T+1} = 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--theta"), std::string::npos) << r.out;
}

TEST_F(ExplainCli, BadValuesExitTwoWithOneLine) {
  struct Case {
    const char* args;
    const char* mention;
  };
  const Case cases[] = {{"--x 1,a", "--x"},
                        {"--x 1,,2 --y 1,2,3", "--x"},
                        {"--w abc", "--w"},
                        {"--phi softmax", "softmax"},
                        {"--theta softmax", "--theta"},
                        {"--phi foo", "--phi"},
                        {"--x 1,2 --y 1", "--y"},
                        {"--x ''", "--x"},
                        {"--w nan", "--w"},
                        {"--w 1e300 --phi identity", "overflow"}};
  for (const Case& c : cases) {
    const CliRun r = run_cli(std::string("explain ") + c.args);
    EXPECT_EQ(r.status, 2) << c.args;
    EXPECT_EQ(r.out, "") << c.args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << ": " << r.err;
    EXPECT_FALSE(r.err.empty() || r.err.back() != '\n') << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.mention), std::string::npos) << c.args << ": " << r.err;
  }
}

}  // namespace
