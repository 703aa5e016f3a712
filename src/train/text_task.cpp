// The character language model task and sampling from it.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <random>

#include "bptt/infer.hpp"
#include "bptt/error.hpp"
#include "bptt/loss.hpp"
#include "bptt/methods.hpp"
#include "bptt/stream.hpp"
#include "bptt/tasks.hpp"

namespace bptt {

namespace {

template <class Real>
class TextTask final : public Task<Real> {
 public:
  TextTask(const data::TextCorpus& corpus, int B, int T)
      : corpus_(corpus), train_(corpus.ids, 0, corpus.train_end, B, T, corpus.path), B_(B), T_(T) {}
  LossKind loss() const override { return LossKind::xent; }
  int T() const override { return T_; }
  int B() const override { return B_; }
  std::int64_t batches_per_epoch() const override { return train_.windows(); }
  void fill(std::uint64_t, std::int64_t, std::int64_t index, Batch<Real>& batch) override {
    train_.fill(index, corpus_.vocab.size(), batch);
  }
  bool carries_state() const override { return true; }
  bool has_evaluation() const override { return corpus_.ids.size() >= corpus_.train_end + 2; }
  Metrics evaluate(const Model<Real>& model) override {
    return evaluate_text(model, corpus_, corpus_.train_end, corpus_.ids.size(), B_, T_);
  }
  std::map<std::string, std::string> model_metadata() const override {
    return {{"task", "text"}, {"vocab", corpus_.vocab.to_metadata()}};
  }

 private:
  const data::TextCorpus& corpus_;
  data::TextStreams train_;
  int B_, T_;
};

}  // namespace

template <class Real>
std::unique_ptr<Task<Real>> make_text_task(const data::TextCorpus& corpus, int B, int T) {
  return std::make_unique<TextTask<Real>>(corpus, B, T);
}

template <class Real>
Metrics evaluate_text(const Model<Real>& model, const data::TextCorpus& corpus, std::size_t begin,
                      std::size_t end, int B, int T) {
  require_options(model.cfg, {.causal = true}, "model",
                  "text evaluation (streams whose state carries from window to window)");
  if (end < begin + 2)
    throw Error(ErrorKind::shape, corpus.path, "the evaluation part holds fewer than 2 characters",
                "raise --val-fraction or use a longer text");
  // As many streams as fit; a short part is read as one stream in one window.
  const std::size_t len = end - begin - 1;
  while (B > 1 && len / std::size_t(B) < std::size_t(T)) B /= 2;
  if (len / std::size_t(B) < std::size_t(T)) T = int(len);
  const data::TextStreams streams(corpus.ids, begin, end, B, T, corpus.path);
  Inference<Real> inf(model.cfg, B);
  Batch<Real> batch;
  std::vector<Real> dz(std::size_t(T) * B * model.cfg.output_size);
  const ModelConfig& c = model.cfg;
  double total = 0;
  for (std::int64_t w = 0; w < streams.windows(); ++w) {
    streams.fill(w, corpus.vocab.size(), batch);
    if (w > 0) {  // continue each stream where it ended
      batch.h0.assign(inf.h_n().begin(), inf.h_n().end());
      batch.c0.assign(inf.c_n().begin(), inf.c_n().end());
    }
    inf.run(model, batch);
    total += loss_and_dz(LossKind::xent, c, batch, inf.z().data(), inf.yhat().data(), dz.data());
  }
  Metrics m;
  m.loss = total / double(streams.windows());
  m.values["bits_per_char"] = m.loss / std::numbers::ln2;
  m.values["characters"] = double(streams.windows()) * T * B;
  return m;
}

template <class Real>
void sample_text(const Model<Real>& model, const data::Vocab& vocab, const SampleOptions& opt,
                 const std::function<void(std::string_view)>& emit) {
  if (!(opt.temperature > 0) || !std::isfinite(opt.temperature))
    throw Error(ErrorKind::value, "--temperature", "must be > 0",
                "1 samples the model as trained; lower is safer");
  if (opt.top_k < 0) throw Error(ErrorKind::value, "--top-k", "must be >= 0", "0 disables it");
  if (!(opt.top_p > 0 && opt.top_p <= 1))
    throw Error(ErrorKind::value, "--top-p", "must lie in (0, 1]", "1 disables it");
  if (opt.length < 0) throw Error(ErrorKind::value, "--length", "must be >= 0");
  require_options(model.cfg, {.causal = true}, "model", "sampling (one step at a time)");
  const ModelConfig& c = model.cfg;
  const int V = vocab.size();
  if (c.input_size != V || c.output_size != V)
    throw Error(ErrorKind::shape, "model",
                "input/output size differs from the vocabulary size " + std::to_string(V),
                "the model file's vocab metadata does not belong to this model");
  std::string prime = opt.prime;
  if (prime.empty()) prime = vocab.encode('\n') >= 0 ? "\n" : std::string(1, char(vocab.decode(0)));
  std::vector<int> ids;
  for (std::size_t i = 0; i < prime.size(); ++i) {
    const int id = vocab.encode(std::uint8_t(prime[i]));
    if (id < 0)
      throw Error(ErrorKind::value, "--prime",
                  "character at offset " + std::to_string(i) + " is not in the model's vocabulary");
    ids.push_back(id);
  }
  if (!opt.prime.empty()) emit(opt.prime);

  // One step per symbol through a Stream: the weights are packed once for the whole sample.
  Stream<Real> stream(model, 1);
  std::vector<Real> x(static_cast<std::size_t>(V), Real(0)), y(static_cast<std::size_t>(V));
  std::mt19937_64 rng(opt.seed);
  auto feed = [&](int id) {
    std::fill(x.begin(), x.end(), Real(0));
    x[std::size_t(id)] = Real(1);
    stream.step(x.data(), y.data());
  };
  for (int id : ids) feed(id);
  for (std::int64_t n = 0; n < opt.length; ++n) {
    const int next = sample_symbol(stream.logits().data(), V, opt, rng);
    const char ch = char(vocab.decode(next));
    emit(std::string_view(&ch, 1));
    feed(next);
  }
}

template <class Real>
int sample_symbol(const Real* z, int V, const SampleOptions& opt, std::mt19937_64& rng) {
  // p ∝ exp(z / temperature), then top-k and top-p truncation.
  std::vector<double> p(static_cast<std::size_t>(V));
  std::vector<int> order(static_cast<std::size_t>(V));
  const double zmax = *std::max_element(z, z + V);
  double sum = 0;
  for (int o = 0; o < V; ++o)
    sum += p[std::size_t(o)] = std::exp((double(z[o]) - zmax) / opt.temperature);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return p[std::size_t(a)] > p[std::size_t(b)]; });
  std::size_t keep = opt.top_k > 0 ? std::min<std::size_t>(std::size_t(opt.top_k), order.size())
                                   : order.size();
  if (opt.top_p < 1) {
    double mass = 0;
    for (std::size_t i = 0; i < keep; ++i) {
      mass += p[std::size_t(order[i])] / sum;
      if (mass >= opt.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (std::size_t i = 0; i < keep; ++i) kept += p[std::size_t(order[i])];
  double u = std::uniform_real_distribution<double>(0, kept)(rng);
  int next = order[keep - 1];
  for (std::size_t i = 0; i < keep; ++i) {
    u -= p[std::size_t(order[i])];
    if (u < 0) {
      next = order[i];
      break;
    }
  }
  return next;
}

#define BPTT_INSTANTIATE(Real)                                                                    \
  template std::unique_ptr<Task<Real>> make_text_task<Real>(const data::TextCorpus&, int, int);   \
  template Metrics evaluate_text<Real>(const Model<Real>&, const data::TextCorpus&, std::size_t, \
                                       std::size_t, int, int);                                    \
  template void sample_text<Real>(const Model<Real>&, const data::Vocab&, const SampleOptions&,  \
                                  const std::function<void(std::string_view)>&);                 \
  template int sample_symbol<Real>(const Real*, int, const SampleOptions&, std::mt19937_64&);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
