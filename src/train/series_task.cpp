// Forecasting one column of a CSV file one step ahead (the `--csv FILE --column NAME` task).
//
// The network sees normalized one-step differences u_t = (y_t − y_{t−1}) / diff_stddev and
// predicts the next one, so an output of 0 is the persistence forecast, a trend beyond the
// training range still gives familiar inputs, and the forecast in the series' units is
// ŷ_{t+1} = y_t + diff_stddev · out. Training windows are random stretches of T steps of the
// training part with the state starting at zero; a forecast at evaluation reads the T steps
// before the forecast point the same way (never a value at or after it).
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/core.h>

#include "bptt/infer.hpp"
#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "bptt/loss.hpp"
#include "bptt/tasks.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

namespace {

constexpr double kMaxScale = 2.0;  // windows are scaled by a factor in [1/kMaxScale, kMaxScale]
constexpr int kEvalBatch = 256;    // forecasts computed together at evaluation

template <class Real>
class SeriesTask final : public Task<Real> {
 public:
  SeriesTask(const data::Series& series, std::size_t train_end, const SeriesScaling& scaling, int B)
      : series_(series), train_end_(train_end), s_(scaling), B_(B), T_(scaling.context) {
    if (B < 1) throw Error(ErrorKind::value, "--batch", "must be at least 1");
    if (T_ < 1) throw Error(ErrorKind::value, "--seq-len", "must be at least 1");
    if (train_end > series.values.size() || train_end < 3)
      throw Error(ErrorKind::shape, series.path, "the training part holds fewer than 3 values",
                  "lower --test-fraction");
    const std::int64_t w = std::int64_t(train_end) - 1 - T_;
    if (w < 1)
      throw Error(ErrorKind::shape, series.path + ": " + series.column,
                  "the training part (" + std::to_string(train_end) + " values) is too short for " +
                      "windows of " + std::to_string(T_) + " steps",
                  "lower --seq-len to at most " + std::to_string(std::int64_t(train_end) - 2));
    windows_ = int(w);
  }
  LossKind loss() const override { return LossKind::mse; }
  int T() const override { return T_; }
  int B() const override { return B_; }
  std::int64_t batches_per_epoch() const override { return (windows_ + B_ - 1) / B_; }

  void fill(std::uint64_t seed, std::int64_t epoch, std::int64_t index,
            Batch<Real>& batch) override {
    if (epoch != order_epoch_ || seed != order_seed_ || order_.empty()) {
      order_ = epoch_order(seed, epoch, windows_);
      order_epoch_ = epoch;
      order_seed_ = seed;
    }
    batch.T = T_;
    batch.B = B_;
    batch.x.resize(std::size_t(T_) * B_);
    batch.y.resize(batch.x.size());
    batch.classes.clear();
    batch.lengths.clear();
    batch.mask.clear();
    batch.h0.clear();
    batch.c0.clear();
    const std::vector<double>& y = series_.values;
    const double inv = 1.0 / s_.diff_stddev;
    for (int b = 0; b < B_; ++b) {
      const std::size_t s = std::size_t(order_[std::size_t((index * B_ + b) % windows_)]) + 1;
      const double scale =
          std::exp((2 * hash_uniform(seed, epoch, index, std::uint64_t(b)) - 1) * std::log(kMaxScale));
      for (int t = 0; t < T_; ++t) {
        const std::size_t p = s + std::size_t(t);  // input u_p, target u_{p+1}
        batch.x[std::size_t(t) * B_ + b] = Real(scale * (y[p] - y[p - 1]) * inv);
        batch.y[std::size_t(t) * B_ + b] = Real(scale * (y[p + 1] - y[p]) * inv);
      }
    }
  }

  Metrics evaluate(const Model<Real>& model) override {
    return evaluate_series(model, series_, train_end_, series_.values.size(), s_);
  }
  std::map<std::string, std::string> model_metadata() const override {
    return s_.to_metadata(series_.column);
  }

 private:
  const data::Series& series_;
  std::size_t train_end_;
  SeriesScaling s_;
  int B_, T_, windows_ = 0;
  std::vector<int> order_;  // epoch_order of the windows for (order_seed_, order_epoch_)
  std::int64_t order_epoch_ = -1;
  std::uint64_t order_seed_ = 0;
};

}  // namespace

SeriesScaling SeriesScaling::of(const data::Series& series, std::size_t train_end, int context) {
  const std::vector<double>& y = series.values;
  if (train_end < 3 || train_end > y.size())
    throw Error(ErrorKind::shape, series.path, "the training part holds fewer than 3 values",
                "lower --test-fraction");
  SeriesScaling s;
  double sum = 0;
  for (std::size_t t = 0; t < train_end; ++t) sum += y[t];
  s.mean = sum / double(train_end);
  double var = 0, dsq = 0;
  for (std::size_t t = 0; t < train_end; ++t) var += (y[t] - s.mean) * (y[t] - s.mean);
  for (std::size_t t = 1; t < train_end; ++t) dsq += (y[t] - y[t - 1]) * (y[t] - y[t - 1]);
  s.stddev = std::sqrt(var / double(train_end));
  s.diff_stddev = std::sqrt(dsq / double(train_end - 1));
  if (!(s.stddev > 0)) s.stddev = 1;
  if (!(s.diff_stddev > 0) || !std::isfinite(s.diff_stddev)) s.diff_stddev = 1;  // a constant part
  s.period = data::seasonal_period(series);
  s.context = context;
  return s;
}

std::map<std::string, std::string> SeriesScaling::to_metadata(const std::string& column) const {
  return {{"task", "csv"},
          {"csv_column", column},
          {"csv_mean", metadata_number(mean)},
          {"csv_stddev", metadata_number(stddev)},
          {"csv_diff_stddev", metadata_number(diff_stddev)},
          {"csv_period", std::to_string(period)},
          {"csv_context", std::to_string(context)}};
}

SeriesScaling SeriesScaling::from_metadata(const std::map<std::string, std::string>& meta) {
  SeriesScaling s;
  s.mean = metadata_double(meta, "csv_mean");
  s.stddev = metadata_double(meta, "csv_stddev");
  s.diff_stddev = metadata_double(meta, "csv_diff_stddev");
  const double period = metadata_double(meta, "csv_period");
  const double context = metadata_double(meta, "csv_context");
  if (!(s.diff_stddev > 0))
    throw Error(ErrorKind::value, "model: __metadata__.csv_diff_stddev", "must be > 0",
                "the model file is damaged");
  if (!(period >= 1 && period <= 1e6 && period == std::floor(period)))
    throw Error(ErrorKind::value, "model: __metadata__.csv_period", "must be a whole number >= 1",
                "the model file is damaged");
  if (!(context >= 1 && context <= 1e6 && context == std::floor(context)))
    throw Error(ErrorKind::value, "model: __metadata__.csv_context", "must be a whole number >= 1",
                "the model file is damaged");
  s.period = int(period);
  s.context = int(context);
  return s;
}

std::size_t series_train_end(const data::Series& series, double test_fraction) {
  if (!(test_fraction > 0 && test_fraction < 1))
    throw Error(ErrorKind::value, "--test-fraction", "must lie in (0, 1)",
                "0.33 holds out the last third");
  const std::size_t n = series.values.size();
  const auto end = std::size_t(std::floor(double(n) * (1 - test_fraction)));
  if (end < 3 || end >= n)
    throw Error(ErrorKind::shape, series.path + ": " + series.column,
                "with --test-fraction " + metadata_number(test_fraction) + ", " +
                    std::to_string(n) + " values leave " + std::to_string(end) +
                    " for training and " + std::to_string(n - std::min(end, n)) + " for testing",
                "each part needs values: the training part at least 3, the test part at least 1");
  return end;
}

ForecastBaselines forecast_baselines(const std::vector<double>& y, std::size_t begin,
                                     std::size_t end, int m) {
  double sp = 0, ss = 0;
  std::size_t ns = 0;
  for (std::size_t t = begin; t < end; ++t) {
    sp += (y[t] - y[t - 1]) * (y[t] - y[t - 1]);
    if (t >= std::size_t(m)) {
      ss += (y[t] - y[t - std::size_t(m)]) * (y[t] - y[t - std::size_t(m)]);
      ++ns;
    }
  }
  ForecastBaselines r;
  r.rmse_persistence = std::sqrt(sp / double(end - begin));
  r.rmse_seasonal_naive = ns ? std::sqrt(ss / double(ns)) : std::numeric_limits<double>::quiet_NaN();
  return r;
}

template <class Real>
std::unique_ptr<Task<Real>> make_series_task(const data::Series& series, std::size_t train_end,
                                             const SeriesScaling& scaling, int B) {
  return std::make_unique<SeriesTask<Real>>(series, train_end, scaling, B);
}

template <class Real>
Metrics evaluate_series(const Model<Real>& model, const data::Series& series, std::size_t begin,
                        std::size_t end, const SeriesScaling& scaling) {
  require_options(model.cfg, {.causal = true}, "model",
                  "forecast evaluation (a right-to-left pass would read the values it forecasts)");
  const std::vector<double>& y = series.values;
  if (begin < 1 || begin >= end || end > y.size())
    throw Error(ErrorKind::value, series.path, "no values to forecast",
                "lower or raise --test-fraction");
  const ModelConfig& c = model.cfg;
  if (c.input_size != 1 || c.output_size != 1)
    throw Error(ErrorKind::shape, "model", "a forecaster has one input and one output",
                "evaluate a model trained with --csv");
  const int T = scaling.context;
  const int B = int(std::min<std::size_t>(kEvalBatch, end - begin));
  Inference<Real> inf(c, B);
  Batch<Real> batch;
  batch.T = T;
  batch.B = B;
  batch.x.resize(std::size_t(T) * B);
  batch.lengths.resize(std::size_t(B));
  const double inv = 1.0 / scaling.diff_stddev;
  double sq_norm = 0, sq = 0;
  for (std::size_t first = begin; first < end; first += std::size_t(B)) {
    // Sequence b forecasts y_t, t = first + b, from u_{t−len} … u_{t−1}.
    std::fill(batch.x.begin(), batch.x.end(), Real(0));
    for (int b = 0; b < B; ++b) {
      const std::size_t t = std::min(first + std::size_t(b), end - 1);  // the last chunk repeats
      const int len = int(std::min<std::size_t>(std::size_t(T), t - 1));
      batch.lengths[std::size_t(b)] = std::max(len, 1);
      for (int k = 0; k < len; ++k) {
        const std::size_t p = t - std::size_t(len) + std::size_t(k);
        batch.x[std::size_t(k) * B + b] = Real((y[p] - y[p - 1]) * inv);
      }
    }
    inf.run(model, batch);
    for (int b = 0; b < B && first + std::size_t(b) < end; ++b) {
      const std::size_t t = first + std::size_t(b);
      const double out = double(inf.yhat()[std::size_t(batch.lengths[std::size_t(b)] - 1) * B + b]);
      const double target = (y[t] - y[t - 1]) * inv;
      const double forecast = y[t - 1] + scaling.diff_stddev * out;
      sq_norm += (out - target) * (out - target);
      sq += (forecast - y[t]) * (forecast - y[t]);
    }
  }
  const double n = double(end - begin);
  const ForecastBaselines base = forecast_baselines(y, begin, end, scaling.period);
  Metrics m;
  m.loss = sq_norm / n;
  m.values["rmse"] = std::sqrt(sq / n);
  m.values["rmse_persistence"] = base.rmse_persistence;
  if (std::isfinite(base.rmse_seasonal_naive))
    m.values["rmse_seasonal_naive"] = base.rmse_seasonal_naive;
  m.summary = fmt::format("test RMSE {:.4g} over {} forecasts; persistence {:.4g}", m.values["rmse"],
                          end - begin, base.rmse_persistence);
  if (std::isfinite(base.rmse_seasonal_naive))
    m.summary += fmt::format(", seasonal naive (m = {}) {:.4g}", scaling.period,
                             base.rmse_seasonal_naive);
  return m;
}

#define BPTT_INSTANTIATE(Real)                                                                   \
  template std::unique_ptr<Task<Real>> make_series_task<Real>(                                   \
      const data::Series&, std::size_t, const SeriesScaling&, int);                              \
  template Metrics evaluate_series<Real>(const Model<Real>&, const data::Series&, std::size_t,  \
                                         std::size_t, const SeriesScaling&);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
