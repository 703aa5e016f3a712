// bptt::Stream (include/bptt/stream.hpp) against the unroller: step by step it must give what
// forward() gives for the whole sequence, for every cell and left-to-right option; reset, the
// states and their setting; the refusals; no heap allocation inside step(); and several threads
// streaming from one const Model at once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/stream.hpp"
#include "unroll/test_util.hpp"

// Counts operator new calls on threads that ask for it (the no-allocation test); everything
// else passes straight to malloc. GCC pairs the new-expressions it sees with this file's
// replacements and takes free() for a mismatch; the replacements are the standard way to count.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
thread_local bool g_counting = false;
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// The nothrow forms too: memory from them is freed by the plain operator delete below (as
// std::get_temporary_buffer does), so all of them must come from malloc.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (g_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace bptt::test {
namespace {

// The left-to-right cases of the option grid (streams refuse the others), without lengths: a
// stream's sequences run for every step.
std::vector<Case> stream_cases() {
  std::vector<Case> out;
  for (Case c : option_cases()) {
    if (c.opt.bi || c.opt.final_readout) continue;
    if (c.opt.drop || c.opt.zoneout) continue;  // training-mode masks; a stream evaluates
    c.opt.lengths = false;
    if (c.opt.init == InitCase::learned_given) continue;  // a batch's h0 with a learned c0
    out.push_back(c);
  }
  for (Case c : large_shapes({16, 37})) {  // several tiles and panels per product
    c.opt.lengths = false;
    out.push_back(c);
  }
  return out;
}

// forward()'s y_hat for the whole batch and stream's step by step, row by row; the batch's
// initial state (when given) set through h()/c() first. Returns the largest |Δ| / max(1, |ref|).
template <class Real>
double stream_vs_forward(const Case& c, int threads) {
  const Model<Real> model = make_model<Real>(c);
  Batch<Real> batch = make_batch<Real>(c);
  batch.lengths.clear();
  Workspace<Real> ws(model.cfg, batch.T, batch.B);
  forward(model, batch, ws);
  Stream<Real> s(model, batch.B, threads);
  if (!batch.h0.empty()) std::copy(batch.h0.begin(), batch.h0.end(), s.h().begin());
  if (!batch.c0.empty()) std::copy(batch.c0.begin(), batch.c0.end(), s.c().begin());
  const int B = batch.B, I = c.I, O = c.O;
  std::vector<Real> y(std::size_t(B) * O);
  double worst = 0;
  for (int t = 0; t < batch.T; ++t) {
    s.step(std::span<const Real>(batch.x.data() + std::size_t(t) * B * I, std::size_t(B) * I), y);
    for (std::size_t i = 0; i < y.size(); ++i) {
      const double ref = ws.yhat()[std::size_t(t) * B * O + i];
      worst = std::max(worst, std::abs(double(y[i]) - ref) / std::max(1.0, std::abs(ref)));
    }
  }
  // The states after the last step are forward's h_n, c_n.
  std::vector<Real> h, cs;
  ws.state_at(batch.T, h, cs);
  EXPECT_EQ(h.size(), s.h().size());
  for (std::size_t i = 0; i < h.size() && i < s.h().size(); ++i)
    worst = std::max(worst, std::abs(double(s.h()[i]) - h[i]) / std::max(1.0, std::abs(double(h[i]))));
  EXPECT_EQ(cs.size(), s.c().size());
  for (std::size_t i = 0; i < cs.size() && i < s.c().size(); ++i)
    worst = std::max(worst, std::abs(double(s.c()[i]) - cs[i]) / std::max(1.0, std::abs(double(cs[i]))));
  return worst;
}

class StreamCases : public testing::TestWithParam<Case> {};

TEST_P(StreamCases, StepByStepEqualsForward) {
  const Case& c = GetParam();
  EXPECT_LE(stream_vs_forward<double>(c, 1), 1e-12) << c.name();
  EXPECT_LE(stream_vs_forward<float>(c, 1), 2e-5) << c.name();
}

INSTANTIATE_TEST_SUITE_P(Options, StreamCases, testing::ValuesIn(stream_cases()), case_name);

Case lstm_case(int B) {
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 6, B, 5, 16, 4};
  c.opt.lengths = false;
  return c;
}

TEST(Stream, ThreadsSplitTheStreamsWithTheSameResults) {
  for (CellKind cell : {CellKind::elman, CellKind::lstm, CellKind::gru}) {
    Case c = lstm_case(37);  // parts of 18 and 19 streams
    c.cell.cell = cell;
    const Model<float> model = make_model<float>(c);
    Stream<float> one(model, c.B, 1), two(model, c.B, 2);
    EXPECT_EQ(two.threads(), 2);
    const Batch<float> batch = make_batch<float>(c);
    std::vector<float> y1(std::size_t(c.B) * c.O), y2(y1.size());
    for (int t = 0; t < c.T; ++t) {
      const float* x = batch.x.data() + std::size_t(t) * c.B * c.I;
      one.step(x, y1.data());
      two.step(x, y2.data());
      EXPECT_EQ(y1, y2) << to_string(cell) << " step " << t;  // the same arithmetic per row
    }
  }
}

// Too few streams to split by rows, and weights large enough (stream.cpp, kMinSplitWeightBytes):
// the threads split every product by columns and one runs the cell; the results are those of one
// thread bit for bit (each column's sum runs in the same order), for every cell, a projection,
// and a head-less model, with 1 and 3 streams on 2 and 3 threads; and equal forward's.
TEST(Stream, ThreadsSplitTheColumnsOfFewStreams) {
  for (CellKind cell : {CellKind::elman, CellKind::lstm, CellKind::gru})
    for (int variant = 0; variant < 3; ++variant) {
      if (variant == 1 && cell != CellKind::lstm) continue;  // the projection
      Case c{{cell, Activation::tanh}, {LossKind::mse, Activation::tanh}, 2, 5, 1, 96, 160, 40};
      c.opt.lengths = false;
      if (variant == 1) c.opt.P = 72;
      if (variant == 2) c = c.with_headless();
      for (int B : {1, 3}) {
        c.B = B;
        SCOPED_TRACE(c.name());
        const Model<float> model = make_model<float>(c);
        const Batch<float> batch = make_batch<float>(c);
        Stream<float> one(model, B, 1), two(model, B, 2), three(model, B, 3);
        std::vector<float> y1(std::size_t(B) * c.O), y2(y1.size()), y3(y1.size());
        for (int t = 0; t < c.T; ++t) {
          const float* x = batch.x.data() + std::size_t(t) * B * c.I;
          one.step(x, y1.data());
          two.step(x, y2.data());
          three.step(x, y3.data());
          EXPECT_EQ(y1, y2) << "step " << t;
          EXPECT_EQ(y1, y3) << "step " << t;
        }
        EXPECT_TRUE(std::equal(one.h().begin(), one.h().end(), three.h().begin()));
        EXPECT_LE(stream_vs_forward<double>(c, 2), 1e-12);
      }
    }
}

TEST(Stream, ResetReturnsOneStreamToTheInitialState) {
  for (bool learned : {false, true}) {
    Case c = lstm_case(3);
    if (learned) c.opt.init = InitCase::learned;
    const Model<double> model = make_model<double>(c);
    const Batch<double> batch = make_batch<double>(c);
    const int B = c.B, I = c.I, O = c.O;
    Stream<double> s(model, B), fresh(model, B);
    std::vector<double> y(std::size_t(B) * O), yf(y.size());
    for (int t = 0; t < 3; ++t) s.step(batch.x.data() + std::size_t(t) * B * I, y.data());
    s.reset(1);
    for (int t = 0; t < 3; ++t) {
      const double* x = batch.x.data() + std::size_t(t) * B * I;
      s.step(x, y.data());
      fresh.step(x, yf.data());
      for (int o = 0; o < O; ++o) EXPECT_EQ(y[std::size_t(O) + o], yf[std::size_t(O) + o]);
      EXPECT_NE(y[0], yf[0]);  // stream 0 carried on
    }
    s.reset();
    fresh.reset();
    s.step(batch.x.data(), y.data());
    fresh.step(batch.x.data(), yf.data());
    EXPECT_EQ(y, yf);
  }
}

TEST(Stream, RefusesWhatCannotStreamAndWrongSizes) {
  Case c = lstm_case(2);
  const Model<float> model = make_model<float>(c);
  EXPECT_THROW(Stream<float>(model, 0), Error);
  EXPECT_THROW(Stream<float>(model, 2, 0), Error);
  Case bi = c;
  bi.opt.bi = true;
  EXPECT_THROW(Stream<float>(make_model<float>(bi), 2), Error);
  Case fin = c;
  fin.opt.final_readout = true;
  EXPECT_THROW(Stream<float>(make_model<float>(fin), 2), Error);
  Model<float> short_params = model;
  short_params.params.pop_back();
  EXPECT_THROW(Stream<float>(short_params, 2), Error);
  Stream<float> s(model, 2);
  std::vector<float> x(std::size_t(2) * c.I), y(std::size_t(2) * c.O);
  EXPECT_NO_THROW(s.step(std::span<const float>(x), std::span<float>(y)));
  EXPECT_THROW(s.step(std::span<const float>(x.data(), x.size() - 1), std::span<float>(y)), Error);
  EXPECT_THROW(s.step(std::span<const float>(x), std::span<float>(y.data(), 1)), Error);
  EXPECT_THROW(s.reset(2), Error);
  EXPECT_THROW(s.reset(-1), Error);
  try {
    Stream<float>(make_model<float>(bi), 2);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bidirectional"), std::string::npos) << e.what();
  }
}

TEST(Stream, StepAllocatesNothing) {
  for (CellKind cell : {CellKind::elman, CellKind::lstm, CellKind::gru}) {
    Case c = lstm_case(4);
    c.cell.cell = cell;
    if (cell == CellKind::lstm) c.opt.P = 5;
    const Model<float> model = make_model<float>(c);
    Stream<float> s(model, c.B);
    std::vector<float> x(std::size_t(c.B) * c.I, 0.5f), y(std::size_t(c.B) * c.O);
    s.step(x.data(), y.data());  // warm-up: first calls may set up the CPU level
    g_allocations = 0;
    g_counting = true;
    for (int t = 0; t < 20; ++t) s.step(x.data(), y.data());
    s.reset(1);
    g_counting = false;
    EXPECT_EQ(g_allocations.load(), 0) << to_string(cell);
  }
}

// Several threads stream at once from one const Model, each with its own Stream: each gets
// exactly what it gets alone.
TEST(Stream, ManyThreadsShareOneConstModel) {
  Case c = lstm_case(5);
  c.T = 20;
  const Model<float> model = make_model<float>(c);
  const Batch<float> batch = make_batch<float>(c);
  const auto run = [&](std::vector<float>& out) {
    Stream<float> s(model, c.B);
    std::vector<float> y(std::size_t(c.B) * c.O);
    for (int t = 0; t < c.T; ++t) {
      s.step(batch.x.data() + std::size_t(t) * c.B * c.I, y.data());
      out.insert(out.end(), y.begin(), y.end());
    }
  };
  std::vector<float> alone;
  run(alone);
  std::vector<std::vector<float>> outs(4);
  std::vector<std::thread> pool;
  for (auto& o : outs) pool.emplace_back([&, p = &o] { run(*p); });
  for (auto& t : pool) t.join();
  for (const auto& o : outs) EXPECT_EQ(o, alone);
}

TEST(Stream, MovesKeepTheState) {
  Case c = lstm_case(2);
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  Stream<double> a(model, 2), ref(model, 2);
  std::vector<double> y(std::size_t(2) * c.O), yr(y.size());
  a.step(batch.x.data(), y.data());
  ref.step(batch.x.data(), yr.data());
  Stream<double> b(std::move(a));
  b.step(batch.x.data() + 2 * c.I, y.data());
  ref.step(batch.x.data() + 2 * c.I, yr.data());
  EXPECT_EQ(y, yr);
  EXPECT_EQ(b.streams(), 2);
  EXPECT_EQ(b.config().hidden_size, c.H);
}

}  // namespace
}  // namespace bptt::test
