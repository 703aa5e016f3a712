// The fast path against PyTorch autograd, on fixtures that tools/fixtures/make_fixtures.py
// generated with Debian's python3-torch: forward outputs (ŷ, h_n, c_n), the loss and every
// gradient, in float64 (≤ 1e-9) and float32 (≤ 2e-4), measured as
// max|ours − torch| / max(1, max|torch|) per tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bptt/io.hpp"
#include "bptt/unroll.hpp"

namespace bptt {
namespace {

const std::string kDir = std::string(BPTT_FIXTURE_DIR) + "/torch/";

struct Fixture {
  std::string name;
  LossKind loss;
};

std::vector<Fixture> fixtures() {
  std::ifstream in(kDir + "manifest.json");
  std::vector<Fixture> out;
  if (!in) return out;
  const auto j = nlohmann::json::parse(in);
  for (const auto& f : j.at("fixtures"))
    out.push_back({f.at("name").get<std::string>(),
                   parse_loss(f.at("loss").get<std::string>(), "manifest")});
  return out;
}

template <class Real>
double scaled_error(const std::vector<Real>& ours, const std::vector<double>& ref) {
  EXPECT_EQ(ours.size(), ref.size());
  double err = 0, scale = 1;
  for (std::size_t i = 0; i < std::min(ours.size(), ref.size()); ++i) {
    err = std::max(err, std::abs(double(ours[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}

class TorchFixture : public ::testing::TestWithParam<Fixture> {
 protected:
  template <class Real>
  void check(const char* suffix, double tol) {
    const Fixture& fx = GetParam();
    const auto model = load_model<Real>(kDir + fx.name + ".model.safetensors");
    const auto batch = load_batch<Real>(safetensors::File::read(kDir + fx.name + ".data.safetensors"),
                                        model.cfg, fx.loss);
    const auto ref = safetensors::File::read(kDir + fx.name + "." + suffix + ".safetensors");
    Workspace<Real> ws(model.cfg, batch.T, batch.B);
    Gradients<Real> g(model.cfg, batch.T, batch.B);
    g.zero();
    const double L = loss_and_gradients(model, batch, fx.loss, ws, g);
    EXPECT_LE(scaled_error(std::vector<Real>{Real(L)}, ref.as_f64("loss")), tol) << "loss";

    for (const ParamInfo& p : param_layout(model.cfg)) {
      std::vector<Real> ours(g.params.begin() + std::ptrdiff_t(p.offset),
                             g.params.begin() + std::ptrdiff_t(p.offset + p.size));
      EXPECT_LE(scaled_error(ours, ref.as_f64(p.name)), tol) << p.name;
    }
    EXPECT_LE(scaled_error(g.x, ref.as_f64("x")), tol) << "dL/dx";
    EXPECT_LE(scaled_error(g.h0, ref.as_f64("h0")), tol) << "dL/dh0";
    if (model.cfg.cell == CellKind::lstm) {
      EXPECT_LE(scaled_error(g.c0, ref.as_f64("c0")), tol) << "dL/dc0";
    }

    const std::size_t n = std::size_t(batch.T) * batch.B * model.cfg.output_size;
    EXPECT_LE(scaled_error(std::vector<Real>(ws.yhat(), ws.yhat() + n), ref.as_f64("y_hat")), tol)
        << "y_hat";
    const std::size_t BH = std::size_t(batch.B) * model.cfg.hidden_size;
    std::vector<Real> hn, cn;
    for (int k = 0; k < model.cfg.num_layers; ++k) {
      hn.insert(hn.end(), ws.h(k) + batch.T * BH, ws.h(k) + (batch.T + 1) * BH);
      if (ws.c(k)) cn.insert(cn.end(), ws.c(k) + batch.T * BH, ws.c(k) + (batch.T + 1) * BH);
    }
    EXPECT_LE(scaled_error(hn, ref.as_f64("h_n")), tol) << "h_n";
    if (model.cfg.cell == CellKind::lstm) {
      EXPECT_LE(scaled_error(cn, ref.as_f64("c_n")), tol) << "c_n";
    }
  }
};

TEST_P(TorchFixture, MatchesAutogradFloat64) { check<double>("f64", 1e-9); }
TEST_P(TorchFixture, MatchesAutogradFloat32) { check<float>("f32", 2e-4); }

INSTANTIATE_TEST_SUITE_P(Torch, TorchFixture, ::testing::ValuesIn(fixtures()),
                         [](const auto& p) { return p.param.name; });

TEST(TorchFixtures, ManifestIsPresent) {
  ASSERT_FALSE(fixtures().empty()) << "missing " << kDir << "manifest.json; run "
                                   << "tools/fixtures/make_fixtures.py";
}

}  // namespace
}  // namespace bptt
