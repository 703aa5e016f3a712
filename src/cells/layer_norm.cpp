// Layer normalization of rows: see layer_norm.hpp for the equations. The float entry points are
// compiled per x86-64 level (BPTT_PER_CPU_LEVEL, kernels/simd.hpp).
#include "cells/layer_norm.hpp"

#include <type_traits>

namespace bptt::cells {

namespace {

template <class Real>
BPTT_ALWAYS_INLINE void forward_row(int n, Real* v, const Real* __restrict gamma,
                                    const Real* __restrict beta, Real* __restrict vhat,
                                    Real& rstd) {
  Real mu, r;
  ln_stats(n, v, mu, r);
  rstd = r;
  for (int j = 0; j < n; ++j) vhat[j] = (v[j] - mu) * r;
  if (beta)
    for (int j = 0; j < n; ++j) v[j] = vhat[j] * gamma[j] + beta[j];
  else
    for (int j = 0; j < n; ++j) v[j] = vhat[j] * gamma[j];
}

template <class Real>
BPTT_ALWAYS_INLINE void forward_rows(int rows, int n, Real* v, std::size_t ldv, const Real* gamma,
                                     const Real* beta, Real* vhat, Real* rstd) {
  for (int i = 0; i < rows; ++i)
    forward_row(n, v + std::size_t(i) * ldv, gamma, beta, vhat + std::size_t(i) * n, rstd[i]);
}

// dv may alias g or vhat: every element is read before it is written, one j at a time.
template <class Real>
BPTT_ALWAYS_INLINE void backward_row(int n, const Real* g, const Real* __restrict gamma,
                                     const Real* vhat, Real r, Real* dv,
                                     Real* __restrict dgamma, Real* __restrict dbeta) {
  const Real m1 = ln_detail::lane_sum<Real>(n, [&](int j) { return g[j] * gamma[j]; }) / Real(n);
  const Real m2 =
      ln_detail::lane_sum<Real>(n, [&](int j) { return g[j] * gamma[j] * vhat[j]; }) / Real(n);
  for (int j = 0; j < n; ++j) dgamma[j] += g[j] * vhat[j];
  if (dbeta)
    for (int j = 0; j < n; ++j) dbeta[j] += g[j];
  for (int j = 0; j < n; ++j) dv[j] = r * (g[j] * gamma[j] - m1 - vhat[j] * m2);
}

template <class Real>
BPTT_ALWAYS_INLINE void backward_rows(int rows, int n, const Real* g, std::size_t ldg,
                                      const Real* gamma, const Real* vhat, const Real* rstd,
                                      Real* dv, Real* dgamma, Real* dbeta) {
  for (int i = 0; i < rows; ++i)
    backward_row(n, g + std::size_t(i) * ldg, gamma, vhat + std::size_t(i) * n, rstd[i],
                 dv + std::size_t(i) * n, dgamma, dbeta);
}

BPTT_PER_CPU_LEVEL(void, forward_f32,
                   (int rows, int n, float* v, std::size_t ldv, const float* gamma,
                    const float* beta, float* vhat, float* rstd),
                   (rows, n, v, ldv, gamma, beta, vhat, rstd),
                   forward_rows(rows, n, v, ldv, gamma, beta, vhat, rstd);)

BPTT_PER_CPU_LEVEL(void, backward_f32,
                   (int rows, int n, const float* g, std::size_t ldg, const float* gamma,
                    const float* vhat, const float* rstd, float* dv, float* dgamma,
                    float* dbeta),
                   (rows, n, g, ldg, gamma, vhat, rstd, dv, dgamma, dbeta),
                   backward_rows(rows, n, g, ldg, gamma, vhat, rstd, dv, dgamma, dbeta);)

}  // namespace

template <class Real>
void layer_norm_forward(int rows, int n, Real* v, std::size_t ldv, const Real* gamma,
                        const Real* beta, Real* vhat, Real* rstd) {
  if constexpr (std::is_same_v<Real, float>)
    forward_f32(rows, n, v, ldv, gamma, beta, vhat, rstd);
  else
    forward_rows(rows, n, v, ldv, gamma, beta, vhat, rstd);
}

template <class Real>
void layer_norm_backward(int rows, int n, const Real* g, std::size_t ldg, const Real* gamma,
                         const Real* vhat, const Real* rstd, Real* dv, Real* dgamma, Real* dbeta) {
  if constexpr (std::is_same_v<Real, float>)
    backward_f32(rows, n, g, ldg, gamma, vhat, rstd, dv, dgamma, dbeta);
  else
    backward_rows(rows, n, g, ldg, gamma, vhat, rstd, dv, dgamma, dbeta);
}

template void layer_norm_forward<float>(int, int, float*, std::size_t, const float*, const float*,
                                        float*, float*);
template void layer_norm_forward<double>(int, int, double*, std::size_t, const double*,
                                         const double*, double*, double*);
template void layer_norm_backward<float>(int, int, const float*, std::size_t, const float*,
                                         const float*, const float*, float*, float*, float*);
template void layer_norm_backward<double>(int, int, const double*, std::size_t, const double*,
                                          const double*, const double*, double*, double*, double*);

}  // namespace bptt::cells
