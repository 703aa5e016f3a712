// Training: a Task supplies batches and evaluates; the Trainer runs optimizer steps over it with
// clipping, schedules, dropout and state carried between windows, and saves/restores snapshots.
//
// Determinism: a step depends only on (seed, step, epoch, position, carried state, parameters,
// optimizer state), all of which a snapshot holds, so resuming from a snapshot continues
// bit-identically (same thread count).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/methods.hpp"
#include "bptt/model.hpp"
#include "bptt/optim.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

// The result of an evaluation: the loss and the task's own measures (bits_per_char, rmse,
// accuracy, ...), plus a short human-readable summary.
struct Metrics {
  double loss = 0;
  std::map<std::string, double> values;
  std::string summary;
  // Classification only: the class names and the K x K confusion matrix, row-major, rows the
  // true class and columns the predicted one (empty for other tasks).
  std::vector<std::string> classes;
  std::vector<std::int64_t> confusion;
};

// One kind of training data. Batches have a fixed shape (T(), B()) so one workspace serves all.
template <class Real>
class Task {
 public:
  virtual ~Task() = default;
  virtual LossKind loss() const = 0;
  virtual int T() const = 0;
  virtual int B() const = 0;
  virtual std::int64_t batches_per_epoch() const = 0;
  // ASSIGNS batch number `index` (< batches_per_epoch()) of epoch `epoch`; a task that shuffles
  // derives the order from (seed, epoch) only.
  virtual void fill(std::uint64_t seed, std::int64_t epoch, std::int64_t index,
                    Batch<Real>& batch) = 0;
  // True when each sequence continues the one at the same batch slot of the previous batch
  // (character streams): the trainer then feeds the final state back as h0/c0, cutting the
  // gradient at the window start, and resets it at each epoch.
  virtual bool carries_state() const { return false; }
  // Evaluation on the held-out part; only called when has_evaluation().
  virtual bool has_evaluation() const { return true; }
  virtual Metrics evaluate(const Model<Real>& model) = 0;
  // Metadata that describes the data the model was trained on (vocabulary, normalisation, ...).
  virtual std::map<std::string, std::string> model_metadata() const = 0;
};

struct TrainConfig {
  OptimizerConfig optimizer;
  Schedule schedule;
  double clip_norm = 0;   // 0: off
  double clip_value = 0;  // 0: off
  double dropout = 0;     // between layers
  // Issue 18's time-consistent dropout (input, recurrent, output, weight; seed and stream are
  // the trainer's); zoneout is the model's (ModelConfig::zoneout_h, zoneout_c).
  Regularizer regularizer;
  std::uint64_t seed = 1;
  // How a window's gradient is computed (docs/training.md, "Gradient methods"):
  int recompute = 0;            // K >= 1: recompute BPTT with states kept every K steps
  double memory_budget_mb = 0;  // > 0: choose K from the cost model (methods.hpp) so the
                                // backward pass fits; full BPTT when it fits as it is
  int k2 = 0;                   // BPTT(k2; k1) for streams, k1 = the task's T: each update
                                // backpropagates the last k2 >= k1 steps (0: k2 = k1)
  bool rtrl = false;            // online RTRL: an update after every time step
  // An online approximation instead (uoro, kf-rtrl, snap1, eprop; methods.hpp): an update after
  // every time step, its estimate carried with the state (snapshots keep both). Its random
  // signs are drawn from `seed`.
  std::optional<OnlineMethod> online;
  // Under MPI: start summing each layer's gradients across processes as soon as the backward
  // pass has them (false: one all-reduce after the whole backward pass).
  bool overlap_allreduce = true;
  // A non-finite loss, gradient or updated parameter: false stops training with bptt::Error
  // naming the step; true skips that update (parameters and optimizer state are left as they
  // were before it) and counts it in Trainer::skipped().
  bool skip_nonfinite = false;
};

struct StepInfo {
  double loss = 0;
  double grad_norm = 0;  // before clipping
  double lr = 0;
  bool skipped = false;  // the update was non-finite and skipped (TrainConfig::skip_nonfinite)
};

template <class Real>
class Trainer {
 public:
  Trainer(Model<Real>& model, Task<Real>& task, const TrainConfig& cfg);

  // One window of the task: one optimizer step on the next batch (with rtrl, one update per
  // time step of the window that carries loss weight).
  StepInfo step();

  std::int64_t steps_done() const { return step_; }
  // The recompute interval in use (0: full BPTT keeps every step).
  int recompute_interval() const { return recompute_ ? recompute_->K() : 0; }
  std::int64_t epoch() const { return epoch_; }
  std::int64_t position() const { return index_; }
  // Updates skipped as non-finite (TrainConfig::skip_nonfinite), in all runs of a snapshot.
  std::int64_t skipped() const { return skipped_; }

  // A snapshot holds the parameters (under the model's tensor names), the optimizer state
  // ("optimizer.<slot>"), the carried state ("carry.h", "carry.c") and, in the metadata, the
  // model configuration and metadata, the step, epoch and position, and `fingerprint`: a
  // description of everything that must match on resume (model, task, optimizer). Written to a
  // temporary file and renamed.
  void save_snapshot(const std::string& path, const std::string& fingerprint) const;
  // Restores a snapshot; throws bptt::Error (nothing changed) when the file is damaged, the model
  // differs, or its fingerprint differs from `fingerprint`.
  void load_snapshot(const std::string& path, const std::string& fingerprint);

 private:
  Model<Real>& model_;
  Task<Real>& task_;
  TrainConfig cfg_;
  StepInfo bptt_window();
  StepInfo rtrl_window();  // rtrl and the online approximations
  Batch<Real>& with_history();
  void keep_state(const Batch<Real>& b);
  // Clips, checks and applies grads_.params; fills info's grad_norm and lr.
  void update(StepInfo& info);

  Optimizer<Real> opt_;
  std::unique_ptr<Workspace<Real>> ws_;    // full BPTT (nullptr with recompute or rtrl)
  std::unique_ptr<Recompute<Real>> recompute_;
  std::unique_ptr<RtrlStream<Real>> rtrl_;
  std::unique_ptr<OnlineGradient<Real>> online_;
  Gradients<Real> grads_;
  Batch<Real> batch_;
  Batch<Real> window_;                     // k2 > k1: the history, then the new steps
  Batch<Real> local_;                      // under MPI: scratch for this process's rows
  double global_weight_ = 0;               // Σ weights of the whole batch (all processes)
  std::int64_t step_ = 0, epoch_ = 0, index_ = 0, skipped_ = 0;
  std::vector<Real> backup_;             // skip_nonfinite: the parameters and optimizer state
                                         // before the update, restored when it is non-finite
  std::vector<Real> carry_h_, carry_c_;  // [L, B, H]; empty until the first window (with
                                         // k2 > k1: the state where the history starts)
  std::vector<Real> hist_x_;             // k2 > k1: the last steps' inputs [n, B, I]
  bool rtrl_started_ = false;
};

// PyTorch's default initialisation (uniform ±1/sqrt(H)), then forget_bias added to the forget
// gate's b_ih for LSTM (char-rnn and Jozefowicz et al. use 1); other cells ignore it. Throws
// Error when forget_bias is not finite.
template <class Real>
void init_model(Model<Real>& model, std::uint64_t seed, double forget_bias);

}  // namespace bptt
