// The synthetic benchmarks (src/train/synthetic_task.cpp): the adding problem's markers, values,
// target, mask; the copy task's layout and targets; batches that are a pure function of
// (seed, epoch, index); the task's interface and metadata; the baselines, evaluated on
// hand-built models (the constant 1 for adding, the memoryless strategy for copy); and a short
// run that learns the adding problem at a small T.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/tasks.hpp"
#include "bptt/train.hpp"

namespace bptt {
namespace {

SyntheticSpec spec_of(SyntheticKind kind, int seq_len) {
  SyntheticSpec s;
  s.kind = kind;
  s.seq_len = seq_len;
  return s;
}

template <class Real>
bool same_batch(const Batch<Real>& a, const Batch<Real>& b) {
  return a.T == b.T && a.B == b.B && a.x == b.x && a.y == b.y && a.classes == b.classes &&
         a.lengths == b.lengths && a.mask == b.mask && a.h0 == b.h0 && a.c0 == b.c0;
}

// Sequence b of a batch as its own [T, 1] batch (every tensor the task sets).
template <class Real>
Batch<Real> column(const Batch<Real>& a, int b, int I, int O) {
  Batch<Real> c;
  c.T = a.T;
  c.B = 1;
  for (int t = 0; t < a.T; ++t) {
    const std::size_t r = std::size_t(t) * a.B + b;
    for (int i = 0; i < I; ++i) c.x.push_back(a.x[r * I + i]);
    if (!a.y.empty())
      for (int o = 0; o < O; ++o) c.y.push_back(a.y[r * O + o]);
    if (!a.mask.empty()) c.mask.push_back(a.mask[r]);
    if (!a.classes.empty()) c.classes.push_back(a.classes[r]);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// The adding problem

// T odd: the first half is [0, 5), the second [5, 11).
TEST(SyntheticAdding, TwoMarkersOneInEachHalfAndTheTargetIsTheirSum) {
  const SyntheticSpec spec = spec_of(SyntheticKind::adding, 11);
  const int T = 11, B = 64, half = 5;
  std::set<int> first_seen, second_seen;
  Batch<double> a;
  for (std::int64_t epoch = 0; epoch < 2; ++epoch)
    for (std::int64_t index = 0; index < 3; ++index) {
      fill_synthetic(spec, 9, epoch, index, B, a);
      ASSERT_EQ(a.T, T);
      ASSERT_EQ(a.B, B);
      ASSERT_EQ(a.x.size(), std::size_t(T * B * 2));
      ASSERT_EQ(a.y.size(), std::size_t(T * B));
      ASSERT_EQ(a.mask.size(), std::size_t(T * B));
      EXPECT_TRUE(a.lengths.empty() && a.h0.empty() && a.c0.empty() && a.classes.empty());
      for (int b = 0; b < B; ++b) {
        std::vector<int> marked;
        for (int t = 0; t < T; ++t) {
          const std::size_t r = std::size_t(t) * B + b;
          const double value = a.x[r * 2], marker = a.x[r * 2 + 1];
          EXPECT_GE(value, 0.0);
          EXPECT_LT(value, 1.0);
          ASSERT_TRUE(marker == 0.0 || marker == 1.0) << marker;
          if (marker == 1.0) marked.push_back(t);
          // Only the last step has a target and a weight.
          EXPECT_EQ(a.mask[r], t == T - 1 ? 1.0 : 0.0);
          if (t < T - 1) {
            EXPECT_EQ(a.y[r], 0.0);
          }
        }
        ASSERT_EQ(marked.size(), 2u) << "sequence " << b;
        EXPECT_LT(marked[0], half);
        EXPECT_GE(marked[1], half);
        first_seen.insert(marked[0]);
        second_seen.insert(marked[1]);
        const double sum = a.x[(std::size_t(marked[0]) * B + b) * 2] +
                           a.x[(std::size_t(marked[1]) * B + b) * 2];
        EXPECT_EQ(a.y[std::size_t(T - 1) * B + b], sum);
      }
    }
  // 384 sequences: every position of each half is marked somewhere (uniform choice).
  EXPECT_EQ(first_seen.size(), std::size_t(half));
  EXPECT_EQ(second_seen.size(), std::size_t(T - half));
}

TEST(SyntheticAdding, ValuesAreUniform) {
  Batch<double> a;
  fill_synthetic(spec_of(SyntheticKind::adding, 100), 3, 0, 0, 100, a);
  double sum = 0, sq = 0;
  const int n = 100 * 100;
  for (int k = 0; k < n; ++k) {
    sum += a.x[std::size_t(k) * 2];
    sq += a.x[std::size_t(k) * 2] * a.x[std::size_t(k) * 2];
  }
  EXPECT_NEAR(sum / n, 0.5, 0.015);           // sd of the mean: 0.0029
  EXPECT_NEAR(sq / n - 0.25, 1.0 / 12, 0.005);  // the variance of U(0, 1)
}

// ---------------------------------------------------------------------------------------------
// The copy task

TEST(SyntheticCopy, LayoutAndTargets) {
  const int D = 7, B = 32, T = D + 20, K = 10;
  const SyntheticSpec spec = spec_of(SyntheticKind::copy, D);
  EXPECT_EQ(spec.steps(), T);
  Batch<float> a;
  fill_synthetic(spec, 4, 1, 2, B, a);
  ASSERT_EQ(a.T, T);
  ASSERT_EQ(a.B, B);
  ASSERT_EQ(a.x.size(), std::size_t(T * B * 10));
  ASSERT_EQ(a.classes.size(), std::size_t(T * B));
  EXPECT_TRUE(a.y.empty() && a.mask.empty() && a.lengths.empty() && a.h0.empty() && a.c0.empty());
  std::set<int> symbols;
  for (int b = 0; b < B; ++b) {
    std::vector<int> in(T);
    for (int t = 0; t < T; ++t) {
      const float* row = &a.x[(std::size_t(t) * B + b) * 10];
      ASSERT_EQ(std::count(row, row + 10, 1.0f), 1) << "not one-hot at t = " << t;
      ASSERT_EQ(std::count(row, row + 10, 0.0f), 9) << "not one-hot at t = " << t;
      in[std::size_t(t)] = int(std::find(row, row + 10, 1.0f) - row);
    }
    for (int t = 0; t < T; ++t) {
      const int x = in[std::size_t(t)];
      const std::int64_t y = a.classes[std::size_t(t) * B + b];
      if (t < K) {
        EXPECT_GE(x, 1);
        EXPECT_LE(x, 8);
        symbols.insert(x);
      } else if (t == D + K - 1) {
        EXPECT_EQ(x, 9) << "the delimiter";
      } else {
        EXPECT_EQ(x, 0) << "a blank at t = " << t;
      }
      if (t < D + K) {
        EXPECT_EQ(y, 0) << "the target is blank until the delimiter's step, t = " << t;
      } else {
        EXPECT_EQ(y, in[std::size_t(t - D - K)]) << "the recalled symbol at t = " << t;
      }
    }
  }
  EXPECT_EQ(symbols.size(), 8u);  // 320 draws from 1..8
}

// ---------------------------------------------------------------------------------------------
// Determinism, interface, metadata

TEST(SyntheticTasks, BatchesAreAPureFunctionOfSeedEpochIndex) {
  for (SyntheticKind kind : {SyntheticKind::adding, SyntheticKind::copy}) {
    const SyntheticSpec spec = spec_of(kind, 12);
    const int I = spec.input_size(), O = kind == SyntheticKind::adding ? 1 : 0;
    Batch<double> a, b;
    fill_synthetic(spec, 5, 2, 3, 8, a);
    fill_synthetic(spec, 5, 0, 0, 8, b);  // another batch between: no hidden state
    fill_synthetic(spec, 5, 2, 3, 8, b);
    EXPECT_TRUE(same_batch(a, b));
    auto task = make_synthetic_task<double>(spec, 8);
    task->fill(5, 2, 3, b);  // the task fills the same batch
    EXPECT_TRUE(same_batch(a, b));
    fill_synthetic(spec, 5, 2, 4, 8, b);
    EXPECT_FALSE(same_batch(a, b));
    fill_synthetic(spec, 5, 1, 3, 8, b);
    EXPECT_FALSE(same_batch(a, b));
    fill_synthetic(spec, 6, 2, 3, 8, b);
    EXPECT_FALSE(same_batch(a, b));
    // Sequence ids are index · B + b: sequences 24..31 in batch 3 of B = 8, 24..27 in batch 6
    // of B = 4 and 28..31 in batch 7; other ids, other sequences.
    fill_synthetic(spec, 5, 2, 6, 4, b);
    EXPECT_TRUE(same_batch(column(a, 1, I, O), column(b, 1, I, O)));
    EXPECT_FALSE(same_batch(column(a, 5, I, O), column(b, 1, I, O)));
    EXPECT_FALSE(same_batch(column(a, 0, I, O), column(a, 1, I, O)));
    fill_synthetic(spec, 5, 2, 7, 4, b);
    EXPECT_TRUE(same_batch(column(a, 5, I, O), column(b, 1, I, O)));
    // float and double batches hold the same draws.
    Batch<float> f;
    fill_synthetic(spec, 5, 2, 3, 8, f);
    ASSERT_EQ(f.x.size(), a.x.size());
    for (std::size_t k = 0; k < a.x.size(); ++k) ASSERT_EQ(f.x[k], float(a.x[k]));
    EXPECT_EQ(f.classes, a.classes);
  }
}

TEST(SyntheticTasks, InterfaceMetadataAndValidation) {
  auto adding = make_synthetic_task<float>(spec_of(SyntheticKind::adding, 30), 16);
  EXPECT_EQ(adding->T(), 30);
  EXPECT_EQ(adding->B(), 16);
  EXPECT_EQ(adding->loss(), LossKind::mse);
  EXPECT_EQ(adding->batches_per_epoch(), kSyntheticBatchesPerEpoch);
  EXPECT_FALSE(adding->carries_state());
  EXPECT_TRUE(adding->has_evaluation());
  const auto meta = adding->model_metadata();
  EXPECT_EQ(meta.at("task"), "adding");
  EXPECT_EQ(meta.at("task_seq_len"), "30");

  const SyntheticSpec copy = spec_of(SyntheticKind::copy, 30);
  auto copy_task = make_synthetic_task<float>(copy, 16);
  EXPECT_EQ(copy_task->T(), 50);
  EXPECT_EQ(copy_task->loss(), LossKind::xent);
  EXPECT_EQ(copy.input_size(), 10);
  EXPECT_EQ(copy.output_size(), 10);
  EXPECT_EQ(copy.output_activation(), Activation::softmax);
  const SyntheticSpec back = SyntheticSpec::from_metadata(copy_task->model_metadata());
  EXPECT_EQ(back.kind, SyntheticKind::copy);
  EXPECT_EQ(back.seq_len, 30);

  EXPECT_EQ(parse_synthetic_kind("adding", "--task"), SyntheticKind::adding);
  EXPECT_EQ(parse_synthetic_kind("copy", "--task"), SyntheticKind::copy);
  EXPECT_THROW(parse_synthetic_kind("add", "--task"), Error);
  EXPECT_THROW(spec_of(SyntheticKind::adding, 1).validate(), Error);
  EXPECT_NO_THROW(spec_of(SyntheticKind::adding, 2).validate());
  EXPECT_THROW(spec_of(SyntheticKind::copy, 0).validate(), Error);
  EXPECT_NO_THROW(spec_of(SyntheticKind::copy, 1).validate());
  EXPECT_THROW(make_synthetic_task<float>(spec_of(SyntheticKind::adding, 10), 0), Error);
  std::map<std::string, std::string> bad = meta;
  bad["task_seq_len"] = "1.5";
  EXPECT_THROW(SyntheticSpec::from_metadata(bad), Error);
  bad.erase("task_seq_len");
  EXPECT_THROW(SyntheticSpec::from_metadata(bad), Error);
  EXPECT_THROW(SyntheticSpec::from_metadata({{"task", "text"}, {"task_seq_len", "5"}}), Error);
}

// ---------------------------------------------------------------------------------------------
// Baselines on hand-built models

// An Elman network with every parameter 0 except what `set` writes.
Model<double> elman(int I, int H, int O, Activation phi, Activation theta) {
  ModelConfig c;
  c.cell = CellKind::elman;
  c.nonlinearity = phi;
  c.output_activation = theta;
  c.input_size = I;
  c.hidden_size = H;
  c.output_size = O;
  return Model<double>(c);
}

TEST(SyntheticBaseline, AddingConstantOneScoresOneSixth) {
  const SyntheticSpec spec = spec_of(SyntheticKind::adding, 50);
  Model<double> model = elman(2, 1, 1, Activation::tanh, Activation::identity);
  model.views().b_o[0] = 1.0;  // ŷ = 1 whatever the input
  const Metrics m = evaluate_synthetic(model, spec);
  // E[(U1 + U2 − 1)^2] = 1/6; over 1000 sequences the sampling sd is sqrt(7/180 / 1000) = 0.0062.
  EXPECT_NEAR(m.loss, 1.0 / 6, 0.025);
  EXPECT_EQ(m.values.at("mse"), m.loss);
  EXPECT_DOUBLE_EQ(m.values.at("baseline_mse"), 1.0 / 6);
  EXPECT_DOUBLE_EQ(spec.baseline(), 1.0 / 6);
  // P(|U1 + U2 − 1| < 0.04) = 1 − 0.96^2 = 0.0784 (sd 0.0085).
  EXPECT_NEAR(m.values.at("accuracy"), 0.0784, 0.035);
  EXPECT_NE(m.summary.find("0.1667"), std::string::npos) << m.summary;
  // Predicting 0 scores E[(U1 + U2)^2] = 1/6 + 1: the target is the sum, at the last step.
  model.views().b_o[0] = 0.0;
  EXPECT_NEAR(evaluate_synthetic(model, spec).loss, 7.0 / 6, 0.06);
  // The held-out set is fixed: the same numbers again, and in chunks (n = 300 > 250 per chunk).
  EXPECT_EQ(evaluate_synthetic(model, spec).loss, evaluate_synthetic(model, spec).loss);
  EXPECT_NEAR(evaluate_synthetic(model, spec, 300).loss, 7.0 / 6, 0.12);
}

// The memoryless strategy, built by hand: identity Elman with h0_t = [x_t is the delimiter] and
// h1_t = h1_{t−1} + h0_t, so a_t = h1_t − h0_t = [t is after the delimiter]. The blank's logit is
// M − 2M a_t, the delimiter's −M, the data symbols' 0: blank with certainty up to the delimiter's
// step, then uniform over 1..8. Its cross-entropy is 10 ln 8 / (D + 20) (up to e^−M).
TEST(SyntheticBaseline, CopyMemorylessStrategyScoresTheBaseline) {
  for (int D : {5, 40}) {
    const SyntheticSpec spec = spec_of(SyntheticKind::copy, D);
    Model<double> model = elman(10, 2, 10, Activation::identity, Activation::softmax);
    const double M = 40;
    auto v = model.views();
    v.layers[0].w_ih[0 * 10 + 9] = 1;  // h0 = x_9
    v.layers[0].w_ih[1 * 10 + 9] = 1;  // h1 = h1 + x_9
    v.layers[0].w_hh[1 * 2 + 1] = 1;
    v.w_o[0 * 2 + 0] = 2 * M;  // blank: M − 2M (h1 − h0)
    v.w_o[0 * 2 + 1] = -2 * M;
    v.b_o[0] = M;
    v.b_o[9] = -M;
    const Metrics m = evaluate_synthetic(model, spec);
    const double baseline = 10 * std::log(8.0) / (D + 20);
    EXPECT_NEAR(m.loss, baseline, 1e-9) << "D = " << D;
    EXPECT_DOUBLE_EQ(m.values.at("baseline_xent"), baseline);
    EXPECT_DOUBLE_EQ(spec.baseline(), baseline);
    // Ties go to symbol 1: right for 1/8 of the 10,000 recalled symbols (sd 0.0033).
    EXPECT_NEAR(m.values.at("accuracy"), 0.125, 0.015);
    // Uniform over all 10 symbols everywhere scores ln 10 per step.
    Model<double> flat = elman(10, 2, 10, Activation::identity, Activation::softmax);
    EXPECT_NEAR(evaluate_synthetic(flat, spec).loss, std::log(10.0), 1e-9);
  }
}

TEST(SyntheticBaseline, RefusesAModelOfOtherSizes) {
  const Model<double> model = elman(10, 2, 10, Activation::tanh, Activation::softmax);
  EXPECT_THROW(evaluate_synthetic(model, spec_of(SyntheticKind::adding, 10)), Error);
  EXPECT_THROW(evaluate_synthetic(model, spec_of(SyntheticKind::copy, 10), 0), Error);
}

// ---------------------------------------------------------------------------------------------
// Learning

// At T = 10 a small LSTM learns the sum well below the baseline in a few hundred steps.
TEST(SyntheticTraining, LstmLearnsTheAddingProblemAtSmallT) {
  const SyntheticSpec spec = spec_of(SyntheticKind::adding, 10);
  ModelConfig c;
  c.cell = CellKind::lstm;
  c.input_size = 2;
  c.hidden_size = 16;
  c.output_size = 1;
  Model<float> model(c);
  init_model(model, 1, 0.0);
  auto task = make_synthetic_task<float>(spec, 32);
  TrainConfig tc;
  tc.schedule.lr = 1e-2;
  tc.clip_norm = 5;
  Trainer<float> trainer(model, *task, tc);
  const double before = task->evaluate(model).loss;
  for (int s = 0; s < 400; ++s) trainer.step();
  const double after = task->evaluate(model).loss;
  EXPECT_GT(before, 0.1);
  EXPECT_LT(after, 0.05) << "before " << before;  // about 0.014 here
}

}  // namespace
}  // namespace bptt
