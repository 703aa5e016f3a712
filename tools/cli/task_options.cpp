#include "task_options.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "bptt/error.hpp"

namespace bptt::cli {

void add_data_options(CLI::App* cmd, DataOptions& o) {
  cmd->add_option("--text", o.text, "Character language model on this text file (bytes as symbols)")
      ->group("Data (choose one)");
  cmd->add_option("--csv", o.csv, "One-step-ahead forecasting of a column of this CSV file")
      ->group("Data (choose one)");
  cmd->add_option("--column", o.column, "The CSV column to forecast")->group("Data (choose one)");
  cmd->add_option("--ts", o.ts, "Sequence classification from an sktime .ts file")
      ->group("Data (choose one)");
  cmd->add_option("--data", o.data, "A data file in the format of `bptt grad` (needs --loss)")
      ->group("Data (choose one)");
  cmd->add_option("--loss", o.loss, "Loss for --data: mse, bce or xent")
      ->check(CLI::IsMember({"mse", "bce", "xent"}))
      ->group("Data (choose one)");
  cmd->add_option("--val-fraction", o.val_fraction,
                  "Text: the last fraction of the file used for validation (default 0.1)")
      ->group("Data (choose one)");
  cmd->add_option("--test-fraction", o.test_fraction,
                  "CSV: the last fraction of the series held out (default 0.33)")
      ->group("Data (choose one)");
  cmd->add_option("--seq-len", o.seq_len, "Steps per training window (text default 100)");
  cmd->add_option("--batch", o.batch, "Sequences per batch (text default 32)");
}

TaskData::TaskData(const DataOptions& o, const std::map<std::string, std::string>* model_meta) {
  const int chosen = !o.text.empty() + !o.csv.empty() + !o.ts.empty() + !o.data.empty();
  if (chosen != 1)
    throw Error("options", chosen == 0 ? "no data given" : "more than one kind of data given",
                "give exactly one of --text, --csv (with --column), --ts, --data");
  if (!(o.val_fraction >= 0 && o.val_fraction < 1))
    throw Error("--val-fraction", fmt::format("{} is outside [0, 1)", o.val_fraction));
  if (!(o.test_fraction > 0 && o.test_fraction < 1))
    throw Error("--test-fraction", fmt::format("{} is outside (0, 1)", o.test_fraction));
  if (o.seq_len < 0) throw Error("--seq-len", "must be at least 1");
  if (o.batch < 0) throw Error("--batch", "must be at least 1");
  if (!o.text.empty()) {
    kind_ = "text";
    if (model_meta) {
      auto it = model_meta->find("vocab");
      if (it == model_meta->end())
        throw Error("model: __metadata__.vocab", "missing", "the model was not trained on text");
      const data::Vocab vocab = data::Vocab::from_metadata(it->second, "model: __metadata__.vocab");
      corpus = data::encode_text(o.text, data::read_file_bytes(o.text), vocab);
      // The same split as load_text (and nanoGPT): floor(N · (1 − f)).
      corpus.train_end = std::min(
          corpus.ids.size(),
          std::size_t(std::floor(double(corpus.ids.size()) * (1.0 - o.val_fraction))));
    } else {
      corpus = data::load_text(o.text, o.val_fraction);
    }
    return;
  }
  throw Error(!o.csv.empty() ? "--csv" : !o.ts.empty() ? "--ts" : "--data",
              "training on this kind of data is not available in this version",
              "use --text; CSV, .ts and safetensors training are tracked in issue 3");
}

int TaskData::input_size() const { return corpus.vocab.size(); }
int TaskData::output_size() const { return corpus.vocab.size(); }
Activation TaskData::output_activation() const { return Activation::softmax; }
int TaskData::default_batch() const { return 32; }
int TaskData::default_seq_len() const { return 100; }
std::int64_t TaskData::default_epochs() const { return 1; }

std::string TaskData::describe() const {
  return fmt::format("{}: {} characters, vocabulary {}, {} for training, {} for validation",
                     corpus.path, corpus.ids.size(), corpus.vocab.size(), corpus.train_end,
                     corpus.ids.size() - corpus.train_end);
}

template <class Real>
std::unique_ptr<Task<Real>> TaskData::task(int B, int T) const {
  return make_text_task<Real>(corpus, B, T);
}

template std::unique_ptr<Task<float>> TaskData::task<float>(int, int) const;
template std::unique_ptr<Task<double>> TaskData::task<double>(int, int) const;

}  // namespace bptt::cli
