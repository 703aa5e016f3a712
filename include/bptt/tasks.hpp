// The kinds of training data `bptt train` understands, as Tasks (see train.hpp), and sampling.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bptt/data.hpp"
#include "bptt/train.hpp"

namespace bptt {

// Character language model (char-rnn): B contiguous streams of the training part, windows of T
// steps, one-hot input, xent at every step; the state is carried from window to window.
// Evaluation runs the validation part the same way and reports bits_per_char = loss / ln 2.
// The corpus must outlive the task.
template <class Real>
std::unique_ptr<Task<Real>> make_text_task(const data::TextCorpus& corpus, int B, int T);

// Validation metrics of a trained language model on ids[begin, end) of the corpus.
template <class Real>
Metrics evaluate_text(const Model<Real>& model, const data::TextCorpus& corpus, std::size_t begin,
                      std::size_t end, int B, int T);

struct SampleOptions {
  std::int64_t length = 500;
  double temperature = 1.0;  // > 0; logits are divided by it
  int top_k = 0;             // 0: off; else keep the k most likely symbols
  double top_p = 1.0;        // nucleus: keep the smallest set with probability >= top_p
  std::string prime;         // text fed first (and printed); default: a newline
  std::uint64_t seed = 1;
};

// Generates text from a character model, calling emit for each piece as soon as it exists
// (the prime first). Each character is one sample_symbol() draw from the model's logits after
// the prime and the characters before it, all from one std::mt19937_64 seeded with opt.seed.
// Throws bptt::Error for options out of range or a prime byte outside the vocabulary.
template <class Real>
void sample_text(const Model<Real>& model, const data::Vocab& vocab, const SampleOptions& opt,
                 const std::function<void(std::string_view)>& emit);

// One draw of a symbol in [0, V) from the logits z[0, V), as sample_text draws each character:
//   - p_i ∝ exp(z_i / temperature);
//   - the symbols in order of p, most probable first (equal p: the lower index first);
//   - top_k > 0 keeps the first top_k of them;
//   - top_p < 1 then keeps the nucleus: the shortest prefix of that order whose probabilities
//     p_i (normalized over all V symbols, not over those top_k kept) sum to at least top_p, or
//     all that top_k kept when they sum to less;
//   - one symbol among those kept, drawn with probability p_i / (their sum), from one
//     uniform_real_distribution draw of rng.
// REQUIRES V >= 1, temperature > 0 and finite, top_k >= 0, 0 < top_p <= 1 (sample_text checks
// them).
template <class Real>
int sample_symbol(const Real* z, int V, const SampleOptions& opt, std::mt19937_64& rng);

}  // namespace bptt

// ---------------------------------------------------------------------------------------------
// Shared by the tasks below
// ---------------------------------------------------------------------------------------------

namespace bptt {

// The order in which a task visits n items in epoch `epoch`: a permutation of [0, n) that
// depends only on (seed, epoch, n) (a Fisher-Yates shuffle driven by SplitMix64, the same on
// every platform). Throws bptt::Error when n < 1.
std::vector<int> epoch_order(std::uint64_t seed, std::int64_t epoch, int n);

// Pseudo-random numbers that are a pure function of (seed, epoch, index, k) (SplitMix64 mixing),
// for augmentations that must not depend on anything but a batch's arguments:
// hash_uniform is uniform in [0, 1), hash_normal standard normal (Box-Muller).
double hash_uniform(std::uint64_t seed, std::int64_t epoch, std::int64_t index, std::uint64_t k);
double hash_normal(std::uint64_t seed, std::int64_t epoch, std::int64_t index, std::uint64_t k);

// A number formatted so that reading it back gives the same double ("%.17g"), for metadata.
std::string metadata_number(double v);
// The metadata entry `key` parsed as a finite number. Throws bptt::Error (where =
// "model: __metadata__.<key>") when it is missing or not a finite number.
double metadata_double(const std::map<std::string, std::string>& meta, const std::string& key);

// ---------------------------------------------------------------------------------------------
// Forecasting one column of a CSV file (`--csv FILE --column NAME`)
// ---------------------------------------------------------------------------------------------

// How a series is encoded for the network, from its training part y[0, train_end):
//   input   u_t = (y_t − y_{t−1}) / diff_stddev   (t ≥ 1; one channel, I = 1)
//   target  u_{t+1}; the forecast of y_{t+1} is y_t + diff_stddev · ŷ   (O = 1, θ = identity)
// so an output of 0 is the persistence forecast and a trend that leaves the training range
// (airline passengers) still gives inputs of the size seen in training. mean and stddev are the
// training part's level statistics (stored for reference; describe() prints them).
struct SeriesScaling {
  double mean = 0, stddev = 1;  // of y[0, train_end)
  double diff_stddev = 1;       // root mean square of the differences y_t − y_{t−1} in it (> 0)
  int period = 1;               // seasonal period m (data::seasonal_period), for the baseline
  int context = 1;              // steps of u the model reads before each forecast (= T)

  // Throws bptt::Error (where = series.path) when train_end < 3 or train_end > values.size().
  static SeriesScaling of(const data::Series& series, std::size_t train_end, int context);
  // Keys csv_mean, csv_stddev, csv_diff_stddev, csv_period, csv_context (plus task and column).
  std::map<std::string, std::string> to_metadata(const std::string& column) const;
  // Throws bptt::Error naming the missing or malformed key.
  static SeriesScaling from_metadata(const std::map<std::string, std::string>& meta);
};

// The first index of the held-out part: floor(N · (1 − test_fraction)). Throws bptt::Error
// (where = series.path) when test_fraction is not in (0, 1), or when the training part would
// hold fewer than 3 values or the test part none.
std::size_t series_train_end(const data::Series& series, double test_fraction);

// Root mean square errors of the naive forecasts of y_t for t in [begin, end):
// persistence ŷ_t = y_{t−1}; seasonal naive ŷ_t = y_{t−m} (over the t ≥ m only; NaN when there
// is none). REQUIRES 1 <= begin < end <= y.size(), m >= 1.
struct ForecastBaselines {
  double rmse_persistence = 0, rmse_seasonal_naive = 0;
};
ForecastBaselines forecast_baselines(const std::vector<double>& y, std::size_t begin,
                                     std::size_t end, int m);

// Training: window s (1 <= s <= train_end − 1 − T, W of them) has inputs u_s … u_{s+T−1} and
// targets u_{s+1} … u_{s+T}, the state starting at zero; each epoch visits the W windows in
// epoch_order, B per batch (the last batch wraps around to the start of the order), and every
// window is multiplied by a random factor in [1/2, 2] (inputs and targets alike: the forecast
// is then exact for a linear model, and a network learns to follow swings larger than those
// of the training part). Evaluation forecasts every y_t, t in [train_end, N), from the T inputs
// before it (fewer near the start), and reports loss (MSE of the normalized difference), rmse
// (in the series' units), rmse_persistence and rmse_seasonal_naive. The series must outlive
// the task. Throws bptt::Error when B < 1 or W < 1.
template <class Real>
std::unique_ptr<Task<Real>> make_series_task(const data::Series& series, std::size_t train_end,
                                             const SeriesScaling& scaling, int B);

// Evaluation of a forecaster on y_t, t in [begin, end) (as the task's evaluate()).
template <class Real>
Metrics evaluate_series(const Model<Real>& model, const data::Series& series, std::size_t begin,
                        std::size_t end, const SeriesScaling& scaling);

// ---------------------------------------------------------------------------------------------
// Classifying .ts sequences (`--ts FILE`)
// ---------------------------------------------------------------------------------------------

// A subset of a .ts dataset (the training or the evaluation part).
struct TsPart {
  const data::TsDataset* ds = nullptr;
  std::vector<int> indices;  // into ds->series
  int longest() const;       // the longest length among indices (0 when empty)
};

// Training: each epoch visits the training sequences in epoch_order, B per batch; the last
// batch is padded to B with zero-weight copies. T is the longest training sequence, for every
// batch. x is normalized per channel with (mean, stddev), then `jitter` times standard normal
// noise is added to every step of every training sequence (an augmentation; 0 turns it off);
// the loss is xent at each sequence's last step (data::fill_ts_batch). Evaluation reports loss,
// accuracy and, in the summary, the confusion matrix (rows true class, columns predicted).
// Metadata: task, class_names (a JSON array of strings), channel_mean and channel_stddev (JSON
// arrays of numbers), plus `provenance` (which part was held out). The datasets must outlive the
// task; with no evaluation sequences it has no evaluation (has_evaluation() is false, evaluate()
// throws). Throws bptt::Error when B < 1, jitter < 0 or the training part is empty.
template <class Real>
std::unique_ptr<Task<Real>> make_ts_task(TsPart train, TsPart eval, std::vector<double> mean,
                                         std::vector<double> stddev, int B, double jitter = 0,
                                         std::map<std::string, std::string> provenance = {});

template <class Real>
Metrics evaluate_ts(const Model<Real>& model, const TsPart& eval, const std::vector<double>& mean,
                    const std::vector<double>& stddev);

// ---------------------------------------------------------------------------------------------
// Training on a safetensors data file (`--data FILE --loss L`)
// ---------------------------------------------------------------------------------------------

// A whole data file of the grad verb's format (x [T, B, I]; y [T, B, O] values or [T, B]
// classes; optional lengths, mask, h0, c0) with the model sizes it implies.
struct DataFile {
  std::string path;
  LossKind loss = LossKind::mse;
  Batch<double> all;            // every sequence of the file
  int input_size = 0;           // I, from x
  int output_size = 0;          // O: from y [T, B, O]; for classes the model's, else max + 1
  int state_layers = 0;         // L and H of h0/c0 [L, B, H] when the file has them, else 0
  int state_hidden = 0;
  bool has_c0 = false;          // c0 given: the model must be an LSTM
};

// Reads and validates a data file for `loss` (bptt::load_batch). output_size > 0 (a model's O,
// at evaluation) is used instead of the largest class index + 1. Throws bptt::Error naming the
// file and the tensor.
DataFile load_data_file(const std::string& path, LossKind loss, int output_size = 0);

// The number of training sequences when the last `val_fraction` of B are held out:
// floor(B · (1 − val_fraction)) as for text, B for 0 (no evaluation), else at least one in each
// part. Throws bptt::Error when that is impossible (B = 1) or
// val_fraction is not in [0, 1).
int data_train_count(const DataFile& file, double val_fraction);

// Sequences [0, n_train) of the file are the training part and [n_train, B) the evaluation
// part. Training visits the training sequences in epoch_order, B per batch (the last batch
// padded with zero-weight copies), keeping each sequence's lengths, mask, h0 and c0; T is the
// file's T. Evaluation reports loss and accuracy (xent: argmax; bce: z > 0 against y > 0.5,
// averaged over O) or rmse (mse) over the steps of positive weight. The file must outlive the
// task; with n_train = B it has no evaluation (has_evaluation() is false). Throws bptt::Error
// when B < 1 or n_train is not in [1, B].
template <class Real>
std::unique_ptr<Task<Real>> make_data_task(const DataFile& file, int n_train, int B);

}  // namespace bptt

// ---------------------------------------------------------------------------------------------
// Synthetic long-memory benchmarks (`--task adding|copy --seq-len T`)
// ---------------------------------------------------------------------------------------------

namespace bptt {

// adding: the adding problem of Le, Jaitly & Hinton 2015 (IRNN). T steps, I = 2: channel 0 a
//   value uniform in [0, 1), channel 1 a marker, 1 at exactly two steps (one uniform in the first
//   half [0, floor(T/2)), one uniform in the second half [floor(T/2), T)) and 0 elsewhere. The
//   target (O = 1, θ = identity, mse) is the sum of the two marked values, at step T−1 only: y is
//   the sum there and 0 elsewhere, and the mask is 1 at t = T−1 and 0 elsewhere. Always
//   predicting 1 gives MSE = Var(sum) = 2/12 = 1/6.
// copy: the copy-memory task of Arjovsky, Shah & Bengio 2016. Symbols 0 = blank, 1..8 data,
//   9 = delimiter; with delay D, D + 20 steps: 10 data symbols uniform in 1..8, D − 1 blanks, the
//   delimiter, 10 blanks (one-hot input, I = 10). Target (classes, O = 10, θ = softmax, xent at
//   every step): blank for the first D + 10 steps, then the 10 data symbols. The memoryless
//   strategy (blanks, then a uniform guess among 1..8) scores 10 ln 8 / (D + 20).
enum class SyntheticKind { adding, copy };

// "adding" / "copy".
std::string_view to_string(SyntheticKind kind);
// Throws bptt::Error (where = `where`) naming the unknown task and the known ones.
SyntheticKind parse_synthetic_kind(std::string_view name, const std::string& where);

struct SyntheticSpec {
  static constexpr int kCopySymbols = 10;       // data symbols to remember (copy)
  static constexpr int kCopyAlphabet = 10;      // blank, 8 data symbols, delimiter
  static constexpr int kMaxSeqLen = 100000;     // --seq-len above this is refused
  static constexpr double kAddingTolerance = 0.04;  // |error| below this counts as correct

  SyntheticKind kind = SyntheticKind::adding;
  int seq_len = 100;  // adding: T (>= 2); copy: the delay D (>= 1)

  // Throws bptt::Error (where = "--seq-len") when seq_len is out of range for the kind.
  void validate() const;
  int steps() const;  // T of every batch: seq_len (adding), seq_len + 20 (copy)
  int input_size() const { return kind == SyntheticKind::adding ? 2 : kCopyAlphabet; }
  int output_size() const { return kind == SyntheticKind::adding ? 1 : kCopyAlphabet; }
  Activation output_activation() const;
  LossKind loss() const;
  // The loss of the trivial strategy: adding 1/6 (predict 1); copy 10 ln 8 / (D + 20).
  double baseline() const;
  // Keys task ("adding" / "copy") and task_seq_len.
  std::map<std::string, std::string> to_metadata() const;
  // Throws bptt::Error naming the missing or malformed key (a model not trained on a synthetic
  // task has no task_seq_len).
  static SyntheticSpec from_metadata(const std::map<std::string, std::string>& meta);
};

// ASSIGNS `batch` (T = spec.steps(), B sequences): sequence b is the pure function of
// (seed, epoch, index · B + b) that hash_uniform draws, so every batch is reproducible from its
// arguments alone (resumable training) and sequence ids do not overlap between batches.
// adding: x, y, mask set (lengths, h0, c0, classes empty); copy: x, classes set (the rest empty).
template <class Real>
void fill_synthetic(const SyntheticSpec& spec, std::uint64_t seed, std::int64_t epoch,
                    std::int64_t index, int B, Batch<Real>& batch);

// Fresh sequences every batch; an epoch is kSyntheticBatchesPerEpoch batches. Evaluation runs a
// fixed held-out set: kSyntheticEvalSequences sequences drawn from (kSyntheticEvalSeed,
// epoch −1), whatever the training seed, in chunks of up to kSyntheticEvalChunk sequences.
inline constexpr std::int64_t kSyntheticBatchesPerEpoch = 100;
inline constexpr int kSyntheticEvalSequences = 1000;
inline constexpr std::uint64_t kSyntheticEvalSeed = 0x5EED0E7A1ULL;
inline constexpr int kSyntheticEvalChunk = 250;

// Training task. Throws bptt::Error when B < 1 or the spec is invalid.
template <class Real>
std::unique_ptr<Task<Real>> make_synthetic_task(const SyntheticSpec& spec, int B);

// The held-out evaluation (the task's evaluate()): sequences [0, n) of the held-out stream.
//   adding: loss = mse (the MSE at the last step), baseline_mse (1/6), accuracy (the fraction
//           with |ŷ − y| < 0.04);
//   copy:   loss = xent (the mean cross-entropy per step, nats), baseline_xent
//           (10 ln 8 / (D + 20)), accuracy (arg max over the 10 recalled symbols).
// Throws bptt::Error when the model's I/O does not fit the task or n < 1.
template <class Real>
Metrics evaluate_synthetic(const Model<Real>& model, const SyntheticSpec& spec,
                           int n = kSyntheticEvalSequences);

}  // namespace bptt
