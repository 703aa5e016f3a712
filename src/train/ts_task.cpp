// Classifying .ts sequences (the `--ts FILE` task): xent at each sequence's last step, inputs
// normalized per channel with the training part's statistics, one fixed (T, B) for the run.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "bptt/infer.hpp"
#include "bptt/error.hpp"
#include "bptt/loss.hpp"
#include "bptt/tasks.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

namespace {

constexpr int kEvalBatch = 128;  // sequences evaluated together

// The sequences `indices` (at most B; the rest of the B slots are zero-weight copies of the
// first) as a batch of exactly T steps and B sequences. ASSIGNS every tensor of the batch.
template <class Real>
void fill_padded(const data::TsDataset& ds, const std::vector<int>& indices, int T, int B,
                 const std::vector<double>& mean, const std::vector<double>& stddev,
                 std::vector<int>& scratch, Batch<Real>& batch) {
  const int n = int(indices.size());
  scratch.assign(indices.begin(), indices.end());
  scratch.resize(std::size_t(B), indices.front());
  data::fill_ts_batch(ds, scratch, batch, &mean, &stddev);
  const int t0 = batch.T;  // the longest chosen length, <= T
  const std::size_t I = std::size_t(ds.dims);
  batch.T = T;
  batch.x.resize(std::size_t(T) * B * I, Real(0));  // time-major: padding steps go at the end
  batch.classes.resize(std::size_t(T) * B);
  for (int t = t0; t < T; ++t)
    std::copy_n(batch.classes.begin(), B, batch.classes.begin() + std::ptrdiff_t(t) * B);
  batch.mask.resize(std::size_t(T) * B, Real(0));
  for (int b = n; b < B; ++b)
    for (int t = 0; t < T; ++t) batch.mask[std::size_t(t) * B + b] = Real(0);
}

template <class Real>
class TsTask final : public Task<Real> {
 public:
  TsTask(TsPart train, TsPart eval, std::vector<double> mean, std::vector<double> stddev, int B,
         double jitter, std::map<std::string, std::string> provenance)
      : train_(std::move(train)), eval_(std::move(eval)), mean_(std::move(mean)),
        stddev_(std::move(stddev)), provenance_(std::move(provenance)), B_(B), jitter_(jitter) {
    if (B < 1) throw Error(ErrorKind::value, "--batch", "must be at least 1");
    if (!(jitter >= 0 && jitter < 1e3))
      throw Error(ErrorKind::value, "--jitter", "must be >= 0", "0 turns it off");
    if (!train_.ds || train_.indices.empty())
      throw Error(ErrorKind::shape, "--ts", "the training part holds no sequences",
                  "lower --val-fraction");
    T_ = train_.longest();
  }
  LossKind loss() const override { return LossKind::xent; }
  int T() const override { return T_; }
  int B() const override { return B_; }
  std::int64_t batches_per_epoch() const override {
    return (std::int64_t(train_.indices.size()) + B_ - 1) / B_;
  }
  void fill(std::uint64_t seed, std::int64_t epoch, std::int64_t index,
            Batch<Real>& batch) override {
    const int n = int(train_.indices.size());
    if (epoch != order_epoch_ || seed != order_seed_ || order_.empty()) {
      order_ = epoch_order(seed, epoch, n);
      order_epoch_ = epoch;
      order_seed_ = seed;
    }
    chosen_.clear();
    for (std::int64_t k = index * B_; k < std::min<std::int64_t>((index + 1) * B_, n); ++k)
      chosen_.push_back(train_.indices[std::size_t(order_[std::size_t(k)])]);
    fill_padded(*train_.ds, chosen_, T_, B_, mean_, stddev_, scratch_, batch);
    if (jitter_ > 0)  // Gaussian noise on the normalized inputs of the real sequences' steps
      for (int b = 0; b < int(chosen_.size()); ++b)
        for (int t = 0; t < int(batch.lengths[std::size_t(b)]); ++t)
          for (int c = 0; c < train_.ds->dims; ++c) {
            const std::uint64_t k = (std::uint64_t(b) * std::uint64_t(T_) + std::uint64_t(t)) *
                                        std::uint64_t(train_.ds->dims) + std::uint64_t(c);
            batch.x[(std::size_t(t) * B_ + b) * std::size_t(train_.ds->dims) + c] +=
                Real(jitter_ * hash_normal(seed, epoch, index, k));
          }
  }
  bool has_evaluation() const override { return eval_.ds && !eval_.indices.empty(); }
  Metrics evaluate(const Model<Real>& model) override {
    return evaluate_ts(model, eval_, mean_, stddev_);
  }
  std::map<std::string, std::string> model_metadata() const override {
    std::map<std::string, std::string> meta = provenance_;
    meta["task"] = "ts";
    meta["class_names"] = nlohmann::json(train_.ds->class_names).dump();
    meta["channel_mean"] = nlohmann::json(mean_).dump();
    meta["channel_stddev"] = nlohmann::json(stddev_).dump();
    return meta;
  }

 private:
  TsPart train_, eval_;
  std::vector<double> mean_, stddev_;
  std::map<std::string, std::string> provenance_;
  int B_, T_ = 0;
  double jitter_;
  std::vector<int> order_, chosen_, scratch_;
  std::int64_t order_epoch_ = -1;
  std::uint64_t order_seed_ = 0;
};

}  // namespace

int TsPart::longest() const {
  int m = 0;
  for (int i : indices) m = std::max(m, ds->lengths[std::size_t(i)]);
  return m;
}

template <class Real>
std::unique_ptr<Task<Real>> make_ts_task(TsPart train, TsPart eval, std::vector<double> mean,
                                         std::vector<double> stddev, int B, double jitter,
                                         std::map<std::string, std::string> provenance) {
  return std::make_unique<TsTask<Real>>(std::move(train), std::move(eval), std::move(mean),
                                        std::move(stddev), B, jitter, std::move(provenance));
}

template <class Real>
Metrics evaluate_ts(const Model<Real>& model, const TsPart& eval, const std::vector<double>& mean,
                    const std::vector<double>& stddev) {
  if (!eval.ds || eval.indices.empty())
    throw Error(ErrorKind::shape, "--ts", "the evaluation part holds no sequences",
                "raise --val-fraction or give --ts-test");
  const data::TsDataset& ds = *eval.ds;
  const ModelConfig& c = model.cfg;
  const int K = int(ds.class_names.size());
  if (c.input_size != ds.dims || c.output_size != K)
    throw Error(ErrorKind::shape, ds.path,
                fmt::format("the model reads {} channels into {} classes, the data has {} "
                            "channels and {} classes",
                            c.input_size, c.output_size, ds.dims, K),
                "evaluate with data like the model's training data");
  const int n = int(eval.indices.size());
  const int B = std::min(n, kEvalBatch), T = eval.longest();
  Inference<Real> inf(c, B);
  Batch<Real> batch;
  std::vector<int> chosen, scratch;
  std::vector<Real> dz(std::size_t(T) * B * K);
  std::vector<std::int64_t> confusion(std::size_t(K) * K, 0);
  double loss_sum = 0;
  for (int first = 0; first < n; first += B) {
    chosen.assign(eval.indices.begin() + first, eval.indices.begin() + std::min(first + B, n));
    fill_padded(ds, chosen, T, B, mean, stddev, scratch, batch);
    inf.run(model, batch);
    // The loss is the mean over this chunk's sequences (one weighted step each).
    loss_sum += loss_and_dz(LossKind::xent, c, batch, inf.z().data(), inf.yhat().data(), dz.data()) *
                double(chosen.size());
    for (int b = 0; b < int(chosen.size()); ++b) {
      const std::size_t row = std::size_t(batch.lengths[std::size_t(b)] - 1) * B + b;
      const Real* z = inf.z().data() + row * std::size_t(K);
      const int predicted = int(std::max_element(z, z + K) - z);
      confusion[std::size_t(ds.labels[std::size_t(chosen[std::size_t(b)])]) * K + predicted] += 1;
    }
  }
  std::int64_t correct = 0;
  for (int k = 0; k < K; ++k) correct += confusion[std::size_t(k) * K + k];
  Metrics m;
  m.loss = loss_sum / n;
  m.values["accuracy"] = double(correct) / n;
  m.classes = ds.class_names;
  m.confusion = confusion;
  std::size_t w = 4;
  for (const std::string& name : ds.class_names) w = std::max(w, name.size() + 1);
  w = std::min<std::size_t>(w, 16);
  m.summary = fmt::format("{} of {} sequences classified correctly; confusion matrix (rows: true "
                          "class, columns: predicted):\n{:>{}}",
                          correct, n, "", w);
  for (const std::string& name : ds.class_names) m.summary += fmt::format("{:>{}}", name.substr(0, 15), w);
  for (int k = 0; k < K; ++k) {
    m.summary += fmt::format("\n{:>{}}", ds.class_names[std::size_t(k)].substr(0, 15), w);
    for (int p = 0; p < K; ++p) m.summary += fmt::format("{:>{}}", confusion[std::size_t(k) * K + p], w);
  }
  return m;
}

#define BPTT_INSTANTIATE(Real)                                                                  \
  template std::unique_ptr<Task<Real>> make_ts_task<Real>(TsPart, TsPart, std::vector<double>, \
                                                          std::vector<double>, int, double,     \
                                                          std::map<std::string, std::string>);  \
  template Metrics evaluate_ts<Real>(const Model<Real>&, const TsPart&,                        \
                                     const std::vector<double>&, const std::vector<double>&);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
