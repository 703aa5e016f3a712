// The online approximations' driver (include/bptt/methods.hpp, OnlineGradient): the state of B
// sequences, one step at a time: the stack's step with its local derivatives (online_step.cpp),
// the loss of the step and the head's exact gradient, then the method's update of its estimate
// (uoro.cpp, kf_rtrl.cpp, snap1.cpp, eprop.cpp). online_loss_and_gradients runs it over a
// batch with fixed parameters: `bptt grad --method uoro|kf-rtrl|snap1|eprop`.
#include <algorithm>
#include <cmath>

#include "bptt/error.hpp"
#include "bptt/loss.hpp"
#include "bptt/methods.hpp"
#include "bptt/precision.hpp"
#include "kernels/gemm.hpp"
#include "methods/online.hpp"

namespace bptt {

std::string to_string(OnlineMethod m) {
  switch (m) {
    case OnlineMethod::uoro: return "uoro";
    case OnlineMethod::kf_rtrl: return "kf-rtrl";
    case OnlineMethod::snap1: return "snap1";
    case OnlineMethod::eprop: return "eprop";
  }
  return "?";
}

void require_online_support(OnlineMethod m, const ModelConfig& cfg, const std::string& where) {
  const std::string name = to_string(m);
  require_options(cfg, {.causal = true, .layer_norm = false, .zoneout = false}, where, name);
  if (cfg.proj_size > 0)
    throw Error(ErrorKind::usage, where, name + " does not handle projections (--proj-size)",
                "leave out --proj-size, or use bptt or rtrl");
  if (cfg.initial_state == InitialState::learned)
    throw Error(ErrorKind::usage, where, name + " does not learn an initial state",
                "leave out --learn-initial-state, or use bptt or rtrl");
  if ((m == OnlineMethod::snap1 || m == OnlineMethod::eprop) && cfg.num_layers != 1)
    throw Error(ErrorKind::usage, where,
                name + " is defined for one layer (the model has " +
                    std::to_string(cfg.num_layers) + ")",
                "use one layer, or uoro or kf-rtrl for a stacked model");
  if (MatmulScope::current() == Matmul::bf16)
    throw Error(ErrorKind::usage, where,
                name + " runs its products in the model's own precision, not bf16",
                "use --dtype f32, or a BPTT method for bf16");
}

std::size_t online_bytes(OnlineMethod m, const ModelConfig& cfg, int B, std::size_t real_size) {
  const std::size_t H = std::size_t(cfg.hidden_size), G = std::size_t(cfg.gates()),
                    L = std::size_t(cfg.num_layers), Q = cfg.cell == CellKind::lstm ? 2 : 1;
  const std::size_t S = L * Q * H, P = online::recurrent_count(cfg), bias = cfg.bias ? 1 : 0;
  std::size_t per = S;  // the state
  switch (m) {
    case OnlineMethod::uoro: per += S + P + 1; break;
    case OnlineMethod::kf_rtrl:
      for (std::size_t k = 0; k < L; ++k) {
        const std::size_t in = std::size_t(cfg.layer_input_size(int(k)));
        if (cfg.cell == CellKind::gru)
          per += 2 * G * H * S + (in + bias) + (H + bias);
        else
          per += G * H * S + in + H + 2 * bias;
      }
      break;
    case OnlineMethod::snap1: per += Q * P; break;
    case OnlineMethod::eprop: per += P; break;
  }
  return std::size_t(B) * per * real_size;
}

template <class Real>
struct OnlineGradient<Real>::Impl {
  Impl(OnlineMethod m, const ModelConfig& config, int batch, std::uint64_t s)
      : method(m), cfg(config), B(batch), seed(s), step(config, batch) {
    switch (m) {
      case OnlineMethod::uoro: est = online::make_uoro<Real>(config, batch); break;
      case OnlineMethod::kf_rtrl: est = online::make_kf_rtrl<Real>(config, batch); break;
      case OnlineMethod::snap1: est = online::make_snap1<Real>(config, batch); break;
      case OnlineMethod::eprop: est = online::make_eprop<Real>(config, batch); break;
    }
    const std::size_t LBH = std::size_t(config.num_layers) * batch * config.hidden_size;
    h.assign(LBH, Real(0));
    c.assign(config.cell == CellKind::lstm ? LBH : 0, Real(0));
    z.resize(std::size_t(batch) * config.output_size);
    yhat.resize(z.size());
    dz.resize(std::size_t(config.output_size));
    e.resize(std::size_t(batch) * config.hidden_size);
    one.T = 1, one.B = 1;
  }
  OnlineMethod method;
  ModelConfig cfg;
  int B;
  std::uint64_t seed;
  std::int64_t t = 0;
  online::Step<Real> step;
  std::unique_ptr<online::Estimator<Real>> est;
  std::vector<Real> h, c;           // [L, B, H] the state
  std::vector<Real> z, yhat, dz, e;  // the head's [B, O], one row's dz, ∂ℓ/∂h_top [B, H]
  Batch<Real> one;                   // one step of one sequence, for loss_and_dz
};

template <class Real>
OnlineGradient<Real>::OnlineGradient(OnlineMethod m, const ModelConfig& cfg, int B,
                                     std::uint64_t seed) {
  cfg.validate("model");
  require_online_support(m, cfg, to_string(m));
  if (B < 1) throw Error(ErrorKind::value, to_string(m), "needs at least one sequence", "");
  impl_ = std::make_unique<Impl>(m, cfg, B, seed);
}

template <class Real>
OnlineGradient<Real>::~OnlineGradient() = default;

template <class Real>
OnlineMethod OnlineGradient<Real>::method() const {
  return impl_->method;
}

template <class Real>
void OnlineGradient<Real>::reset(const std::vector<Real>& h0, const std::vector<Real>& c0) {
  Impl& s = *impl_;
  const bool lstm = s.cfg.cell == CellKind::lstm;
  if (!h0.empty() && h0.size() != s.h.size())
    throw Error(ErrorKind::shape, to_string(s.method) + ": h0", "must be [L, B, H]", "");
  if (lstm && !c0.empty() && c0.size() != s.c.size())
    throw Error(ErrorKind::shape, to_string(s.method) + ": c0", "must be [L, B, H]", "");
  if (h0.empty())
    std::fill(s.h.begin(), s.h.end(), Real(0));
  else
    std::copy(h0.begin(), h0.end(), s.h.begin());
  if (lstm) {
    if (c0.empty())
      std::fill(s.c.begin(), s.c.end(), Real(0));
    else
      std::copy(c0.begin(), c0.end(), s.c.begin());
  }
  s.est->reset();
}

template <class Real>
double OnlineGradient<Real>::step(const Model<Real>& model, LossKind loss, const Real* x,
                                  const Real* y, const std::int64_t* classes, const Real* w,
                                  double norm, std::vector<Real>& grad,
                                  const unsigned char* valid) {
  Impl& s = *impl_;
  const ModelConfig& cfg = s.cfg;
  const int B = s.B, H = cfg.hidden_size, O = cfg.output_size, L = cfg.num_layers;
  grad.assign(model.params.size(), Real(0));
  s.step.forward(model, x, s.h, s.c);
  // The head: z = h_top W_oᵀ + b_o (h_top itself without one), ŷ = θ(z).
  const auto V = model.views();
  const Real* ht = s.step.layer(L - 1).h.data();
  if (V.w_o) {
    kernels::gemm(false, true, B, O, H, Real(1), ht, H, V.w_o, H, Real(0), s.z.data(), O);
    for (int b = 0; b < B; ++b)
      for (int o = 0; o < O; ++o) s.z[std::size_t(b) * O + o] += V.b_o[o];
  } else {
    std::copy(ht, ht + std::size_t(B) * H, s.z.begin());
  }
  apply_output_activation(cfg.output_activation, B, O, s.z.data(), s.yhat.data());
  // Each row's loss, e = ∂ℓ/∂h_top, and the head's own gradient (exact in every method).
  ParamViews<Real> D(cfg, grad.data());
  std::fill(s.e.begin(), s.e.end(), Real(0));
  double total = 0;
  for (int b = 0; b < B; ++b) {
    const double wb = w ? double(w[b]) : 1.0;
    if ((valid && !valid[b]) || wb == 0) continue;
    if (loss == LossKind::xent)
      s.one.classes.assign(classes + b, classes + b + 1), s.one.y.clear();
    else
      s.one.y.assign(y + std::size_t(b) * O, y + std::size_t(b + 1) * O), s.one.classes.clear();
    const double l = loss_and_dz(loss, cfg, s.one, s.z.data() + std::size_t(b) * O,
                                 s.yhat.data() + std::size_t(b) * O, s.dz.data());
    total += l * wb / norm;
    const Real scale = Real(wb / norm);
    for (auto& v : s.dz) v *= scale;
    const Real* hb = ht + std::size_t(b) * H;
    Real* eb = s.e.data() + std::size_t(b) * H;
    if (!V.w_o) {
      std::copy(s.dz.begin(), s.dz.end(), eb);
      continue;
    }
    for (int o = 0; o < O; ++o) {
      const Real d = s.dz[std::size_t(o)];
      D.b_o[o] += d;
      for (int j = 0; j < H; ++j) {
        D.w_o[std::size_t(o) * H + j] += d * hb[j];
        eb[j] += V.w_o[std::size_t(o) * H + j] * d;
      }
    }
  }
  s.est->update(model, s.step, s.e.data(), valid, s.t, s.seed, grad.data());
  // The new state, for the sequences that advanced.
  const std::size_t BH = std::size_t(B) * H;
  for (int k = 0; k < L; ++k) {
    const auto& l = s.step.layer(k);
    for (int b = 0; b < B; ++b) {
      if (valid && !valid[b]) continue;
      const std::size_t at = std::size_t(k) * BH + std::size_t(b) * H;
      std::copy(l.h.begin() + std::ptrdiff_t(b * H), l.h.begin() + std::ptrdiff_t((b + 1) * H),
                s.h.begin() + std::ptrdiff_t(at));
      if (!s.c.empty())
        std::copy(l.c.begin() + std::ptrdiff_t(b * H), l.c.begin() + std::ptrdiff_t((b + 1) * H),
                  s.c.begin() + std::ptrdiff_t(at));
    }
  }
  ++s.t;
  return total;
}

template <class Real>
void OnlineGradient<Real>::state(std::vector<Real>& h, std::vector<Real>& c) const {
  h = impl_->h;
  c = impl_->c;
}

template <class Real>
std::int64_t OnlineGradient<Real>::step_count() const {
  return impl_->t;
}

template <class Real>
void OnlineGradient<Real>::set_step_count(std::int64_t t) {
  impl_->t = t;
}

template <class Real>
std::vector<std::pair<std::string, std::vector<Real>*>> OnlineGradient<Real>::carried() {
  std::vector<std::pair<std::string, std::vector<Real>*>> out;
  for (const auto& c : impl_->est->carried()) out.emplace_back(c.name, c.data);
  return out;
}

template <class Real>
std::size_t OnlineGradient<Real>::bytes() const {
  std::size_t n = impl_->h.size() + impl_->c.size();
  for (const auto& c : impl_->est->carried()) n += c.data->size();
  return n * sizeof(Real);
}

template <class Real>
double online_loss_and_gradients(OnlineMethod m, std::uint64_t seed, const Model<Real>& model,
                                 const BatchArg<Real>& batch, LossKind loss,
                                 Gradients<Real>& grads) {
  const ModelConfig& cfg = model.cfg;
  const std::string name = to_string(m);
  model.check("model");
  require_online_support(m, cfg, name);
  require_no_masks<Real>(batch, name, name);
  batch.check_shapes(cfg, "batch");
  batch.check_targets(cfg, loss, "batch");
  grads.check(cfg, batch.T, batch.B);
  const int T = batch.T, B = batch.B, I = cfg.input_size, O = cfg.output_size;
  const double norm = total_weight<Real>(batch);
  if (!(norm > 0))
    throw Error(ErrorKind::value, name, "every step has weight 0 (all masked or past the lengths)",
                "give at least one step inside a sequence a positive mask value");
  std::vector<Real> h0, c0;
  initial_states(model, batch, h0, c0);
  OnlineGradient<Real> run(m, cfg, B, seed);
  run.reset(h0, c0);
  std::vector<Real> w(static_cast<std::size_t>(B)), g;
  std::vector<unsigned char> valid(static_cast<std::size_t>(B));
  double total = 0;
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      w[std::size_t(b)] = batch.weight(t, b);
      valid[std::size_t(b)] = batch.valid(t, b) ? 1 : 0;
    }
    const std::size_t tb = std::size_t(t) * B;
    total += run.step(model, loss, batch.x.data() + tb * I,
                      batch.y.empty() ? nullptr : batch.y.data() + tb * O,
                      batch.classes.empty() ? nullptr : batch.classes.data() + tb, w.data(), norm,
                      g, valid.data());
    for (std::size_t i = 0; i < g.size(); ++i) grads.params[i] += g[i];
  }
  return total;
}

template class OnlineGradient<float>;
template class OnlineGradient<double>;
template double online_loss_and_gradients<float>(OnlineMethod, std::uint64_t, const Model<float>&,
                                                 const BatchView<float>&, LossKind,
                                                 Gradients<float>&);
template double online_loss_and_gradients<double>(OnlineMethod, std::uint64_t,
                                                  const Model<double>&, const BatchView<double>&,
                                                  LossKind, Gradients<double>&);

}  // namespace bptt
