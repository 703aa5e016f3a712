#include <fmt/core.h>

#include <algorithm>

#include "bptt/error.hpp"
#include "bptt/limits.hpp"
#include "bptt/threads.hpp"

#include "bptt/unroll.hpp"
#include "kernels/matmul.hpp"
#include "kernels/step_gemm.hpp"
#include "support/aligned.hpp"
#include "unroll/chunks.hpp"
#include "unroll/direction.hpp"
#include "unroll/x_product.hpp"

namespace bptt {

// The layout of a Workspace, walked once to size it (base = nullptr) and once to place its
// pointers: per unit u
//   gates (dgi after backward) | h | c (LSTM) | aux (GRU) | dgh (GRU) | m, dh_proj (projection) |
//   x_rev (d = 1) | ln_x, ln_x_rstd, ln_h, ln_h_rstd, ln_c_stats (layer norm)
// per layer k: out (D = 2) | drop_mask, drop_in (dropout, k >= 1)
// then the shared z (dz overwrites it) | yhat | top (final-state readout), and per direction
// the Scratch.
// 64 steps per chunk keep the chunk's GEMMs large (64·B rows) and its memory small.
// backward = false: a workspace for forward_packed alone (Inference, bptt/infer.hpp), without
// what only backward() reads (dgh, dh_proj, the Scratch's gradient rows) or the packed weights.
struct WorkspacePlan {
  // ring: the steps kept of the values only backward reads (saved_steps()); T with backward.
  template <class Real>
  static std::size_t walk(const ModelConfig& cfg, int T, int B, bool with_dropout,
                          Workspace<Real>* ws, bool backward = true, int ring = 0) {
    const std::size_t t = std::size_t(T), b = std::size_t(B), H = std::size_t(cfg.hidden_size),
                      r = backward ? t : std::size_t(ring),
                      GH = std::size_t(cfg.gates()) * H, O = std::size_t(cfg.output_size),
                      HO = std::size_t(cfg.state_size()), P = std::size_t(cfg.proj_size),
                      W = std::size_t(cfg.output_width());
    const bool lstm = cfg.cell == CellKind::lstm, gru = cfg.cell == CellKind::gru;
    const int D = cfg.directions(), chunk = std::min(T, 64);
    // Each buffer from a cache line's start (support/aligned.hpp): buf_ holds a line more
    // than the offsets reach.
    std::size_t off = 0;
    const auto take = [&](std::size_t n) -> Real* {
      Real* p = ws && n ? support::line_start(ws->buf_.data()) + off : nullptr;
      off += support::whole_lines<Real>(n);
      return p;
    };
    for (int u = 0; u < cfg.units(); ++u) {
      const std::size_t in = std::size_t(cfg.layer_input_size(u / D));
      Real* p[13];
      p[0] = take(r * b * GH);                        // gates
      p[1] = take((t + 1) * b * HO);                  // h
      p[2] = take(lstm ? (t + 1) * b * H : 0);        // c
      p[3] = take(gru ? r * b * H : 0);               // aux
      p[4] = take(P ? r * b * H : 0);                 // m
      p[5] = take(P && backward ? t * b * P : 0);     // dh_proj
      p[6] = take(u % D == 1 ? t * b * in : 0);       // x_rev
      p[7] = take(gru && backward ? t * b * GH : 0);  // dgh
      const bool ln = cfg.layer_norm;
      p[8] = take(ln ? r * b * GH : 0);               // ln_x
      p[9] = take(ln ? r * b : 0);                    // ln_x_rstd
      p[10] = take(ln ? r * b * GH : 0);              // ln_h
      p[11] = take(ln ? r * b : 0);                   // ln_h_rstd
      p[12] = take(ln && lstm ? r * b * 2 : 0);       // ln_c_stats
      if (ws)
        for (int i = 0; i < 13; ++i) ws->unit_[i].push_back(p[i]);
    }
    for (int k = 0; k < cfg.num_layers; ++k) {
      Real* p[3];
      p[0] = take(D == 2 ? t * b * W : 0);                       // out
      p[1] = take(with_dropout && k > 0 ? t * b * W : 0);        // drop_mask
      p[2] = take(with_dropout && k > 0 ? t * b * W : 0);        // drop_in
      if (ws)
        for (int i = 0; i < 3; ++i) ws->layer_[i].push_back(p[i]);
    }
    Real* z = take(t * b * O);
    Real* yhat = take(t * b * O);
    Real* top = take(cfg.readout == Readout::final_state ? t * b * W : 0);
    if (ws) ws->z_ = ws->dz_ = z, ws->yhat_ = yhat, ws->top_ = top;
    // One packed matrix set at a time per direction: forward W_hhᵀ, W_ihᵀ, then W_hrᵀ; backward
    // W_hh then W_hr; the readout W_oᵀ.
    std::size_t packed_x = 0;
    for (int k = 0; k < cfg.num_layers; ++k)
      packed_x = std::max(packed_x, kernels::packed_size<Real>(int(GH), cfg.layer_input_size(k)));
    const std::size_t proj_fwd = P ? kernels::packed_size<Real>(int(P), int(H)) : 0,
                      proj_bwd = P ? kernels::packed_size<Real>(int(H), int(P)) : 0;
    const std::size_t packed =
        std::max({kernels::packed_size<Real>(int(GH), int(HO)) + packed_x + proj_fwd,
                  kernels::packed_size<Real>(int(HO), int(GH)) + proj_bwd,
                  kernels::packed_size<Real>(int(O), int(W))});
    const std::size_t bwd = backward ? 1 : 0;
    for (int d = 0; d < D; ++d) {
      typename Workspace<Real>::Scratch s;
      s.gh_step = take(b * GH);
      s.dh_chunk = take(bwd * std::size_t(chunk) * b * HO);
      s.dh_step = take(bwd * b * HO);
      s.dh_carry = take(bwd * b * HO);
      s.dc_carry = take(bwd * b * H);
      s.dm_step = take(P ? bwd * b * H : 0);
      s.dm_prev = take(P ? bwd * b * H : 0);
      s.zeros = take(std::max(P ? b * H : 0, GH));
      s.step_bias = take(GH);
      s.packed_w = take(bwd * packed);
      if (ws) ws->scratch_.push_back(s);
    }
    if (ws) ws->chunk_ = chunk;
    return off + support::line_slack<Real>();
  }
};

template <class Real>
std::size_t Workspace<Real>::bytes_for(const ModelConfig& cfg, int T, int B, bool with_dropout) {
  return WorkspacePlan::walk<Real>(cfg, T, B, with_dropout, nullptr) * sizeof(Real) +
         std::size_t(T) * B;
}

template <class Real>
Workspace<Real>::Workspace(const ModelConfig& cfg, int T, int B, bool with_dropout, int threads)
    : cfg_(cfg), threads_(threads > 0 ? threads : ThreadCount::current()), T_(T), B_(B),
      H_(cfg.hidden_size), D_(cfg.directions()), L_(cfg.num_layers), chunk_(0), cell_(cfg.cell),
      HO_(cfg.state_size()) {
  cfg.validate("workspace");
  if (T < 1 || B < 1)
    throw Error(ErrorKind::value, "workspace",
                fmt::format("T = {}, B = {}: a workspace needs at least one step and one sequence",
                            T, B));
  if (threads < 0)
    throw Error(ErrorKind::value, "workspace",
                fmt::format("threads = {} (0: the calling thread's count, else at least 1)",
                            threads));
  {  // refused before allocating; in double first, since T·B·H of absurd options overflows
    const double rough = double(T) * B * cfg.units() * cfg.hidden_size *
                         (cfg.gates() + 4.0 + cfg.output_size) * sizeof(Real);
    check_memory(rough > 1e18 ? rough : double(bytes_for(cfg, T, B, with_dropout)), "workspace",
                 fmt::format("the BPTT workspace for T = {}, B = {}, H = {}, L = {}", T, B,
                             cfg.hidden_size, cfg.num_layers),
                 "use a smaller batch, sequence length or hidden size; train's --recompute or "
                 "--memory-budget keep less");
  }
  allocate(with_dropout, /*backward=*/true);
}

template <class Real>
void Workspace<Real>::allocate(bool with_dropout, bool backward) {
  set_matmul(MatmulScope::current());
  buf_.assign(WorkspacePlan::walk<Real>(cfg_, T_, B_, with_dropout, nullptr, backward, ring_),
              Real(0));
  WorkspacePlan::walk<Real>(cfg_, T_, B_, with_dropout, this, backward, ring_);
  valid_.assign(std::size_t(T_) * B_, 1);
  len_.assign(std::size_t(B_), T_);
  steps_ = T_;
}

template <class Real>
Workspace<Real>::Workspace(const ModelConfig& cfg, int T, int B, int threads, ForwardOnly)
    : forward_only_(true), cfg_(cfg), threads_(threads), T_(T), B_(B), H_(cfg.hidden_size),
      D_(cfg.directions()), L_(cfg.num_layers), chunk_(0),
      ring_(unroll::forward_ring_steps<Real>(cfg, T, B, threads)), cell_(cfg.cell),
      HO_(cfg.state_size()) {
  check_memory(double(bytes_for_forward(cfg, T, B, threads)), "inference",
               fmt::format("the inference workspace for T = {}, B = {}, H = {}, L = {}", T, B,
                           cfg.hidden_size, cfg.num_layers),
               "use a smaller batch or hidden size");
  allocate(/*with_dropout=*/false, /*backward=*/false);
}

template <class Real>
std::size_t Workspace<Real>::bytes_for_forward(const ModelConfig& cfg, int T, int B, int threads) {
  return WorkspacePlan::walk<Real>(cfg, T, B, false, nullptr, false,
                                   unroll::forward_ring_steps<Real>(cfg, T, B, threads)) *
             sizeof(Real) +
         std::size_t(T) * B;
}

template <class Real>
void Workspace<Real>::set_matmul(Matmul m) {
  kernels::Products::of<Real>(m, "workspace");  // refuses bf16 for a double model
  matmul_ = m;
}

template <class Real>
void Workspace<Real>::set_threads(int threads) {
  if (threads < 1)
    throw Error(ErrorKind::value, "workspace",
                fmt::format("threads = {}, not at least 1", threads));
  threads_ = threads;
}

template <class Real>
void Workspace<Real>::begin(int T, std::span<const std::int64_t> lengths) {
  steps_ = T;
  for (int b = 0; b < B_; ++b) len_[std::size_t(b)] = lengths.empty() ? T : int(lengths[std::size_t(b)]);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B_; ++b) valid_[std::size_t(t) * B_ + b] = t < len_[std::size_t(b)];
}

template <class Real>
Real* Workspace<Real>::gates(int u) { return unit_[0][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::h(int u) { return unit_[1][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::c(int u) { return unit_[2][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::aux(int u) { return unit_[3][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::m(int u) { return unit_[4][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::dh_proj(int u) { return unit_[5][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::x_rev(int u) { return unit_[6][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::ln_x(int u) { return unit_[8][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::ln_x_rstd(int u) { return unit_[9][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::ln_h(int u) { return unit_[10][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::ln_h_rstd(int u) { return unit_[11][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::ln_c_stats(int u) { return unit_[12][std::size_t(u)]; }
template <class Real>
Real* Workspace<Real>::dgi(int u) { return gates(u); }
template <class Real>
Real* Workspace<Real>::dgh(int u) {
  return cell_ == CellKind::gru ? unit_[7][std::size_t(u)] : dgi(u);
}
template <class Real>
Real* Workspace<Real>::out(int k) {
  return D_ == 1 ? h(k) + std::size_t(B_) * HO_ : layer_[0][std::size_t(k)];
}
template <class Real>
Real* Workspace<Real>::drop_mask(int k) { return k > 0 ? layer_[1][std::size_t(k)] : nullptr; }
template <class Real>
Real* Workspace<Real>::drop_in(int k) { return k > 0 ? layer_[2][std::size_t(k)] : nullptr; }

template <class Real>
void Workspace<Real>::reserve_regularization(bool input, bool recurrent, bool zoneout,
                                            bool output, bool weight) {
  const std::size_t t = std::size_t(T_), b = std::size_t(B_), U = std::size_t(L_ * D_),
                    H = std::size_t(H_), HO = std::size_t(HO_), D = std::size_t(D_),
                    GH = std::size_t(cfg_.gates()) * H;
  const auto size = [](std::vector<Real>& v, bool on, std::size_t n) {
    if (on && v.size() < n) v.assign(n, Real(0));
  };
  size(reg_x_, input, t * b * std::size_t(cfg_.input_size));
  size(reg_h_, recurrent, U * t * b * HO);
  size(reg_bar_, zoneout, U * t * b * H);
  size(reg_top_, output, t * b * std::size_t(cfg_.output_width()));
  size(reg_w_, weight, D * GH * HO);
  size(reg_keep_, zoneout || recurrent, D * b * (2 * HO + H));
}

template <class Real>
Real* Workspace<Real>::x_masked() { return reg_x_.empty() ? nullptr : reg_x_.data(); }
template <class Real>
Real* Workspace<Real>::h_masked(int u) {
  return reg_h_.empty() ? nullptr : reg_h_.data() + std::size_t(u) * T_ * B_ * HO_;
}
template <class Real>
Real* Workspace<Real>::zo_bar(int u) {
  return reg_bar_.empty() ? nullptr : reg_bar_.data() + std::size_t(u) * T_ * B_ * H_;
}
template <class Real>
Real* Workspace<Real>::top_masked() { return reg_top_.empty() ? nullptr : reg_top_.data(); }
template <class Real>
Real* Workspace<Real>::w_dropped(int d) {
  return reg_w_.empty() ? nullptr
                        : reg_w_.data() + std::size_t(d) * cfg_.gates() * H_ * HO_;
}
template <class Real>
Real* Workspace<Real>::dh_keep(int d) {
  return reg_keep_.empty() ? nullptr : reg_keep_.data() + std::size_t(d) * B_ * (2 * HO_ + H_);
}
template <class Real>
Real* Workspace<Real>::dh_masked(int d) {
  return reg_keep_.empty() ? nullptr : dh_keep(d) + std::size_t(B_) * HO_;
}
template <class Real>
Real* Workspace<Real>::dc_keep(int d) {
  return reg_keep_.empty() ? nullptr : dh_keep(d) + 2 * std::size_t(B_) * HO_;
}

template <class Real>
void Workspace<Real>::state_at(int t, std::vector<Real>& h, std::vector<Real>& c) {
  const int U = L_ * D_;
  const std::size_t BHO = std::size_t(B_) * HO_, BH = std::size_t(B_) * H_;
  h.resize(std::size_t(U) * BHO);
  for (int u = 0; u < U; ++u)
    std::copy(this->h(u) + t * BHO, this->h(u) + (t + 1) * BHO, h.begin() + std::ptrdiff_t(u * BHO));
  if (cell_ != CellKind::lstm) {
    c.clear();
    return;
  }
  c.resize(std::size_t(U) * BH);
  for (int u = 0; u < U; ++u)
    std::copy(this->c(u) + t * BH, this->c(u) + (t + 1) * BH, c.begin() + std::ptrdiff_t(u * BH));
}

template <class Real>
void Workspace<Real>::step_states(std::vector<Real>& h, std::vector<Real>& c) {
  const int U = L_ * D_, T = steps_;
  const auto gather = [&](int width, const auto& buffer, std::vector<Real>& out) {
    const std::size_t per = std::size_t(T) * B_ * width;
    out.resize(std::size_t(U) * per);
    for (int u = 0; u < U; ++u)
      unroll::to_data_order(u % D_ == 1, len_, T, B_, width, buffer(u) + std::size_t(B_) * width,
                            out.data() + std::size_t(u) * per);
  };
  gather(HO_, [&](int u) { return this->h(u); }, h);
  if (cell_ == CellKind::lstm)
    gather(H_, [&](int u) { return this->c(u); }, c);
  else
    c.clear();
}

template <class Real>
Gradients<Real>::Gradients(const ModelConfig& cfg, int T, int B, bool with_x)
    : params(param_count(cfg)),
      x(with_x ? std::size_t(T) * B * cfg.input_size : 0),
      h0(std::size_t(cfg.units()) * B * cfg.state_size()),
      c0(cfg.cell == CellKind::lstm ? std::size_t(cfg.units()) * B * cfg.hidden_size : 0) {}

template <class Real>
void Gradients<Real>::check(const ModelConfig& cfg, int T, int B) const {
  const std::size_t b = std::size_t(B), units = std::size_t(cfg.units()),
                    nx = std::size_t(T) * b * std::size_t(cfg.input_size);
  const auto expect = [](std::size_t have, std::size_t want, const char* name, const char* dims) {
    if (have != want)
      throw Error(ErrorKind::shape, std::string("gradients: ") + name,
                  fmt::format("has {} elements, expected {} = {}", have, dims, want),
                  "construct the Gradients for (model.cfg, T, B) of the batch");
  };
  expect(params.size(), param_count(cfg), "params", "param_count(cfg)");
  if (!x.empty() && x.size() < nx)
    throw Error(ErrorKind::shape, "gradients: x",
                fmt::format("has {} elements, fewer than [T, B, I] = {} (empty skips dL/dx)",
                            x.size(), nx));
  expect(h0.size(), units * b * std::size_t(cfg.state_size()), "h0", "[L·D, B, H_out]");
  expect(c0.size(), cfg.cell == CellKind::lstm ? units * b * std::size_t(cfg.hidden_size) : 0,
         "c0", "[L·D, B, H] (LSTM; empty otherwise)");
}

template <class Real>
void Gradients<Real>::zero() {
  for (auto* v : {&params, &x, &h0, &c0}) std::fill(v->begin(), v->end(), Real(0));
}

template class Workspace<float>;
template class Workspace<double>;
template struct Gradients<float>;
template struct Gradients<double>;

}  // namespace bptt
