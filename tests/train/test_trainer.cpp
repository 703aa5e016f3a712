// The Trainer on the character language model task (make_text_task over a small synthetic
// corpus): snapshots resume bit-identically; bad snapshots are refused and change nothing; the
// loss goes down on a learnable text; the state carried between windows is the previous
// window's h_n; init_model's forget bias.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"
#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/loss.hpp"
#include "bptt/safetensors.hpp"
#include "bptt/tasks.hpp"
#include "bptt/train.hpp"

namespace bptt {
namespace {

namespace fs = std::filesystem;

// Each test gets its own directory under the system temp dir, removed afterwards.
class TrainerTest : public bptt::test::TempDirTest {
 protected:
  TrainerTest() : TempDirTest("bptt_trainer_") {}

  // Writes `text` to a file and loads it as a corpus with a 10% validation part.
  data::TextCorpus corpus(const std::string& text, const std::string& name = "corpus.txt") {
    std::ofstream(path(name), std::ios::binary) << text;
    return data::load_text(path(name), 0.1);
  }
};

// A text with structure but no short period: words from a small vocabulary, drawn by a fixed
// generator (so the same on every machine: only mt19937's raw output is used).
std::string synthetic_text(std::size_t n) {
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat.\n", "dog ", "ran "};
  std::mt19937 rng(12345);
  std::string s;
  while (s.size() < n) s += words[rng() % 8];
  s.resize(n);
  return s;
}

ModelConfig text_model(const data::TextCorpus& c, CellKind cell, int L, int H) {
  ModelConfig m;
  m.cell = cell;
  m.output_activation = Activation::softmax;
  m.input_size = c.vocab.size();
  m.output_size = c.vocab.size();
  m.hidden_size = H;
  m.num_layers = L;
  m.validate("test");
  return m;
}

TrainConfig adam_config(double dropout) {
  TrainConfig tc;
  tc.optimizer.kind = OptimizerKind::adam;
  tc.optimizer.weight_decay = 1e-3;
  tc.schedule.kind = ScheduleKind::cosine;
  tc.schedule.lr = 1e-2;
  tc.schedule.warmup = 3;
  tc.schedule.total = 40;
  tc.schedule.min_lr = 1e-4;
  tc.clip_norm = 1.0;
  tc.dropout = dropout;
  tc.seed = 7;
  return tc;
}

TrainConfig sgd_momentum_config(double dropout) {
  TrainConfig tc;
  tc.optimizer.kind = OptimizerKind::sgd;
  tc.optimizer.momentum = 0.9;
  tc.optimizer.nesterov = true;
  tc.schedule.kind = ScheduleKind::step;
  tc.schedule.lr = 0.2;
  tc.schedule.step_size = 7;
  tc.schedule.gamma = 0.7;
  tc.clip_value = 0.5;
  tc.dropout = dropout;
  tc.seed = 3;
  return tc;
}

template <class Real>
bool same_bits(const std::vector<Real>& a, const std::vector<Real>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(Real)) == 0);
}

// A model, its task and its trainer, built the way `bptt train` builds them.
template <class Real>
struct TrainRun {
  Model<Real> model;
  std::unique_ptr<Task<Real>> task;
  std::unique_ptr<Trainer<Real>> trainer;
  TrainRun(const data::TextCorpus& c, const ModelConfig& cfg, const TrainConfig& tc, int B, int T,
      std::uint64_t init_seed = 1)
      : model(cfg), task(make_text_task<Real>(c, B, T)) {
    init_model(model, init_seed, 1.0);
    model.metadata = task->model_metadata();
    trainer = std::make_unique<Trainer<Real>>(model, *task, tc);
  }
  std::vector<double> steps(int n) {
    std::vector<double> losses;
    for (int i = 0; i < n; ++i) losses.push_back(trainer->step().loss);
    return losses;
  }
};

// ---------------------------------------------------------------------------------------------
// (a) Resume is bit-identical
// ---------------------------------------------------------------------------------------------

struct ResumeCase {
  std::string name;
  bool adam;
  double dropout;
  bool f64;
  CellKind cell;
};

class Resume : public TrainerTest, public ::testing::WithParamInterface<ResumeCase> {
 protected:
  template <class Real>
  void run() {
    const ResumeCase& rc = GetParam();
    const auto c = corpus(synthetic_text(600));
    const ModelConfig cfg = text_model(c, rc.cell, 2, 8);
    const TrainConfig tc = rc.adam ? adam_config(rc.dropout) : sgd_momentum_config(rc.dropout);
    const int B = 4, T = 8;
    const int N = 36;
    TrainRun<Real> straight(c, cfg, tc, B, T);
    const std::int64_t bpe = straight.task->batches_per_epoch();
    ASSERT_GE(bpe, 8);
    ASSERT_LT(bpe, N / 2 + 4) << "the runs should cross an epoch boundary";
    straight.steps(N);
    EXPECT_EQ(straight.trainer->steps_done(), N);

    // Split at N/2, and at exactly the end of the first epoch (carry set, index == bpe).
    for (const int split : {N / 2, int(bpe)}) {
      SCOPED_TRACE("split at step " + std::to_string(split));
      const std::string snap = path("snap_" + std::to_string(split) + ".safetensors");
      {
        TrainRun<Real> first(c, cfg, tc, B, T);
        first.steps(split);
        first.trainer->save_snapshot(snap, "fp");
      }
      // A NEW model (initialised from another seed) and trainer, then the snapshot.
      TrainRun<Real> second(c, cfg, tc, B, T, /*init_seed=*/99);
      second.trainer->load_snapshot(snap, "fp");
      EXPECT_EQ(second.trainer->steps_done(), split);
      second.steps(N - split);
      EXPECT_EQ(second.trainer->steps_done(), N);
      EXPECT_EQ(second.trainer->epoch(), straight.trainer->epoch());
      EXPECT_EQ(second.trainer->position(), straight.trainer->position());
      EXPECT_TRUE(same_bits(second.model.params, straight.model.params))
          << "parameters after resume differ from the uninterrupted run";
      // The snapshots written at the end are byte-identical too.
      straight.trainer->save_snapshot(path("a.safetensors"), "fp");
      second.trainer->save_snapshot(path("b.safetensors"), "fp");
      EXPECT_EQ(data::read_file_bytes(path("a.safetensors")),
                data::read_file_bytes(path("b.safetensors")));
    }
  }
};

TEST_P(Resume, BitIdentical) {
  if (GetParam().f64)
    run<double>();
  else
    run<float>();
}

std::vector<ResumeCase> resume_cases() {
  std::vector<ResumeCase> out;
  for (bool adam : {true, false})
    for (double dropout : {0.0, 0.3})
      for (bool f64 : {true, false}) {
        std::string name = std::string(adam ? "adam" : "sgd_momentum") +
                           (dropout > 0 ? "_dropout" : "") + (f64 ? "_f64" : "_f32");
        out.push_back({name + "_lstm", adam, dropout, f64, CellKind::lstm});
      }
  out.push_back({"adam_dropout_f64_gru", true, 0.3, true, CellKind::gru});
  out.push_back({"sgd_momentum_f32_elman", false, 0.0, false, CellKind::elman});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Text, Resume, ::testing::ValuesIn(resume_cases()),
                         [](const auto& pi) { return pi.param.name; });

// ---------------------------------------------------------------------------------------------
// (b) Bad snapshots are refused and change nothing
// ---------------------------------------------------------------------------------------------

// Rewrites `from` into `to` without the tensors in `drop` and without the metadata keys in
// `drop_meta`, with `set_meta` overriding metadata values.
void rewrite(const std::string& from, const std::string& to, const std::vector<std::string>& drop,
             const std::vector<std::string>& drop_meta = {},
             const std::map<std::string, std::string>& set_meta = {}) {
  const auto f = safetensors::File::read(from);
  safetensors::Writer w;
  for (const auto& [k, v] : f.metadata())
    if (std::find(drop_meta.begin(), drop_meta.end(), k) == drop_meta.end()) w.set_metadata(k, v);
  for (const auto& [k, v] : set_meta) w.set_metadata(k, v);
  for (const std::string& name : f.names())
    if (std::find(drop.begin(), drop.end(), name) == drop.end()) w.add(name, f.at(name));
  w.write(to);
}

class BadSnapshot : public TrainerTest {
 protected:
  static constexpr int B = 4, T = 8;

  // Trains a target a few steps, tries to load `snap` (must throw bptt::Error), then checks that
  // the model and trainer are unchanged: the counters, the parameters, and, by training on, the
  // optimizer state and carried state (bit-identical to a twin that never tried).
  template <class Real>
  void expect_refused(const data::TextCorpus& c, const ModelConfig& cfg, const std::string& snap,
                      const std::string& fingerprint, const std::string& what) {
    SCOPED_TRACE(what);
    const TrainConfig tc = adam_config(0.2);
    TrainRun<Real> target(c, cfg, tc, B, T, 5), twin(c, cfg, tc, B, T, 5);
    target.steps(5);
    twin.steps(5);
    const auto params = target.model.params;
    try {
      target.trainer->load_snapshot(snap, fingerprint);
      ADD_FAILURE() << what << ": the snapshot was accepted";
    } catch (const Error& e) {
      EXPECT_FALSE(std::string(e.what()).empty());
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": threw a non-bptt exception: " << e.what();
    }
    EXPECT_TRUE(same_bits(target.model.params, params)) << what << ": parameters changed";
    EXPECT_EQ(target.trainer->steps_done(), 5) << what;
    EXPECT_EQ(target.trainer->epoch(), twin.trainer->epoch()) << what;
    EXPECT_EQ(target.trainer->position(), twin.trainer->position()) << what;
    const auto lt = target.steps(6), lw = twin.steps(6);
    EXPECT_EQ(lt, lw) << what << ": training after the refused load differs";
    EXPECT_TRUE(same_bits(target.model.params, twin.model.params))
        << what << ": optimizer or carried state changed";
  }

  // A valid snapshot of a run with `cfg` after 9 steps (mid-epoch, carry set).
  template <class Real>
  std::string snapshot(const data::TextCorpus& c, const ModelConfig& cfg, const std::string& name,
                       const std::string& fingerprint = "fp") {
    TrainRun<Real> r(c, cfg, adam_config(0.2), B, T, 11);
    r.steps(9);
    const std::string p = path(name);
    r.trainer->save_snapshot(p, fingerprint);
    return p;
  }
};

TEST_F(BadSnapshot, ValidSnapshotLoads) {  // the baseline for the cases below
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  const std::string snap = snapshot<double>(c, cfg, "ok.safetensors");
  TrainRun<double> r(c, cfg, adam_config(0.2), B, T);
  EXPECT_NO_THROW(r.trainer->load_snapshot(snap, "fp"));
  EXPECT_EQ(r.trainer->steps_done(), 9);
}

TEST_F(BadSnapshot, DifferentFingerprint) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  const std::string snap = snapshot<double>(c, cfg, "s.safetensors", "fp-A");
  expect_refused<double>(c, cfg, snap, "fp-B", "different fingerprint");
}

TEST_F(BadSnapshot, DifferentModelSize) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  expect_refused<double>(c, cfg, snapshot<double>(c, text_model(c, CellKind::lstm, 2, 6), "h6"),
                         "fp", "hidden 6 into hidden 8");
  expect_refused<double>(c, cfg, snapshot<double>(c, text_model(c, CellKind::lstm, 1, 8), "l1"),
                         "fp", "1 layer into 2");
  expect_refused<double>(c, cfg, snapshot<double>(c, text_model(c, CellKind::gru, 2, 8), "gru"),
                         "fp", "gru into lstm");
}

// Same sizes, same fingerprint string, but another nonlinearity: the model differs, so the
// header's promise ("throws ... when the model differs") says refuse.
TEST_F(BadSnapshot, DifferentNonlinearity) {
  const auto c = corpus(synthetic_text(600));
  ModelConfig tanh_cfg = text_model(c, CellKind::elman, 2, 8);
  ModelConfig relu_cfg = tanh_cfg;
  relu_cfg.nonlinearity = Activation::relu;
  expect_refused<double>(c, tanh_cfg, snapshot<double>(c, relu_cfg, "relu"), "fp",
                         "elman relu into elman tanh");
}

TEST_F(BadSnapshot, DifferentDtype) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  expect_refused<float>(c, cfg, snapshot<double>(c, cfg, "f64"), "fp", "f64 into f32");
  expect_refused<double>(c, cfg, snapshot<float>(c, cfg, "f32"), "fp", "f32 into f64");
}

TEST_F(BadSnapshot, DifferentBatch) {  // the carried state has another B
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  std::string snap;
  {
    TrainRun<double> r(c, cfg, adam_config(0.2), 2, T, 11);
    r.steps(3);
    snap = path("b2");
    r.trainer->save_snapshot(snap, "fp");
  }
  expect_refused<double>(c, cfg, snap, "fp", "B = 2 into B = 4");
}

TEST_F(BadSnapshot, Truncated) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  const std::string good = snapshot<double>(c, cfg, "good");
  const std::string bytes = data::read_file_bytes(good);
  for (std::size_t keep : {std::size_t(0), std::size_t(5), std::size_t(40), bytes.size() / 2,
                           bytes.size() - 8, bytes.size() - 1}) {
    const std::string p = path("cut" + std::to_string(keep));
    std::ofstream(p, std::ios::binary) << bytes.substr(0, keep);
    expect_refused<double>(c, cfg, p, "fp", "truncated to " + std::to_string(keep) + " bytes");
  }
}

TEST_F(BadSnapshot, NotASnapshot) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  Model<double> m(cfg);
  m.init_uniform(3);
  save_model(m, path("model.safetensors"));
  expect_refused<double>(c, cfg, path("model.safetensors"), "fp", "a model file");
  expect_refused<double>(c, cfg, path("does-not-exist"), "fp", "a missing file");
}

TEST_F(BadSnapshot, TensorMissing) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  const std::string good = snapshot<double>(c, cfg, "good");
  const auto f = safetensors::File::read(good);
  // What a snapshot of this run holds (train.hpp): parameters, optimizer slots, carried state.
  for (const char* name : {"rnn.weight_ih_l0", "rnn.bias_hh_l1", "head.bias", "optimizer.exp_avg",
                           "optimizer.exp_avg_sq", "carry.h", "carry.c"}) {
    ASSERT_TRUE(f.has(name)) << name;
    const std::string p = path(std::string("no_") + name);
    rewrite(good, p, {name});
    expect_refused<double>(c, cfg, p, "fp", std::string("without ") + name);
  }
}

TEST_F(BadSnapshot, MetadataMissingOrBad) {
  const auto c = corpus(synthetic_text(600));
  const ModelConfig cfg = text_model(c, CellKind::lstm, 2, 8);
  const std::string good = snapshot<double>(c, cfg, "good");
  for (const char* key : {"format", "dtype", "fingerprint", "step", "epoch", "position",
                          "optimizer_steps", "hidden_size", "cell"}) {
    const std::string p = path(std::string("nometa_") + key);
    rewrite(good, p, {}, {key});
    expect_refused<double>(c, cfg, p, "fp", std::string("without __metadata__.") + key);
  }
  for (const auto& [key, value] : std::map<std::string, std::string>{
           {"step", "nine"}, {"epoch", "-1"}, {"position", "3x"}, {"format_version", "2"}}) {
    const std::string p = path("badmeta_" + key);
    rewrite(good, p, {}, {}, {{key, value}});
    expect_refused<double>(c, cfg, p, "fp", "__metadata__." + key + " = " + value);
  }
}

// ---------------------------------------------------------------------------------------------
// (c) Learning
// ---------------------------------------------------------------------------------------------

template <class Real>
void loss_decreases(const data::TextCorpus& c) {
  TrainConfig tc;
  tc.optimizer.kind = OptimizerKind::adam;
  tc.schedule.lr = 1e-2;
  tc.clip_norm = 5;
  TrainRun<Real> r(c, text_model(c, CellKind::lstm, 1, 16), tc, 4, 10);
  const double before = r.task->evaluate(r.model).loss;
  const auto losses = r.steps(50);
  const double after = r.task->evaluate(r.model).loss;
  double first = 0, last = 0;
  for (std::size_t i = 0; i < 5; ++i) first += losses[i] / 5, last += losses[45 + i] / 5;
  EXPECT_LT(last, 0.5 * first) << "train loss: first 5 steps " << first << ", last 5 " << last;
  EXPECT_LT(after, 0.5 * before) << "validation loss before " << before << ", after " << after;
  const auto m = r.task->evaluate(r.model);
  EXPECT_NEAR(m.values.at("bits_per_char"), m.loss / std::log(2.0), 1e-12);
}

TEST_F(TrainerTest, LossDecreasesOnLearnableText) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "abc";
  const auto c = corpus(text);
  loss_decreases<double>(c);
  loss_decreases<float>(c);
}

// ---------------------------------------------------------------------------------------------
// (d) Carried state
// ---------------------------------------------------------------------------------------------

// With lr = 0 the parameters stay put, so the trainer's step losses over an epoch must equal
// running the windows back to back with h_n of window w as h0 (and c0) of window w + 1; the
// next epoch starts again from zeros; evaluate_text over the training part agrees.
template <class Real>
void carry_matches_back_to_back(const data::TextCorpus& c, CellKind cell) {
  SCOPED_TRACE(to_string(cell));
  const int B = 3, T = 7, L = 2;
  TrainConfig tc;
  tc.optimizer.kind = OptimizerKind::sgd;
  tc.schedule.lr = 0;
  const ModelConfig cfg = text_model(c, cell, L, 6);
  TrainRun<Real> r(c, cfg, tc, B, T);
  ASSERT_TRUE(r.task->carries_state());
  const std::int64_t W = r.task->batches_per_epoch();
  ASSERT_GE(W, 4);
  const auto params = r.model.params;
  const auto losses = r.steps(int(W) + 2);
  ASSERT_TRUE(same_bits(r.model.params, params)) << "lr = 0 changed the parameters";

  const data::TextStreams streams(c.ids, 0, c.train_end, B, T);
  ASSERT_EQ(streams.windows(), W);
  Workspace<Real> ws(cfg, T, B);
  Batch<Real> batch;
  std::vector<Real> dz(std::size_t(T) * B * cfg.output_size);
  const std::size_t BH = std::size_t(B) * cfg.hidden_size;
  std::vector<Real> h, cc;  // the state after the previous window
  double sum = 0, sum_fresh = 0;
  int differ = 0;
  for (std::int64_t w = 0; w < W; ++w) {
    streams.fill(w, c.vocab.size(), batch);
    batch.h0.clear();
    batch.c0.clear();
    forward(r.model, batch, ws);
    const double fresh = loss_and_dz(LossKind::xent, cfg, batch, ws.z(), ws.yhat(), dz.data());
    batch.h0 = h;
    batch.c0 = cc;
    forward(r.model, batch, ws);
    const double carried = loss_and_dz(LossKind::xent, cfg, batch, ws.z(), ws.yhat(), dz.data());
    EXPECT_EQ(losses[std::size_t(w)], carried) << "window " << w;
    if (w > 0 && carried != fresh) ++differ;
    sum += carried;
    sum_fresh += fresh;
    h.assign(std::size_t(L) * BH, Real(0));
    if (cell == CellKind::lstm) cc.assign(h.size(), Real(0));
    for (int k = 0; k < L; ++k) {
      std::copy(ws.h(k) + std::size_t(T) * BH, ws.h(k) + std::size_t(T + 1) * BH,
                h.begin() + std::ptrdiff_t(k * BH));
      if (cell == CellKind::lstm)
        std::copy(ws.c(k) + std::size_t(T) * BH, ws.c(k) + std::size_t(T + 1) * BH,
                  cc.begin() + std::ptrdiff_t(k * BH));
    }
  }
  EXPECT_EQ(differ, W - 1) << "the carried state should change every later window's loss";
  // A new epoch starts from zero state: its windows repeat the first epoch's losses.
  EXPECT_EQ(losses[std::size_t(W)], losses[0]);
  EXPECT_EQ(losses[std::size_t(W) + 1], losses[1]);
  // evaluate_text runs the same windows the same way.
  const Metrics m = evaluate_text(r.model, c, 0, c.train_end, B, T);
  const double tol = sizeof(Real) == 8 ? 1e-12 : 1e-5;
  EXPECT_NEAR(m.loss, sum / double(W), tol * std::abs(sum / double(W)));
  EXPECT_GT(std::abs(m.loss - sum_fresh / double(W)), 100 * tol) << "evaluation ignores the carry";
}

TEST_F(TrainerTest, CarriedStateIsPreviousWindowsFinalState) {
  const auto c = corpus(synthetic_text(400));
  for (CellKind cell : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
    carry_matches_back_to_back<double>(c, cell);
    carry_matches_back_to_back<float>(c, cell);
  }
}

// ---------------------------------------------------------------------------------------------
// (e) init_model
// ---------------------------------------------------------------------------------------------

template <class Real>
void forget_bias_rows(CellKind cell) {
  SCOPED_TRACE(to_string(cell));
  ModelConfig cfg;
  cfg.cell = cell;
  cfg.input_size = 3;
  cfg.hidden_size = 5;
  cfg.num_layers = 3;
  cfg.output_size = 4;
  const int H = cfg.hidden_size, G = cfg.gates();
  Model<Real> base(cfg), zero(cfg), biased(cfg);
  base.init_uniform(21);
  init_model(zero, 21, 0.0);
  init_model(biased, 21, 1.25);
  EXPECT_TRUE(same_bits(zero.params, base.params)) << "forget_bias 0 is PyTorch's default init";
  const Real bound = Real(1 / std::sqrt(double(H)));
  for (Real v : base.params) EXPECT_LE(std::abs(v), bound);

  std::vector<bool> forget(base.params.size(), false);
  if (cell == CellKind::lstm)
    for (int k = 0; k < cfg.num_layers; ++k)
      for (const ParamInfo& p : param_layout(cfg))
        if (p.name == "rnn.bias_ih_l" + std::to_string(k)) {
          ASSERT_EQ(p.size, std::size_t(G * H));
          for (int j = H; j < 2 * H; ++j) forget[p.offset + std::size_t(j)] = true;
        }
  int changed = 0;
  for (std::size_t i = 0; i < base.params.size(); ++i) {
    if (forget[i]) {
      EXPECT_EQ(biased.params[i], base.params[i] + Real(1.25)) << i;
      ++changed;
    } else {
      EXPECT_EQ(biased.params[i], base.params[i]) << i;
    }
  }
  EXPECT_EQ(changed, cell == CellKind::lstm ? cfg.num_layers * H : 0);
}

TEST(InitModel, ForgetBiasAddsToLstmForgetGateRowsOfBiasIh) {
  for (CellKind cell : {CellKind::lstm, CellKind::gru, CellKind::elman}) {
    forget_bias_rows<double>(cell);
    forget_bias_rows<float>(cell);
  }
}

}  // namespace
}  // namespace bptt
