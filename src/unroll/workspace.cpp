#include <fmt/core.h>

#include <algorithm>

#include "bptt/limits.hpp"

#include "bptt/unroll.hpp"
#include "kernels/step_gemm.hpp"
#include "unroll/x_product.hpp"

namespace bptt {

namespace {

// The layout of a Workspace: per layer k one block
//   gates (dgi after backward) | h | c | aux | dgh (GRU) | drop_mask | drop_in
// then the shared part
//   z (dz overwrites it) | yhat | gh_step | dh_chunk | dh_step | dh_carry | dc_carry | step_bias |
//   packed_w.
// 64 steps per chunk keep the chunk's GEMMs large (64·B rows) and its memory small.
struct Layout {
  std::size_t off_h = 0, off_c = 0, off_aux = 0, off_dgh = 0, off_drop = 0, layer_stride = 0;
  std::size_t chunk = 0, packed = 0, shared = 0, total = 0;
  int chunk_steps = 0;
};

template <class Real>
Layout layout(const ModelConfig& cfg, int T, int B, bool with_dropout) {
  const std::size_t t = std::size_t(T), b = std::size_t(B), H = std::size_t(cfg.hidden_size),
                    GH = std::size_t(cfg.gates()) * H, O = std::size_t(cfg.output_size);
  const bool lstm = cfg.cell == CellKind::lstm, gru = cfg.cell == CellKind::gru;
  Layout l;
  std::size_t off = t * b * GH;
  l.off_h = off, off += (t + 1) * b * H;
  l.off_c = off, off += lstm ? (t + 1) * b * H : 0;
  l.off_aux = off, off += gru ? t * b * H : 0;
  l.off_dgh = off, off += gru ? t * b * GH : 0;
  l.off_drop = off, off += with_dropout ? 2 * t * b * H : 0;
  l.layer_stride = off;
  l.chunk_steps = std::min(T, 64);
  l.chunk = std::size_t(l.chunk_steps) * b * H;
  // One packed matrix at a time: W_hhᵀ (forward), W_hh (backward), W_oᵀ (the readout); in
  // forward W_ihᵀ after W_hhᵀ, for a layer whose x-side product is formed in the step.
  std::size_t packed_x = 0;
  for (int k = 0; k < cfg.num_layers; ++k) {
    const int in = k == 0 ? cfg.input_size : cfg.hidden_size;
    if (unroll::x_product_in_step<Real>(cfg, in))
      packed_x = std::max(packed_x, kernels::packed_size<Real>(int(GH), in));
  }
  l.packed = std::max({kernels::packed_size<Real>(int(GH), int(H)) + packed_x,
                       kernels::packed_size<Real>(int(H), int(GH)),
                       kernels::packed_size<Real>(int(O), int(H))});
  l.shared = 2 * t * b * O + b * GH + l.chunk + 3 * b * H + GH + l.packed;
  l.total = l.layer_stride * std::size_t(cfg.num_layers) + l.shared;
  return l;
}

}  // namespace

template <class Real>
std::size_t Workspace<Real>::bytes_for(const ModelConfig& cfg, int T, int B, bool with_dropout) {
  return layout<Real>(cfg, T, B, with_dropout).total * sizeof(Real) + std::size_t(T) * B;
}

template <class Real>
Workspace<Real>::Workspace(const ModelConfig& cfg, int T, int B, bool with_dropout)
    : T_(T), B_(B), H_(cfg.hidden_size), G_(cfg.gates()), L_(cfg.num_layers), cell_(cfg.cell),
      with_dropout_(with_dropout) {
  {  // refused before allocating; in double first, since T·B·H of absurd options overflows
    const double rough = double(T) * B * cfg.num_layers * cfg.hidden_size *
                         (cfg.gates() + 4.0 + cfg.output_size) * sizeof(Real);
    check_memory(rough > 1e18 ? rough : double(bytes_for(cfg, T, B, with_dropout)), "workspace",
                 fmt::format("the BPTT workspace for T = {}, B = {}, H = {}, L = {}", T, B,
                             cfg.hidden_size, cfg.num_layers),
                 "use a smaller batch, sequence length or hidden size; train's --recompute or "
                 "--memory-budget keep less");
  }
  const Layout l = layout<Real>(cfg, T, B, with_dropout);
  const std::size_t t = std::size_t(T), b = std::size_t(B), H = std::size_t(H_),
                    GH = std::size_t(G_) * H, O = std::size_t(cfg.output_size);
  off_h_ = l.off_h, off_c_ = l.off_c, off_aux_ = l.off_aux, off_dgh_ = l.off_dgh;
  off_drop_ = l.off_drop, layer_stride_ = l.layer_stride, chunk_ = l.chunk_steps;
  buf_.assign(l.total, Real(0));
  Real* p = buf_.data() + layer_stride_ * std::size_t(cfg.num_layers);
  z_ = p, p += t * b * O;
  dz_ = z_;
  yhat_ = p, p += t * b * O;
  gh_step_ = p, p += b * GH;
  dh_chunk_ = p, p += l.chunk;
  dh_step_ = p, p += b * H;
  dh_carry_ = p, p += b * H;
  dc_carry_ = p, p += b * H;
  step_bias_ = p, p += GH;
  packed_w_ = p;
  valid_.assign(t * b, 1);
}

template <class Real>
Real* Workspace<Real>::gates(int k) { return buf_.data() + layer_stride_ * std::size_t(k); }
template <class Real>
Real* Workspace<Real>::h(int k) { return gates(k) + off_h_; }
template <class Real>
Real* Workspace<Real>::c(int k) { return cell_ == CellKind::lstm ? gates(k) + off_c_ : nullptr; }
template <class Real>
Real* Workspace<Real>::aux(int k) {
  return cell_ == CellKind::gru ? gates(k) + off_aux_ : nullptr;
}
template <class Real>
Real* Workspace<Real>::dgi(int k) { return gates(k); }
template <class Real>
Real* Workspace<Real>::dgh(int k) {
  return cell_ == CellKind::gru ? gates(k) + off_dgh_ : dgi(k);
}

template <class Real>
void Workspace<Real>::state_at(int t, std::vector<Real>& h, std::vector<Real>& c) {
  const std::size_t BH = std::size_t(B_) * H_, row = std::size_t(t) * BH;
  h.resize(std::size_t(L_) * BH);
  for (int k = 0; k < L_; ++k)
    std::copy(this->h(k) + row, this->h(k) + row + BH, h.begin() + std::ptrdiff_t(k * BH));
  if (cell_ != CellKind::lstm) {
    c.clear();
    return;
  }
  c.resize(h.size());
  for (int k = 0; k < L_; ++k)
    std::copy(this->c(k) + row, this->c(k) + row + BH, c.begin() + std::ptrdiff_t(k * BH));
}

template <class Real>
Real* Workspace<Real>::drop_mask(int k) {
  return with_dropout_ && k > 0 ? gates(k) + off_drop_ : nullptr;
}
template <class Real>
Real* Workspace<Real>::drop_in(int k) {
  return with_dropout_ && k > 0 ? gates(k) + off_drop_ + std::size_t(T_) * B_ * H_ : nullptr;
}

template <class Real>
Gradients<Real>::Gradients(const ModelConfig& cfg, int T, int B, bool with_x)
    : params(param_count(cfg)),
      x(with_x ? std::size_t(T) * B * cfg.input_size : 0),
      h0(std::size_t(cfg.num_layers) * B * cfg.hidden_size),
      c0(cfg.cell == CellKind::lstm ? h0.size() : 0) {}

template <class Real>
void Gradients<Real>::zero() {
  for (auto* v : {&params, &x, &h0, &c0}) std::fill(v->begin(), v->end(), Real(0));
}

template class Workspace<float>;
template class Workspace<double>;
template struct Gradients<float>;
template struct Gradients<double>;

}  // namespace bptt
