// Readout activation θ and the three losses, each with its gradient dL/dz next to it.
#include "bptt/loss.hpp"

#include <algorithm>
#include <cmath>

#include "bptt/error.hpp"
#include "kernels/activations.hpp"

namespace bptt {

template <class Real>
void apply_output_activation(Activation theta, int N, int O, const Real* z, Real* yhat) {
  if (theta == Activation::identity) {  // one vectorized copy; nothing to do when yhat is z
    if (yhat != z) std::copy(z, z + std::size_t(N) * O, yhat);
    return;
  }
  for (int n = 0; n < N; ++n) {
    const Real* zr = z + std::size_t(n) * O;
    Real* yr = yhat + std::size_t(n) * O;
    if (theta == Activation::softmax) {
      const Real m = *std::max_element(zr, zr + O);
      Real sum = 0;
      for (int o = 0; o < O; ++o) sum += (yr[o] = std::exp(zr[o] - m));
      for (int o = 0; o < O; ++o) yr[o] /= sum;
    } else {
      for (int o = 0; o < O; ++o) yr[o] = kernels::activate(theta, zr[o]);
    }
  }
}

namespace {

// dz = dL/dŷ pulled back through θ, for one row. g holds dL/dŷ on entry.
template <class Real>
void through_theta(Activation theta, int O, const Real* yhat, const Real* g, Real* dz) {
  if (theta == Activation::softmax) {
    // Jacobian of softmax: dz_o = ŷ_o (g_o − Σ_p g_p ŷ_p).
    Real dot = 0;
    for (int o = 0; o < O; ++o) dot += g[o] * yhat[o];
    for (int o = 0; o < O; ++o) dz[o] = yhat[o] * (g[o] - dot);
  } else {
    for (int o = 0; o < O; ++o) dz[o] = g[o] * kernels::derivative_from_output(theta, yhat[o]);
  }
}

}  // namespace

template <class Real>
double loss_and_dz(LossKind loss, const ModelConfig& cfg, const BatchArg<Real>& batch, const Real* z,
                   const Real* yhat, Real* dz) {
  batch.check_targets(cfg, loss, "batch");
  const int T = batch.T, B = batch.B, O = cfg.output_size;
  double W = 0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) W += double(batch.weight(t, b));
  if (!(W > 0))
    throw Error(ErrorKind::value, "data: mask",
                "no step has a positive weight (mask · [t < lengths])",
                "at least one step must count towards the loss");

  double total = 0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      const std::size_t row = std::size_t(t) * B + b;
      const Real* zr = z + row * O;
      const Real* yr = yhat + row * O;
      Real* dr = dz + row * O;
      const double w = double(batch.weight(t, b));
      if (w == 0) {
        std::fill(dr, dr + O, Real(0));
        continue;
      }
      const Real scale = Real(w / W);
      double l = 0;
      switch (loss) {
        case LossKind::mse: {
          const Real* target = batch.y.data() + row * O;
          for (int o = 0; o < O; ++o) {
            const Real d = yr[o] - target[o];
            l += double(d) * double(d);
            dr[o] = scale * Real(2) * d / Real(O);  // dL/dŷ, pulled through θ below
          }
          through_theta(cfg.output_activation, O, yr, dr, dr);
          l /= O;
          break;
        }
        case LossKind::bce: {
          const Real* target = batch.y.data() + row * O;
          for (int o = 0; o < O; ++o) {
            const Real x = zr[o], y = target[o];
            l += double(std::max(x, Real(0)) - x * y + std::log1p(std::exp(-std::abs(x))));
            dr[o] = scale * (kernels::sigmoid(x) - y) / Real(O);
          }
          l /= O;
          break;
        }
        case LossKind::xent: {
          const std::int64_t cls = batch.classes[row];
          const Real m = *std::max_element(zr, zr + O);
          Real sum = 0;
          for (int o = 0; o < O; ++o) sum += std::exp(zr[o] - m);
          const Real lse = m + std::log(sum);
          l = double(lse - zr[cls]);
          for (int o = 0; o < O; ++o) dr[o] = scale * std::exp(zr[o] - lse);
          dr[cls] -= scale;
          break;
        }
      }
      total += w * l;
    }
  return total / W;
}

template void apply_output_activation<float>(Activation, int, int, const float*, float*);
template void apply_output_activation<double>(Activation, int, int, const double*, double*);
template double loss_and_dz<float>(LossKind, const ModelConfig&, const BatchView<float>&, const float*,
                                   const float*, float*);
template double loss_and_dz<double>(LossKind, const ModelConfig&, const BatchView<double>&,
                                    const double*, const double*, double*);

}  // namespace bptt
