// The batch split across threads (src/unroll/full.cpp, for_row_parts): with 1, 2 and 3 threads
// the fast path computes the same loss, ŷ and gradients as the reference, for every cell, with
// lengths, h0 and c0, and B large enough that the rows are really split (B / 8 parts at most);
// and the same from inside a parallel region of the caller's.
#include <gtest/gtest.h>

#include <vector>

#include "bptt/unroll.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

class ThreadedRows : public testing::TestWithParam<Case> {
 protected:
  void TearDown() override { set_num_threads(1); }
};

// inside_region: each run is made from inside a parallel region of the caller's, where a nested
// region gets fewer threads than it asks for (one, with nesting off): every part of the batch
// must still run.
template <class Real>
void check_threads(const Case& c, double tol, bool inside_region = false) {
  const ModelConfig cfg = c.config();
  const Model<Real> model = make_model<Real>(c);
  Batch<Real> batch = make_batch<Real>(c);
  for (int b = 1; b < c.B; ++b)  // every part of the split gets full, short and empty sequences
    batch.lengths[std::size_t(b)] = (b * 7) % (c.T + 1);
  batch.validate(cfg, c.loss.loss, "threaded batch");
  Gradients<Real> ref(cfg, c.T, c.B);
  ref.zero();
  std::vector<Real> yhat;
  const double l_ref = reference_loss_and_gradients(model, batch, c.loss.loss, ref, &yhat);
  for (int threads : inside_region ? std::vector<int>{2} : std::vector<int>{1, 2, 3}) {
    set_num_threads(threads);
    Workspace<Real> ws(cfg, c.T, c.B);
    Gradients<Real> g(cfg, c.T, c.B);
    g.zero();
    double l = 0;
#pragma omp parallel num_threads(2) if (inside_region)
    {
#pragma omp single
      l = loss_and_gradients(model, batch, c.loss.loss, ws, g);
    }
    EXPECT_TRUE(close(l, l_ref, tol)) << threads << " threads: loss " << l << " vs " << l_ref;
    for (std::size_t i = 0; i < yhat.size(); ++i)
      ASSERT_TRUE(close(double(ws.yhat()[i]), double(yhat[i]), tol)) << threads << " threads: yhat " << i;
    const std::vector<const std::vector<Real>*> mine = {&g.params, &g.x, &g.h0, &g.c0},
                                               theirs = {&ref.params, &ref.x, &ref.h0, &ref.c0};
    for (std::size_t v = 0; v < mine.size(); ++v) {
      ASSERT_EQ(mine[v]->size(), theirs[v]->size());
      for (std::size_t i = 0; i < mine[v]->size(); ++i)
        ASSERT_TRUE(close(double((*mine[v])[i]), double((*theirs[v])[i]), tol))
            << threads << " threads: gradient " << v << "[" << i << "] " << (*mine[v])[i]
            << " vs " << (*theirs[v])[i];
    }
  }
}

TEST_P(ThreadedRows, Float64MatchesReference) { check_threads<double>(GetParam(), 1e-12); }
TEST_P(ThreadedRows, InsideTheCallersParallelRegion) {
  check_threads<double>(GetParam(), 1e-12, /*inside_region=*/true);
}
TEST_P(ThreadedRows, Float32MatchesReference) { check_threads<float>(GetParam(), 1e-4); }

std::vector<Case> threaded_cases() {
  std::vector<Case> out;
  for (const CellVariant& cell : all_cells())
    out.push_back(Case{cell, {LossKind::xent, Activation::softmax}, 2, 4, 27, 3, 5, 4});
  // T = 70: backward's two 64-step chunks, each a parallel region of its own over the same rows.
  for (CellKind k : {CellKind::lstm, CellKind::gru})
    out.push_back(Case{{k, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 70, 16, 3, 5, 4});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Split, ThreadedRows, testing::ValuesIn(threaded_cases()), case_name);

}  // namespace
}  // namespace bptt::test
