// The batch split across threads (src/unroll/full.cpp, for_row_parts), and a bidirectional
// layer's two directions run at once (for_directions): with 1, 2 and 3 threads the fast path
// computes the same loss, ŷ and gradients as the reference, for every cell, with lengths, h0 and
// c0, and B large enough that the rows are really split (B / 8 parts at most); and the same from
// inside a parallel region of the caller's.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "bptt/unroll.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

class ThreadedRows : public testing::TestWithParam<Case> {};

// inside_region: each run is made from inside a parallel region of the caller's, where a nested
// region gets fewer threads than it asks for (one, with nesting off): every part of the batch
// must still run. float64 is compared with the float64 reference to 1e-12 · max(1, |ref|),
// float32 with the float64 reference of the same rounded inputs within kFloat32 (test_util.hpp).
template <class Real>
void check_threads(const Case& c, bool inside_region = false) {
  const ModelConfig cfg = c.config();
  const Model<Real> model = make_model<Real>(c);
  Batch<Real> batch = make_batch<Real>(c);
  for (int b = 1; b < c.B; ++b)  // every part of the split gets full, short and empty sequences
    batch.lengths[std::size_t(b)] = (b * 7) % (c.T + 1);
  batch.validate(cfg, c.loss.loss, "threaded batch");
  const Float64Reference ref = float64_reference(c, model, batch);
  for (int threads : inside_region ? std::vector<int>{2} : std::vector<int>{1, 2, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    Workspace<Real> ws(cfg, c.T, c.B, /*with_dropout=*/false, threads);
    Gradients<Real> g(cfg, c.T, c.B);
    g.zero();
    double l = 0;
#pragma omp parallel num_threads(2) if (inside_region)
    {
#pragma omp single
      l = loss_and_gradients(model, batch, c.loss.loss, ws, g);
    }
    if constexpr (std::is_same_v<Real, double>) {
      EXPECT_TRUE(close(l, ref.loss, 1e-12)) << "loss " << l << " vs " << ref.loss;
      expect_all_close("yhat", ws.yhat(), ref.yhat.data(), ref.yhat.size(), 1e-12,
                       [&](std::size_t i) { return index3("yhat", i, c.B, c.O); });
      expect_gradients_close(c, g, ref.g, 1e-12);
    } else {
      expect_float32_matches(c, l, ws.yhat(), g, ref);
    }
  }
}

TEST_P(ThreadedRows, Float64MatchesReference) { check_threads<double>(GetParam()); }
TEST_P(ThreadedRows, InsideTheCallersParallelRegion) {
  check_threads<double>(GetParam(), /*inside_region=*/true);
}
TEST_P(ThreadedRows, Float32MatchesReference) { check_threads<float>(GetParam()); }

std::vector<Case> threaded_cases() {
  std::vector<Case> out;
  for (const CellVariant& cell : all_cells())
    out.push_back(Case{cell, {LossKind::xent, Activation::softmax}, 2, 4, 27, 3, 5, 4});
  // T = 70: backward's two 64-step chunks, each a parallel region of its own over the same rows.
  for (CellKind k : {CellKind::lstm, CellKind::gru})
    out.push_back(Case{{k, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 70, 16, 3, 5, 4});
  // The large sizes (test_util.hpp, large_shapes) with B = 27 and 18, split in three and two
  // parts: every cell, two losses, each H.
  for (Case c : large_shapes())
    if (c.loss.loss == LossKind::xent || c.loss.theta == Activation::sigmoid) {
      c.B = c.H == 70 ? 18 : 27;
      out.push_back(c);
    }
  // Bidirectional layers, whose two directions run at once with two threads or more (float:
  // full.cpp, for_directions), each on its share of the threads' row parts; with every other
  // option, and with the final-state readout.
  for (CellKind k : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
    Case c{{k, Activation::tanh}, {LossKind::xent, Activation::softmax}, 2, 9, 27, 3, 5, 4};
    c.opt = {.bi = true, .P = k == CellKind::lstm ? 3 : 0, .bias = k != CellKind::gru,
             .init = InitCase::learned_given};
    out.push_back(c);
    c.opt.final_readout = true;
    c.L = 1;
    out.push_back(c);
  }
  Case big{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::tanh}, 2, 70, 18, 40, 37, 9};
  big.opt = {.bi = true, .P = 20};
  out.push_back(big);
  // Layer norm: its passes over all T·B rows (1890 here) run in blocks, one per thread, and its
  // gains' gradients sum per part; one and two directions.
  for (CellKind k : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
    Case c{{k, Activation::tanh}, {LossKind::xent, Activation::softmax}, 2, 70, 27, 40, 37, 9};
    c.opt = {.ln = true};
    out.push_back(c);
    c.opt = {.bi = true, .P = k == CellKind::lstm ? 20 : 0, .ln = true};
    c.T = 30;
    out.push_back(c);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Split, ThreadedRows, testing::ValuesIn(threaded_cases()), case_name);

}  // namespace
}  // namespace bptt::test
