// The data options shared by train and eval (--text, --csv/--column, --ts, --data, --task), and
// the Task they describe.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bptt/data.hpp"
#include "bptt/tasks.hpp"

namespace bptt::cli {

struct DataOptions {
  std::string text, csv, column, ts, ts_test, data, loss;
  std::string task;  // a synthetic benchmark: adding or copy
  double val_fraction = 0.1;
  double test_fraction = 0.33;
  double jitter = 0.8;  // .ts: noise added to the normalized training inputs
  int seq_len = 0;  // 0: the task's default (--task: T for adding, the delay for copy)
  int batch = 0;    // 0: the task's default
};

void add_data_options(CLI::App* cmd, DataOptions& o);

// The loaded data of one kind, and what a model for it looks like.
class TaskData {
 public:
  // Loads the data the options name; `model` (when evaluating or resuming) supplies the
  // vocabulary, normalisation or class names the data must be encoded with.
  explicit TaskData(const DataOptions& o, const std::map<std::string, std::string>* model_meta = nullptr);
  std::string kind() const { return kind_; }
  int input_size() const;
  int output_size() const;
  Activation output_activation() const;
  // Per-kind defaults for options the user did not give.
  int default_batch() const;
  int default_seq_len() const;
  std::int64_t default_epochs() const;
  int default_hidden() const;
  int default_layers() const;
  double default_lr() const;
  double default_weight_decay() const;  // L2 (decoupled for adamw); < 0: the optimizer's own
  std::string describe() const;  // one line: what was loaded
  // A bidirectional model for this data: "" when it is fine, else why not (the right-to-left
  // pass would read the answer: next-character text, one-step-ahead forecasting, the copy
  // task, whose targets are inputs of later steps).
  std::string bidirectional_refusal() const;
  // What a bidirectional model's head reads: the final states for the sequence classifiers
  // (.ts, the adding task: one answer per sequence), every step otherwise (--data).
  Readout bidirectional_readout() const;
  // T is --seq-len (or default_seq_len()): the window, or for --task the sequence length T
  // (adding) or the delay (copy, whose sequences have T + 20 steps).
  template <class Real>
  std::unique_ptr<Task<Real>> task(int B, int T) const;

  data::TextCorpus corpus;  // kind "text"

 private:
  void load_csv(const DataOptions& o, const std::map<std::string, std::string>* model_meta);
  void load_ts(const DataOptions& o, const std::map<std::string, std::string>* model_meta);
  void load_data(const DataOptions& o, const std::map<std::string, std::string>* model_meta);
  void load_synthetic(const DataOptions& o, const std::map<std::string, std::string>* model_meta);

  std::string kind_;
  bool evaluating_ = false;
  // kind "csv"
  data::Series series_;
  std::size_t train_end_ = 0;
  SeriesScaling scaling_;
  // kind "ts": the training file, and the evaluation file when it is another one
  data::TsDataset ts_train_, ts_eval_;
  std::vector<int> train_idx_, eval_idx_;  // into ts_train_, and into ts_eval_ or ts_train_
  bool eval_in_train_file_ = false;
  std::vector<double> mean_, stddev_;
  double jitter_ = 0;
  std::map<std::string, std::string> provenance_;
  // kind "data"
  DataFile file_;
  int n_train_ = 0;
  // kind "task": seq_len is the default --seq-len (100, or the model's when evaluating)
  SyntheticSpec synthetic_;
};

}  // namespace bptt::cli
