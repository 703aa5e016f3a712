// GRU cell (torch.nn.GRU), gates fused in PyTorch order r, z, n (G = 3):
//   gi = x·W_ihᵀ + b_ih = [gi_r | gi_z | gi_n]      gh = h_prev·W_hhᵀ + b_hh = [gh_r | gh_z | gh_n]
//   r = σ(gi_r + gh_r)    z = σ(gi_z + gh_z)
//   n = tanh(gi_n + r ⊙ gh_n)          (the reset is applied after W_hn·h + b_hn)
//   h = (1 − z) ⊙ n + z ⊙ h_prev
// Saves: r, z, n (over gi) and gh_n (aux).
// Backward, with dh = dL/dh:
//   δn = dh ⊙ (1−z) ⊙ (1−n²)          δz = dh ⊙ (h_prev − n) ⊙ z(1−z)
//   δr = δn ⊙ gh_n ⊙ r(1−r)
//   x side:  dgi = [δr | δz | δn]      h side: dgh = [δr | δz | δn ⊙ r]
//   dL/dh_prev = dgh·W_hh (unroller) + dh ⊙ z   → dh_prev = dh ⊙ z.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cells/cell.hpp"
#include "kernels/activations.hpp"

namespace bptt::cells {

template <class Real>
void gru_forward(const CellStep<Real>& s) {
  const int H = s.H;
  const std::size_t G = 3 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    if (!s.valid[b]) {
      std::copy(s.h_prev + r, s.h_prev + r + H, s.h + r);
      continue;
    }
    Real* a = s.gates + b * G;
    const Real* ah = s.gh + b * G;
    Real *rg = a, *zg = a + H, *ng = a + 2 * H;
    const Real* hp = s.h_prev + r;
    Real *h = s.h + r, *ghn = s.aux + r;
    for (int j = 0; j < H; ++j) {
      rg[j] = kernels::sigmoid(rg[j] + ah[j]);
      zg[j] = kernels::sigmoid(zg[j] + ah[H + j]);
      ghn[j] = ah[2 * H + j];
      ng[j] = kernels::tanh(ng[j] + rg[j] * ghn[j]);
      h[j] = (Real(1) - zg[j]) * ng[j] + zg[j] * hp[j];
    }
  }
}

template <class Real>
void gru_backward(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  const int H = s.H;
  const std::size_t G = 3 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* dx = d.dgi + b * G;
    Real* dhh = d.dgh + b * G;
    const Real* dh = d.dh + r;
    Real* dprev = d.dh_prev + r;
    if (!s.valid[b]) {
      std::fill(dx, dx + G, Real(0));
      std::fill(dhh, dhh + G, Real(0));
      std::copy(dh, dh + H, dprev);
      continue;
    }
    const Real* a = s.gates + b * G;
    const Real *rg = a, *zg = a + H, *ng = a + 2 * H;
    const Real *hp = s.h_prev + r, *ghn = s.aux + r;
    for (int j = 0; j < H; ++j) {
      const Real dn = dh[j] * (Real(1) - zg[j]) * (Real(1) - ng[j] * ng[j]);
      const Real dz = dh[j] * (hp[j] - ng[j]) * zg[j] * (Real(1) - zg[j]);
      const Real dr = dn * ghn[j] * rg[j] * (Real(1) - rg[j]);
      dx[j] = dhh[j] = dr;
      dx[H + j] = dhh[H + j] = dz;
      dx[2 * H + j] = dn;
      dhh[2 * H + j] = dn * rg[j];
      dprev[j] = dh[j] * zg[j];
    }
  }
}

template void gru_forward<float>(const CellStep<float>&);
template void gru_forward<double>(const CellStep<double>&);
template void gru_backward<float>(const CellStep<float>&, const CellStepGrad<float>&);
template void gru_backward<double>(const CellStep<double>&, const CellStepGrad<double>&);

}  // namespace bptt::cells
