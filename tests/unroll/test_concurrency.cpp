// The thread contract (bptt/threads.hpp, docs/api.md "Threads"): a const Model is shared by
// several threads at once, each with its own Workspace, Recompute or Stream, and each call runs
// on the count of its own object (or of its thread's ThreadCount), never on process-wide state.
// Several std::threads run forward/backward, Recompute and Stream::step at the same time, with
// one and two threads per object; every result must equal, bit for bit, the same call made alone
// with the same count (the same count splits the work the same way).
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <thread>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "bptt/stream.hpp"
#include "bptt/threads.hpp"
#include "bptt/unroll.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

struct Result {
  double loss = 0;
  std::vector<float> yhat, grads;
};

// One training call on a workspace of `threads` threads: the loss, ŷ and every gradient.
Result run_bptt(const Model<float>& model, const Batch<float>& batch, LossKind loss, int threads) {
  Workspace<float> ws(model.cfg, batch.T, batch.B, false, threads);
  EXPECT_EQ(ws.threads(), threads);
  Gradients<float> g(model.cfg, batch.T, batch.B);
  g.zero();
  Result r;
  r.loss = loss_and_gradients(model, batch, loss, ws, g);
  r.yhat.assign(ws.yhat(), ws.yhat() + std::size_t(batch.T) * batch.B * model.cfg.output_size);
  for (const auto* v : {&g.params, &g.x, &g.h0, &g.c0}) r.grads.insert(r.grads.end(), v->begin(), v->end());
  return r;
}

Result run_recompute(const Model<float>& model, const Batch<float>& batch, LossKind loss,
                     int threads) {
  Recompute<float> rc(model.cfg, batch.T, batch.B, 3, false, threads);
  EXPECT_EQ(rc.threads(), threads);
  Gradients<float> g(model.cfg, batch.T, batch.B);
  g.zero();
  Result r;
  r.loss = rc.loss_and_gradients(model, batch, loss, g);
  for (const auto* v : {&g.params, &g.x, &g.h0, &g.c0}) r.grads.insert(r.grads.end(), v->begin(), v->end());
  return r;
}

// Every step's output of a Stream of B streams over the batch's x.
Result run_stream(const Model<float>& model, const Batch<float>& batch, int threads) {
  Stream<float> s(model, batch.B, threads);
  const std::size_t in = std::size_t(batch.B) * model.cfg.input_size,
                    out = std::size_t(batch.B) * model.cfg.output_size;
  Result r;
  r.yhat.resize(std::size_t(batch.T) * out);
  for (int t = 0; t < batch.T; ++t)
    s.step(batch.x.data() + std::size_t(t) * in, r.yhat.data() + std::size_t(t) * out);
  return r;
}

void expect_same(const Result& a, const Result& b, const char* what) {
  EXPECT_EQ(a.loss, b.loss) << what;
  EXPECT_EQ(a.yhat, b.yhat) << what;
  EXPECT_EQ(a.grads, b.grads) << what;
}

Case case_of(CellKind cell, bool bi) {
  Case c{{cell, Activation::tanh}, {LossKind::mse, Activation::identity}, 2, 12, 32, 5, 24, 4};
  c.opt = {.bi = bi, .P = 0, .bias = true, .init = InitCase::given, .lengths = true};
  return c;
}

// Eight std::threads share one const Model and run their calls at once, half of them with one
// thread per object and half with two; each repeats its call and compares with the result of
// the same call made alone beforehand.
TEST(Concurrency, SharedModelSeparateWorkspacesGiveTheResultsOfSeparateRuns) {
  for (CellKind cell : {CellKind::lstm, CellKind::gru, CellKind::elman})
    for (bool bi : {false, true}) {
      const Case c = case_of(cell, bi);
      SCOPED_TRACE(c.name());
      const Model<float> model = cast_model<float>(make_model<double>(c));
      const Batch<float> batch = cast_batch<float>(make_batch<double>(c));
      const LossKind loss = c.loss.loss;
      const int before = omp_get_max_threads();
      Result alone[2][3];
      for (int n = 1; n <= 2; ++n) {
        alone[n - 1][0] = run_bptt(model, batch, loss, n);
        alone[n - 1][1] = run_recompute(model, batch, loss, n);
        if (!bi) alone[n - 1][2] = run_stream(model, batch, n);
      }
      std::atomic<int> mismatches{0};
      std::vector<std::thread> pool;
      for (int i = 0; i < 8; ++i)
        pool.emplace_back([&, i] {
          const int n = 1 + i % 2;
          for (int rep = 0; rep < 3; ++rep) {
            const Result a = run_bptt(model, batch, loss, n);
            const Result b = run_recompute(model, batch, loss, n);
            const Result& wa = alone[n - 1][0];
            const Result& wb = alone[n - 1][1];
            if (a.loss != wa.loss || a.yhat != wa.yhat || a.grads != wa.grads) ++mismatches;
            if (b.loss != wb.loss || b.grads != wb.grads) ++mismatches;
            if (!bi && run_stream(model, batch, n).yhat != alone[n - 1][2].yhat) ++mismatches;
          }
        });
      for (std::thread& t : pool) t.join();
      EXPECT_EQ(mismatches.load(), 0);
      EXPECT_EQ(omp_get_max_threads(), before) << "a call changed the process's OpenMP setting";
      // and the objects' results agree across counts within rounding (the split changes no
      // sequence's arithmetic, only which thread does it)
      expect_same(alone[0][2], alone[1][2], "stream, 1 vs 2 threads");
    }
}

TEST(Concurrency, ThreadCountBelongsToTheCallingThreadAndNests) {
  EXPECT_EQ(ThreadCount::current(), 1);
  {
    const ThreadCount outer(3);
    EXPECT_EQ(ThreadCount::current(), 3);
    int seen_elsewhere = 0;
    std::thread([&] { seen_elsewhere = ThreadCount::current(); }).join();
    EXPECT_EQ(seen_elsewhere, 1) << "another thread must not see this thread's count";
    {
      const ThreadCount inner(2);
      EXPECT_EQ(ThreadCount::current(), 2);
      const Case c = case_of(CellKind::gru, false);
      Workspace<float> inherits(c.config(), 4, 2);
      Workspace<float> own(c.config(), 4, 2, false, 5);
      EXPECT_EQ(inherits.threads(), 2);
      EXPECT_EQ(own.threads(), 5);
      own.set_threads(1);
      EXPECT_EQ(own.threads(), 1);
      try {
        own.set_threads(0);
        ADD_FAILURE() << "set_threads(0) accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::value);
      }
    }
    EXPECT_EQ(ThreadCount::current(), 3);
  }
  EXPECT_EQ(ThreadCount::current(), 1);
  try {
    const ThreadCount bad(0);
    ADD_FAILURE() << "ThreadCount(0) accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::value);
  }
}

// The public entry points check sizes instead of reading or writing past a buffer.
TEST(Concurrency, EntryPointsRefuseMismatchedSizes) {
  const Case c = case_of(CellKind::lstm, false);
  const ModelConfig cfg = c.config();
  const Model<float> model = cast_model<float>(make_model<double>(c));
  const Batch<float> batch = cast_batch<float>(make_batch<double>(c));
  const auto expect_shape_error = [](auto&& f, const char* where) {
    try {
      f();
      ADD_FAILURE() << "accepted: " << where;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::shape) << e.what();
      EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
    }
  };
  Gradients<float> g(cfg, batch.T, batch.B);
  {  // a workspace of another batch size
    Workspace<float> ws(cfg, batch.T, batch.B + 1);
    expect_shape_error([&] { loss_and_gradients(model, batch, c.loss.loss, ws, g); }, "workspace");
  }
  {  // a workspace of another model
    ModelConfig other = cfg;
    other.hidden_size += 1;
    Workspace<float> ws(other, batch.T, batch.B);
    expect_shape_error([&] { forward(model, batch, ws); }, "workspace");
  }
  Workspace<float> ws(cfg, batch.T, batch.B);
  {  // a model whose arena does not match its configuration
    Model<float> cut = model;
    cut.params.pop_back();
    expect_shape_error([&] { forward(cut, batch, ws); }, "model: params");
  }
  {  // x of the wrong size
    Batch<float> b = batch;
    b.x.pop_back();
    expect_shape_error([&] { forward(model, b, ws); }, "batch: x");
  }
  {  // h0 of the wrong size
    Batch<float> b = batch;
    b.h0.resize(3);
    expect_shape_error([&] { forward(model, b, ws); }, "batch: h0");
  }
  {  // targets of the wrong size
    Batch<float> b = batch;
    b.y.pop_back();
    forward(model, b, ws);
    expect_shape_error(
        [&] { loss_and_dz(c.loss.loss, cfg, b, ws.z(), ws.yhat(), ws.dz()); }, "batch: y");
  }
  {  // gradients of another batch size
    forward(model, batch, ws);
    loss_and_dz(c.loss.loss, cfg, batch, ws.z(), ws.yhat(), ws.dz());
    Gradients<float> small(cfg, batch.T, batch.B - 1);
    expect_shape_error([&] { backward(model, batch, ws, small); }, "gradients: ");
  }
  {  // a length past T is a value error
    Batch<float> b = batch;
    b.lengths[0] = b.T + 1;
    try {
      forward(model, b, ws);
      ADD_FAILURE() << "a length past T accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::value) << e.what();
    }
  }
}

}  // namespace
}  // namespace bptt::test
