// The verbs run from inside another program: the Python module (python/) calls the same option
// parsing and code as the command, with its output captured and training observed through hooks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/diagnose.hpp"
#include "bptt/loss.hpp"
#include "bptt/model.hpp"

namespace bptt::cli {

// Runs one verb as `bptt ARGS...` would ({"train", "--text", "input.txt", ...}, no program name).
// A command line CLI11 refuses throws bptt::Error of kind usage with CLI11's message, the verb's
// own failures throw as they do for the command. Runs on the calling thread.
void run_verb(const std::vector<std::string>& args);

// The long option names of a verb ("seq-len", "hidden", ...), --help's excepted.
std::vector<std::string> verb_options(const std::string& verb);

// What the verbs print as machine-readable output (explain --json, diagnose --json) goes to
// stdout, or, while a CaptureOutput of the calling thread lives, into its string.
void emit(std::string_view text);
class CaptureOutput {
 public:
  explicit CaptureOutput(std::string& into);
  ~CaptureOutput();
  CaptureOutput(const CaptureOutput&) = delete;
  CaptureOutput& operator=(const CaptureOutput&) = delete;

 private:
  std::string* previous_;
};

// One row of `bptt train --metrics` (its CSV columns), as it is written.
struct TrainRow {
  std::int64_t step = 0;
  double elapsed_s = 0, train_loss = 0;
  double val_loss = 0;
  bool has_val_loss = false;  // evaluated at this row
  double lr = 0, grad_norm = 0, throughput = 0;
  std::int64_t skipped_nonfinite = -1;  // with --skip-nonfinite, else -1
};

// Observers of `train` run on the calling thread: each metrics row is passed to on_row, and
// stop() is asked before every step; true stops the run as a signal does (the snapshot is
// written if asked, the model evaluated and saved). Without hooks the verb handles SIGINT and
// SIGTERM itself; with them it leaves the process's signal handlers alone.
struct TrainHooks {
  std::function<void(const TrainRow&)> on_row;
  std::function<bool()> stop;
};
class WithTrainHooks {
 public:
  explicit WithTrainHooks(TrainHooks& hooks);
  ~WithTrainHooks();
  WithTrainHooks(const WithTrainHooks&) = delete;
  WithTrainHooks& operator=(const WithTrainHooks&) = delete;

 private:
  TrainHooks* previous_;
};
// The calling thread's hooks, or nullptr.
TrainHooks* train_hooks();

// `--method numeric` perturbs every number twice: past this many it is a mistake, not a check.
constexpr std::size_t kNumericLimit = 200'000;

// `bptt diagnose --json` of a model and batch in memory (the document the verb prints).
template <class Real>
std::string diagnose_json(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                          const DiagnoseOptions& options);

}  // namespace bptt::cli
