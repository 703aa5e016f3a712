// Training on a safetensors data file (the `--data FILE --loss L` task: the grad verb's format,
// mini-batches drawn from its B dimension), and the helpers the tasks share.
#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>

#include "bptt/infer.hpp"
#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/loss.hpp"
#include "bptt/tasks.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

namespace {

std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

std::vector<int> epoch_order(std::uint64_t seed, std::int64_t epoch, int n) {
  if (n < 1)
    throw Error(ErrorKind::value, "epoch_order", "nothing to order", "the training part is empty");
  std::vector<int> order(std::size_t(n), 0);
  for (int i = 0; i < n; ++i) order[std::size_t(i)] = i;
  std::uint64_t state = splitmix(splitmix(seed ^ 0xbb67ae8584caa73bULL) ^ std::uint64_t(epoch));
  for (int i = n - 1; i > 0; --i) {  // Fisher-Yates; the modulo bias is below 2^-32 for n < 2^31
    state = splitmix(state);
    std::swap(order[std::size_t(i)], order[std::size_t(state % std::uint64_t(i + 1))]);
  }
  return order;
}

double hash_uniform(std::uint64_t seed, std::int64_t epoch, std::int64_t index, std::uint64_t k) {
  std::uint64_t h = splitmix(seed ^ 0x6a09e667f3bcc908ULL);
  h = splitmix(h ^ std::uint64_t(epoch));
  h = splitmix(h ^ std::uint64_t(index));
  h = splitmix(h ^ k);
  return double(h >> 11) * 0x1.0p-53;
}

double hash_normal(std::uint64_t seed, std::int64_t epoch, std::int64_t index, std::uint64_t k) {
  const double u1 = hash_uniform(seed, epoch, index, 2 * k);
  const double u2 = hash_uniform(seed, epoch, index, 2 * k + 1);
  return std::sqrt(-2 * std::log1p(-u1)) * std::cos(2 * std::numbers::pi * u2);
}

std::string metadata_number(double v) { return fmt::format("{:.17g}", v); }

double metadata_double(const std::map<std::string, std::string>& meta, const std::string& key) {
  const std::string where = "model: __metadata__." + key;
  auto it = meta.find(key);
  if (it == meta.end())
    throw Error(ErrorKind::usage, where, "missing", "the model was trained on other data");
  double v = 0;
  const std::string& s = it->second;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    throw Error(ErrorKind::format, where, "'" + s.substr(0, 40) + "' is not a number",
                "the model file is damaged");
  return v;
}

DataFile load_data_file(const std::string& path, LossKind loss, int output_size) {
  const auto f = safetensors::File::read(path);
  DataFile d;
  d.path = path;
  d.loss = loss;
  const auto& x = f.at("x");
  if (x.shape.size() != 3)
    throw Error(ErrorKind::shape, path + ": x", fmt::format("has {} dimensions", x.shape.size()),
                "x is time-major [T, B, I]");
  if (x.shape[2] < 1 || x.shape[2] > (1 << 24))
    throw Error(ErrorKind::shape, path + ": x", fmt::format("I = {} is out of range", x.shape[2]),
                "1 <= I <= 2^24");
  ModelConfig cfg;
  cfg.cell = CellKind::lstm;  // accepts c0; the model's own cell is checked by Batch::validate
  cfg.input_size = int(x.shape[2]);
  cfg.output_size = 1;
  cfg.hidden_size = 1;
  if (f.has("y")) {
    const auto& y = f.at("y");
    if (y.shape.size() == 2 && loss == LossKind::xent) {  // classes [T, B]
      std::int64_t top = -1;
      for (std::int64_t c : f.as_i64("y")) top = std::max(top, c);
      if (top < 0 || top >= (1 << 24))
        throw Error(ErrorKind::value, path + ": y",
                    fmt::format("the largest class index is {}", top),
                    "class indices lie in [0, O) with O <= 2^24");
      cfg.output_size = int(top + 1);
    } else if (y.shape.size() == 3 && y.shape[2] >= 1 && y.shape[2] <= (1 << 24)) {
      cfg.output_size = int(y.shape[2]);
    }
  }
  if (output_size > 0) cfg.output_size = output_size;
  // h0/c0 [L, B, H] fix the model's depth and width; load_batch checks the two agree.
  for (const char* name : {"h0", "c0"}) {
    if (!f.has(name)) continue;
    const auto& s = f.at(name).shape;
    if (s.size() == 3 && s[0] >= 1 && s[0] <= 1024 && s[2] >= 1 && s[2] <= (1 << 20)) {
      cfg.num_layers = int(s[0]);
      cfg.hidden_size = int(s[2]);
    }
  }
  d.all = load_batch<double>(f, cfg, loss);
  d.input_size = cfg.input_size;
  d.output_size = cfg.output_size;
  d.has_c0 = !d.all.c0.empty();
  if (!d.all.h0.empty() || d.has_c0) {  // else the file says nothing about L and H
    d.state_layers = cfg.num_layers;
    d.state_hidden = cfg.hidden_size;
  }
  return d;
}

int data_train_count(const DataFile& file, double val_fraction) {
  if (!(val_fraction >= 0 && val_fraction < 1))
    throw Error(ErrorKind::value, "--val-fraction",
                fmt::format("{} is outside [0, 1)", val_fraction));
  const int B = file.all.B;
  if (val_fraction == 0) return B;
  if (B < 2)
    throw Error(ErrorKind::shape, file.path + ": x", "holds one sequence (B = 1)",
                "hold out nothing with --val-fraction 0, or give a file with more sequences");
  // As the text split: floor(B · (1 − f)), with at least one sequence in each part.
  return std::clamp(int(std::floor(double(B) * (1.0 - val_fraction))), 1, B - 1);
}

namespace {

constexpr int kEvalBatch = 256;  // sequences evaluated together

// The sequences seqs[0 .. n) of the file (n <= B) as a batch of B sequences; slots n … B−1
// repeat the first with weight zero. Every tensor the file has is copied per sequence (h0 and
// c0 [L, B, H] included); a missing mask becomes ones and missing lengths become T, so that the
// padding can be weighted out. ASSIGNS every tensor of dst.
template <class Real>
void gather(const DataFile& f, const std::vector<int>& seqs, int B, Batch<Real>& dst) {
  const Batch<double>& src = f.all;
  const int T = src.T, I = f.input_size, L = f.state_layers, H = f.state_hidden;
  const int O = src.y.empty() ? 0 : f.output_size;
  dst.T = T;
  dst.B = B;
  dst.x.resize(std::size_t(T) * B * I);
  dst.y.resize(std::size_t(T) * B * O);
  dst.classes.resize(src.classes.empty() ? 0 : std::size_t(T) * B);
  dst.lengths.resize(std::size_t(B));
  dst.mask.resize(std::size_t(T) * B);
  dst.h0.resize(src.h0.empty() ? 0 : std::size_t(L) * B * H);
  dst.c0.resize(src.c0.empty() ? 0 : std::size_t(L) * B * H);
  for (int to = 0; to < B; ++to) {
    const bool real = to < int(seqs.size());
    const int from = seqs[std::size_t(real ? to : 0)];
    for (int t = 0; t < T; ++t) {
      const std::size_t s = std::size_t(t) * src.B + from, d = std::size_t(t) * B + to;
      for (int i = 0; i < I; ++i) dst.x[d * I + i] = Real(src.x[s * I + i]);
      for (int o = 0; o < O; ++o) dst.y[d * O + o] = Real(src.y[s * O + o]);
      if (!src.classes.empty()) dst.classes[d] = src.classes[s];
      dst.mask[d] = !real ? Real(0) : src.mask.empty() ? Real(1) : Real(src.mask[s]);
    }
    dst.lengths[std::size_t(to)] = src.lengths.empty() ? T : src.lengths[std::size_t(from)];
    for (int l = 0; l < L; ++l)
      for (int h = 0; h < H; ++h) {
        const std::size_t s = (std::size_t(l) * src.B + from) * H + h,
                          d = (std::size_t(l) * B + to) * H + h;
        if (!src.h0.empty()) dst.h0[d] = Real(src.h0[s]);
        if (!src.c0.empty()) dst.c0[d] = Real(src.c0[s]);
      }
  }
}

template <class Real>
class DataTask final : public Task<Real> {
 public:
  DataTask(const DataFile& file, int n_train, int B) : f_(file), n_train_(n_train), B_(B) {
    if (B < 1) throw Error(ErrorKind::value, "--batch", "must be at least 1");
    if (n_train < 1 || n_train > file.all.B)
      throw Error(ErrorKind::value, file.path,
                  fmt::format("cannot train on {} of its {} sequences", n_train, file.all.B),
                  "give a file with more sequences (its B dimension), or change --val-fraction");
  }
  bool has_evaluation() const override { return n_train_ < f_.all.B; }
  LossKind loss() const override { return f_.loss; }
  int T() const override { return f_.all.T; }
  int B() const override { return B_; }
  std::int64_t batches_per_epoch() const override { return (n_train_ + B_ - 1) / B_; }
  void fill(std::uint64_t seed, std::int64_t epoch, std::int64_t index,
            Batch<Real>& batch) override {
    if (epoch != order_epoch_ || seed != order_seed_ || order_.empty()) {
      order_ = epoch_order(seed, epoch, n_train_);
      order_epoch_ = epoch;
      order_seed_ = seed;
    }
    chosen_.clear();
    for (std::int64_t k = index * B_; k < std::min<std::int64_t>((index + 1) * B_, n_train_); ++k)
      chosen_.push_back(order_[std::size_t(k)]);
    gather(f_, chosen_, B_, batch);
  }
  Metrics evaluate(const Model<Real>& model) override;
  std::map<std::string, std::string> model_metadata() const override {
    return {{"task", "data"},
            {"data_loss", std::string(to_string(f_.loss))},
            {"data_output_size", std::to_string(f_.output_size)}};
  }

 private:
  const DataFile& f_;
  int n_train_, B_;
  std::vector<int> order_, chosen_;
  std::int64_t order_epoch_ = -1;
  std::uint64_t order_seed_ = 0;
};

template <class Real>
Metrics DataTask<Real>::evaluate(const Model<Real>& model) {
  const ModelConfig& c = model.cfg;
  const Batch<double>& all = f_.all;
  const int T = all.T, O = c.output_size;
  if (!has_evaluation())
    throw Error(ErrorKind::shape, f_.path, "no sequences are held out for evaluation",
                "raise --val-fraction");
  if (c.input_size != f_.input_size || (!all.y.empty() && O != f_.output_size))
    throw Error(ErrorKind::shape, f_.path,
                fmt::format("the model has I = {}, O = {}; the data I = {}, O = {}", c.input_size,
                            O, f_.input_size, f_.output_size),
                "evaluate with data like the model's training data");
  const int n = all.B - n_train_, B = std::min(n, kEvalBatch);
  Inference<Real> inf(c, B);
  Batch<Real> batch;
  std::vector<Real> dz(std::size_t(T) * B * O);
  std::vector<int> seqs;
  double loss_sum = 0, weight_sum = 0, hits = 0, counted = 0, sq = 0;
  for (int first = n_train_; first < all.B; first += B) {
    seqs.clear();
    for (int s = first; s < std::min(first + B, all.B); ++s) seqs.push_back(s);
    gather(f_, seqs, B, batch);
    batch.validate(c, f_.loss, f_.path);
    double w = 0;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b) w += double(batch.weight(t, b));
    if (w == 0) continue;
    inf.run(model, batch);
    loss_sum += loss_and_dz(f_.loss, c, batch, inf.z().data(), inf.yhat().data(), dz.data()) * w;
    weight_sum += w;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b) {
        if (batch.weight(t, b) <= 0) continue;
        const std::size_t row = std::size_t(t) * B + b;
        const Real* z = inf.z().data() + row * std::size_t(O);
        counted += 1;
        switch (f_.loss) {
          case LossKind::xent:
            hits += double(std::max_element(z, z + O) - z == batch.classes[row]);
            break;
          case LossKind::bce:
            for (int o = 0; o < O; ++o)
              hits += double((z[o] > 0) == (batch.y[row * O + o] > Real(0.5))) / O;
            break;
          case LossKind::mse:
            for (int o = 0; o < O; ++o) {
              const double e = double(inf.yhat()[row * O + o]) - double(batch.y[row * O + o]);
              sq += e * e / O;
            }
            break;
        }
      }
  }
  if (weight_sum == 0)
    throw Error(ErrorKind::value, f_.path,
                "the evaluation sequences have no step of positive weight",
                "check lengths and mask of the last sequences, or change --val-fraction");
  Metrics m;
  m.loss = loss_sum / weight_sum;
  if (f_.loss == LossKind::mse)
    m.values["rmse"] = std::sqrt(sq / counted);
  else
    m.values["accuracy"] = hits / counted;
  m.summary = fmt::format("evaluated on sequences {}..{} of {} ({} steps of positive weight)",
                          n_train_, all.B - 1, f_.path, counted);
  return m;
}

}  // namespace

template <class Real>
std::unique_ptr<Task<Real>> make_data_task(const DataFile& file, int n_train, int B) {
  return std::make_unique<DataTask<Real>>(file, n_train, B);
}

template std::unique_ptr<Task<float>> make_data_task<float>(const DataFile&, int, int);
template std::unique_ptr<Task<double>> make_data_task<double>(const DataFile&, int, int);

}  // namespace bptt
