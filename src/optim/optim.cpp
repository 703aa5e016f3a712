#include <algorithm>
#include <cmath>
#include <numbers>

#include "bptt/error.hpp"
#include "bptt/optim.hpp"

namespace bptt {

OptimizerKind parse_optimizer(const std::string& s, const std::string& where) {
  for (auto k : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw,
                 OptimizerKind::rmsprop, OptimizerKind::adagrad})
    if (s == to_string(k)) return k;
  throw Error(ErrorKind::usage, where, "unknown optimizer '" + s + "'",
              "use sgd, adam, adamw, rmsprop or adagrad");
}

const char* to_string(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::sgd: return "sgd";
    case OptimizerKind::adam: return "adam";
    case OptimizerKind::adamw: return "adamw";
    case OptimizerKind::rmsprop: return "rmsprop";
    case OptimizerKind::adagrad: return "adagrad";
  }
  return "?";
}

void OptimizerConfig::validate() const {
  auto bad = [](ErrorKind k, const char* field, const std::string& what, const std::string& hint) {
    throw Error(k, field, what, hint);
  };
  if (!(momentum >= 0)) bad(ErrorKind::value, "--momentum", "must be >= 0", "0 disables momentum");
  if (nesterov && !(momentum > 0) && kind == OptimizerKind::sgd)
    bad(ErrorKind::usage, "--nesterov", "needs --momentum > 0", "set --momentum 0.9, say");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    bad(ErrorKind::value, "--beta1/--beta2", "must lie in [0, 1)",
        "PyTorch's defaults are 0.9 and 0.999");
  if (!(alpha >= 0)) bad(ErrorKind::value, "--alpha", "must be >= 0", "PyTorch's default is 0.99");
  if (!(weight_decay >= 0))
    bad(ErrorKind::value, "--weight-decay", "must be >= 0", "0 disables it");
  if (std::isnan(eps) || std::isinf(eps))
    bad(ErrorKind::value, "--eps", "must be finite", "leave it negative for the default");
}

template <class Real>
Optimizer<Real>::Optimizer(const OptimizerConfig& cfg, std::size_t n) : cfg_(cfg), n_(n) {
  cfg_.validate();
  if (cfg_.eps < 0) cfg_.eps = cfg_.kind == OptimizerKind::adagrad ? 1e-10 : 1e-8;
  switch (cfg_.kind) {
    case OptimizerKind::sgd: a_.assign(cfg_.momentum > 0 ? n : 0, Real(0)); break;
    case OptimizerKind::adam:
    case OptimizerKind::adamw: a_.assign(n, Real(0)), b_.assign(n, Real(0)); break;
    case OptimizerKind::rmsprop:
      a_.assign(n, Real(0)), b_.assign(cfg_.momentum > 0 ? n : 0, Real(0));
      break;
    case OptimizerKind::adagrad: a_.assign(n, Real(0)); break;
  }
}

template <class Real>
std::vector<typename Optimizer<Real>::Slot> Optimizer<Real>::state() {
  switch (cfg_.kind) {
    case OptimizerKind::sgd: return {{"momentum_buffer", &a_}};
    case OptimizerKind::adam:
    case OptimizerKind::adamw: return {{"exp_avg", &a_}, {"exp_avg_sq", &b_}};
    case OptimizerKind::rmsprop: return {{"square_avg", &a_}, {"momentum_buffer", &b_}};
    case OptimizerKind::adagrad: return {{"sum", &a_}};
  }
  return {};
}

template <class Real>
void Optimizer<Real>::step(Real* p, const Real* grads, double lr_d) {
  ++t_;
  const std::size_t n = n_;
  const Real lr = Real(lr_d), wd = Real(cfg_.weight_decay), eps = Real(cfg_.eps),
             mom = Real(cfg_.momentum);
  const bool l2 = cfg_.weight_decay != 0 && cfg_.kind != OptimizerKind::adamw;
  switch (cfg_.kind) {
    case OptimizerKind::sgd: {
      for (std::size_t i = 0; i < n; ++i) {
        Real g = grads[i] + (l2 ? wd * p[i] : Real(0));
        if (a_.empty()) {
          p[i] -= lr * g;
          continue;
        }
        a_[i] = t_ == 1 ? g : mom * a_[i] + g;  // PyTorch: buf = g on the first step
        g = cfg_.nesterov ? g + mom * a_[i] : a_[i];
        p[i] -= lr * g;
      }
      break;
    }
    case OptimizerKind::adam:
    case OptimizerKind::adamw: {
      const double b1 = cfg_.beta1, b2 = cfg_.beta2;
      const Real bc1 = Real(1 - std::pow(b1, double(t_)));
      const Real bc2_sqrt = Real(std::sqrt(1 - std::pow(b2, double(t_))));
      const Real step = lr / bc1;
      for (std::size_t i = 0; i < n; ++i) {
        if (cfg_.kind == OptimizerKind::adamw) p[i] *= Real(1) - lr * wd;
        const Real g = grads[i] + (l2 ? wd * p[i] : Real(0));
        a_[i] = Real(b1) * a_[i] + Real(1 - b1) * g;
        b_[i] = Real(b2) * b_[i] + Real(1 - b2) * g * g;
        p[i] -= step * a_[i] / (std::sqrt(b_[i]) / bc2_sqrt + eps);
      }
      break;
    }
    case OptimizerKind::rmsprop: {
      const Real al = Real(cfg_.alpha);
      for (std::size_t i = 0; i < n; ++i) {
        const Real g = grads[i] + (l2 ? wd * p[i] : Real(0));
        a_[i] = al * a_[i] + Real(1 - cfg_.alpha) * g * g;
        const Real u = g / (std::sqrt(a_[i]) + eps);
        if (b_.empty()) {
          p[i] -= lr * u;
        } else {
          b_[i] = mom * b_[i] + u;
          p[i] -= lr * b_[i];
        }
      }
      break;
    }
    case OptimizerKind::adagrad: {
      for (std::size_t i = 0; i < n; ++i) {
        const Real g = grads[i] + (l2 ? wd * p[i] : Real(0));
        a_[i] += g * g;
        p[i] -= lr * g / (std::sqrt(a_[i]) + eps);
      }
      break;
    }
  }
}

ScheduleKind parse_schedule(const std::string& s, const std::string& where) {
  if (s == "constant") return ScheduleKind::constant;
  if (s == "step") return ScheduleKind::step;
  if (s == "cosine") return ScheduleKind::cosine;
  throw Error(ErrorKind::usage, where, "unknown schedule '" + s + "'",
              "use constant, step or cosine");
}

void Schedule::validate() const {
  if (!(lr >= 0) || !std::isfinite(lr))
    throw Error(ErrorKind::value, "--lr", "must be a finite number >= 0");
  if (warmup < 0) throw Error(ErrorKind::value, "--warmup", "must be >= 0", "0 disables warm-up");
  if (kind == ScheduleKind::step && step_size < 1)
    throw Error(ErrorKind::value, "--step-size", "must be at least 1",
                "steps between learning-rate decays");
  if (kind == ScheduleKind::step && !(gamma > 0))
    throw Error(ErrorKind::value, "--gamma", "must be > 0", "the factor applied at each decay");
  if (!(min_lr >= 0)) throw Error(ErrorKind::value, "--min-lr", "must be >= 0");
}

double Schedule::at(std::int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  switch (kind) {
    case ScheduleKind::constant: return lr;
    case ScheduleKind::step:
      return lr * std::pow(gamma, double(step / step_size));
    case ScheduleKind::cosine: {
      if (total <= warmup) return lr;
      const double progress =
          std::min(1.0, double(step - warmup) / double(total - warmup));
      return min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(std::numbers::pi * progress));
    }
  }
  return lr;
}

template <class Real>
double global_norm(const Real* g, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += double(g[i]) * double(g[i]);
  return std::sqrt(s);
}

template <class Real>
double clip_by_norm(Real* g, std::size_t n, double max_norm) {
  const double norm = global_norm(g, n);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1)
    for (std::size_t i = 0; i < n; ++i) g[i] *= Real(coef);
  return norm;
}

template <class Real>
void clip_by_value(Real* g, std::size_t n, double v) {
  for (std::size_t i = 0; i < n; ++i) g[i] = std::clamp(g[i], Real(-v), Real(v));
}

template class Optimizer<float>;
template class Optimizer<double>;
template double global_norm<float>(const float*, std::size_t);
template double global_norm<double>(const double*, std::size_t);
template double clip_by_norm<float>(float*, std::size_t, double);
template double clip_by_norm<double>(double*, std::size_t, double);
template void clip_by_value<float>(float*, std::size_t, double);
template void clip_by_value<double>(double*, std::size_t, double);

}  // namespace bptt
