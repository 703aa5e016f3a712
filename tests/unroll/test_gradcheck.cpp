// Finite differences in float64 through the whole unroller: for every parameter, every element of
// x, h0 and c0, the central difference (step 1e-6) of the loss returned by loss_and_gradients must
// match the analytic gradient to 1e-6·max(1, |numeric|). The reference path is checked the same
// way, so it is verified on its own and not only by agreeing with the fast path.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "bptt/unroll.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

constexpr double kStep = 1e-6;
constexpr double kTol = 1e-6;

// Compares analytic gradients with central differences and collects the mismatches.
class FiniteDifference {
 public:
  FiniteDifference(std::string path, std::function<double()> loss, bool relu)
      : path_(std::move(path)), loss_(std::move(loss)), relu_(relu) {}

  // *v is the input being perturbed (restored afterwards), analytic its claimed dL/dv.
  void check(const std::string& name, double* v, double analytic) {
    const double v0 = *v;
    *v = v0 + kStep;
    const double lp = loss_();
    *v = v0 - kStep;
    const double lm = loss_();
    *v = v0;
    const double numeric = (lp - lm) / (2 * kStep);
    ++checked_;
    if (close(analytic, numeric, kTol)) return;
    if (relu_) {
      // A ReLU kink within the step makes the loss non-differentiable there: the two one-sided
      // differences then disagree. Skip only such elements (and count them, see below).
      const double l0 = loss_();
      const double fwd = (lp - l0) / kStep, bwd = (l0 - lm) / kStep;
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
  int checked_ = 0, failed_ = 0, skipped_ = 0;
  std::vector<std::string> failures_;
};

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

  const bool relu = c.cell.cell == CellKind::elman && c.cell.phi == Activation::relu;
  FiniteDifference fd_fast("fast", [&] {
    return loss_and_gradients(model, batch, loss, ws, scratch);
  }, relu);
  FiniteDifference fd_ref("reference", [&] {
    return reference_loss_and_gradients(model, batch, loss, scratch);
  }, relu);
  const auto check = [&](const std::string& name, double* v, double g_fast, double g_ref) {
    fd_fast.check(name, v, g_fast);
    fd_ref.check(name, v, g_ref);
  };

  for (std::size_t i = 0; i < model.params.size(); ++i)
    check(param_name(cfg, i), &model.params[i], fast.params[i], ref.params[i]);
  for (std::size_t i = 0; i < batch.x.size(); ++i)
    check(index3("x", i, c.B, c.I), &batch.x[i], fast.x[i], ref.x[i]);
  for (std::size_t i = 0; i < batch.h0.size(); ++i)
    check(index3("h0", i, c.B, c.H), &batch.h0[i], fast.h0[i], ref.h0[i]);
  for (std::size_t i = 0; i < batch.c0.size(); ++i)
    check(index3("c0", i, c.B, c.H), &batch.c0[i], fast.c0[i], ref.c0[i]);
  fd_fast.report();
  fd_ref.report();

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

}  // namespace
}  // namespace bptt::test
