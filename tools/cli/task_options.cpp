#include "task_options.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bptt/error.hpp"

namespace bptt::cli {

namespace {

using Meta = std::map<std::string, std::string>;

const std::string* find(const Meta* meta, const std::string& key) {
  if (!meta) return nullptr;
  auto it = meta->find(key);
  return it == meta->end() ? nullptr : &it->second;
}

const std::string& require(const Meta& meta, const std::string& key, const std::string& kind) {
  const std::string* v = find(&meta, key);
  if (!v)
    throw Error(ErrorKind::usage, "model: __metadata__." + key, "missing",
                "the model was not trained on " + kind + " data");
  return *v;
}

// A JSON array from the model's metadata, as T (strings or numbers).
template <class T>
std::vector<T> json_array(const Meta& meta, const std::string& key, const std::string& kind) {
  const std::string& text = require(meta, key, kind);
  try {
    const auto j = nlohmann::json::parse(text);
    if (!j.is_array() || j.empty()) throw std::invalid_argument("not a non-empty array");
    return j.get<std::vector<T>>();
  } catch (const std::exception&) {
    throw Error(ErrorKind::format, "model: __metadata__." + key,
                "'" + data::printable(text, 40) + "' is not a JSON array of " +
                    (std::is_same_v<T, std::string> ? "strings" : "numbers"),
                "the model file is damaged");
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string basename(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

std::vector<int> iota_range(int begin, int end) {
  std::vector<int> v;
  for (int i = begin; i < end; ++i) v.push_back(i);
  return v;
}

}  // namespace

void add_data_options(CLI::App* cmd, DataOptions& o) {
  cmd->add_option("--text", o.text, "Character language model on this text file (bytes as symbols)")
      ->group("Data (choose one)");
  cmd->add_option("--csv", o.csv, "One-step-ahead forecasting of a column of this CSV file")
      ->group("Data (choose one)");
  cmd->add_option("--column", o.column, "The CSV column to forecast (eval: default the model's)")
      ->group("Data (choose one)");
  cmd->add_option("--ts", o.ts, "Sequence classification from an sktime .ts file")
      ->group("Data (choose one)");
  cmd->add_option("--ts-test", o.ts_test,
                  ".ts: evaluate on this file (default: X_TEST.ts beside X_TRAIN.ts, else the "
                  "last --val-fraction of the sequences)")
      ->group("Data (choose one)");
  cmd->add_option("--data", o.data, "A data file in the format of `bptt grad` (needs --loss)")
      ->group("Data (choose one)");
  cmd->add_option("--loss", o.loss, "Loss for --data: mse, bce or xent")
      ->check(CLI::IsMember({"mse", "bce", "xent"}))
      ->group("Data (choose one)");
  cmd->add_option("--task", o.task,
                  "A synthetic benchmark: adding (Le et al. 2015) or copy (Arjovsky et al. 2016); "
                  "--seq-len is T (adding) or the delay (copy); eval: default the model's")
      ->group("Data (choose one)");
  cmd->add_option("--val-fraction", o.val_fraction,
                  "Text, .ts, --data: the last fraction held out for validation (default 0.1)")
      ->group("Data (choose one)");
  cmd->add_option("--test-fraction", o.test_fraction,
                  "CSV: the last fraction of the series held out (default 0.33)")
      ->group("Data (choose one)");
  cmd->add_option("--jitter", o.jitter,
                  ".ts: std of the noise added to the normalized training inputs (default 0.8; "
                  "0 off)")
      ->group("Data (choose one)");
  cmd->add_option("--seq-len", o.seq_len,
                  "Steps per training window (text default 100; CSV: the context of each "
                  "forecast, default from the seasonal period; --task: T for adding, the delay "
                  "for copy, default 100 or the model's)");
  cmd->add_option("--batch", o.batch, "Sequences per batch (default 32; --task 50)");
}

TaskData::TaskData(const DataOptions& o, const std::map<std::string, std::string>* model_meta)
    : evaluating_(model_meta != nullptr) {
  const int chosen =
      !o.text.empty() + !o.csv.empty() + !o.ts.empty() + !o.data.empty() + !o.task.empty();
  if (chosen != 1)
    throw Error(ErrorKind::usage, "options",
                chosen == 0 ? "no data given" : "more than one kind of data given",
                "give exactly one of --text, --csv (with --column), --ts, --data, --task");
  if (!(o.val_fraction >= 0 && o.val_fraction < 1))
    throw Error(ErrorKind::value, "--val-fraction",
                fmt::format("{} is outside [0, 1)", o.val_fraction));
  if (!(o.test_fraction > 0 && o.test_fraction < 1))
    throw Error(ErrorKind::value, "--test-fraction",
                fmt::format("{} is outside (0, 1)", o.test_fraction));
  if (o.seq_len < 0) throw Error(ErrorKind::value, "--seq-len", "must be at least 1");
  if (o.batch < 0) throw Error(ErrorKind::value, "--batch", "must be at least 1");
  if (!o.ts_test.empty() && o.ts.empty())
    throw Error(ErrorKind::usage, "--ts-test", "given without --ts",
                "name the training file with --ts");
  if (!o.text.empty()) {
    kind_ = "text";
    if (model_meta) {
      auto it = model_meta->find("vocab");
      if (it == model_meta->end())
        throw Error(ErrorKind::usage, "model: __metadata__.vocab", "missing",
                    "the model was not trained on text");
      const data::Vocab vocab = data::Vocab::from_metadata(it->second, "model: __metadata__.vocab");
      corpus = data::encode_text(o.text, data::read_file_bytes(o.text), vocab);
      corpus.train_end = std::min(corpus.ids.size(), std::size_t(std::floor(double(corpus.ids.size()) * (1.0 - o.val_fraction))));  // as load_text
    } else {
      corpus = data::load_text(o.text, o.val_fraction);
    }
    return;
  }
  if (!o.task.empty())
    load_synthetic(o, model_meta);
  else if (!o.csv.empty())
    load_csv(o, model_meta);
  else if (!o.ts.empty())
    load_ts(o, model_meta);
  else
    load_data(o, model_meta);
}

void TaskData::load_csv(const DataOptions& o, const Meta* model_meta) {
  kind_ = "csv";
  std::string column = o.column;
  if (column.empty() && model_meta) column = require(*model_meta, "csv_column", "CSV");
  if (column.empty())
    throw Error(ErrorKind::usage, "--column", "missing",
                "name the CSV column to forecast with --column");
  series_ = data::load_csv_column(o.csv, column);
  train_end_ = series_train_end(series_, o.test_fraction);
  if (model_meta)
    scaling_ = SeriesScaling::from_metadata(*model_meta);
  else
    scaling_ = SeriesScaling::of(series_, train_end_, 1);
}

void TaskData::load_ts(const DataOptions& o, const Meta* model_meta) {
  kind_ = "ts";
  jitter_ = o.jitter;
  if (!(o.jitter >= 0 && o.jitter < 1e3))
    throw Error(ErrorKind::value, "--jitter", "must be >= 0", "0 turns it off");
  std::vector<std::string> classes;
  if (model_meta) {
    classes = json_array<std::string>(*model_meta, "class_names", ".ts");
    mean_ = json_array<double>(*model_meta, "channel_mean", ".ts");
    stddev_ = json_array<double>(*model_meta, "channel_stddev", ".ts");
    if (mean_.size() != stddev_.size())
      throw Error(ErrorKind::shape, "model: __metadata__.channel_stddev",
                  "has a different length than channel_mean", "the model file is damaged");
    for (double v : stddev_)
      if (!(v > 0) || !std::isfinite(v))
        throw Error(ErrorKind::value, "model: __metadata__.channel_stddev",
                    "holds a value that is not > 0", "the model file is damaged");
  }
  ts_train_ = data::load_ts(o.ts, model_meta ? &classes : nullptr);
  // The evaluation part: --ts-test; else X_TEST.ts beside X_TRAIN.ts (sktime's convention); at
  // evaluation, the file itself unless the model held out the last fraction of this very file.
  std::string eval_file = o.ts_test;
  if (eval_file.empty() && ends_with(o.ts, "_TRAIN.ts")) {
    const std::string sibling = o.ts.substr(0, o.ts.size() - 9) + "_TEST.ts";
    if (std::filesystem::is_regular_file(sibling)) eval_file = sibling;
  }
  const int n = int(ts_train_.size());
  if (!eval_file.empty()) {
    ts_eval_ = data::load_ts(eval_file, &ts_train_.class_names);
    if (ts_eval_.dims != ts_train_.dims)
      throw Error(ErrorKind::shape, eval_file,
                  fmt::format("has {} dimensions, {} has {}", ts_eval_.dims, o.ts, ts_train_.dims),
                  "the evaluation file must hold the same kind of sequences");
    train_idx_ = iota_range(0, n);
    eval_idx_ = iota_range(0, int(ts_eval_.size()));
    provenance_["ts_eval"] = "file " + basename(eval_file);
  } else {
    const std::string* held = find(model_meta, "ts_eval");
    const bool holdout = !model_meta || (held && *held == "last fraction of " + basename(o.ts));
    int n_train = n;
    if (holdout && o.val_fraction > 0) {  // --val-fraction 0: train on all, evaluate nothing
      // As the text split: floor(N · (1 − f)), with at least one sequence held out.
      n_train = std::min(n - 1, int(std::floor(double(n) * (1.0 - o.val_fraction))));
      if (n_train < 1)
        throw Error(ErrorKind::shape, o.ts,
                    fmt::format("{} sequences cannot be split into a training part and an "
                                "evaluation part of at least one each",
                                n),
                    "give more sequences or --ts-test FILE");
    } else if (!holdout) {
      n_train = 0;  // evaluating a whole file
    }
    eval_in_train_file_ = true;
    train_idx_ = iota_range(0, std::max(n_train, model_meta ? n : 0));
    eval_idx_ = iota_range(n_train, n);
    provenance_["ts_eval"] = "last fraction of " + basename(o.ts);
  }
  if (!model_meta) {  // statistics of the training part only
    data::TsDataset part;
    part.dims = ts_train_.dims;
    for (int i : train_idx_) {
      part.series.push_back(ts_train_.series[std::size_t(i)]);
      part.lengths.push_back(ts_train_.lengths[std::size_t(i)]);
      part.labels.push_back(ts_train_.labels[std::size_t(i)]);
    }
    data::ts_channel_stats(part, mean_, stddev_);
  } else if (int(mean_.size()) != ts_train_.dims) {
    throw Error(
        ErrorKind::shape, o.ts,
        fmt::format("has {} dimensions, the model was trained on {}", ts_train_.dims, mean_.size()),
        "evaluate with data like the model's training data");
  }
}

void TaskData::load_data(const DataOptions& o, const Meta* model_meta) {
  kind_ = "data";
  std::string loss = o.loss;
  if (const std::string* trained = find(model_meta, "data_loss")) {
    if (loss.empty()) loss = *trained;
    if (loss != *trained)
      throw Error(ErrorKind::usage, "--loss", "the model was trained with " + *trained,
                  "evaluate with --loss " + *trained + " or leave --loss out");
  }
  if (loss.empty())
    throw Error(ErrorKind::usage, "--loss", "missing", "--data needs --loss mse, bce or xent");
  int output_size = 0;
  if (model_meta) output_size = int(metadata_double(*model_meta, "data_output_size"));
  file_ = load_data_file(o.data, parse_loss(loss, "--loss"), output_size);
  n_train_ = data_train_count(file_, o.val_fraction);
}

void TaskData::load_synthetic(const DataOptions& o, const Meta* model_meta) {
  kind_ = "task";
  synthetic_.kind = parse_synthetic_kind(o.task, "--task");
  synthetic_.seq_len = 100;
  if (model_meta) {  // the model must have been trained on this task; its T is the default
    const std::string* trained = find(model_meta, "task");
    if (!trained || *trained != o.task)
      throw Error(ErrorKind::usage, "--task " + o.task,
                  trained ? "the model was trained on task '" + data::printable(*trained, 40) + "'"
                          : "the model was not trained on a synthetic task",
                  trained && (*trained == "adding" || *trained == "copy")
                      ? "evaluate with --task " + *trained
                      : "evaluate with the data the model was trained on");
    synthetic_.seq_len = SyntheticSpec::from_metadata(*model_meta).seq_len;
  }
  SyntheticSpec check = synthetic_;  // refuse a bad --seq-len here, before any model is built
  if (o.seq_len > 0) check.seq_len = o.seq_len;
  check.validate();
}

int TaskData::input_size() const {
  if (kind_ == "csv") return 1;
  if (kind_ == "ts") return ts_train_.dims;
  if (kind_ == "data") return file_.input_size;
  if (kind_ == "task") return synthetic_.input_size();
  return corpus.vocab.size();
}

int TaskData::output_size() const {
  if (kind_ == "csv") return 1;
  if (kind_ == "ts") return int(ts_train_.class_names.size());
  if (kind_ == "data") return file_.output_size;
  if (kind_ == "task") return synthetic_.output_size();
  return corpus.vocab.size();
}

Activation TaskData::output_activation() const {
  if (kind_ == "csv") return Activation::identity;
  if (kind_ == "task") return synthetic_.output_activation();
  if (kind_ == "data") {
    switch (file_.loss) {
      case LossKind::mse: return Activation::identity;
      case LossKind::bce: return Activation::sigmoid;
      case LossKind::xent: return Activation::softmax;
    }
  }
  return Activation::softmax;
}

int TaskData::default_batch() const {
  if (kind_ == "data") return std::min(32, std::max(1, n_train_));
  if (kind_ == "task") return 50;
  return 32;
}

int TaskData::default_seq_len() const {
  if (kind_ == "csv") {
    if (evaluating_) return scaling_.context;
    // Three seasons of context when the season is short, else 32 steps; at most half the
    // training part, so that there are windows to draw.
    const int m = scaling_.period;
    const int T = m >= 2 && m <= 16 ? 3 * m : 32;
    return std::max(1, std::min(T, int(train_end_ / 2)));
  }
  if (kind_ == "ts") return TsPart{&ts_train_, train_idx_}.longest();
  if (kind_ == "data") return file_.all.T;
  if (kind_ == "task") return synthetic_.seq_len;
  return 100;
}

// Used only when no budget (--steps, --epochs, --time-budget) is given: about 3000 steps for
// the small tasks.
std::int64_t TaskData::default_epochs() const {
  if (kind_ == "csv") {
    const std::int64_t windows = std::max<std::int64_t>(1, std::int64_t(train_end_) - 1 - default_seq_len());
    return std::max<std::int64_t>(1, 3000 / ((windows + 31) / 32));
  }
  if (kind_ == "ts") return std::max<std::int64_t>(1, 3000 / ((std::int64_t(train_idx_.size()) + 31) / 32));
  if (kind_ == "data") return 100;
  if (kind_ == "task") return 30;  // 3000 steps of 50 fresh sequences
  return 1;
}

// Small data (a few hundred to a few thousand points or sequences): one layer, a lower rate and
// L2 weight decay, so that a long --time-budget does not overfit (docs/training.md).
int TaskData::default_hidden() const {
  if (kind_ == "csv") return 32;
  if (kind_ == "ts") return 64;
  if (kind_ == "data" && file_.state_hidden > 0) return file_.state_hidden;
  return 128;
}

int TaskData::default_layers() const {
  if (kind_ == "csv" || kind_ == "ts" || kind_ == "task") return 1;
  if (kind_ == "data" && file_.state_layers > 0) return file_.state_layers;
  return 2;
}

double TaskData::default_lr() const {
  if (kind_ == "csv") return 1e-3;
  // Adam at 1e-3 stays on the adding problem's plateau (MSE 0.16) for 4000 steps at T = 100;
  // at 1e-2 it leaves it after 1,000-2,000 steps (seeds 1-3; docs/training.md).
  if (kind_ == "task") return 1e-2;
  if (kind_ == "ts") return 3e-4;  // steadier than 1e-3 at the end of a long constant-rate run
  return 2e-3;
}

double TaskData::default_weight_decay() const {
  return kind_ == "csv" || kind_ == "ts" ? 1e-2 : -1;
}

std::string TaskData::bidirectional_refusal() const {
  if (kind_ == "text")
    return "next-character prediction: the right-to-left pass would read the character each step "
           "is asked to predict";
  if (kind_ == "csv")
    return "one-step-ahead forecasting: the right-to-left pass would read the value each step is "
           "asked to predict";
  if (kind_ == "task" && synthetic_.kind == SyntheticKind::copy)
    return "the copy task: the right-to-left pass would read the symbols it is asked to recall "
           "(they are inputs at the steps the answers are due)";
  return "";
}

Readout TaskData::bidirectional_readout() const {
  return kind_ == "ts" || kind_ == "task" ? Readout::final_state : Readout::steps;
}

std::string TaskData::describe() const {
  if (kind_ == "csv")
    return fmt::format("{}: column {}, {} values, {} for training (mean {:.4g}, stddev {:.4g}, "
                       "step stddev {:.4g}), {} held out; seasonal period {}",
                       series_.path, series_.column, series_.values.size(), train_end_,
                       scaling_.mean, scaling_.stddev, scaling_.diff_stddev,
                       series_.values.size() - train_end_, scaling_.period);
  if (kind_ == "ts") {
    const int longest = TsPart{&ts_train_, train_idx_}.longest();
    return fmt::format("{}: {} sequences of {} channels, {} classes, longest {}; {} for training, "
                       "{} for evaluation ({})",
                       ts_train_.path, ts_train_.size(), ts_train_.dims,
                       ts_train_.class_names.size(), longest, train_idx_.size(), eval_idx_.size(),
                       eval_in_train_file_ ? "held out" : ts_eval_.path);
  }
  if (kind_ == "task") {
    if (synthetic_.kind == SyntheticKind::adding)
      return fmt::format("adding problem, T = {}: the sum of the 2 marked values of {} in [0, 1], "
                         "MSE at the last step; {} batches of fresh sequences per epoch, {} "
                         "held out (baseline MSE 0.1667)",
                         synthetic_.seq_len, synthetic_.seq_len, kSyntheticBatchesPerEpoch,
                         kSyntheticEvalSequences);
    return fmt::format("copy memory, delay {}: recall 10 symbols after {} steps, xent at every "
                       "step; {} batches of fresh sequences per epoch, {} held out (baseline "
                       "{:.4f} nats per step)",
                       synthetic_.seq_len, synthetic_.steps(), kSyntheticBatchesPerEpoch,
                       kSyntheticEvalSequences, synthetic_.baseline());
  }
  if (kind_ == "data")
    return fmt::format("{}: {} sequences of {} steps, I = {}, O = {}, loss {}; {} for training, "
                       "{} for evaluation",
                       file_.path, file_.all.B, file_.all.T, file_.input_size, file_.output_size,
                       to_string(file_.loss), n_train_, file_.all.B - n_train_);
  return fmt::format("{}: {} characters, vocabulary {}, {} for training, {} for validation",
                     corpus.path, corpus.ids.size(), corpus.vocab.size(), corpus.train_end,
                     corpus.ids.size() - corpus.train_end);
}

template <class Real>
std::unique_ptr<Task<Real>> TaskData::task(int B, int T) const {
  if (kind_ == "csv") {
    SeriesScaling s = scaling_;
    s.context = T;
    return make_series_task<Real>(series_, train_end_, s, B);
  }
  if (kind_ == "ts" || kind_ == "data") {
    if (T != default_seq_len())
      throw Error(ErrorKind::usage, "--seq-len",
                  fmt::format("{} sequences are read whole ({} steps here)",
                              kind_ == "ts" ? ".ts" : "--data", default_seq_len()),
                  "leave --seq-len out");
  }
  if (kind_ == "ts") {
    const data::TsDataset* eval = eval_in_train_file_ ? &ts_train_ : &ts_eval_;
    // At evaluation only evaluate() is used; the training part is then the whole file.
    return make_ts_task<Real>(TsPart{&ts_train_, train_idx_}, TsPart{eval, eval_idx_}, mean_,
                              stddev_, B, jitter_, provenance_);
  }
  if (kind_ == "data") return make_data_task<Real>(file_, n_train_, B);
  if (kind_ == "task") {
    SyntheticSpec spec = synthetic_;
    spec.seq_len = T;
    return make_synthetic_task<Real>(spec, B);
  }
  return make_text_task<Real>(corpus, B, T);
}

template std::unique_ptr<Task<float>> TaskData::task<float>(int, int) const;
template std::unique_ptr<Task<double>> TaskData::task<double>(int, int) const;

}  // namespace bptt::cli
