// bptt::Inference (include/bptt/infer.hpp) against forward(): the same ŷ, logits, final states
// and step states for every cell and option, at every chunk length (1 step, a length that does
// not divide T, the default), under a batch's masks too; memory that does not grow with T; the
// refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/infer.hpp"
#include "bptt/unroll.hpp"
#include "support/cache.hpp"
#include "unroll/chunks.hpp"
#include "unroll/test_util.hpp"
#include "unroll/x_product.hpp"

namespace bptt::test {
namespace {

std::vector<Case> infer_cases() {
  std::vector<Case> out = option_cases();
  for (const Case& c : large_shapes({16, 37})) out.push_back(c);
  return out;
}

// The largest |Δ| / max(1, |ref|) between `got` and `ref`, and equal sizes.
template <class Real>
double worst(const std::vector<Real>& got, const std::vector<Real>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double w = 0;
  for (std::size_t i = 0; i < got.size() && i < ref.size(); ++i)
    w = std::max(w, std::abs(double(got[i]) - double(ref[i])) / std::max(1.0, std::abs(double(ref[i]))));
  return w;
}

// Inference at `chunk` steps per pass (on `threads` threads) against forward() on the whole batch.
template <class Real>
double infer_vs_forward(const Case& c, int chunk, int threads = 1) {
  const Model<Real> model = make_model<Real>(c);
  const Batch<Real> batch = make_batch<Real>(c);
  const ModelConfig& cfg = model.cfg;
  Workspace<Real> ws(cfg, batch.T, batch.B);
  forward(model, batch, ws);
  const std::size_t TB = std::size_t(batch.T) * batch.B, n = TB * cfg.output_size;
  const std::vector<Real> yhat(ws.yhat(), ws.yhat() + n), z(ws.z(), ws.z() + n);
  std::vector<Real> hn, cn, h, cs;
  ws.state_at(batch.T, hn, cn);
  ws.step_states(h, cs);

  Inference<Real> inf(cfg, batch.B, threads, chunk);
  std::vector<Real> y2(n, Real(-7)), z2(n, Real(-7)), h2(h.size(), Real(-7)), c2(cs.size(), Real(-7));
  inf.run(model, batch, {.yhat = y2, .z = z2, .h = h2, .c = c2});
  double w = std::max({worst(y2, yhat), worst(z2, z), worst(h2, h), worst(c2, cs)});
  w = std::max(w, worst(std::vector<Real>(inf.h_n().begin(), inf.h_n().end()), hn));
  w = std::max(w, worst(std::vector<Real>(inf.c_n().begin(), inf.c_n().end()), cn));
  // A second run reuses the buffers and starts again from the batch's initial state.
  std::vector<Real> y3(n);
  inf.run(model, batch, {.yhat = y3});
  return std::max(w, worst(y3, yhat));
}

class InferCases : public testing::TestWithParam<Case> {};

TEST_P(InferCases, ChunkedEqualsForward) {
  const Case& c = GetParam();
  for (int chunk : {1, 2, 0}) {
    EXPECT_LE(infer_vs_forward<double>(c, chunk), 1e-13) << c.name() << " chunk " << chunk;
    EXPECT_LE(infer_vs_forward<float>(c, chunk), 1e-5) << c.name() << " chunk " << chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(Options, InferCases, testing::ValuesIn(infer_cases()), case_name);

ModelConfig lstm256(int I, int O) {
  ModelConfig c;
  c.cell = CellKind::lstm;
  c.input_size = I;
  c.hidden_size = 256;
  c.output_size = O;
  return c;
}

// What it holds stays the same from T = 2 chunks to T = 10 chunks (a chunk's workspace and the
// states), and is a small part (under a quarter) of what a Workspace for the 10 chunks holds.
TEST(Inference, MemoryDoesNotGrowWithT) {
  const ModelConfig cfg = lstm256(8, 8);
  Model<float> model(cfg);
  model.init_uniform(1);
  Inference<float> inf(cfg, 1);
  // 2 700 steps by memory; where this layer's input product is hoisted (unroll/x_product.hpp),
  // as many as keep its 4 KiB per step in the L2 (512 with 2 MiB).
  EXPECT_GE(inf.chunk_steps(), 64);
  std::size_t first = 0;
  const int C = inf.chunk_steps();
  for (int T : {2 * C + 3, 10 * C}) {
    Batch<float> b;
    b.T = T, b.B = 1;
    b.x.assign(std::size_t(T) * 8, 0.25f);
    std::vector<float> y(std::size_t(T) * 8);
    inf.run(model, b, {.yhat = y});
    if (!first) first = inf.bytes();
    EXPECT_LE(inf.bytes(), (std::size_t(16) << 20) + 2 * model.params.size() * sizeof(float)) << T;
    EXPECT_EQ(inf.bytes(), first) << T;  // the chunk's workspace, not T's
  }
  EXPECT_GT(Workspace<float>::bytes_for(cfg, 10 * C, 1), 4 * inf.bytes());
}

// Where the input product is hoisted, a chunk's part of it (B·4H floats per step) fits in the
// L2 of the cores the rows are split over, so every chunk reuses the same cached lines; the
// 16 MiB rule alone would take 16 steps of this shape (8 MiB of gates).
TEST(Inference, ChunkKeepsTheHoistedProductInTheL2) {
  ModelConfig cfg = lstm256(256, 256);
  cfg.hidden_size = 512;  // LSTM shape b: [W_ih | W_hh] 6 MiB, hoisted on every CPU
  ASSERT_FALSE(unroll::x_product_in_step<float>(cfg, cfg.input_size));
  const std::size_t l2 = support::l2_bytes() > 0 ? support::l2_bytes() : std::size_t(1) << 20,
                    per_step = std::size_t(64) * 4 * 512 * sizeof(float);
  for (int threads : {1, 2}) {
    const Inference<float> inf(cfg, 64, threads);
    EXPECT_GE(inf.chunk_steps(), 1);
    EXPECT_LE(std::size_t(inf.chunk_steps()) * per_step, std::max(l2 * std::size_t(threads), per_step))
        << threads << " threads";
    EXPECT_LT(inf.chunk_steps(), 16) << threads << " threads";
  }
}

// A forward-only pass runs its steps a chunk at a time through a ring of saved steps (gates,
// GRU's aux, the projection's input, layer norm's values; unroll/chunks.hpp), each chunk's
// hoisted input product formed into it just before its steps: with B = 64 and H = 256 the ring
// holds fewer steps than T = 9 on any core with less than 4 MiB of L2, so several chunks go
// round it, in both directions, with lengths (the reverse direction's frame), layer norm, a
// projection, and on 2 threads; the results stay forward()'s. I = 257 > H keeps every product
// hoisted.
TEST(Inference, RingOfHoistedChunksEqualsForward) {
  for (CellKind cell : {CellKind::lstm, CellKind::gru})
    for (int variant = 0; variant < 4; ++variant) {  // bi; uni + LN; bi + LN; bi + projection
      Case c{{cell, Activation::tanh}, {LossKind::mse, Activation::identity}, 1, 9, 64, 257, 256, 3};
      c.opt.bi = variant != 1;
      c.opt.ln = variant == 1 || variant == 2;
      if (variant == 3 && cell == CellKind::lstm) c.opt.P = 100;
      const ModelConfig cfg = c.config();
      ASSERT_FALSE(unroll::x_product_in_step<double>(cfg, cfg.input_size));
      if (unroll::ring_steps<double>(cfg, c.T, c.B, 1) >= c.T)
        GTEST_SKIP() << "an L2 large enough to hold all 9 steps: one chunk";
      EXPECT_LE(infer_vs_forward<double>(c, c.T), 1e-13) << c.name();
      EXPECT_LE(infer_vs_forward<float>(c, c.T), 1e-5) << c.name();
      EXPECT_LE(infer_vs_forward<double>(c, c.T, 2), 1e-13) << c.name() << " 2 threads";
    }
}

TEST(Inference, RefusesWrongSizes) {
  Case c{{CellKind::gru, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 5, 3, 2, 4, 3};
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  EXPECT_THROW(Inference<double>(model.cfg, 0), Error);
  EXPECT_THROW(Inference<double>(model.cfg, 3, -1), Error);
  EXPECT_THROW(Inference<double>(model.cfg, 3, 1, -2), Error);
  Inference<double> wrong_b(model.cfg, 4);
  std::vector<double> y(std::size_t(5) * 3 * 3);
  EXPECT_THROW(wrong_b.run(model, batch, {.yhat = y}), Error);
  Inference<double> inf(model.cfg, 3);
  std::vector<double> short_y(y.size() - 1);
  EXPECT_THROW(inf.run(model, batch, {.yhat = short_y}), Error);
  std::vector<double> bad_h(7);
  EXPECT_THROW(inf.run(model, batch, {.yhat = y, .h = bad_h}), Error);
  std::vector<double> c_for_gru(7);
  EXPECT_THROW(inf.run(model, batch, {.yhat = y, .c = c_for_gru}), Error);
  Case other = c;
  other.H = 5;
  EXPECT_THROW(inf.run(make_model<double>(other), batch, {.yhat = y}), Error);
  EXPECT_NO_THROW(inf.run(model, batch, {.yhat = y}));
}

}  // namespace
}  // namespace bptt::test
