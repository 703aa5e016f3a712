// The Trainer's gradient methods on the character model task: recompute trains exactly like
// full BPTT (with dropout too) and --memory-budget picks it only when full BPTT does not fit;
// BPTT(k2; k1) with k2 = k1 is plain window training, and with k2 > k1 each update equals a
// hand-built window of history plus new steps; online RTRL learns and its first update is the
// first step's own gradient; snapshots with history resume bit-identically.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <random>
#include <string>

#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/tasks.hpp"
#include "bptt/train.hpp"
#include "support/compare.hpp"
#include "support/temp_dir.hpp"

namespace bptt {
namespace {

// Trained parameters are compared element by element: |got − ref| ≤ tol · max(1, |ref|), and a
// NaN fails.
using test::expect_close;
using test::Tol;

class TrainerMethods : public test::TempDirTest {
 protected:
  TrainerMethods() : TempDirTest("bptt_trainer_methods_") {}

  void SetUp() override {
    TempDirTest::SetUp();  // the directory exists from here on
    const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat.\n", "dog ", "ran "};
    std::mt19937 rng(4321);
    std::string s;
    while (s.size() < 6000) s += words[rng() % 8];
    std::ofstream(path("c.txt"), std::ios::binary) << s;
    corpus = data::load_text(path("c.txt"), 0.1);
  }

  ModelConfig model_config(CellKind cell, int L, int H) const {
    ModelConfig m;
    m.cell = cell;
    m.output_activation = Activation::softmax;
    m.input_size = m.output_size = corpus.vocab.size();
    m.hidden_size = H;
    m.num_layers = L;
    return m;
  }

  // Trains `steps` windows of a fresh model (seed 3) and returns its parameters.
  std::vector<double> train(const ModelConfig& mc, TrainConfig tc, int B, int T, int steps) {
    Model<double> model(mc);
    init_model(model, 3, 1.0);
    auto task = make_text_task<double>(corpus, B, T);
    Trainer<double> trainer(model, *task, tc);
    for (int i = 0; i < steps; ++i) trainer.step();
    return model.params;
  }

  // Trains 6 windows of B = 3, T = 5 as 3, a snapshot, and 3 more in a fresh trainer resumed
  // from it; returns the parameters (train(mc, tc, 3, 5, 6) when resuming is exact).
  std::vector<double> resumed_halves(const ModelConfig& mc, const TrainConfig& tc) {
    Model<double> model(mc);
    init_model(model, 3, 1.0);
    auto task = make_text_task<double>(corpus, 3, 5);
    {
      Trainer<double> first(model, *task, tc);
      for (int i = 0; i < 3; ++i) first.step();
      first.save_snapshot(path("halves.safetensors"), "fp");
    }
    Model<double> resumed(mc);
    Trainer<double> second(resumed, *task, tc);
    second.load_snapshot(path("halves.safetensors"), "fp");
    for (int i = 0; i < 3; ++i) second.step();
    return resumed.params;
  }

  // The parameters after one SGD step of lr on the first window (B = 2, T = 1) of a fresh
  // model (seed 3), its gradient by full BPTT.
  std::vector<double> one_bptt_step(const ModelConfig& mc, std::uint64_t seed, double lr) {
    Model<double> m(mc);
    init_model(m, 3, 1.0);
    auto task = make_text_task<double>(corpus, 2, 1);
    Batch<double> b;
    task->fill(seed, 0, 0, b);
    Workspace<double> ws(mc, 1, 2);
    Gradients<double> g(mc, 1, 2);
    g.zero();
    loss_and_gradients(m, b, LossKind::xent, ws, g);
    for (std::size_t i = 0; i < m.params.size(); ++i) m.params[i] -= lr * g.params[i];
    return m.params;
  }

  static TrainConfig sgd(double lr) {
    TrainConfig tc;
    tc.optimizer.kind = OptimizerKind::sgd;
    tc.schedule.lr = lr;
    tc.clip_norm = 0;
    return tc;
  }

  data::TextCorpus corpus;
};

TEST_F(TrainerMethods, RecomputeTrainsLikeFullBptt) {
  for (CellKind cell : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
    TrainConfig tc;
    tc.schedule.lr = 1e-2;
    tc.dropout = 0.3;
    const ModelConfig mc = model_config(cell, 2, 12);
    const auto full = train(mc, tc, 4, 13, 5);
    tc.recompute = 4;
    const auto rec = train(mc, tc, 4, 13, 5);
    expect_close(std::string(to_string(cell)) + ": recompute vs full BPTT", rec, full,
                 Tol{1e-10, 1});
    EXPECT_GT(test::max_rel_error(full, train(mc, tc, 4, 13, 0), 1), 1e-4)
        << "training changed nothing";
  }
}

TEST_F(TrainerMethods, MemoryBudgetChoosesRecomputeOnlyWhenNeeded) {
  const ModelConfig mc = model_config(CellKind::lstm, 1, 32);
  Model<float> model(mc);
  auto task = make_text_task<float>(corpus, 8, 60);
  const double full_mb = double(full_bptt_bytes(mc, 60, 8, sizeof(float))) / 1e6;
  TrainConfig tc;
  tc.memory_budget_mb = full_mb * 1.01;
  EXPECT_EQ(Trainer<float>(model, *task, tc).recompute_interval(), 0);
  tc.memory_budget_mb = full_mb / 3;
  const int K = Trainer<float>(model, *task, tc).recompute_interval();
  EXPECT_GT(K, 0);
  EXPECT_LT(K, 60);
  EXPECT_LE(double(recompute_bytes(mc, 60, 8, K, sizeof(float))) / 1e6, full_mb / 3);
  tc.memory_budget_mb = 0.001;
  EXPECT_THROW(Trainer<float>(model, *task, tc), Error);
}

TEST_F(TrainerMethods, K2EqualToK1IsWindowTraining) {
  const ModelConfig mc = model_config(CellKind::lstm, 1, 10);
  TrainConfig tc = sgd(0.5);
  const auto plain = train(mc, tc, 3, 6, 4);
  tc.k2 = 6;
  EXPECT_EQ(train(mc, tc, 3, 6, 4), plain);
}

// BPTT(k2 = 7; k1 = 4) with SGD, built by hand: update 1 is window 1 (no history yet); update 2
// runs from the state after step 4 − 3 = 1 of window 1's forward pass over its last 3 steps and
// window 2's 4 steps, the loss on window 2's steps only.
TEST_F(TrainerMethods, K2GreaterThanK1BackpropagatesIntoTheHistory) {
  const int B = 3, k1 = 4, k2 = 7, n = k2 - k1;
  const double lr = 0.3;
  for (CellKind cell : {CellKind::lstm, CellKind::gru}) {
    const ModelConfig mc = model_config(cell, 2, 9);
    TrainConfig tc = sgd(lr);
    tc.k2 = k2;
    tc.seed = 5;
    const auto got = train(mc, tc, B, k1, 2);

    Model<double> m(mc);
    init_model(m, 3, 1.0);
    auto task = make_text_task<double>(corpus, B, k1);
    Batch<double> w1, w2;
    task->fill(5, 0, 0, w1);
    task->fill(5, 0, 1, w2);
    Workspace<double> ws(mc, k2, B);
    Gradients<double> g(mc, k2, B);
    g.zero();
    loss_and_gradients(m, w1, LossKind::xent, ws, g);
    std::vector<double> h, c;
    ws.state_at(k1 - n, h, c);
    for (std::size_t i = 0; i < m.params.size(); ++i) m.params[i] -= lr * g.params[i];
    Batch<double> win;
    slice_steps(w1, k1 - n, k1, win);  // the history: window 1's last n steps
    win.T = k2;
    win.x.insert(win.x.end(), w2.x.begin(), w2.x.end());
    win.classes.insert(win.classes.end(), w2.classes.begin(), w2.classes.end());
    win.mask.assign(std::size_t(n) * B, 0.0);
    win.mask.resize(std::size_t(k2) * B, 1.0);
    win.h0 = h;
    win.c0 = c;
    g.zero();
    loss_and_gradients(m, win, LossKind::xent, ws, g);
    for (std::size_t i = 0; i < m.params.size(); ++i) m.params[i] -= lr * g.params[i];
    expect_close(std::string(to_string(cell)) + ": BPTT(k2; k1) vs by hand", got, m.params,
                 Tol{1e-12, 1});
  }
}

TEST_F(TrainerMethods, K2RefusesWindowsShorterThanK1AndOtherMethods) {
  const ModelConfig mc = model_config(CellKind::lstm, 1, 8);
  Model<double> model(mc);
  auto task = make_text_task<double>(corpus, 2, 10);
  TrainConfig tc;
  tc.k2 = 5;
  EXPECT_THROW(Trainer<double>(model, *task, tc), Error);
  tc.k2 = 20;
  tc.recompute = 4;
  EXPECT_THROW(Trainer<double>(model, *task, tc), Error);
  tc.recompute = 0;
  tc.rtrl = true;
  EXPECT_THROW(Trainer<double>(model, *task, tc), Error);
}

TEST_F(TrainerMethods, SnapshotWithHistoryResumesBitIdentically) {
  const ModelConfig mc = model_config(CellKind::gru, 1, 10);
  TrainConfig tc;
  tc.schedule.lr = 5e-3;
  tc.k2 = 9;
  EXPECT_EQ(resumed_halves(mc, tc), train(mc, tc, 3, 5, 6));
}

TEST_F(TrainerMethods, OnlineRtrlFirstUpdateIsTheFirstStepsGradient) {
  const ModelConfig mc = model_config(CellKind::lstm, 2, 6);
  const double lr = 0.2;
  TrainConfig tc = sgd(lr);
  tc.rtrl = true;
  const auto got = train(mc, tc, 2, 1, 1);  // one window of one step: one update
  expect_close("RTRL's first update vs the step's gradient", got, one_bptt_step(mc, tc.seed, lr),
               Tol{1e-12, 1});
}

TEST_F(TrainerMethods, OnlineRtrlLearns) {
  const ModelConfig mc = model_config(CellKind::gru, 1, 12);
  Model<double> model(mc);
  init_model(model, 3, 0);
  auto task = make_text_task<double>(corpus, 4, 10);
  TrainConfig tc;
  tc.schedule.lr = 1e-2;
  tc.rtrl = true;
  Trainer<double> trainer(model, *task, tc);
  const double before = task->evaluate(model).loss;
  for (int i = 0; i < 25; ++i) trainer.step();
  const double after = task->evaluate(model).loss;
  EXPECT_LT(after, before - 0.3) << before << " -> " << after;
}

// With --skip-nonfinite, online RTRL skips a step whose state overflowed and goes on: the state
// and sensitivities it left (inf, NaN) must not make every later step non-finite too. An Elman
// relu layer with W_hh = 1e100·I and every input weight 1 has h_t = 1, 1e100, 1e200, 1e300 and
// then +inf from a fresh start; the gradient's norm overflows from h = 1e200 on, so steps 3-5 of
// each such cycle are skipped: 12 of 20. Without the restart the stream stayed at +inf after
// the first overflow and 18 of 20 were skipped. lr 0 leaves the weights as they are.
TEST_F(TrainerMethods, OnlineRtrlRestartsAfterASkippedStep) {
  ModelConfig mc = model_config(CellKind::elman, 1, 2);
  mc.nonlinearity = Activation::relu;
  Model<double> model(mc);
  init_model(model, 3, 0);
  const auto v = model.views();
  const auto& p = v.layers[0];
  for (int i = 0; i < 2 * p.in; ++i) p.w_ih[i] = 1;
  for (int i = 0; i < 2; ++i) p.b_ih[i] = p.b_hh[i] = 0;
  p.w_hh[0] = p.w_hh[3] = 1e100;
  p.w_hh[1] = p.w_hh[2] = 0;
  auto task = make_text_task<double>(corpus, 1, 10);
  TrainConfig tc = sgd(0);
  tc.rtrl = true;
  tc.skip_nonfinite = true;
  Trainer<double> trainer(model, *task, tc);
  const std::vector<double> before = model.params;
  trainer.step();
  trainer.step();  // 20 steps
  EXPECT_EQ(trainer.skipped(), 12) << "each overflow is skipped, then the stream restarts";
  EXPECT_EQ(model.params, before);
}

// Issue 20's online methods through the trainer: from a zero state every method's first update
// is the first step's exact gradient (each estimate is exact after one step: UORO's immediate
// part, KF-RTRL's ĥ ⊗ D with c₂² = 1, SnAp-1's and e-prop's own-unit D); each one learns; and a
// snapshot taken mid-stream resumes bit-identically (the estimate and the sign counter are in it).
TEST_F(TrainerMethods, OnlineMethodsFirstUpdateIsTheFirstStepsGradient) {
  for (OnlineMethod method : {OnlineMethod::uoro, OnlineMethod::kf_rtrl, OnlineMethod::snap1,
                              OnlineMethod::eprop}) {
    for (CellKind cell : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
      const int L = method == OnlineMethod::uoro || method == OnlineMethod::kf_rtrl ? 2 : 1;
      const ModelConfig mc = model_config(cell, L, 5);
      const double lr = 0.2;
      TrainConfig tc = sgd(lr);
      tc.online = method;
      expect_close(to_string(method) + " " + std::string(to_string(cell)) +
                       ": first update vs the step's gradient",
                   train(mc, tc, 2, 1, 1), one_bptt_step(mc, tc.seed, lr), Tol{1e-12, 1});
    }
  }
}

TEST_F(TrainerMethods, OnlineMethodsLearnAndResumeExactly) {
  for (OnlineMethod method : {OnlineMethod::uoro, OnlineMethod::kf_rtrl, OnlineMethod::snap1,
                              OnlineMethod::eprop}) {
    SCOPED_TRACE(to_string(method));
    const ModelConfig mc = model_config(CellKind::gru, 1, 12);
    TrainConfig tc;
    tc.schedule.lr = 1e-2;
    tc.online = method;
    {
      Model<double> model(mc);
      init_model(model, 3, 0);
      auto task = make_text_task<double>(corpus, 4, 10);
      Trainer<double> trainer(model, *task, tc);
      const double before = task->evaluate(model).loss;
      for (int i = 0; i < 25; ++i) trainer.step();
      const double after = task->evaluate(model).loss;
      EXPECT_LT(after, before - 0.2) << before << " -> " << after;
    }
    EXPECT_EQ(resumed_halves(mc, tc), train(mc, tc, 3, 5, 6));
  }
}

TEST_F(TrainerMethods, OnlineMethodsRefuseWhatTheyDoNotHandle) {
  auto task = make_text_task<double>(corpus, 2, 10);
  for (OnlineMethod method : {OnlineMethod::snap1, OnlineMethod::eprop}) {
    Model<double> model(model_config(CellKind::lstm, 2, 4));
    TrainConfig tc;
    tc.online = method;
    EXPECT_THROW(Trainer<double>(model, *task, tc), Error) << to_string(method) << ": 2 layers";
  }
  Model<double> model(model_config(CellKind::lstm, 1, 4));
  TrainConfig tc;
  tc.online = OnlineMethod::uoro;
  tc.dropout = 0.1;
  EXPECT_THROW(Trainer<double>(model, *task, tc), Error) << "uoro with dropout";
  tc.dropout = 0;
  tc.recompute = 3;
  EXPECT_THROW(Trainer<double>(model, *task, tc), Error) << "uoro with recompute";
}

}  // namespace
}  // namespace bptt
