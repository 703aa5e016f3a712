// Synthetic long-memory benchmarks (the `--task adding|copy --seq-len T` tasks): the adding
// problem (Le, Jaitly & Hinton 2015) and the copy-memory task (Arjovsky, Shah & Bengio 2016).
// Every sequence is drawn from (seed, epoch, sequence id) by hash_uniform, so a batch depends on
// its arguments only (resumable, thread-independent) and training never sees a sequence twice;
// evaluation runs a fixed held-out stream (kSyntheticEvalSeed, epoch −1).
#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "bptt/infer.hpp"
#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "bptt/tasks.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

std::string_view to_string(SyntheticKind kind) {
  return kind == SyntheticKind::adding ? "adding" : "copy";
}

SyntheticKind parse_synthetic_kind(std::string_view name, const std::string& where) {
  if (name == "adding") return SyntheticKind::adding;
  if (name == "copy") return SyntheticKind::copy;
  throw Error(ErrorKind::usage, where, "unknown task '" + std::string(name.substr(0, 40)) + "'",
              "the tasks are adding and copy");
}

void SyntheticSpec::validate() const {
  const int lowest = kind == SyntheticKind::adding ? 2 : 1;
  if (seq_len < lowest || seq_len > kMaxSeqLen)
    throw Error(ErrorKind::value, "--seq-len",
                fmt::format("{} is out of range for the {} task", seq_len, to_string(kind)),
                kind == SyntheticKind::adding
                    ? fmt::format("the adding task needs 2 <= T <= {}", kMaxSeqLen)
                    : fmt::format("the copy task's delay must be 1 .. {}", kMaxSeqLen));
}

int SyntheticSpec::steps() const {
  return kind == SyntheticKind::adding ? seq_len : seq_len + 2 * kCopySymbols;
}

Activation SyntheticSpec::output_activation() const {
  return kind == SyntheticKind::adding ? Activation::identity : Activation::softmax;
}

LossKind SyntheticSpec::loss() const {
  return kind == SyntheticKind::adding ? LossKind::mse : LossKind::xent;
}

double SyntheticSpec::baseline() const {
  if (kind == SyntheticKind::adding) return 2.0 / 12.0;  // Var(U1 + U2), U uniform in [0, 1]
  return kCopySymbols * std::log(8.0) / double(steps());
}

std::map<std::string, std::string> SyntheticSpec::to_metadata() const {
  return {{"task", std::string(to_string(kind))}, {"task_seq_len", std::to_string(seq_len)}};
}

SyntheticSpec SyntheticSpec::from_metadata(const std::map<std::string, std::string>& meta) {
  auto it = meta.find("task");
  if (it == meta.end() || (it->second != "adding" && it->second != "copy"))
    throw Error(
        ErrorKind::usage, "model: __metadata__.task",
        it == meta.end() ? "missing" : "'" + it->second.substr(0, 40) + "' is not adding or copy",
        "the model was not trained on a synthetic task (--task adding|copy)");
  SyntheticSpec s;
  s.kind = parse_synthetic_kind(it->second, "model: __metadata__.task");
  const double T = metadata_double(meta, "task_seq_len");
  if (T != std::floor(T) || T < 1 || T > kMaxSeqLen)
    throw Error(ErrorKind::value, "model: __metadata__.task_seq_len",
                fmt::format("{} is not a valid length", T), "the model file is damaged");
  s.seq_len = int(T);
  return s;
}

namespace {

// floor(u · n) for u in [0, 1), kept below n against rounding.
int pick(double u, int n) { return std::min(n - 1, int(u * double(n))); }

}  // namespace

template <class Real>
void fill_synthetic(const SyntheticSpec& spec, std::uint64_t seed, std::int64_t epoch,
                    std::int64_t index, int B, Batch<Real>& batch) {
  spec.validate();
  if (B < 1) throw Error(ErrorKind::value, "--batch", "must be at least 1");
  const int T = spec.steps(), I = spec.input_size();
  const std::size_t TB = std::size_t(T) * std::size_t(B);
  batch.T = T;
  batch.B = B;
  batch.x.assign(TB * std::size_t(I), Real(0));
  batch.lengths.clear();
  batch.h0.clear();
  batch.c0.clear();
  auto at = [&](int t, int b) { return std::size_t(t) * std::size_t(B) + std::size_t(b); };
  if (spec.kind == SyntheticKind::adding) {
    batch.y.assign(TB, Real(0));
    batch.mask.assign(TB, Real(0));
    batch.classes.clear();
    const int half = T / 2;
    for (int b = 0; b < B; ++b) {
      const std::int64_t id = index * B + b;
      for (int t = 0; t < T; ++t)
        batch.x[at(t, b) * 2] = Real(hash_uniform(seed, epoch, id, std::uint64_t(t)));
      const int p1 = pick(hash_uniform(seed, epoch, id, std::uint64_t(T)), half);
      const int p2 = half + pick(hash_uniform(seed, epoch, id, std::uint64_t(T) + 1), T - half);
      batch.x[at(p1, b) * 2 + 1] = Real(1);
      batch.x[at(p2, b) * 2 + 1] = Real(1);
      // The sum of the values the network reads (after rounding to Real).
      batch.y[at(T - 1, b)] = Real(double(batch.x[at(p1, b) * 2]) + double(batch.x[at(p2, b) * 2]));
      batch.mask[at(T - 1, b)] = Real(1);
    }
    return;
  }
  constexpr int K = SyntheticSpec::kCopySymbols;
  const int D = spec.seq_len;
  batch.y.clear();
  batch.mask.clear();
  batch.classes.assign(TB, 0);
  for (int b = 0; b < B; ++b) {
    const std::int64_t id = index * B + b;
    for (int t = 0; t < T; ++t) {
      int symbol = 0;  // blank
      if (t < K) {
        symbol = 1 + pick(hash_uniform(seed, epoch, id, std::uint64_t(t)), 8);
        batch.classes[at(D + K + t, b)] = symbol;  // recalled after the delimiter
      } else if (t == D + K - 1) {
        symbol = SyntheticSpec::kCopyAlphabet - 1;  // the delimiter
      }
      batch.x[at(t, b) * std::size_t(I) + std::size_t(symbol)] = Real(1);
    }
  }
}

template <class Real>
Metrics evaluate_synthetic(const Model<Real>& model, const SyntheticSpec& spec, int n) {
  if (spec.kind == SyntheticKind::copy)
    require_options(model.cfg, {.causal = true}, "model",
                    "the copy task (a right-to-left pass would read the symbols to recall)");
  spec.validate();
  const ModelConfig& c = model.cfg;
  const std::string name(to_string(spec.kind));
  if (c.input_size != spec.input_size() || c.output_size != spec.output_size())
    throw Error(
        ErrorKind::shape, "--task " + name,
        fmt::format("the model has I = {}, O = {}; the {} task needs I = {}, O = {}", c.input_size,
                    c.output_size, name, spec.input_size(), spec.output_size()),
        "evaluate with the task the model was trained on");
  if (n < 1) throw Error(ErrorKind::value, "evaluate_synthetic", "no sequences to evaluate");
  const int T = spec.steps(), O = c.output_size;
  // Chunks of at most 25,000 steps · sequences keep the workspace small at long T.
  const int chunk = std::min({n, kSyntheticEvalChunk, std::max(1, 25000 / T)});
  Inference<Real> inf(c, chunk);
  Batch<Real> batch;
  double loss_sum = 0, hits = 0;
  for (int first = 0, index = 0; first < n; first += chunk, ++index) {
    // Sequence ids index · chunk + b = first + b: the held-out set does not depend on chunk.
    fill_synthetic(spec, kSyntheticEvalSeed, -1, index, chunk, batch);
    if (index == 0) batch.validate(c, spec.loss(), "held-out " + name + " batch");
    inf.run(model, batch);
    const int used = std::min(chunk, n - first);
    const Real* z = inf.z().data();
    const Real* yhat = inf.yhat().data();
    for (int b = 0; b < used; ++b) {
      if (spec.kind == SyntheticKind::adding) {
        const std::size_t row = std::size_t(T - 1) * std::size_t(chunk) + std::size_t(b);
        const double e = double(yhat[row]) - double(batch.y[row]);
        loss_sum += e * e;
        hits += double(std::abs(e) < SyntheticSpec::kAddingTolerance);
        continue;
      }
      for (int t = 0; t < T; ++t) {
        const std::size_t row = std::size_t(t) * std::size_t(chunk) + std::size_t(b);
        const Real* zr = z + row * std::size_t(O);
        const std::int64_t y = batch.classes[row];
        const auto top = std::max_element(zr, zr + O) - zr;
        double s = 0;
        for (int o = 0; o < O; ++o) s += std::exp(double(zr[o]) - double(zr[top]));
        loss_sum += double(zr[top]) + std::log(s) - double(zr[y]);
        if (t >= T - SyntheticSpec::kCopySymbols) hits += double(top == y);
      }
    }
  }
  Metrics m;
  if (spec.kind == SyntheticKind::adding) {
    m.loss = loss_sum / n;
    m.values["mse"] = m.loss;
    m.values["baseline_mse"] = spec.baseline();
    m.values["accuracy"] = hits / n;
    m.summary = fmt::format(
        "test MSE {:.4f} (baseline 0.1667), {:.1f}% within {} of the sum; {} held-out sequences "
        "of T = {}",
        m.loss, 100 * hits / n, SyntheticSpec::kAddingTolerance, n, T);
  } else {
    m.loss = loss_sum / (double(n) * T);
    m.values["baseline_xent"] = spec.baseline();
    m.values["accuracy"] = hits / (double(n) * SyntheticSpec::kCopySymbols);
    m.summary = fmt::format(
        "test cross-entropy {:.4f} nats per step (baseline {:.4f}), {:.1f}% of the recalled "
        "symbols right; {} held-out sequences, delay {}",
        m.loss, spec.baseline(), 100 * m.values["accuracy"], n, spec.seq_len);
  }
  return m;
}

namespace {

template <class Real>
class SyntheticTask final : public Task<Real> {
 public:
  SyntheticTask(const SyntheticSpec& spec, int B) : spec_(spec), B_(B) {
    spec_.validate();
    if (B < 1) throw Error(ErrorKind::value, "--batch", "must be at least 1");
  }
  LossKind loss() const override { return spec_.loss(); }
  int T() const override { return spec_.steps(); }
  int B() const override { return B_; }
  std::int64_t batches_per_epoch() const override { return kSyntheticBatchesPerEpoch; }
  void fill(std::uint64_t seed, std::int64_t epoch, std::int64_t index,
            Batch<Real>& batch) override {
    fill_synthetic(spec_, seed, epoch, index, B_, batch);
  }
  Metrics evaluate(const Model<Real>& model) override { return evaluate_synthetic(model, spec_); }
  std::map<std::string, std::string> model_metadata() const override {
    return spec_.to_metadata();
  }

 private:
  SyntheticSpec spec_;
  int B_;
};

}  // namespace

template <class Real>
std::unique_ptr<Task<Real>> make_synthetic_task(const SyntheticSpec& spec, int B) {
  return std::make_unique<SyntheticTask<Real>>(spec, B);
}

template void fill_synthetic<float>(const SyntheticSpec&, std::uint64_t, std::int64_t,
                                    std::int64_t, int, Batch<float>&);
template void fill_synthetic<double>(const SyntheticSpec&, std::uint64_t, std::int64_t,
                                     std::int64_t, int, Batch<double>&);
template Metrics evaluate_synthetic<float>(const Model<float>&, const SyntheticSpec&, int);
template Metrics evaluate_synthetic<double>(const Model<double>&, const SyntheticSpec&, int);
template std::unique_ptr<Task<float>> make_synthetic_task<float>(const SyntheticSpec&, int);
template std::unique_ptr<Task<double>> make_synthetic_task<double>(const SyntheticSpec&, int);

}  // namespace bptt
