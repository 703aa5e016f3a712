// Elman cell (torch.nn.RNN, plus φ = sigmoid and identity):
//   s  = x·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh        (G = 1)
//   h  = φ(s)
// Saves: h (the unroller keeps it); φ'(s) is computed from h.
// Backward: ds = dh ⊙ φ'(s);  dL/dh_prev = ds·W_hh (done by the unroller), so dh_prev = 0.
#include <algorithm>
#include <cstddef>

#include "cells/cell.hpp"
#include "kernels/activations.hpp"

namespace bptt::cells {

template <class Real>
void elman_forward(Activation phi, const CellStep<Real>& s) {
  const int H = s.H;
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* h = s.h + r;
    if (!s.valid[b]) {
      std::copy(s.h_prev + r, s.h_prev + r + H, h);
      continue;
    }
    const Real* gi = s.gates + r;
    const Real* gh = s.gh + r;
    for (int j = 0; j < H; ++j) h[j] = kernels::activate(phi, gi[j] + gh[j]);
  }
}

template <class Real>
void elman_backward(Activation phi, const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  const int H = s.H;
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* ds = d.dgi + r;
    Real* dsh = d.dgh + r;
    Real* dprev = d.dh_prev + r;
    const Real* dh = d.dh + r;
    if (!s.valid[b]) {
      std::fill(ds, ds + H, Real(0));
      std::fill(dsh, dsh + H, Real(0));
      std::copy(dh, dh + H, dprev);
      continue;
    }
    const Real* h = s.h + r;
    for (int j = 0; j < H; ++j) {
      ds[j] = dh[j] * kernels::derivative_from_output(phi, h[j]);
      dsh[j] = ds[j];
      dprev[j] = Real(0);
    }
  }
}

template void elman_forward<float>(Activation, const CellStep<float>&);
template void elman_forward<double>(Activation, const CellStep<double>&);
template void elman_backward<float>(Activation, const CellStep<float>&, const CellStepGrad<float>&);
template void elman_backward<double>(Activation, const CellStep<double>&,
                                     const CellStepGrad<double>&);

}  // namespace bptt::cells
