// Layer normalization of rows (Ba et al. 2016), forward and backward side by side; the
// layer-normalized cells (model.hpp, docs/math.md section 8d) run it on both products of every
// step and, for LSTM, on the cell state (lstm.cpp).
//
//   μ = mean(v),  r = 1/sqrt(mean((v − μ)²) + ε),  ε = 1e-5   (biased variance, as nn.LayerNorm)
//   v̂ = (v − μ)·r,  out = v̂ ⊙ γ + β
// Backward, with g = dL/dout:
//   dγ += g ⊙ v̂,  dβ += g,  dv̂ = g ⊙ γ
//   dv = r·(dv̂ − mean(dv̂) − v̂ ⊙ mean(dv̂ ⊙ v̂))
//
// The row sums run over kLanes independent partial sums (a fixed order, so results are
// reproducible), which GCC turns into vector adds without -ffast-math; a single running sum
// would stay scalar.
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/simd.hpp"

namespace bptt::cells {

inline constexpr double kLayerNormEps = 1e-5;

namespace ln_detail {

inline constexpr int kLanes = 16;

// Σ_j f(j) for j in [0, n), in kLanes partial sums combined in a fixed order.
template <class Real, class F>
BPTT_ALWAYS_INLINE Real lane_sum(int n, F&& f) {
  Real acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int q = 0; q < kLanes; ++q) acc[q] += f(j + q);
  for (; j < n; ++j) acc[0] += f(j);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int q = 0; q < w; ++q) acc[q] += acc[q + w];
  return acc[0];
}

}  // namespace ln_detail

// One row's μ and r (see above).
template <class Real>
BPTT_ALWAYS_INLINE void ln_stats(int n, const Real* __restrict v, Real& mean, Real& rstd) {
  const Real mu = ln_detail::lane_sum<Real>(n, [&](int j) { return v[j]; }) / Real(n);
  const Real var = ln_detail::lane_sum<Real>(n, [&](int j) {
    const Real e = v[j] - mu;
    return e * e;
  }) / Real(n);
  mean = mu;
  rstd = Real(1) / std::sqrt(var + Real(kLayerNormEps));
}

// dv̂'s two means for the row backward: m1 = mean(dv̂), m2 = mean(dv̂ ⊙ v̂).
template <class Real>
BPTT_ALWAYS_INLINE void ln_grad_means(int n, const Real* __restrict dvhat,
                                      const Real* __restrict vhat, Real& m1, Real& m2) {
  m1 = ln_detail::lane_sum<Real>(n, [&](int j) { return dvhat[j]; }) / Real(n);
  m2 = ln_detail::lane_sum<Real>(n, [&](int j) { return dvhat[j] * vhat[j]; }) / Real(n);
}

// Rows of n values: v[i·ldv, +n) holds the product on entry and out = v̂ ⊙ γ + β on exit (β
// may be nullptr: 0); ASSIGNS vhat [rows, n] (contiguous) and rstd [rows].
template <class Real>
void layer_norm_forward(int rows, int n, Real* v, std::size_t ldv, const Real* gamma,
                        const Real* beta, Real* vhat, Real* rstd);

// Rows of n values, g = dL/dout [rows, ldg], vhat and rstd as forward saved them: ASSIGNS dv
// [rows, n] (contiguous; dv may be the memory of g, when ldg = n, or of vhat: in place),
// ACCUMULATES dgamma += Σ_rows g ⊙ v̂ [n] and, unless nullptr, dbeta += Σ_rows g [n].
template <class Real>
void layer_norm_backward(int rows, int n, const Real* g, std::size_t ldg, const Real* gamma,
                         const Real* vhat, const Real* rstd, Real* dv, Real* dgamma, Real* dbeta);

}  // namespace bptt::cells
