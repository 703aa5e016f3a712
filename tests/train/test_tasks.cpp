// The CSV forecasting, .ts classification and safetensors data tasks (src/train/series_task.cpp,
// ts_task.cpp, data_task.cpp): batches of the promised shape, the same batch for the same
// (seed, epoch, index), no held-out value in a training batch, forecasts that read only the past,
// the baselines on a hand-made series, a short run that lowers the loss, and, through the
// command, eval reproducing the numbers train printed at its end.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numbers>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/safetensors.hpp"
#include "bptt/tasks.hpp"
#include "bptt/train.hpp"
#include "cli/cli_util.hpp"
#include "support/shared_data.hpp"

namespace bptt {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Helpers

// A monthly series (labels 2000-01, 2000-02, ...: seasonal period 12).
data::Series monthly(std::vector<double> values) {
  data::Series s;
  s.path = "toy.csv";
  s.column = "v";
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::size_t y = 2000 + i / 12, m = 1 + i % 12;
    s.labels.push_back(std::to_string(y) + (m < 10 ? "-0" : "-") + std::to_string(m));
  }
  s.values = std::move(values);
  return s;
}

// A seasonal series with a trend: the kind of data the task is for.
std::vector<double> seasonal(int n) {
  std::vector<double> v;
  for (int t = 0; t < n; ++t)
    v.push_back(10 + 0.05 * t + 3 * std::sin(2 * std::numbers::pi * t / 12.0) + 0.3 * std::cos(1.7 * t));
  return v;
}

template <class Real>
Model<Real> lstm(int I, int H, int O, Activation theta, std::uint64_t seed) {
  ModelConfig c;
  c.cell = CellKind::lstm;
  c.input_size = I;
  c.hidden_size = H;
  c.output_size = O;
  c.output_activation = theta;
  Model<Real> m(c);
  m.init_uniform(seed);
  return m;
}

template <class Real>
bool same_batch(const Batch<Real>& a, const Batch<Real>& b) {
  return a.T == b.T && a.B == b.B && a.x == b.x && a.y == b.y && a.classes == b.classes &&
         a.lengths == b.lengths && a.mask == b.mask && a.h0 == b.h0 && a.c0 == b.c0;
}

// Runs `steps` optimizer steps of Adam at lr on the task; returns the evaluation before and after.
template <class Real>
std::pair<Metrics, Metrics> train_briefly(Model<Real>& model, Task<Real>& task, int steps, double lr) {
  const Metrics before = task.evaluate(model);
  TrainConfig tc;
  tc.schedule.lr = lr;
  tc.clip_norm = 5;
  Trainer<Real> trainer(model, task, tc);
  for (int s = 0; s < steps; ++s) trainer.step();
  return {before, task.evaluate(model)};
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

TEST(EpochOrder, IsAPermutationThatDependsOnSeedAndEpochOnly) {
  const std::vector<int> a = epoch_order(7, 3, 50);
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sorted[std::size_t(i)], i);
  EXPECT_EQ(a, epoch_order(7, 3, 50));
  EXPECT_NE(a, epoch_order(7, 4, 50));
  EXPECT_NE(a, epoch_order(8, 3, 50));
  EXPECT_EQ(epoch_order(1, 0, 1), std::vector<int>{0});
  EXPECT_THROW(epoch_order(1, 0, 0), Error);
}

TEST(Metadata, NumbersRoundTrip) {
  const std::map<std::string, std::string> meta = {{"a", metadata_number(0.1 + 0.2)},
                                                   {"b", "12x"}};
  EXPECT_EQ(metadata_double(meta, "a"), 0.1 + 0.2);
  EXPECT_THROW(metadata_double(meta, "b"), Error);
  EXPECT_THROW(metadata_double(meta, "c"), Error);
}

// ---------------------------------------------------------------------------------------------
// CSV forecasting

TEST(SeriesTask, BaselinesOnAHandMadeSeries) {
  const std::vector<double> y = {1, 3, 2, 5, 4, 6};
  // t = 3, 4, 5: persistence errors 3, -1, 2; seasonal naive (m = 2) errors 2, 2, 1.
  const ForecastBaselines b = forecast_baselines(y, 3, 6, 2);
  EXPECT_DOUBLE_EQ(b.rmse_persistence, std::sqrt(14.0 / 3));
  EXPECT_DOUBLE_EQ(b.rmse_seasonal_naive, std::sqrt(3.0));
  // With m = 4 only t = 4, 5 have a value a season back: errors 3, 3.
  EXPECT_DOUBLE_EQ(forecast_baselines(y, 3, 6, 4).rmse_seasonal_naive, 3.0);
  EXPECT_TRUE(std::isnan(forecast_baselines(y, 3, 6, 10).rmse_seasonal_naive));
}

TEST(SeriesTask, SplitScalingAndMetadata) {
  const data::Series s = monthly({1, 3, 2, 5, 4, 6, 8, 7, 9, 10});
  EXPECT_EQ(series_train_end(s, 0.33), 6u);  // floor(10 · 0.67)
  EXPECT_THROW(series_train_end(s, 0.8), Error);  // 2 training values
  EXPECT_THROW(series_train_end(s, 0), Error);
  const SeriesScaling sc = SeriesScaling::of(s, 6, 5);
  EXPECT_DOUBLE_EQ(sc.mean, 3.5);
  EXPECT_DOUBLE_EQ(sc.stddev, std::sqrt(17.5 / 6));
  EXPECT_DOUBLE_EQ(sc.diff_stddev, std::sqrt(19.0 / 5));  // differences 2, -1, 3, -1, 2
  EXPECT_EQ(sc.period, 12);
  EXPECT_EQ(sc.context, 5);
  const auto meta = sc.to_metadata("v");
  EXPECT_EQ(meta.at("task"), "csv");
  EXPECT_EQ(meta.at("csv_column"), "v");
  const SeriesScaling back = SeriesScaling::from_metadata(meta);
  EXPECT_EQ(back.mean, sc.mean);
  EXPECT_EQ(back.stddev, sc.stddev);
  EXPECT_EQ(back.diff_stddev, sc.diff_stddev);
  EXPECT_EQ(back.period, sc.period);
  EXPECT_EQ(back.context, sc.context);
  auto bad = meta;
  bad["csv_context"] = "0";
  EXPECT_THROW(SeriesScaling::from_metadata(bad), Error);
  bad.erase("csv_context");
  EXPECT_THROW(SeriesScaling::from_metadata(bad), Error);
}

TEST(SeriesTask, BatchesHaveTheShapeAreDeterministicAndHoldNoTestValue) {
  std::vector<double> v = seasonal(60);
  for (std::size_t t = 40; t < v.size(); ++t) v[t] += (t % 2 ? 1e4 : -1e4);  // huge test steps
  const data::Series s = monthly(v);
  const SeriesScaling sc = SeriesScaling::of(s, 40, 8);
  auto task = make_series_task<double>(s, 40, sc, 4);
  EXPECT_EQ(task->T(), 8);
  EXPECT_EQ(task->B(), 4);
  EXPECT_EQ(task->loss(), LossKind::mse);
  EXPECT_EQ(task->batches_per_epoch(), 8);  // 40 - 1 - 8 = 31 windows, 4 per batch
  EXPECT_FALSE(task->carries_state());
  double train_max = 0;  // the largest normalized training step, times the largest scale
  for (std::size_t t = 1; t < 40; ++t) train_max = std::max(train_max, std::abs(v[t] - v[t - 1]));
  train_max = 2 * train_max / sc.diff_stddev + 1e-9;
  Batch<double> a, b;
  for (std::int64_t epoch = 0; epoch < 3; ++epoch)
    for (std::int64_t i = 0; i < task->batches_per_epoch(); ++i) {
      task->fill(5, epoch, i, a);
      ASSERT_EQ(a.T, 8);
      ASSERT_EQ(a.B, 4);
      ASSERT_EQ(a.x.size(), 32u);
      ASSERT_EQ(a.y.size(), 32u);
      EXPECT_TRUE(a.classes.empty() && a.lengths.empty() && a.mask.empty() && a.h0.empty());
      for (std::size_t k = 0; k < a.x.size(); ++k) {
        EXPECT_LE(std::abs(a.x[k]), train_max);
        EXPECT_LE(std::abs(a.y[k]), train_max);
      }
      for (int t = 0; t + 1 < 8; ++t)  // the target of step t is the input of step t + 1
        for (int j = 0; j < 4; ++j) EXPECT_EQ(a.y[std::size_t(t) * 4 + j], a.x[std::size_t(t + 1) * 4 + j]);
    }
  task->fill(5, 2, 3, a);
  task->fill(5, 0, 0, b);  // another batch between: no hidden state
  task->fill(5, 2, 3, b);
  EXPECT_TRUE(same_batch(a, b));
  task->fill(5, 1, 3, b);
  EXPECT_FALSE(same_batch(a, b));
  task->fill(6, 2, 3, b);
  EXPECT_FALSE(same_batch(a, b));
  EXPECT_THROW(make_series_task<double>(s, 40, SeriesScaling::of(s, 40, 39), 4), Error);
}

TEST(SeriesTask, ForecastsReadOnlyThePast) {
  const std::vector<double> v = seasonal(50);
  const SeriesScaling sc = SeriesScaling::of(monthly(v), 30, 6);
  const Model<double> model = lstm<double>(1, 4, 1, Activation::identity, 3);
  // The forecast of y_35 does not change when later values do ...
  std::vector<double> later = v;
  for (std::size_t t = 36; t < later.size(); ++t) later[t] = -100.0 * double(t);
  const Metrics m1 = evaluate_series(model, monthly(v), 35, 36, sc);
  const Metrics m2 = evaluate_series(model, monthly(later), 35, 36, sc);
  EXPECT_EQ(m1.values.at("rmse"), m2.values.at("rmse"));
  // ... nor when y_35 itself does: the error is then |f − y_35| for one fixed forecast f, so
  // moving y_35 by ±d (d larger than the error) gives errors that add up to 2d.
  const double d = 1000;
  std::vector<double> up = v, down = v;
  up[35] += d;
  down[35] -= d;
  const double e_up = evaluate_series(model, monthly(up), 35, 36, sc).values.at("rmse");
  const double e_down = evaluate_series(model, monthly(down), 35, 36, sc).values.at("rmse");
  EXPECT_NEAR(e_up + e_down, 2 * d, 1e-9);
  // A network whose output is 0 forecasts persistence, exactly.
  Model<double> zero = model;
  std::fill(zero.params.begin(), zero.params.end(), 0.0);
  const Metrics z = evaluate_series(zero, monthly(v), 30, 50, sc);
  EXPECT_NEAR(z.values.at("rmse"), z.values.at("rmse_persistence"), 1e-12);
  EXPECT_NEAR(z.values.at("rmse_seasonal_naive"), forecast_baselines(v, 30, 50, 12).rmse_seasonal_naive, 1e-12);
  EXPECT_NEAR(z.loss, std::pow(z.values.at("rmse") / sc.diff_stddev, 2), 1e-12);
  EXPECT_NE(z.summary.find("persistence"), std::string::npos);
}

TEST(SeriesTask, ShortTrainingLowersTheLoss) {
  const data::Series s = monthly(seasonal(120));
  const SeriesScaling sc = SeriesScaling::of(s, 80, 24);
  auto task = make_series_task<float>(s, 80, sc, 16);
  Model<float> model = lstm<float>(1, 8, 1, Activation::identity, 1);
  const auto [before, after] = train_briefly(model, *task, 150, 1e-2);
  EXPECT_LT(after.loss, 0.5 * before.loss) << before.loss << " -> " << after.loss;
  EXPECT_LT(after.values.at("rmse"), after.values.at("rmse_persistence"));
}

// ---------------------------------------------------------------------------------------------
// .ts classification

// 12 sequences of 2 channels, lengths 3..6, 3 classes: channel 0 holds the sequence's index at
// every step (a marker to recognise it in a batch), channel 1 its class.
data::TsDataset toy_ts() {
  data::TsDataset ds;
  ds.path = "toy.ts";
  ds.dims = 2;
  ds.class_names = {"a", "b", "c"};
  for (int i = 0; i < 12; ++i) {
    const int len = 3 + i % 4, label = i % 3;
    std::vector<double> s;
    for (int t = 0; t < len; ++t) {
      s.push_back(i);
      s.push_back(2.0 * label - 2 + 0.1 * t);
    }
    ds.series.push_back(s);
    ds.lengths.push_back(len);
    ds.labels.push_back(label);
  }
  return ds;
}

std::vector<int> range(int a, int b) {
  std::vector<int> v;
  for (int i = a; i < b; ++i) v.push_back(i);
  return v;
}

TEST(TsTask, BatchesHaveTheShapeAreDeterministicAndHoldOnlyTrainingSequences) {
  const data::TsDataset ds = toy_ts();
  const std::vector<double> mean = {0, 0}, stddev = {1, 1};
  auto task = make_ts_task<double>(TsPart{&ds, range(0, 9)}, TsPart{&ds, range(9, 12)}, mean,
                                   stddev, 4);
  EXPECT_EQ(task->T(), 6);  // the longest training sequence
  EXPECT_EQ(task->B(), 4);
  EXPECT_EQ(task->batches_per_epoch(), 3);  // 9 sequences: 4 + 4 + 1 and 3 padding slots
  EXPECT_EQ(task->loss(), LossKind::xent);
  EXPECT_TRUE(task->has_evaluation());
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    std::multiset<int> seen;
    int padding = 0;
    Batch<double> b;
    for (std::int64_t i = 0; i < 3; ++i) {
      task->fill(11, epoch, i, b);
      ASSERT_EQ(b.T, 6);
      ASSERT_EQ(b.B, 4);
      ASSERT_EQ(b.x.size(), 6u * 4 * 2);
      ASSERT_EQ(b.classes.size(), 24u);
      ASSERT_EQ(b.mask.size(), 24u);
      ASSERT_EQ(b.lengths.size(), 4u);
      for (int j = 0; j < 4; ++j) {
        double w = 0;
        for (int t = 0; t < 6; ++t) w += b.weight(t, j);
        if (w == 0) {
          ++padding;
          continue;
        }
        const int id = int(b.x[std::size_t(j) * 2]);  // channel 0 at t = 0
        seen.insert(id);
        EXPECT_EQ(b.lengths[std::size_t(j)], ds.lengths[std::size_t(id)]);
        EXPECT_EQ(b.weight(int(b.lengths[std::size_t(j)]) - 1, j), 1.0);  // the last step only
        EXPECT_EQ(w, 1.0);
        EXPECT_EQ(b.classes[std::size_t(j)], ds.labels[std::size_t(id)]);
      }
    }
    EXPECT_EQ(padding, 3);
    EXPECT_EQ(seen, std::multiset<int>({0, 1, 2, 3, 4, 5, 6, 7, 8})) << "epoch " << epoch;
  }
  Batch<double> a, b;
  task->fill(11, 1, 2, a);
  task->fill(11, 1, 0, b);
  task->fill(11, 1, 2, b);
  EXPECT_TRUE(same_batch(a, b));
  task->fill(11, 2, 0, a);
  task->fill(11, 1, 0, b);
  EXPECT_FALSE(same_batch(a, b));
  // With jitter the inputs change, and still only with the arguments.
  auto noisy = make_ts_task<double>(TsPart{&ds, range(0, 9)}, TsPart{&ds, range(9, 12)}, mean,
                                    stddev, 4, 0.5);
  noisy->fill(11, 1, 0, a);
  noisy->fill(11, 1, 0, b);
  EXPECT_TRUE(same_batch(a, b));
  task->fill(11, 1, 0, b);
  EXPECT_NE(a.x, b.x);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_THROW(make_ts_task<double>(TsPart{&ds, {}}, TsPart{&ds, range(9, 12)}, mean, stddev, 4),
               Error);
  EXPECT_FALSE(make_ts_task<double>(TsPart{&ds, range(0, 12)}, TsPart{&ds, {}}, mean, stddev, 4)
                   ->has_evaluation());
}

TEST(TsTask, EvaluationAccuracyConfusionAndMetadata) {
  const data::TsDataset ds = toy_ts();
  const std::vector<double> mean = {5, 0}, stddev = {4, 2};
  auto task = make_ts_task<double>(TsPart{&ds, range(0, 6)}, TsPart{&ds, range(6, 12)}, mean,
                                   stddev, 4, 0, {{"ts_eval", "last fraction of toy.ts"}});
  // A network with all parameters 0 gives equal logits: loss ln 3, prediction class 0.
  Model<double> zero = lstm<double>(2, 4, 3, Activation::softmax, 1);
  std::fill(zero.params.begin(), zero.params.end(), 0.0);
  const Metrics m = task->evaluate(zero);
  EXPECT_NEAR(m.loss, std::log(3.0), 1e-12);
  EXPECT_DOUBLE_EQ(m.values.at("accuracy"), 2.0 / 6);  // sequences 6 and 9 are class a
  EXPECT_NE(m.summary.find("2 of 6"), std::string::npos) << m.summary;
  EXPECT_NE(m.summary.find("confusion"), std::string::npos) << m.summary;
  // Everything is predicted as class 0: the counts of each true class sit in column 0.
  EXPECT_EQ(m.classes, ds.class_names);
  ASSERT_EQ(m.confusion.size(), 9u);
  EXPECT_EQ(m.confusion[0], 2);
  EXPECT_EQ(m.confusion[3] + m.confusion[6], 4);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(m.confusion[std::size_t(k) * 3 + 1] + m.confusion[std::size_t(k) * 3 + 2], 0);
  const auto meta = task->model_metadata();
  EXPECT_EQ(meta.at("task"), "ts");
  EXPECT_EQ(nlohmann::json::parse(meta.at("class_names")), nlohmann::json(ds.class_names));
  EXPECT_EQ(nlohmann::json::parse(meta.at("channel_mean")).get<std::vector<double>>(), mean);
  EXPECT_EQ(nlohmann::json::parse(meta.at("channel_stddev")).get<std::vector<double>>(), stddev);
  EXPECT_EQ(meta.at("ts_eval"), "last fraction of toy.ts");
  // A model for other data is refused.
  const Model<double> wrong = lstm<double>(3, 4, 3, Activation::softmax, 1);
  EXPECT_THROW(task->evaluate(wrong), Error);
}

TEST(TsTask, ShortTrainingLowersTheLoss) {
  const data::TsDataset ds = toy_ts();
  auto task = make_ts_task<float>(TsPart{&ds, range(0, 9)}, TsPart{&ds, range(0, 12)},
                                  {5.5, 0}, {3.5, 1.5}, 4, 0.1);
  Model<float> model = lstm<float>(2, 8, 3, Activation::softmax, 2);
  const auto [before, after] = train_briefly(model, *task, 60, 2e-2);
  EXPECT_LT(after.loss, 0.5 * before.loss) << before.loss << " -> " << after.loss;
}

TEST(TsTask, JapaneseVowelsBatches) {
  const std::string p = bptt::test::shared_data("JapaneseVowels_TRAIN.ts");
  BPTT_REQUIRE_SHARED_DATA(p);
  const data::TsDataset ds = data::load_ts(p);
  std::vector<double> mean, stddev;
  data::ts_channel_stats(ds, mean, stddev);
  auto task = make_ts_task<float>(TsPart{&ds, range(0, 270)}, TsPart{&ds, range(0, 270)}, mean,
                                  stddev, 32, 0.8);
  EXPECT_EQ(task->T(), 26);
  EXPECT_EQ(task->batches_per_epoch(), 9);
  Batch<float> b;
  task->fill(1, 0, 8, b);  // the last batch: 270 - 256 = 14 sequences and 18 padding slots
  float total = 0;
  for (int t = 0; t < b.T; ++t)
    for (int j = 0; j < b.B; ++j) total += b.weight(t, j);
  EXPECT_EQ(total, 14.0f);
}

// ---------------------------------------------------------------------------------------------
// Safetensors data files

// 10 sequences of 3 steps: x[t, b] = (b, t), classes (b + t) % 3, lengths 3, 2, 1, 3, ...,
// h0 and c0 [1, 10, 2] = ±b.
DataFile toy_data_file() {
  DataFile f;
  f.path = "toy.safetensors";
  f.loss = LossKind::xent;
  f.input_size = 2;
  f.output_size = 3;
  f.state_layers = 1;
  f.state_hidden = 2;
  f.has_c0 = true;
  Batch<double>& a = f.all;
  a.T = 3;
  a.B = 10;
  for (int t = 0; t < 3; ++t)
    for (int b = 0; b < 10; ++b) {
      a.x.push_back(b);
      a.x.push_back(t);
      a.classes.push_back((b + t) % 3);
    }
  for (int b = 0; b < 10; ++b) a.lengths.push_back(3 - b % 3);
  for (int b = 0; b < 10; ++b) {
    a.h0.insert(a.h0.end(), {double(b), double(b)});
    a.c0.insert(a.c0.end(), {-double(b), -double(b)});
  }
  return f;
}

TEST(DataTask, BatchesKeepEachSequenceAndHoldOnlyTrainingSequences) {
  const DataFile f = toy_data_file();
  EXPECT_EQ(data_train_count(f, 0.1), 9);
  EXPECT_EQ(data_train_count(f, 0.25), 7);
  EXPECT_EQ(data_train_count(f, 0), 10);
  EXPECT_THROW(data_train_count(f, 1), Error);
  auto task = make_data_task<double>(f, 8, 3);
  EXPECT_EQ(task->T(), 3);
  EXPECT_EQ(task->B(), 3);
  EXPECT_EQ(task->batches_per_epoch(), 3);
  EXPECT_EQ(task->loss(), LossKind::xent);
  for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
    std::multiset<int> seen;
    Batch<double> b;
    for (std::int64_t i = 0; i < 3; ++i) {
      task->fill(3, epoch, i, b);
      ASSERT_EQ(b.x.size(), 18u);
      ASSERT_EQ(b.classes.size(), 9u);
      ASSERT_EQ(b.h0.size(), 6u);
      ASSERT_EQ(b.c0.size(), 6u);
      for (int j = 0; j < 3; ++j) {
        double w = 0;
        for (int t = 0; t < 3; ++t) w += b.weight(t, j);
        if (w == 0) continue;  // padding
        const int id = int(b.x[std::size_t(j) * 2]);
        seen.insert(id);
        EXPECT_EQ(b.lengths[std::size_t(j)], 3 - id % 3);
        EXPECT_EQ(b.h0[std::size_t(j) * 2], id);
        EXPECT_EQ(b.c0[std::size_t(j) * 2 + 1], -id);
        for (int t = 0; t < 3; ++t) {
          EXPECT_EQ(b.x[(std::size_t(t) * 3 + j) * 2 + 1], t);
          EXPECT_EQ(b.classes[std::size_t(t) * 3 + j], (id + t) % 3);
        }
      }
    }
    EXPECT_EQ(seen, std::multiset<int>({0, 1, 2, 3, 4, 5, 6, 7}));
  }
  Batch<double> a, b;
  task->fill(3, 1, 1, a);
  task->fill(3, 1, 1, b);
  EXPECT_TRUE(same_batch(a, b));
  task->fill(3, 0, 1, b);
  EXPECT_FALSE(same_batch(a, b));
  EXPECT_FALSE(make_data_task<double>(f, 10, 3)->has_evaluation());
  EXPECT_THROW(make_data_task<double>(f, 0, 3), Error);
}

TEST(DataTask, EvaluationOfTheHeldOutSequences) {
  const DataFile f = toy_data_file();
  auto task = make_data_task<double>(f, 8, 4);
  Model<double> zero = lstm<double>(2, 2, 3, Activation::softmax, 1);
  std::fill(zero.params.begin(), zero.params.end(), 0.0);
  const Metrics m = task->evaluate(zero);
  EXPECT_NEAR(m.loss, std::log(3.0), 1e-12);
  // Sequence 8 (length 1): class 2; sequence 9 (length 3): classes 0, 1, 2. Prediction 0.
  EXPECT_DOUBLE_EQ(m.values.at("accuracy"), 1.0 / 4);
  EXPECT_EQ(task->model_metadata().at("data_loss"), "xent");
  EXPECT_EQ(task->model_metadata().at("data_output_size"), "3");
  Model<double> wide = lstm<double>(2, 5, 3, Activation::softmax, 1);  // h0 is [1, B, 2]
  EXPECT_THROW(task->evaluate(wide), Error);
}

TEST(DataTask, ShortTrainingLowersTheLoss) {
  DataFile f = toy_data_file();
  f.all.h0.clear();
  f.all.c0.clear();
  f.state_layers = f.state_hidden = 0;
  f.has_c0 = false;
  for (int t = 0; t < 3; ++t)  // the class is the step, which x[·, ·, 1] holds
    for (int b = 0; b < 10; ++b) f.all.classes[std::size_t(t) * 10 + b] = t;
  auto task = make_data_task<float>(f, 9, 3);  // evaluates on sequence 9
  Model<float> model = lstm<float>(2, 8, 3, Activation::softmax, 4);
  const auto [before, after] = train_briefly(model, *task, 100, 2e-2);
  EXPECT_LT(after.loss, 0.5 * before.loss) << before.loss << " -> " << after.loss;
}

class DataFileTest : public cli_test::CliTest {};

TEST_F(DataFileTest, SizesComeFromTheFile) {
  safetensors::Writer w;
  std::vector<double> x(3 * 4 * 2, 0.5);
  std::vector<std::int64_t> y = {0, 1, 4, 2, 0, 1, 1, 1, 0, 0, 0, 3};
  std::vector<double> h0(2 * 4 * 5, 0.1);
  w.add("x", {3, 4, 2}, x.data());
  w.add("y", {3, 4}, y.data());
  w.add("h0", {2, 4, 5}, h0.data());
  w.write(path("d.safetensors"));
  const DataFile f = load_data_file(path("d.safetensors"), LossKind::xent);
  EXPECT_EQ(f.input_size, 2);
  EXPECT_EQ(f.output_size, 5);  // the largest class + 1
  EXPECT_EQ(f.state_layers, 2);
  EXPECT_EQ(f.state_hidden, 5);
  EXPECT_FALSE(f.has_c0);
  EXPECT_EQ(f.all.B, 4);
  EXPECT_EQ(load_data_file(path("d.safetensors"), LossKind::xent, 7).output_size, 7);
  EXPECT_THROW(load_data_file(path("d.safetensors"), LossKind::mse), Error);  // y holds classes
  EXPECT_THROW(load_data_file(path("missing.safetensors"), LossKind::xent), Error);
}

// ---------------------------------------------------------------------------------------------
// Through the command: eval reproduces what train printed at its end

class TaskCli : public cli_test::CliTest {
 protected:
  // The "name value" pairs of train's final line ("...; validation loss 0.1234, rmse 2.345").
  static std::map<std::string, std::string> final_numbers(const std::string& out) {
    std::map<std::string, std::string> r;
    const std::size_t at = out.find("validation loss");
    std::string line = out.substr(at, out.find('\n', at) - at);
    for (char& c : line)
      if (c == ',' || c == ';' || c == ':') c = ' ';
    std::istringstream words(line);
    std::string previous, word;
    while (words >> word) {
      const bool is_name = word.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
      const bool is_number = word.find_first_not_of("-0123456789.e+") == std::string::npos;
      if (is_number && !previous.empty()) r[previous] = word;
      previous = is_name ? word : std::string();
    }
    return r;
  }
  // The same quantity from eval --json, formatted as train formats it.
  static std::string formatted(const nlohmann::json& j, const std::string& key) {
    return key == "loss" ? fmt::format("{:.4f}", j.at(key).get<double>())
                         : fmt::format("{:.4g}", j.at(key).get<double>());
  }
  void expect_reproduced(const cli_test::RunResult& train, const cli_test::RunResult& eval,
                         const std::vector<std::string>& keys) {
    ASSERT_EQ(train.code, 0) << train;
    ASSERT_EQ(eval.code, 0) << eval;
    const auto printed = final_numbers(train.out);
    const auto j = nlohmann::json::parse(eval.out);
    for (const std::string& k : keys) {
      ASSERT_TRUE(printed.count(k)) << k << train;
      EXPECT_EQ(printed.at(k), formatted(j, k)) << k << train << eval;
    }
  }
};

TEST_F(TaskCli, CsvTrainThenEval) {
  std::string csv = "\"Month\",\"v\"\r\n";
  const std::vector<double> v = seasonal(72);
  for (std::size_t i = 0; i < v.size(); ++i)
    csv += fmt::format("\"{}-{:02}\",{:.3f}\r\n", 2000 + i / 12, 1 + i % 12, v[i]);
  cli_test::write_file(path("s.csv"), csv);
  const auto train = run({"train", "--csv", path("s.csv"), "--column", "v", "--steps", "20",
                          "--hidden", "4", "--layers", "1", "--out", path("m.safetensors")});
  EXPECT_NE(train.err.find("seasonal period 12"), std::string::npos) << train;
  const auto eval = run({"eval", "--model", path("m.safetensors"), "--csv", path("s.csv"), "--json"});
  expect_reproduced(train, eval, {"loss", "rmse", "rmse_persistence", "rmse_seasonal_naive"});
  // --column defaults to the model's at eval; a missing column is refused.
  const auto again = run({"eval", "--model", path("m.safetensors"), "--csv", path("s.csv"), "--json"});
  EXPECT_EQ(again.out, eval.out);
  EXPECT_TRUE(rejected({"train", "--csv", path("s.csv"), "--column", "w", "--steps", "1"},
                       {path("s.csv"), "w"}));
  EXPECT_TRUE(rejected({"train", "--csv", path("s.csv"), "--steps", "1"}, {"--column"}));
}

std::string toy_ts_file(int first, int n) {
  std::string s = "@problemName Toy\n@timeStamps false\n@univariate false\n@dimensions 2\n"
                  "@equalLength false\n@classLabel true a b c\n@data\n";
  for (int i = first; i < first + n; ++i) {
    const int len = 3 + i % 4, label = i % 3;
    std::string c0, c1;
    for (int t = 0; t < len; ++t) {
      c0 += fmt::format("{}{:.2f}", t ? "," : "", std::sin(0.7 * i + t));
      c1 += fmt::format("{}{:.2f}", t ? "," : "", 2.0 * label - 2 + 0.1 * t);
    }
    s += c0 + ":" + c1 + ":" + "abc"[label] + "\n";
  }
  return s;
}

TEST_F(TaskCli, TsTrainThenEvalOnTheSiblingTestFile) {
  cli_test::write_file(path("toy_TRAIN.ts"), toy_ts_file(0, 12));
  cli_test::write_file(path("toy_TEST.ts"), toy_ts_file(12, 9));
  const auto train = run({"train", "--ts", path("toy_TRAIN.ts"), "--steps", "15", "--hidden", "4",
                          "--layers", "1", "--batch", "4", "--out", path("m.safetensors")});
  EXPECT_NE(train.err.find("12 for training, 9 for evaluation"), std::string::npos) << train;
  EXPECT_NE(train.out.find("confusion matrix"), std::string::npos) << train;
  const auto eval = run({"eval", "--model", path("m.safetensors"), "--ts", path("toy_TEST.ts"), "--json"});
  expect_reproduced(train, eval, {"loss", "accuracy"});
  {  // The confusion matrix: K x K over the classes, every evaluated sequence counted once.
    const auto j = nlohmann::json::parse(eval.out);
    const std::size_t K = j.at("classes").size();
    ASSERT_EQ(j.at("confusion").size(), K);
    std::int64_t total = 0, correct = 0;
    for (std::size_t k = 0; k < K; ++k) {
      ASSERT_EQ(j["confusion"][k].size(), K);
      for (std::size_t p = 0; p < K; ++p) total += j["confusion"][k][p].get<std::int64_t>();
      correct += j["confusion"][k][k].get<std::int64_t>();
    }
    EXPECT_EQ(total, 9);
    EXPECT_DOUBLE_EQ(double(correct) / 9, j.at("accuracy").get<double>());
  }
  // Naming the training file evaluates its sibling, as training did.
  const auto sibling = run({"eval", "--model", path("m.safetensors"), "--ts", path("toy_TRAIN.ts"), "--json"});
  EXPECT_EQ(sibling.out, eval.out);
  EXPECT_TRUE(rejected({"train", "--ts", path("toy_TRAIN.ts"), "--seq-len", "5", "--steps", "1"},
                       {"--seq-len"}));
  EXPECT_TRUE(rejected({"train", "--ts-test", path("toy_TEST.ts"), "--text", path("toy_TEST.ts")},
                       {"--ts-test"}));
}

TEST_F(TaskCli, TsHeldOutFractionIsTheSameAtEval) {
  cli_test::write_file(path("toy.ts"), toy_ts_file(0, 20));
  const auto train = run({"train", "--ts", path("toy.ts"), "--val-fraction", "0.25", "--steps", "10",
                          "--hidden", "4", "--layers", "1", "--out", path("m.safetensors")});
  EXPECT_NE(train.err.find("15 for training, 5 for evaluation"), std::string::npos) << train;
  const auto eval = run({"eval", "--model", path("m.safetensors"), "--ts", path("toy.ts"),
                         "--val-fraction", "0.25", "--json"});
  expect_reproduced(train, eval, {"loss", "accuracy"});
}

TEST_F(TaskCli, DataTrainThenEval) {
  safetensors::Writer w;
  const std::vector<double> x = cli_test::values(4 * 12 * 3, 1);
  std::vector<std::int64_t> y;
  for (std::size_t k = 0; k < 4 * 12; ++k) y.push_back(x[k * 3] > 0 ? 1 : 0);
  w.add("x", {4, 12, 3}, x.data());
  w.add("y", {4, 12}, y.data());
  w.write(path("d.safetensors"));
  const auto train = run({"train", "--data", path("d.safetensors"), "--loss", "xent", "--steps", "10",
                          "--hidden", "4", "--layers", "1", "--out", path("m.safetensors")});
  EXPECT_NE(train.err.find("10 for training, 2 for evaluation"), std::string::npos) << train;
  const auto eval = run({"eval", "--model", path("m.safetensors"), "--data", path("d.safetensors"), "--json"});
  expect_reproduced(train, eval, {"loss", "accuracy"});
  EXPECT_TRUE(rejected({"train", "--data", path("d.safetensors"), "--steps", "1"}, {"--loss"}));
  EXPECT_TRUE(rejected({"eval", "--model", path("m.safetensors"), "--data", path("d.safetensors"),
                        "--loss", "mse"},
                       {"--loss"}));
}

}  // namespace
}  // namespace bptt
