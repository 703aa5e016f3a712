// Finite differences in float64 through the whole unroller: for every parameter, every element of
// x, h0 and c0, the central difference (step 1e-6) of the loss must match the analytic gradient
// to 1e-6·max(1, |numeric|). The reference path is checked the same way, so it is verified on
// its own and not only by agreeing with the fast path.
// At the large sizes (test_util.hpp, large_shapes_rotated: H = 16, 37, 70 with I = 40, B = 9,
// T = 20), where one loss costs milliseconds and a model has up to 70 000 parameters, the fast
// path is checked on chosen elements (both sides of the packed panels' boundaries, the ends and
// random ones) and on every element at once along random directions; the reference path there
// is checked against the fast one in full (test_reference.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <utility>
#include <string>
#include <vector>

#include "bptt/loss.hpp"
#include "bptt/unroll.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

constexpr double kStep = 1e-6;
constexpr double kTol = 1e-6;

// Compares analytic gradients with central differences and collects the mismatches.
class FiniteDifference {
 public:
  FiniteDifference(std::string path, std::function<double()> loss, bool relu,
                   double step = kStep)
      : path_(std::move(path)), loss_(std::move(loss)), relu_(relu), step_(step) {}

  // *v is the input being perturbed (restored afterwards), analytic its claimed dL/dv.
  void check(const std::string& name, double* v, double analytic) {
    const double v0 = *v;
    *v = v0 + step_;
    const double lp = loss_();
    *v = v0 - step_;
    const double lm = loss_();
    *v = v0;
    const double numeric = (lp - lm) / (2 * step_);
    ++checked_;
    if (close(analytic, numeric, kTol)) return;
    if (relu_) {
      // A ReLU kink within the step makes the loss non-differentiable there: the two one-sided
      // differences then disagree. Skip only such elements (and count them, see below).
      const double l0 = loss_();
      const double fwd = (lp - l0) / step_, bwd = (l0 - lm) / step_;
      if (!close(fwd, bwd, 1e-4)) {
        ++skipped_;
        return;
      }
    }
    if (failures_.size() < 12)
      failures_.push_back(path_ + " " + name + ": analytic " + std::to_string(analytic) +
                          " numeric " + std::to_string(numeric) + " (diff " +
                          std::to_string(analytic - numeric) + ")");
    ++failed_;
  }

  void report() const {
    std::string msg;
    for (const std::string& f : failures_) msg += "\n  " + f;
    EXPECT_EQ(failed_, 0) << failed_ << " of " << checked_ << " gradient elements differ" << msg;
    // A kink within 1e-6 of a random point is rare; more than a few means the skip hides a bug.
    EXPECT_LE(skipped_, 2) << path_ << ": " << skipped_ << " elements skipped as ReLU kinks";
    EXPECT_GT(checked_, 0);
  }

 private:
  std::string path_;
  std::function<double()> loss_;
  bool relu_;
  double step_;
  int checked_ = 0, failed_ = 0, skipped_ = 0;
  std::vector<std::string> failures_;
};

// The 32-wide boundaries of the packed panels below n (32, 64, ...): the first, one in the
// middle and the last, which is where a wrong panel offset or stride first shows.
std::vector<std::size_t> panel_boundaries(std::size_t n) {
  std::vector<std::size_t> all, out;
  for (std::size_t b = 32; b < n; b += 32) all.push_back(b);
  if (!all.empty()) out = {all.front(), all[all.size() / 2], all.back()};
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The elements a check perturbs, of a tensor of n elements in rows of `cols`: all of them in the
// small cases; in the large ones (thousands of parameters, and a loss evaluation costs
// milliseconds) the first and the last, those on both sides of panel boundaries (forward packs
// a weight's rows into panels, backward its columns: rows and columns 31 | 32, ...), and 6 at
// random. Every element at once is checked along random directions (below).
std::vector<std::size_t> elements_to_check(bool large, std::size_t n, std::size_t cols,
                                           std::uint64_t seed) {
  std::vector<std::size_t> idx;
  if (!large || n <= 8) {
    for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  std::mt19937_64 rng(seed);
  const std::size_t rows = n / cols;
  idx = {0, n - 1};
  for (std::size_t b : panel_boundaries(cols))  // column boundaries, in a random row
    for (std::size_t i : {b - 1, b}) idx.push_back(rng() % rows * cols + i);
  for (std::size_t b : panel_boundaries(rows))  // row boundaries, at a random column
    for (std::size_t r : {b - 1, b}) idx.push_back(r * cols + rng() % cols);
  for (int k = 0; k < 6; ++k) idx.push_back(std::size_t(rng() % n));
  return idx;
}

class GradCheck : public testing::TestWithParam<Case> {};

TEST_P(GradCheck, FiniteDifferencesMatchFastAndReferencePaths) {
  const Case& c = GetParam();
  const ModelConfig cfg = c.config();
  const LossKind loss = c.loss.loss;
  Model<double> model = make_model<double>(c);
  Batch<double> batch = make_batch<double>(c);

  Workspace<double> ws(cfg, c.T, c.B);
  Gradients<double> fast(cfg, c.T, c.B), ref(cfg, c.T, c.B), scratch(cfg, c.T, c.B);
  fast.zero();
  ref.zero();
  loss_and_gradients(model, batch, loss, ws, fast);
  reference_loss_and_gradients(model, batch, loss, ref);

  // The large cases check the reference path against the fast one in full (FastVsReference);
  // here their finite differences run on the fast path only, which keeps them to seconds.
  const bool large = c.H >= 16;
  const bool relu = c.cell.cell == CellKind::elman && c.cell.phi == Activation::relu;
  const auto fast_loss = [&] {  // forward and the loss only: what the differences need
    forward(model, batch, ws);
    return loss_and_dz(loss, cfg, batch, ws.z(), ws.yhat(), ws.dz());
  };
  FiniteDifference fd_fast("fast", fast_loss, relu);
  FiniteDifference fd_ref("reference", [&] {
    return reference_loss_and_gradients(model, batch, loss, scratch);
  }, relu);
  const auto check = [&](const std::string& name, double* v, double g_fast, double g_ref) {
    fd_fast.check(name, v, g_fast);
    if (!large) fd_ref.check(name, v, g_ref);
  };

  std::uint64_t seed = c.seed();
  for (const ParamInfo& p : param_layout(cfg))
    for (std::size_t i : elements_to_check(large, p.size, std::size_t(p.shape.back()), ++seed)) {
      const std::size_t k = p.offset + i;
      check(param_name(cfg, k), &model.params[k], fast.params[k], ref.params[k]);
    }
  for (std::size_t i : elements_to_check(large, batch.x.size(), std::size_t(c.I), ++seed))
    check(index3("x", i, c.B, c.I), &batch.x[i], fast.x[i], ref.x[i]);
  for (std::size_t i : elements_to_check(large, batch.h0.size(), std::size_t(c.HO()), ++seed))
    check(index3("h0", i, c.B, c.HO()), &batch.h0[i], fast.h0[i], ref.h0[i]);
  for (std::size_t i : elements_to_check(large, batch.c0.size(), std::size_t(c.H), ++seed))
    check(index3("c0", i, c.B, c.H), &batch.c0[i], fast.c0[i], ref.c0[i]);

  // Every element at once: the derivative of the loss along random directions v (all
  // parameters, x, h0 and c0 moved together by e·v) is <gradient, v>. The step is in e, so a
  // ReLU kink that e·v crosses is recognized as in the element checks.
  if (large) {
    std::vector<double*> values;
    std::vector<double> grads;
    for (auto [v, g] : {std::pair{&model.params, &fast.params}, std::pair{&batch.x, &fast.x},
                        std::pair{&batch.h0, &fast.h0}, std::pair{&batch.c0, &fast.c0}})
      for (std::size_t i = 0; i < v->size(); ++i) {
        values.push_back(&(*v)[i]);
        grads.push_back((*g)[i]);
      }
    const std::vector<double> v0 = [&] {
      std::vector<double> out;
      for (double* v : values) out.push_back(*v);
      return out;
    }();
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> dir(values.size());
    double e = 0;
    // A step of 1e-8: moving ~10⁴ values at once, a step of 1e-6 crosses a ReLU kink somewhere
    // about once per direction (each bends the slope by ~1e-4 of it, too little for the
    // one-sided test to see); the rounding error, ~1e-16/1e-8, stays far below kTol.
    FiniteDifference fd_dir("fast", [&] {
      for (std::size_t i = 0; i < dir.size(); ++i) *values[i] = v0[i] + e * dir[i];
      return fast_loss();
    }, relu, 1e-8);
    for (int d = 0; d < 3; ++d) {
      double along = 0;
      for (std::size_t i = 0; i < dir.size(); ++i) along += grads[i] * (dir[i] = u(rng));
      fd_dir.check("direction " + std::to_string(d), &e, along);
    }
    for (std::size_t i = 0; i < values.size(); ++i) *values[i] = v0[i];
    fd_dir.report();
  }
  fd_fast.report();
  if (!large) fd_ref.report();

  // Inputs past a sequence's end are never read: their gradient is exactly zero.
  for (int t = 0; t < c.T; ++t)
    for (int b = 0; b < c.B; ++b) {
      if (batch.valid(t, b)) continue;
      for (int i = 0; i < c.I; ++i) {
        const std::size_t k = (std::size_t(t) * c.B + b) * c.I + i;
        EXPECT_EQ(fast.x[k], 0.0) << "fast x[" << t << "," << b << "," << i << "] is padding";
        EXPECT_EQ(ref.x[k], 0.0) << "reference x[" << t << "," << b << "," << i << "] is padding";
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Grid, GradCheck, testing::ValuesIn(grid({1, 2}, {1, 3, 7})), case_name);
INSTANTIATE_TEST_SUITE_P(Shapes, GradCheck, testing::ValuesIn(odd_shapes()), case_name);
INSTANTIATE_TEST_SUITE_P(Large, GradCheck, testing::ValuesIn(large_shapes_rotated()), case_name);
INSTANTIATE_TEST_SUITE_P(Options, GradCheck, testing::ValuesIn(option_cases()), case_name);

}  // namespace
}  // namespace bptt::test
