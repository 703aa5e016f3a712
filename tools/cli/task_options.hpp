// The data options shared by train and eval (--text, --csv/--column, --ts, --data), and the
// Task they describe.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "bptt/data.hpp"
#include "bptt/tasks.hpp"

namespace bptt::cli {

struct DataOptions {
  std::string text, csv, column, ts, data, loss;
  double val_fraction = 0.1;
  double test_fraction = 0.33;
  int seq_len = 0;  // 0: the task's default
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
  int default_batch() const;
  int default_seq_len() const;
  std::int64_t default_epochs() const;
  std::string describe() const;  // one line: what was loaded
  template <class Real>
  std::unique_ptr<Task<Real>> task(int B, int T) const;

  data::TextCorpus corpus;  // kind "text"

 private:
  std::string kind_;
};

}  // namespace bptt::cli
