// Recompute: full BPTT with the states kept only at segment starts. See methods.hpp.
#include <algorithm>
#include <cmath>
#include <fmt/core.h>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "bptt/threads.hpp"
#include "methods/recompute_layers.hpp"

namespace bptt {

int default_recompute_interval(int T) {
  return std::max(1, int(std::ceil(std::sqrt(double(std::max(T, 1))))));
}

namespace {

std::size_t workspace_bytes(const ModelConfig& cfg, int T, int B, std::size_t real_size,
                            bool with_dropout) {
  return real_size == sizeof(float) ? Workspace<float>::bytes_for(cfg, T, B, with_dropout)
                                    : Workspace<double>::bytes_for(cfg, T, B, with_dropout);
}

int segments(int T, int K) { return (T + K - 1) / K; }

}  // namespace

std::size_t full_bptt_bytes(const ModelConfig& cfg, int T, int B, std::size_t real_size,
                            bool with_dropout) {
  return workspace_bytes(cfg, T, B, real_size, with_dropout);
}

std::size_t recompute_bytes(const ModelConfig& cfg, int T, int B, int K, std::size_t real_size,
                            bool with_dropout) {
  K = std::clamp(K, 1, T);
  if (recompute_by_layer(cfg)) return recompute_layers_bytes(cfg, T, B, K, real_size, with_dropout);
  const std::size_t UB = std::size_t(cfg.units()) * B;
  const std::size_t state = UB * (std::size_t(cfg.state_size()) +
                                  (cfg.cell == CellKind::lstm ? std::size_t(cfg.hidden_size) : 0));
  const std::size_t ckpt = std::size_t(segments(T, K) + 1) * state;
  // The segment's slice of the batch (x, targets, mask) and its dL/dx, dL/dh0, dL/dc0.
  const std::size_t seg = std::size_t(K) * B * (2 * std::size_t(cfg.input_size) +
                                                std::size_t(cfg.output_size) + 2) +
                          2 * state;
  return workspace_bytes(cfg, K, B, real_size, with_dropout) + (ckpt + seg) * real_size;
}

int recompute_interval_for_budget(const ModelConfig& cfg, int T, int B, std::size_t real_size,
                                  std::size_t budget_bytes, bool with_dropout) {
  if (full_bptt_bytes(cfg, T, B, real_size, with_dropout) <= budget_bytes) return T;
  std::size_t least = std::size_t(-1);
  for (int K = T - 1; K >= 1; --K) {
    const std::size_t need = recompute_bytes(cfg, T, B, K, real_size, with_dropout);
    if (need <= budget_bytes) return K;
    least = std::min(least, need);
  }
  throw Error(ErrorKind::resource, "--memory-budget",
              fmt::format("{:.3g} MB is too little: the backward pass needs at least {:.3g} MB "
                          "(full BPTT {:.3g} MB)",
                          double(budget_bytes) / 1e6, double(least) / 1e6,
                          double(full_bptt_bytes(cfg, T, B, real_size, with_dropout)) / 1e6),
              "raise --memory-budget, or lower --batch or --hidden");
}

template <class Real>
Recompute<Real>::Recompute(const ModelConfig& cfg, int T, int B, int K, bool with_dropout,
                           int threads)
    : cfg_(cfg), T_(T), B_(B), K_(std::clamp(K, 1, std::max(T, 1))),
      threads_(threads > 0 ? threads : ThreadCount::current()),
      seg_grads_(recompute_by_layer(cfg) ? recompute_unit_config(cfg, 0) : cfg, K_, B) {
  if (K < 1)
    throw Error(ErrorKind::value, "--recompute", "the interval must be at least 1 step", "");
  if (recompute_by_layer(cfg)) {
    init_layers(with_dropout);
    return;
  }
  ws_ = std::make_unique<Workspace<Real>>(cfg, K_, B, with_dropout, threads_);
  seg_grads_.params = std::vector<Real>();  // the caller's arena is swapped in: free this one
  const std::size_t UB = std::size_t(cfg.units()) * B, S1 = std::size_t(segments(T, K_) + 1);
  ckpt_h_.assign(S1 * UB * std::size_t(cfg.state_size()), Real(0));
  if (cfg.cell == CellKind::lstm) ckpt_c_.assign(S1 * UB * std::size_t(cfg.hidden_size), Real(0));
}

template <class Real>
Recompute<Real>::~Recompute() = default;  // here, where Layers is complete

template <class Real>
std::size_t Recompute<Real>::bytes() const {
  if (recompute_by_layer(cfg_)) return layers_bytes();
  return ws_->bytes() +
         (ckpt_h_.size() + ckpt_c_.size() + seg_grads_.x.size() + seg_grads_.h0.size() +
          seg_grads_.c0.size() + seg_.x.size() + seg_.y.size() + seg_.mask.size()) *
             sizeof(Real);
}

// seg_ = steps [s, e) of the batch, starting from the checkpoint at s.
template <class Real>
void Recompute<Real>::segment(const BatchArg<Real>& batch, int s, int e) {
  slice_steps(batch, s, e, seg_);
  const std::size_t nh = std::size_t(cfg_.units()) * B_ * cfg_.state_size(),
                    nc = std::size_t(cfg_.units()) * B_ * cfg_.hidden_size;
  const std::size_t i = std::size_t(s / K_);
  seg_.h0.assign(ckpt_h_.begin() + std::ptrdiff_t(i * nh), ckpt_h_.begin() + std::ptrdiff_t((i + 1) * nh));
  if (!ckpt_c_.empty())
    seg_.c0.assign(ckpt_c_.begin() + std::ptrdiff_t(i * nc),
                   ckpt_c_.begin() + std::ptrdiff_t((i + 1) * nc));
  else
    seg_.c0.clear();
}

template <class Real>
double Recompute<Real>::loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                           LossKind loss, Gradients<Real>& grads,
                                           const Dropout* dropout) {
  if (batch.T != T_ || batch.B != B_)
    throw Error(ErrorKind::shape, "recompute",
                fmt::format("sized for T = {}, B = {} but the batch has T = {}, "
                            "B = {}",
                            T_, B_, batch.T, batch.B),
                "construct Recompute for the batch's shape");
  const ThreadCount on_threads(threads_);
  if (recompute_by_layer(cfg_)) return by_layer(model, batch, loss, grads, dropout);
  const ModelConfig& cfg = model.cfg;
  const int S = segments(T_, K_), B = B_, I = cfg.input_size, O = cfg.output_size;
  const std::size_t nh = std::size_t(cfg.units()) * B * cfg.state_size(),
                    nc = std::size_t(cfg.units()) * B * cfg.hidden_size;
  const double W = total_weight<Real>(batch);
  if (!(W > 0))
    throw Error(ErrorKind::value, "loss",
                "every step has weight 0 (all masked or past the lengths)",
                "give at least one step inside a sequence a positive mask value");
  // Checkpoint 0 is the initial state (the batch's, the learned one or zeros).
  initial_states(model, batch, scratch_h_, scratch_c_);
  std::copy(scratch_h_.begin(), scratch_h_.end(), ckpt_h_.begin());
  if (!ckpt_c_.empty()) std::copy(scratch_c_.begin(), scratch_c_.end(), ckpt_c_.begin());
  const auto seg_dropout = [&](int s) {
    Dropout d = dropout ? *dropout : Dropout{};
    const int whole = d.rows > 0 ? d.rows : B;  // elements of the whole batch per step
    d.first = std::uint64_t(s) * std::uint64_t(whole) * std::uint64_t(cfg.output_width());
    return d;
  };

  // Pass one: forward segment by segment, keeping the state at each segment's end.
  for (int i = 0; i < S; ++i) {
    const int s = i * K_, e = std::min(T_, s + K_);
    segment(batch, s, e);
    const Dropout d = seg_dropout(s);
    // Only the states are needed now, except for the last segment, which pass two uses as it is.
    forward(model, seg_, *ws_, dropout ? &d : nullptr, /*head=*/i == S - 1);
    ws_->state_at(e - s, scratch_h_, scratch_c_);
    std::copy(scratch_h_.begin(), scratch_h_.end(), ckpt_h_.begin() + std::ptrdiff_t((i + 1) * nh));
    if (!ckpt_c_.empty())
      std::copy(scratch_c_.begin(), scratch_c_.end(),
                ckpt_c_.begin() + std::ptrdiff_t((i + 1) * nc));
  }

  // Pass two: last segment first (still in the workspace), each with dL/d(its final state)
  // from the segment after it.
  double total = 0;
  dh_n_.clear();
  dc_n_.clear();
  if (grads.x.empty()) seg_grads_.x.clear();
  else seg_grads_.x.resize(std::size_t(K_) * B * I);
  for (int i = S - 1; i >= 0; --i) {
    const int s = i * K_, e = std::min(T_, s + K_);
    const Dropout d = seg_dropout(s);
    if (i != S - 1) {
      segment(batch, s, e);
      forward(model, seg_, *ws_, dropout ? &d : nullptr);
    }
    const double w = total_weight<Real>(seg_);
    const std::size_t nz = std::size_t(e - s) * B * O;
    if (w > 0) {
      total += loss_and_dz(loss, cfg, seg_, ws_->z(), ws_->yhat(), ws_->dz()) * (w / W);
      const Real scale = Real(w / W);
      for (std::size_t j = 0; j < nz; ++j) ws_->dz()[j] *= scale;
    } else {
      std::fill(ws_->dz(), ws_->dz() + nz, Real(0));
    }
    seg_grads_.zero();
    std::swap(seg_grads_.params, grads.params);
    BackwardOptions<Real> opts;
    opts.dh_n = dh_n_.empty() ? nullptr : dh_n_.data();
    opts.dc_n = dc_n_.empty() ? nullptr : dc_n_.data();
    try {
      backward(model, seg_, *ws_, seg_grads_, opts);
    } catch (...) {
      std::swap(seg_grads_.params, grads.params);
      throw;
    }
    std::swap(seg_grads_.params, grads.params);
    if (!grads.x.empty()) {
      Real* dx = grads.x.data() + std::size_t(s) * B * I;
      for (std::size_t j = 0; j < std::size_t(e - s) * B * I; ++j) dx[j] += seg_grads_.x[j];
    }
    dh_n_ = seg_grads_.h0;
    dc_n_ = seg_grads_.c0;
  }
  for (std::size_t j = 0; j < grads.h0.size(); ++j) grads.h0[j] += dh_n_[j];
  for (std::size_t j = 0; j < grads.c0.size() && j < dc_n_.size(); ++j) grads.c0[j] += dc_n_[j];
  // Every segment started from a given state; the learned one gets its share here.
  add_initial_state_gradient(cfg, batch, dh_n_.data(), dc_n_.empty() ? nullptr : dc_n_.data(),
                             grads.params.data());
  return total;
}

template <class Real>
void Recompute<Real>::final_state(std::vector<Real>& h, std::vector<Real>& c) const {
  if (recompute_by_layer(cfg_)) {  // per unit: the last of its S + 1 checkpoints
    const std::size_t S1 = std::size_t(segments(T_, K_) + 1), U = std::size_t(cfg_.units());
    const auto last = [&](const std::vector<Real>& ckpt, std::vector<Real>& out) {
      const std::size_t n = ckpt.size() / (U * S1);
      out.resize(U * n);
      for (std::size_t u = 0; u < U; ++u)
        std::copy(ckpt.begin() + std::ptrdiff_t((u * S1 + S1 - 1) * n),
                  ckpt.begin() + std::ptrdiff_t((u * S1 + S1) * n), out.begin() + std::ptrdiff_t(u * n));
    };
    last(ckpt_h_, h);
    if (ckpt_c_.empty()) c.clear();
    else last(ckpt_c_, c);
    return;
  }
  const std::size_t nh = std::size_t(cfg_.units()) * B_ * cfg_.state_size(),
                    nc = std::size_t(cfg_.units()) * B_ * cfg_.hidden_size;
  const std::size_t S = std::size_t(segments(T_, K_));
  h.assign(ckpt_h_.begin() + std::ptrdiff_t(S * nh), ckpt_h_.begin() + std::ptrdiff_t((S + 1) * nh));
  if (ckpt_c_.empty())
    c.clear();
  else
    c.assign(ckpt_c_.begin() + std::ptrdiff_t(S * nc), ckpt_c_.begin() + std::ptrdiff_t((S + 1) * nc));
}

template class Recompute<float>;
template class Recompute<double>;

}  // namespace bptt
