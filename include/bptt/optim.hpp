// Optimizers, learning-rate schedules and gradient clipping over the flat parameter arena.
// Every rule follows PyTorch's torch.optim implementation (1.13), so the same hyper-parameters
// mean the same thing; the update equations are in docs/training.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bptt {

enum class OptimizerKind { sgd, adam, adamw, rmsprop, adagrad };
OptimizerKind parse_optimizer(const std::string& s, const std::string& where);
const char* to_string(OptimizerKind k);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::adam;
  double momentum = 0;         // sgd, rmsprop
  bool nesterov = false;       // sgd (requires momentum > 0)
  double beta1 = 0.9, beta2 = 0.999;  // adam, adamw
  double alpha = 0.99;         // rmsprop smoothing
  double eps = -1;             // < 0: PyTorch's default (1e-8; adagrad 1e-10)
  double weight_decay = 0;     // L2 (added to the gradient); decoupled for adamw
  void validate() const;       // throws bptt::Error for values PyTorch rejects
};

// The optimizer's state is a few vectors of the arena's size plus a step count; state() exposes
// them by name for snapshots.
template <class Real>
class Optimizer {
 public:
  Optimizer(const OptimizerConfig& cfg, std::size_t n);
  // params -= update(grads) with learning rate lr. grads is not modified.
  void step(Real* params, const Real* grads, double lr);
  std::int64_t steps() const { return t_; }
  const OptimizerConfig& config() const { return cfg_; }

  // Named state buffers (e.g. "exp_avg", "exp_avg_sq", "momentum_buffer", "sum") for snapshots.
  struct Slot {
    std::string name;
    std::vector<Real>* data;
  };
  std::vector<Slot> state();
  void set_steps(std::int64_t t) { t_ = t; }

 private:
  OptimizerConfig cfg_;
  std::size_t n_;
  std::int64_t t_ = 0;
  std::vector<Real> a_, b_;  // meaning depends on the kind; see state()
};

enum class ScheduleKind { constant, step, cosine };
ScheduleKind parse_schedule(const std::string& s, const std::string& where);

struct Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  double lr = 1e-3;
  std::int64_t warmup = 0;          // linear warm-up from lr/warmup to lr over these steps
  std::int64_t step_size = 1000;    // step: multiply by gamma every step_size steps
  double gamma = 0.5;
  std::int64_t total = 0;           // cosine: decays to min_lr at this step (0: no decay)
  double min_lr = 0;
  double at(std::int64_t step) const;  // learning rate for 0-based optimizer step `step`
  void validate() const;               // throws bptt::Error naming the option at fault
};

// Global L2 norm of a gradient arena (accumulated in double).
template <class Real>
double global_norm(const Real* g, std::size_t n);

// torch.nn.utils.clip_grad_norm_: when the norm exceeds max_norm, scale g by
// max_norm / (norm + 1e-6). Returns the norm before clipping.
template <class Real>
double clip_by_norm(Real* g, std::size_t n, double max_norm);

// torch.nn.utils.clip_grad_value_: clamp every element to [-v, v].
template <class Real>
void clip_by_value(Real* g, std::size_t n, double v);

}  // namespace bptt
