// The numbers behind `bptt diagnose` (include/bptt/diagnose.hpp, docs/diagnostics.md).
//
// Three kinds of passes:
//   1. forward, loss, backward with a dL/dh_t trace: grad_norm_by_step, and the full gradient g;
//   2. per layer k and probe p: forward, dL/dz := 0 (the head sends nothing back), backward with
//      dL/dh_n = a probe v at layer k's units only: the trace of unit u is then vᵀ ∂h^u_n/∂h^u_t
//      for every step t, and dL/dh0 is vᵀ ∂h^u_n/∂h^u_0. The two directions of a layer do not
//      meet within it (each reads only the layer below and its own state), and the layers above
//      get no probe, so one pass serves both. backward() writes its gradients over the saved
//      gate activations, so every probe needs its own forward pass;
//   3. truncated_loss_and_gradients for each window K, against g (causal models only).
//
// Units u = k·D + d in PyTorch's order. The trace is in data order for both directions
// (BackwardOptions::dh_trace); a right-to-left unit's final state h_n is the one after data
// step 1, so its state after data step t (1-based; the trace's row t − 1) is t − 1 steps away.
#include "bptt/diagnose.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "bptt/methods.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

namespace {

// splitmix64: a small counter-based generator, the same numbers on every platform.
struct SplitMix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {  // Box–Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }
};

// A unit vector of n normal draws.
void random_unit(SplitMix& rng, std::vector<double>& v) {
  double n2 = 0;
  for (double& x : v) {
    x = rng.normal();
    n2 += x * x;
  }
  const double inv = n2 > 0 ? 1.0 / std::sqrt(n2) : 0.0;
  for (double& x : v) x *= inv;
  if (n2 == 0 && !v.empty()) v[0] = 1;
}

template <class Real>
double norm2(const Real* p, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += double(p[i]) * double(p[i]);
  return s;
}

std::vector<std::string> gate_names_of(CellKind cell) {
  switch (cell) {
    case CellKind::lstm: return {"i", "f", "g", "o"};
    case CellKind::gru: return {"r", "z", "n"};
    case CellKind::elman: break;
  }
  return {"h"};
}

// Why truncated BPTT cannot run on this model ("" when it can): it runs left to right only.
std::string truncation_refusal(const ModelConfig& cfg) {
  if (cfg.bidirectional)
    return "bidirectional model: truncated BPTT runs left to right only (the right-to-left "
           "direction reads each sequence from its last step)";
  if (cfg.readout == Readout::final_state)
    return "the head reads the final state (readout final): truncated BPTT runs left to right "
           "only";
  return "";
}

}  // namespace

double activation_derivative_bound(Activation phi) {
  switch (phi) {
    case Activation::sigmoid: return 0.25;
    case Activation::tanh:
    case Activation::relu:
    case Activation::identity:
    case Activation::softmax: break;
  }
  return 1.0;
}

std::vector<int> truncation_windows(int T, int max_k) {
  std::vector<int> ks;
  for (int K = 1; K < T && (max_k <= 0 || K <= max_k); K *= 2) ks.push_back(K);
  if (T >= 1) ks.push_back(T);
  return ks;
}

template <class Real>
SingularValue largest_singular_value(const Real* a, int rows, int cols, int ld, double tolerance,
                                     int max_iterations) {
  SingularValue out;
  if (rows <= 0 || cols <= 0) {
    out.converged = true;
    return out;
  }
  double frob = 0;
  for (int i = 0; i < rows; ++i) frob += norm2(a + std::size_t(i) * ld, std::size_t(cols));
  if (frob == 0) {  // the zero matrix: σ = 0
    out.converged = true;
    return out;
  }
  std::vector<double> v(static_cast<std::size_t>(cols)), u(static_cast<std::size_t>(rows)), w(static_cast<std::size_t>(cols));
  SplitMix rng{0x5eed5eedull};
  random_unit(rng, v);
  double lambda = 0;
  for (int it = 1; it <= max_iterations; ++it) {
    for (int i = 0; i < rows; ++i) {  // u = A v
      const Real* row = a + std::size_t(i) * ld;
      double s = 0;
      for (int j = 0; j < cols; ++j) s += double(row[j]) * v[std::size_t(j)];
      u[std::size_t(i)] = s;
    }
    std::fill(w.begin(), w.end(), 0.0);
    for (int i = 0; i < rows; ++i) {  // w = Aᵀ u
      const Real* row = a + std::size_t(i) * ld;
      const double ui = u[std::size_t(i)];
      for (int j = 0; j < cols; ++j) w[std::size_t(j)] += double(row[j]) * ui;
    }
    lambda = 0;  // the Rayleigh quotient vᵀ(AᵀA)v, ‖v‖ = 1
    for (int j = 0; j < cols; ++j) lambda += v[std::size_t(j)] * w[std::size_t(j)];
    double r2 = 0, w2 = 0;
    for (int j = 0; j < cols; ++j) {
      const double r = w[std::size_t(j)] - lambda * v[std::size_t(j)];
      r2 += r * r;
      w2 += w[std::size_t(j)] * w[std::size_t(j)];
    }
    out.iterations = it;
    if (w2 == 0) {  // v fell into the null space: start again from another direction
      random_unit(rng, v);
      continue;
    }
    if (std::sqrt(r2) <= tolerance * lambda) {
      out.converged = true;
      break;
    }
    const double inv = 1.0 / std::sqrt(w2);
    for (int j = 0; j < cols; ++j) v[std::size_t(j)] = w[std::size_t(j)] * inv;
  }
  out.sigma_max = std::sqrt(std::max(lambda, 0.0));
  return out;
}

template <class Real>
Diagnosis diagnose(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                   const DiagnoseOptions& opts) {
  const ModelConfig& cfg = model.cfg;
  // The state is H_out wide (a projection's P): the trace, the probes and W_hh's columns.
  const int T = batch.T, B = batch.B, H = cfg.state_size(), HC = cfg.hidden_size,
            L = cfg.num_layers, D = cfg.directions(), U = cfg.units(), G = cfg.gates(),
            O = cfg.output_size;
  const std::size_t BH = std::size_t(B) * H, TBH = std::size_t(T) * BH;
  Diagnosis d;
  d.T = T;
  d.B = B;
  d.L = L;
  d.H = H;  // the width of the state the numbers are about
  d.D = D;
  for (int u = 0; u < U; ++u)
    d.unit_names.push_back("l" + std::to_string(u / D) + (u % D == 1 ? "_reverse" : ""));

  Workspace<Real> ws(cfg, T, B);
  std::vector<Real> trace(std::size_t(U) * TBH);  // [L·D, T, B, H] in data order
  BackwardOptions<Real> bo;
  bo.dh_trace = trace.data();

  // 1. Full BPTT with the trace: ‖dL/dh_t‖ and the full gradient g.
  Gradients<Real> full(cfg, T, B);
  full.zero();
  full.x.clear();
  forward(model, batch, ws);
  d.loss = loss_and_dz(loss, cfg, batch, ws.z(), ws.yhat(), ws.dz());
  backward(model, batch, ws, full, bo);
  d.full_grad_norm = std::sqrt(norm2(full.params.data(), full.params.size()));
  d.grad_norm_by_step.assign(std::size_t(U), std::vector<double>(std::size_t(T)));
  d.grad_norm_h0.assign(std::size_t(U), 0.0);
  for (int u = 0; u < U; ++u) {
    for (int t = 0; t < T; ++t)
      d.grad_norm_by_step[std::size_t(u)][std::size_t(t)] =
          std::sqrt(norm2(trace.data() + std::size_t(u) * TBH + std::size_t(t) * BH, BH));
    d.grad_norm_h0[std::size_t(u)] = std::sqrt(norm2(full.h0.data() + std::size_t(u) * BH, BH));
  }

  // 2. Probes from the final state of each layer's units.
  d.jacobian_exact = H <= opts.probes;
  d.jacobian_probes = d.jacobian_exact ? H : std::max(1, opts.probes);
  const int P = d.jacobian_probes;
  const double scale = d.jacobian_exact ? 1.0 : double(H) / P;  // E‖uᵀJ‖² = ‖J‖_F² / H
  std::vector<int> len(static_cast<std::size_t>(B));
  for (int b = 0; b < B; ++b) len[std::size_t(b)] = batch.lengths.empty() ? T : int(batch.lengths[std::size_t(b)]);
  d.sequences_by_distance.assign(std::size_t(T) + 1, 0);
  for (int b = 0; b < B; ++b)
    for (int dist = 0; dist <= len[std::size_t(b)]; ++dist) ++d.sequences_by_distance[std::size_t(dist)];
  std::vector<std::vector<double>> sq(std::size_t(U), std::vector<double>(std::size_t(T) + 1, 0.0));
  std::vector<Real> dh_n(std::size_t(U) * BH);
  std::vector<double> u(static_cast<std::size_t>(H));
  Gradients<Real> pg(cfg, T, B);
  pg.x.clear();  // dL/dx is not needed: skip that product
  SplitMix rng{opts.seed * 0x9e3779b97f4a7c15ull + 0x70be};
  const std::size_t TBO = std::size_t(T) * B * O;
  for (int k = 0; k < L; ++k) {
    for (int p = 0; p < P; ++p) {
      std::fill(dh_n.begin(), dh_n.end(), Real(0));
      for (int unit = k * D; unit < (k + 1) * D; ++unit)
        for (int b = 0; b < B; ++b) {
          Real* dst = dh_n.data() + std::size_t(unit) * BH + std::size_t(b) * H;
          if (d.jacobian_exact) {
            dst[p] = Real(1);
          } else {
            random_unit(rng, u);
            for (int i = 0; i < H; ++i) dst[i] = Real(u[std::size_t(i)]);
          }
        }
      forward(model, batch, ws);
      std::fill(ws.dz(), ws.dz() + TBO, Real(0));
      pg.zero();
      BackwardOptions<Real> po;
      po.dh_n = dh_n.data();
      po.dh_trace = trace.data();
      backward(model, batch, ws, pg, po);
      for (int unit = k * D; unit < (k + 1) * D; ++unit) {
        const bool reverse = unit % D == 1;
        const Real* tu = trace.data() + std::size_t(unit) * TBH;
        auto& s = sq[std::size_t(unit)];
        for (int b = 0; b < B; ++b) {
          const int n = len[std::size_t(b)];
          for (int dist = 0; dist < n; ++dist) {
            // The 0-based data step whose state is `dist` steps before the unit's final state:
            // left to right h_{t+1} with t = n − 1 − dist; right to left the state after it has
            // read step t = dist (its final state is the one after step 0).
            const int t = reverse ? dist : n - 1 - dist;
            s[std::size_t(dist)] +=
                scale * norm2(tu + std::size_t(t) * BH + std::size_t(b) * H, std::size_t(H));
          }
          s[std::size_t(n)] += scale * norm2(pg.h0.data() + std::size_t(unit) * BH +
                                                 std::size_t(b) * H,
                                             std::size_t(H));
        }
      }
    }
  }
  d.jacobian_norm_by_distance.assign(std::size_t(U), std::vector<double>(std::size_t(T) + 1));
  for (int unit = 0; unit < U; ++unit)
    for (int dist = 0; dist <= T; ++dist) {
      const int c = d.sequences_by_distance[std::size_t(dist)];
      d.jacobian_norm_by_distance[std::size_t(unit)][std::size_t(dist)] =
          c > 0 ? std::sqrt(sq[std::size_t(unit)][std::size_t(dist)] / c)
                : std::numeric_limits<double>::quiet_NaN();
    }

  // 3. σ_max of W_hh and of its gate blocks; the bound.
  d.gate_names = gate_names_of(cfg.cell);
  const auto views = model.views();
  for (int unit = 0; unit < U; ++unit) {
    const Real* w = views.layers[std::size_t(unit)].w_hh;
    d.w_hh_sigma.push_back(largest_singular_value(w, G * HC, H, H, opts.power_tolerance,
                                                  opts.power_max_iterations));
    std::vector<SingularValue> gates;  // [H, H_out] blocks of W_hh [G·H, H_out]
    for (int g = 0; g < G; ++g)
      gates.push_back(largest_singular_value(w + std::size_t(g) * HC * H, HC, H, H,
                                             opts.power_tolerance, opts.power_max_iterations));
    d.w_hh_gate_sigma.push_back(std::move(gates));
  }
  d.bound_applies = cfg.cell == CellKind::elman;
  const Activation phi = cfg.cell == CellKind::elman ? cfg.nonlinearity : Activation::tanh;
  d.activation = std::string(to_string(phi));
  d.gamma = activation_derivative_bound(phi);
  d.threshold = 1.0 / d.gamma;

  // 4. Truncated gradients against g: causal models only (truncated BPTT runs left to right).
  if (opts.truncation) d.truncation_skipped = truncation_refusal(cfg);
  if (opts.truncation && d.truncation_skipped.empty()) {
    const double gg = norm2(full.params.data(), full.params.size());
    for (int K : truncation_windows(T, opts.max_truncation)) {
      Gradients<Real> gk(cfg, T, B);
      gk.zero();
      gk.x.clear();
      truncated_loss_and_gradients(model, batch, loss, K, gk);
      double dot = 0, kk = 0, diff = 0;
      for (std::size_t i = 0; i < gk.params.size(); ++i) {
        const double a = double(gk.params[i]), b = double(full.params[i]);
        dot += a * b;
        kk += a * a;
        diff += (a - b) * (a - b);
      }
      TruncationBias tb;
      tb.K = K;
      tb.grad_norm = std::sqrt(kk);
      tb.cosine = (kk > 0 && gg > 0) ? dot / (std::sqrt(kk) * std::sqrt(gg))
                                     : (kk == 0 && gg == 0 ? 1.0 : 0.0);
      tb.relative_error = gg > 0 ? std::sqrt(diff / gg) : std::sqrt(diff);
      d.truncation.push_back(tb);
    }
  }
  return d;
}

#define BPTT_INSTANTIATE(Real)                                                                  \
  template Diagnosis diagnose<Real>(const Model<Real>&, const BatchView<Real>&, LossKind,       \
                                    const DiagnoseOptions&);                                    \
  template SingularValue largest_singular_value<Real>(const Real*, int, int, int, double, int);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
