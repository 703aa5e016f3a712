// LSTM cell (torch.nn.LSTM), gates fused in PyTorch order i, f, g, o (G = 4):
//   a = x·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh            [B, 4H] = [a_i | a_f | a_g | a_o]
//   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//   c = f ⊙ c_prev + i ⊙ g
//   h = o ⊙ tanh(c)
// Saves: the activated gates i, f, g, o (over the pre-activations) and c (unroller); backward
// recomputes tanh(c) and overwrites the gates with δi, δf, δg, δo.
// Backward, with dh = dL/dh and dc_next = dL/dc from step t+1:
//   dc   = dc_next + dh ⊙ o ⊙ (1 − tanh²c)
//   δo = dh ⊙ tanh(c) ⊙ o(1−o)      δi = dc ⊙ g ⊙ i(1−i)
//   δf = dc ⊙ c_prev ⊙ f(1−f)      δg = dc ⊙ i ⊙ (1−g²)
//   dL/dc_prev = dc ⊙ f;  dL/dh_prev = δ·W_hh (done by the unroller), so dh_prev = 0.
// With layer norm (model.hpp) the output reads the normalized cell, c itself is carried as is:
//   ĉ = LN(c) = (c − μ)·r,  y = ĉ ⊙ γ_c + β_c,  h = o ⊙ tanh(y)
// Saves μ and r per row (ĉ and tanh(y) are recomputed). Backward:
//   dy = dh ⊙ o ⊙ (1 − tanh²y)     δo = dh ⊙ tanh(y) ⊙ o(1−o)     dγ_c += dy ⊙ ĉ   dβ_c += dy
//   dĉ = dy ⊙ γ_c,  dc = dc_next + r·(dĉ − mean(dĉ) − ĉ ⊙ mean(dĉ ⊙ ĉ))    (layer_norm.hpp)
// and δi, δf, δg, dL/dc_prev from dc as above.
//
// Each row's loop over j is a separate function whose pointers are __restrict (the gate blocks
// of one row, the state rows and the gradient rows never overlap), so GCC vectorizes it; in
// float, σ and tanh are the branch-free kernels/vmath.hpp versions. The float entry points are
// compiled per x86-64 level (BPTT_PER_CPU_LEVEL, kernels/simd.hpp).
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "cells/cell.hpp"
#include "cells/layer_norm.hpp"
#include "kernels/activations.hpp"
#include "kernels/simd.hpp"

namespace bptt::cells {

namespace {

// Row kernel: a = [i | f | g | o] holds the x-side pre-activations on entry (Sum; else the
// whole pre-activations) and the gates on exit; ah is the row of h-side pre-activations (all
// four blocks; unused unless Sum). One loop per function of the gates, then one for the state:
// each loop keeps few constants live, which runs about 15% faster than one loop doing all five
// (the fused loop spills registers).
template <bool Sum, class Real>
BPTT_ALWAYS_INLINE void lstm_forward_row(int H, Real* __restrict a, const Real* __restrict ah,
                                         const Real* __restrict cp, Real* __restrict c,
                                         Real* __restrict h) {
  const auto pre = [&](int j) {
    if constexpr (Sum)
      return a[j] + ah[j];
    else
      return a[j];
  };
  for (int j = 0; j < 2 * H; ++j) a[j] = kernels::sigmoid(pre(j));      // i, f
  for (int j = 2 * H; j < 3 * H; ++j) a[j] = kernels::tanh(pre(j));     // g
  for (int j = 3 * H; j < 4 * H; ++j) a[j] = kernels::sigmoid(pre(j));  // o
  const Real* __restrict i = a;
  const Real* __restrict f = a + H;
  const Real* __restrict g = a + 2 * H;
  const Real* __restrict o = a + 3 * H;
  for (int j = 0; j < H; ++j) {
    const Real cj = f[j] * cp[j] + i[j] * g[j];
    c[j] = cj;
    h[j] = o[j] * kernels::tanh(cj);
  }
}

// The same with layer norm on the cell's output path: c first, then its row statistics, then h.
template <class Real>
BPTT_ALWAYS_INLINE void lstm_ln_forward_row(int H, Real* __restrict a, const Real* __restrict ah,
                                            const Real* __restrict cp, Real* __restrict c,
                                            Real* __restrict h, const Real* __restrict gamma,
                                            const Real* __restrict beta, Real* __restrict stats) {
  for (int j = 0; j < 2 * H; ++j) a[j] = kernels::sigmoid(a[j] + ah[j]);      // i, f
  for (int j = 2 * H; j < 3 * H; ++j) a[j] = kernels::tanh(a[j] + ah[j]);     // g
  for (int j = 3 * H; j < 4 * H; ++j) a[j] = kernels::sigmoid(a[j] + ah[j]);  // o
  const Real* __restrict i = a;
  const Real* __restrict f = a + H;
  const Real* __restrict g = a + 2 * H;
  const Real* __restrict o = a + 3 * H;
  for (int j = 0; j < H; ++j) c[j] = f[j] * cp[j] + i[j] * g[j];
  Real mu, r;
  ln_stats(H, c, mu, r);
  stats[0] = mu, stats[1] = r;
  for (int j = 0; j < H; ++j) h[j] = o[j] * kernels::tanh((c[j] - mu) * r * gamma[j] + beta[j]);
}

template <class Real>
BPTT_ALWAYS_INLINE void lstm_forward_rows(const CellStep<Real>& s) {
  const int H = s.H;
  const std::size_t G = 4 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    if (!s.valid[b]) {
      std::copy(s.h_prev + r, s.h_prev + r + H, s.h + r);
      std::copy(s.c_prev + r, s.c_prev + r + H, s.c + r);
      continue;
    }
    Real* a = s.gates + b * G;
    if (s.ln_c_gamma)  // the unroller always hands a layer-normalized cell gh
      lstm_ln_forward_row(H, a, s.gh + b * G, s.c_prev + r, s.c + r, s.h + r, s.ln_c_gamma,
                          s.ln_c_beta, s.ln_c_stats + 2 * std::size_t(b));
    else if (s.gh)
      lstm_forward_row<true>(H, a, s.gh + b * G, s.c_prev + r, s.c + r, s.h + r);
    else
      lstm_forward_row<false, Real>(H, a, nullptr, s.c_prev + r, s.c + r, s.h + r);
  }
}

// Row kernel, in place: i, f, g, o hold the gates saved by forward on entry and
// [δi | δf | δg | δo] on exit; cp, c = c_{t-1}, c_t as saved by forward (tanh(c_t) is
// recomputed: one tanh per unit costs less than a [T, B, H] buffer); dc in dL/dc_t, out
// dL/dc_{t-1}.
template <class Real>
BPTT_ALWAYS_INLINE void lstm_backward_row(int H, Real* __restrict i, Real* __restrict f,
                                          Real* __restrict g, Real* __restrict o,
                                          const Real* __restrict cp, const Real* __restrict c,
                                          const Real* __restrict dh, Real* __restrict dc,
                                          Real* __restrict dprev) {
  for (int j = 0; j < H; ++j) {
    const Real ij = i[j], fj = f[j], gj = g[j], oj = o[j], tcj = kernels::tanh(c[j]);
    const Real dcj = dc[j] + dh[j] * oj * (Real(1) - tcj * tcj);
    i[j] = dcj * gj * ij * (Real(1) - ij);
    f[j] = dcj * cp[j] * fj * (Real(1) - fj);
    g[j] = dcj * ij * (Real(1) - gj * gj);
    o[j] = dh[j] * tcj * oj * (Real(1) - oj);
    dc[j] = dcj * fj;
    dprev[j] = Real(0);
  }
}

// The same with layer norm on the output path (see the top): dprev holds dĉ between the two
// loops and ends as 0 as above. stats = μ, r of c's row; dgamma, dbeta accumulate.
template <class Real>
BPTT_ALWAYS_INLINE void lstm_ln_backward_row(int H, Real* __restrict i, Real* __restrict f,
                                             Real* __restrict g, Real* __restrict o,
                                             const Real* __restrict cp, const Real* __restrict c,
                                             const Real* __restrict dh, Real* __restrict dc,
                                             Real* __restrict dprev, const Real* __restrict gamma,
                                             const Real* __restrict beta, const Real* stats,
                                             Real* __restrict dgamma, Real* __restrict dbeta) {
  const Real mu = stats[0], r = stats[1];
  for (int j = 0; j < H; ++j) {
    const Real chat = (c[j] - mu) * r, oj = o[j], ty = kernels::tanh(chat * gamma[j] + beta[j]);
    const Real dy = dh[j] * oj * (Real(1) - ty * ty);
    o[j] = dh[j] * ty * oj * (Real(1) - oj);
    dgamma[j] += dy * chat;
    dbeta[j] += dy;
    dprev[j] = dy * gamma[j];
  }
  const Real m1 = ln_detail::lane_sum<Real>(H, [&](int j) { return dprev[j]; }) / Real(H);
  const Real m2 =
      ln_detail::lane_sum<Real>(H, [&](int j) { return dprev[j] * (c[j] - mu) * r; }) / Real(H);
  for (int j = 0; j < H; ++j) {
    const Real ij = i[j], fj = f[j], gj = g[j];
    const Real dcj = dc[j] + r * (dprev[j] - m1 - (c[j] - mu) * r * m2);
    i[j] = dcj * gj * ij * (Real(1) - ij);
    f[j] = dcj * cp[j] * fj * (Real(1) - fj);
    g[j] = dcj * ij * (Real(1) - gj * gj);
    dc[j] = dcj * fj;
    dprev[j] = Real(0);
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void lstm_backward_rows(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  const int H = s.H;
  const std::size_t G = 4 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* a = s.gates + b * G;  // becomes dgi
    Real* dhh = d.dgh + b * G;
    if (!s.valid[b]) {
      std::fill(a, a + G, Real(0));
      if (dhh != a) std::fill(dhh, dhh + G, Real(0));
      std::copy(d.dh + r, d.dh + r + H, d.dh_prev + r);
      continue;  // dc passes through unchanged
    }
    if (s.ln_c_gamma)
      lstm_ln_backward_row(H, a, a + H, a + 2 * H, a + 3 * H, s.c_prev + r, s.c + r, d.dh + r,
                           d.dc + r, d.dh_prev + r, s.ln_c_gamma, s.ln_c_beta,
                           s.ln_c_stats + 2 * std::size_t(b), d.dln_c_gamma, d.dln_c_beta);
    else
      lstm_backward_row(H, a, a + H, a + 2 * H, a + 3 * H, s.c_prev + r, s.c + r, d.dh + r,
                        d.dc + r, d.dh_prev + r);
    if (dhh != a) std::copy(a, a + G, dhh);
  }
}

BPTT_PER_CPU_LEVEL(void, lstm_forward_f32, (const CellStep<float>& s), (s),
                   lstm_forward_rows(s);)

BPTT_PER_CPU_LEVEL(void, lstm_backward_f32, (const CellStep<float>& s,
                                             const CellStepGrad<float>& d),
                   (s, d), lstm_backward_rows(s, d);)

}  // namespace

template <class Real>
void lstm_forward(const CellStep<Real>& s) {
  if constexpr (std::is_same_v<Real, float>)
    lstm_forward_f32(s);
  else
    lstm_forward_rows(s);
}

template <class Real>
void lstm_backward(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  if constexpr (std::is_same_v<Real, float>)
    lstm_backward_f32(s, d);
  else
    lstm_backward_rows(s, d);
}

template void lstm_forward<float>(const CellStep<float>&);
template void lstm_forward<double>(const CellStep<double>&);
template void lstm_backward<float>(const CellStep<float>&, const CellStepGrad<float>&);
template void lstm_backward<double>(const CellStep<double>&, const CellStepGrad<double>&);

}  // namespace bptt::cells
