// GRU cell (torch.nn.GRU), gates fused in PyTorch order r, z, n (G = 3):
//   gi = x·W_ihᵀ + b_ih = [gi_r | gi_z | gi_n]      gh = h_prev·W_hhᵀ + b_hh = [gh_r | gh_z | gh_n]
//   r = σ(gi_r + gh_r)    z = σ(gi_z + gh_z)
//   n = tanh(gi_n + r ⊙ gh_n)          (the reset is applied after W_hn·h + b_hn)
//   h = (1 − z) ⊙ n + z ⊙ h_prev
// Saves: r, z, n (over gi) and gh_n (aux); backward overwrites r, z, n with dgi.
// Backward, with dh = dL/dh:
//   δn = dh ⊙ (1−z) ⊙ (1−n²)          δz = dh ⊙ (h_prev − n) ⊙ z(1−z)
//   δr = δn ⊙ gh_n ⊙ r(1−r)
//   x side:  dgi = [δr | δz | δn]      h side: dgh = [δr | δz | δn ⊙ r]
//   dL/dh_prev = dgh·W_hh (unroller) + dh ⊙ z   → dh_prev = dh ⊙ z.
//
// Each row's loop over j is a separate function whose pointers are __restrict (gate blocks,
// state rows and gradient rows never overlap; dgi and dgh are separate for the GRU), so GCC
// vectorizes it; in float, σ and tanh are the kernels/vmath.hpp versions. The float entry
// points are compiled per x86-64 level (BPTT_PER_CPU_LEVEL, kernels/simd.hpp).
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "cells/cell.hpp"
#include "kernels/activations.hpp"
#include "kernels/simd.hpp"

namespace bptt::cells {

namespace {

// Row kernel: a = [r | z | n] holds the x-side pre-activations on entry (the n block without
// b_in when kBiasN: then bn = b_in) and r, z, n on exit; ah is the row of h-side pre-activations
// (all three blocks). r and z in one loop, then n and the state: two short loops run faster than
// one long one (which spills registers).
template <bool kBiasN, class Real>
BPTT_ALWAYS_INLINE void gru_forward_row(int H, Real* __restrict a, const Real* __restrict ah,
                                        const Real* __restrict bn, const Real* __restrict hp,
                                        Real* __restrict ghn, Real* __restrict h) {
  for (int j = 0; j < 2 * H; ++j) a[j] = kernels::sigmoid(a[j] + ah[j]);  // r, z
  const Real* __restrict rg = a;
  const Real* __restrict zg = a + H;
  Real* __restrict ng = a + 2 * H;
  for (int j = 0; j < H; ++j) {
    const Real z = zg[j], hn = ah[2 * H + j];
    const Real xn = kBiasN ? ng[j] + bn[j] : ng[j];
    const Real n = kernels::tanh(xn + rg[j] * hn);
    ng[j] = n;
    ghn[j] = hn;
    h[j] = (Real(1) - z) * n + z * hp[j];
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void gru_forward_rows(const CellStep<Real>& s) {
  const int H = s.H;
  const std::size_t G = 3 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    if (!s.valid[b]) {
      std::copy(s.h_prev + r, s.h_prev + r + H, s.h + r);
      continue;
    }
    Real* a = s.gates + b * G;
    if (s.bias_n)
      gru_forward_row<true>(H, a, s.gh + b * G, s.bias_n, s.h_prev + r, s.aux + r, s.h + r);
    else
      gru_forward_row<false>(H, a, s.gh + b * G, s.bias_n, s.h_prev + r, s.aux + r, s.h + r);
  }
}

// Row kernel, in place: rg, zg, ng hold r, z, n as saved by forward on entry and [δr | δz | δn]
// (dgi) on exit; hp, ghn as saved; dhh = [δr | δz | δn ⊙ r].
template <class Real>
BPTT_ALWAYS_INLINE void gru_backward_row(int H, Real* __restrict rg, Real* __restrict zg,
                                         Real* __restrict ng, const Real* __restrict hp,
                                         const Real* __restrict ghn, const Real* __restrict dh,
                                         Real* __restrict dhh, Real* __restrict dprev) {
  for (int j = 0; j < H; ++j) {
    const Real r = rg[j], z = zg[j], n = ng[j];
    const Real dn = dh[j] * (Real(1) - z) * (Real(1) - n * n);
    const Real dz = dh[j] * (hp[j] - n) * z * (Real(1) - z);
    const Real dr = dn * ghn[j] * r * (Real(1) - r);
    rg[j] = dr;
    zg[j] = dz;
    ng[j] = dn;
    dhh[j] = dr;
    dhh[H + j] = dz;
    dhh[2 * H + j] = dn * r;
    dprev[j] = dh[j] * z;
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void gru_backward_rows(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  const int H = s.H;
  const std::size_t G = 3 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* a = s.gates + b * G;  // becomes dgi
    Real* dhh = d.dgh + b * G;
    if (!s.valid[b]) {
      std::fill(a, a + G, Real(0));
      std::fill(dhh, dhh + G, Real(0));
      std::copy(d.dh + r, d.dh + r + H, d.dh_prev + r);
      continue;
    }
    gru_backward_row(H, a, a + H, a + 2 * H, s.h_prev + r, s.aux + r, d.dh + r, dhh,
                     d.dh_prev + r);
  }
}

BPTT_PER_CPU_LEVEL(void, gru_forward_f32, (const CellStep<float>& s), (s), gru_forward_rows(s);)

BPTT_PER_CPU_LEVEL(void, gru_backward_f32, (const CellStep<float>& s,
                                            const CellStepGrad<float>& d),
                   (s, d), gru_backward_rows(s, d);)

}  // namespace

template <class Real>
void gru_forward(const CellStep<Real>& s) {
  if constexpr (std::is_same_v<Real, float>)
    gru_forward_f32(s);
  else
    gru_forward_rows(s);
}

template <class Real>
void gru_backward(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  if constexpr (std::is_same_v<Real, float>)
    gru_backward_f32(s, d);
  else
    gru_backward_rows(s, d);
}

template void gru_forward<float>(const CellStep<float>&);
template void gru_forward<double>(const CellStep<double>&);
template void gru_backward<float>(const CellStep<float>&, const CellStepGrad<float>&);
template void gru_backward<double>(const CellStep<double>&, const CellStepGrad<double>&);

}  // namespace bptt::cells
