// The fast path against PyTorch autograd, on fixtures that tools/fixtures/make_fixtures.py
// generated with Debian's python3-torch (small cases, and the large sizes that cross the
// kernels' blocks, and the torch.nn options: bidirectional, proj_size, bias=False, a learned
// initial state): forward outputs (ŷ, h_n, c_n, and every step's h and c where the fixture has
// them), the loss and every gradient, element by
// element against torch's float64 results: ours in float64 within 1e-9 · max(1, |torch|), ours
// in float32 within kFloat32 (relative, tests/unroll/test_util.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bptt/io.hpp"
#include "bptt/unroll.hpp"
#include "support/compare.hpp"
#include "unroll/test_util.hpp"

namespace bptt {
namespace {

using test::max_abs;
using test::Tol;

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

// ours against torch's, element by element (support/compare.hpp: non-finite fails).
template <class Real>
void expect_matches(const std::string& what, const std::vector<Real>& ours,
                    const std::vector<double>& ref, Tol tol, bool floor_is_fraction) {
  if (floor_is_fraction) tol.floor *= max_abs(ref.data(), ref.size());
  test::expect_close(what, ours, ref, tol);
}

class TorchFixture : public ::testing::TestWithParam<Fixture> {
 protected:
  // Our outputs in precision Real against torch's float64 ones (`suffix` "f64"): every element
  // within tol; with floor_is_fraction, tol.floor is a fraction of each tensor's max |torch|.
  template <class Real>
  void check(Tol tol, bool floor_is_fraction) {
    const Fixture& fx = GetParam();
    const auto model = load_model<Real>(kDir + fx.name + ".model.safetensors");
    const auto batch = load_batch<Real>(safetensors::File::read(kDir + fx.name + ".data.safetensors"),
                                        model.cfg, fx.loss);
    const auto ref = safetensors::File::read(kDir + fx.name + ".f64.safetensors");
    Workspace<Real> ws(model.cfg, batch.T, batch.B);
    Gradients<Real> g(model.cfg, batch.T, batch.B);
    g.zero();
    const double L = loss_and_gradients(model, batch, fx.loss, ws, g);
    const auto match = [&](const std::string& what, const auto& ours, const std::string& name) {
      expect_matches(what, ours, ref.as_f64(name), tol, floor_is_fraction);
    };
    match("loss", std::vector<double>{L}, "loss");
    for (const ParamInfo& p : param_layout(model.cfg)) {
      std::vector<Real> ours(g.params.begin() + std::ptrdiff_t(p.offset),
                             g.params.begin() + std::ptrdiff_t(p.offset + p.size));
      match("dL/d " + p.name, ours, p.name);
    }
    match("dL/dx", g.x, "x");
    match("dL/dh0", g.h0, "h0");
    if (model.cfg.cell == CellKind::lstm) match("dL/dc0", g.c0, "c0");

    const std::size_t n = std::size_t(batch.T) * batch.B * model.cfg.output_size;
    match("y_hat", std::vector<Real>(ws.yhat(), ws.yhat() + n), "y_hat");
    std::vector<Real> hn, cn;
    ws.state_at(batch.T, hn, cn);
    match("h_n", hn, "h_n");
    if (model.cfg.cell == CellKind::lstm) match("c_n", cn, "c_n");
    if (ref.has("h")) {  // the option fixtures: every step's states (predict --states)
      std::vector<Real> h, c;
      ws.step_states(h, c);
      match("h", h, "h");
      if (model.cfg.cell == CellKind::lstm) match("c", c, "c");
    }
  }
};

// float64: 1e-9 · max(1, |torch|) per element (the two differ only in summation order).
TEST_P(TorchFixture, MatchesAutogradFloat64) { check<double>(Tol{1e-9, 1.0}, false); }

// float32 against torch's float64 (from the float64 model: the float one is rounded), per
// element within the fast path's float32 bound (kFloat32, tests/unroll/test_util.hpp).
TEST_P(TorchFixture, MatchesAutogradFloat32) { check<float>(test::kFloat32, true); }

INSTANTIATE_TEST_SUITE_P(Torch, TorchFixture, ::testing::ValuesIn(fixtures()),
                         [](const auto& p) { return p.param.name; });

TEST(TorchFixtures, ManifestIsPresent) {
  ASSERT_FALSE(fixtures().empty()) << "missing " << kDir << "manifest.json; run "
                                   << "tools/fixtures/make_fixtures.py";
}

}  // namespace
}  // namespace bptt
