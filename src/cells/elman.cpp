// Elman cell (torch.nn.RNN, plus φ = sigmoid and identity):
//   s  = x·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh        (G = 1)
//   h  = φ(s)
// Saves: h (the unroller keeps it); φ'(s) is computed from h.
// Backward: ds = dh ⊙ φ'(s);  dL/dh_prev = ds·W_hh (done by the unroller), so dh_prev = 0.
//
// φ is switched on once per call; each case runs a row loop instantiated for that φ, with
// __restrict rows, so the loop over j vectorizes (in float through kernels/vmath.hpp). The float
// entry points are compiled per x86-64 level (BPTT_PER_CPU_LEVEL, kernels/simd.hpp).
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "cells/cell.hpp"
#include "kernels/activations.hpp"
#include "kernels/simd.hpp"

namespace bptt::cells {

namespace {

// gh == nullptr: gi is already the whole pre-activation s.
template <Activation A, class Real>
BPTT_ALWAYS_INLINE void elman_forward_row(int H, const Real* __restrict gi,
                                          const Real* __restrict gh, Real* __restrict h) {
  if (gh)
    for (int j = 0; j < H; ++j) h[j] = kernels::activate<A>(gi[j] + gh[j]);
  else
    for (int j = 0; j < H; ++j) h[j] = kernels::activate<A>(gi[j]);
}

template <Activation A, class Real>
BPTT_ALWAYS_INLINE void elman_forward_rows(const CellStep<Real>& s) {
  const int H = s.H;
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    if (!s.valid[b]) {
      std::copy(s.h_prev + r, s.h_prev + r + H, s.h + r);
      continue;
    }
    elman_forward_row<A>(H, s.gates + r, s.gh ? s.gh + r : nullptr, s.h + r);
  }
}

// ds = dh ⊙ φ'(s), φ' from the saved h.
template <Activation A, class Real>
BPTT_ALWAYS_INLINE void elman_backward_row(int H, const Real* __restrict h,
                                           const Real* __restrict dh, Real* __restrict ds,
                                           Real* __restrict dprev) {
  for (int j = 0; j < H; ++j) {
    ds[j] = kernels::backprop_from_output<A>(h[j], dh[j]);
    dprev[j] = Real(0);
  }
}

template <Activation A, class Real>
BPTT_ALWAYS_INLINE void elman_backward_rows(const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  const int H = s.H;
  for (int b = 0; b < s.B; ++b) {
    const std::size_t r = std::size_t(b) * H;
    Real* ds = s.gates + r;  // dgi, over the x-side pre-activations
    Real* dsh = d.dgh + r;
    if (!s.valid[b]) {
      std::fill(ds, ds + H, Real(0));
      if (dsh != ds) std::fill(dsh, dsh + H, Real(0));
      std::copy(d.dh + r, d.dh + r + H, d.dh_prev + r);
      continue;
    }
    elman_backward_row<A>(H, s.h + r, d.dh + r, ds, d.dh_prev + r);
    if (dsh != ds) std::copy(ds, ds + H, dsh);
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void elman_forward_any(Activation phi, const CellStep<Real>& s) {
  switch (phi) {
    case Activation::identity: return elman_forward_rows<Activation::identity>(s);
    case Activation::tanh: return elman_forward_rows<Activation::tanh>(s);
    case Activation::relu: return elman_forward_rows<Activation::relu>(s);
    case Activation::sigmoid: return elman_forward_rows<Activation::sigmoid>(s);
    case Activation::softmax:  // not elementwise; rejected by ModelConfig::validate
      return elman_forward_rows<Activation::softmax>(s);
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void elman_backward_any(Activation phi, const CellStep<Real>& s,
                                           const CellStepGrad<Real>& d) {
  switch (phi) {
    case Activation::identity: return elman_backward_rows<Activation::identity>(s, d);
    case Activation::tanh: return elman_backward_rows<Activation::tanh>(s, d);
    case Activation::relu: return elman_backward_rows<Activation::relu>(s, d);
    case Activation::sigmoid: return elman_backward_rows<Activation::sigmoid>(s, d);
    case Activation::softmax:  // as above
      return elman_backward_rows<Activation::softmax>(s, d);
  }
}

BPTT_PER_CPU_LEVEL(void, elman_forward_f32, (Activation phi, const CellStep<float>& s),
                   (phi, s), elman_forward_any(phi, s);)

BPTT_PER_CPU_LEVEL(void, elman_backward_f32, (Activation phi, const CellStep<float>& s,
                                              const CellStepGrad<float>& d),
                   (phi, s, d), elman_backward_any(phi, s, d);)

}  // namespace

template <class Real>
void elman_forward(Activation phi, const CellStep<Real>& s) {
  if constexpr (std::is_same_v<Real, float>)
    elman_forward_f32(phi, s);
  else
    elman_forward_any(phi, s);
}

template <class Real>
void elman_backward(Activation phi, const CellStep<Real>& s, const CellStepGrad<Real>& d) {
  if constexpr (std::is_same_v<Real, float>)
    elman_backward_f32(phi, s, d);
  else
    elman_backward_any(phi, s, d);
}

template void elman_forward<float>(Activation, const CellStep<float>&);
template void elman_forward<double>(Activation, const CellStep<double>&);
template void elman_backward<float>(Activation, const CellStep<float>&, const CellStepGrad<float>&);
template void elman_backward<double>(Activation, const CellStep<double>&,
                                     const CellStepGrad<double>&);

}  // namespace bptt::cells
