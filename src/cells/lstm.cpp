// LSTM cell (torch.nn.LSTM), gates fused in PyTorch order i, f, g, o (G = 4):
//   a = x·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh            [B, 4H] = [a_i | a_f | a_g | a_o]
//   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//   c = f ⊙ c_prev + i ⊙ g
//   h = o ⊙ tanh(c)
// Saves: the activated gates i, f, g, o (over the pre-activations), c (unroller), tanh(c) (aux).
// Backward, with dh = dL/dh and dc_next = dL/dc from step t+1:
//   dc   = dc_next + dh ⊙ o ⊙ (1 − tanh²c)
//   δo = dh ⊙ tanh(c) ⊙ o(1−o)      δi = dc ⊙ g ⊙ i(1−i)
//   δf = dc ⊙ c_prev ⊙ f(1−f)      δg = dc ⊙ i ⊙ (1−g²)
//   dL/dc_prev = dc ⊙ f;  dL/dh_prev = δ·W_hh (done by the unroller), so dh_prev = 0.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cells/cell.hpp"
#include "kernels/activations.hpp"

namespace bptt::cells {

template <class Real>
void lstm_forward(const CellStep<Real>& s) {
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
    const Real* ah = s.gh + b * G;
    Real *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H;
    const Real *cp = s.c_prev + r;
    Real *c = s.c + r, *h = s.h + r, *tc = s.aux + r;
    for (int j = 0; j < H; ++j) {
      i[j] = kernels::sigmoid(i[j] + ah[j]);
      f[j] = kernels::sigmoid(f[j] + ah[H + j]);
      g[j] = kernels::tanh(g[j] + ah[2 * H + j]);
      o[j] = kernels::sigmoid(o[j] + ah[3 * H + j]);
      c[j] = f[j] * cp[j] + i[j] * g[j];
      tc[j] = kernels::tanh(c[j]);
      h[j] = o[j] * tc[j];
    }
  }
}

template <class Real>
void lstm_backward(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  const int H = s.H;
  const std::size_t G = 4 * std::size_t(H);
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* di = d.dgi + b * G;
    Real* dhh = d.dgh + b * G;
    const Real* dh = d.dh + r;
    Real* dc = d.dc + r;
    Real* dprev = d.dh_prev + r;
    if (!s.valid[b]) {
      std::fill(di, di + G, Real(0));
      std::fill(dhh, dhh + G, Real(0));
      std::copy(dh, dh + H, dprev);
      continue;  // dc passes through unchanged
    }
    const Real* a = s.gates + b * G;
    const Real *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H;
    const Real *cp = s.c_prev + r, *tc = s.aux + r;
    Real *df = di + H, *dg = di + 2 * H, *dout = di + 3 * H;
    for (int j = 0; j < H; ++j) {
      const Real dcj = dc[j] + dh[j] * o[j] * (Real(1) - tc[j] * tc[j]);
      dout[j] = dh[j] * tc[j] * o[j] * (Real(1) - o[j]);
      di[j] = dcj * g[j] * i[j] * (Real(1) - i[j]);
      df[j] = dcj * cp[j] * f[j] * (Real(1) - f[j]);
      dg[j] = dcj * i[j] * (Real(1) - g[j] * g[j]);
      dc[j] = dcj * f[j];
      dprev[j] = Real(0);
    }
    if (dhh != di) std::copy(di, di + G, dhh);
  }
}

template void lstm_forward<float>(const CellStep<float>&);
template void lstm_forward<double>(const CellStep<double>&);
template void lstm_backward<float>(const CellStep<float>&, const CellStepGrad<float>&);
template void lstm_backward<double>(const CellStep<double>&, const CellStepGrad<double>&);

}  // namespace bptt::cells
