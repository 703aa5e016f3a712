// The slow, obvious reference for full BPTT. Everything is written out again here on purpose:
// the cell equations, their derivatives, the readout θ and the losses. Nothing from the fast path
// (kernels, cells, loss) is called, so a bug there cannot hide in both. Loops are plain scalar
// dot products, one step and one sequence at a time; weight gradients are accumulated per step.
//
//   Elman: h' = φ(W_ih x + b_ih + W_hh h + b_hh)
//   LSTM:  i,f,o = σ(·), g = tanh(·) (rows [0,H) [H,2H) [2H,3H) [3H,4H) = i f g o)
//          c' = f c + i g,  h' = o tanh(c')
//   GRU:   r,z = σ(W_x x + b_x + W_h h + b_h), n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//          h' = (1 − z) n + z h
//   LSTM with a projection: h' = W_hr (o tanh(c')).  No bias: b_ih = b_hh = 0.
//   Layer norm: W_ih x and W_hh h are each normalized, LN(v) = (v − mean v)/sqrt(var v + 1e-5),
//   scaled by γ_ih, γ_hh, and only then get b_ih, b_hh; the LSTM's h' = o tanh(LN(c') γ_c + β_c).
//   Bidirectional: the right-to-left direction runs t = len−1..0 from its own initial state; a
//   layer's output at t is [h_t left to right ; h_t right to left].
//   Steps with t ≥ lengths[b] output each direction's final state (and pass their gradient to it).
//   Initial state: the batch's h0/c0, else the learned init.h0/init.c0, else zeros.
//   Masks (the batch's, per sequence): layer 0 reads x ⊙ mask_input; W_hh reads h ⊙
//   mask_recurrent (the GRU's z ⊙ h the plain h) and is itself W_hh ⊙ mask_weight_hh; the head
//   reads its input ⊙ mask_output. Zoneout: h' = k h + (1 − k) h̄', c' the same, with the
//   batch's flags k of the step, else the model's probabilities.
//   Head: z = W_o out_top + b_o, ŷ = θ(z); loss as in bptt/loss.hpp. With the final-state
//   readout the head reads [h_n(d = 0) ; h_n(d = 1)] of the top layer at every step.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/unroll.hpp"

namespace bptt {
namespace {

template <class Real>
Real sigmoid(Real v) {
  return Real(1) / (Real(1) + std::exp(-v));
}

// φ and its derivative written in terms of the output a = φ(v).
template <class Real>
Real phi(Activation f, Real v) {
  switch (f) {
    case Activation::identity: return v;
    case Activation::tanh: return std::tanh(v);
    case Activation::relu: return v > Real(0) ? v : Real(0);
    case Activation::sigmoid: return sigmoid(v);
    case Activation::softmax: break;  // rejected by ModelConfig::validate
  }
  throw Error(ErrorKind::usage, "reference", "softmax is not an elementwise nonlinearity");
}

template <class Real>
Real phi_grad_from_output(Activation f, Real a) {
  switch (f) {
    case Activation::identity: return Real(1);
    case Activation::tanh: return Real(1) - a * a;
    case Activation::relu: return a > Real(0) ? Real(1) : Real(0);
    case Activation::sigmoid: return a * (Real(1) - a);
    case Activation::softmax: break;
  }
  throw Error(ErrorKind::usage, "reference", "softmax is not an elementwise nonlinearity");
}

// out[r] = b[r] + Σ_j W[r, j] v[j] for r in [0, rows): one naive dot product per row (no bias
// when b is nullptr).
template <class Real>
void affine(int rows, int cols, const Real* W, const Real* b, const Real* v, Real* out) {
  for (int r = 0; r < rows; ++r) {
    Real s = b ? b[r] : Real(0);
    for (int j = 0; j < cols; ++j) s += W[std::size_t(r) * cols + j] * v[j];
    out[r] = s;
  }
}

// dW += d ⊗ v, db += d, dv += Wᵀ d (db, dv may be nullptr).
template <class Real>
void affine_backward(int rows, int cols, const Real* W, const Real* d, const Real* v, Real* dW,
                     Real* db, Real* dv) {
  for (int r = 0; r < rows; ++r) {
    if (db) db[r] += d[r];
    for (int j = 0; j < cols; ++j) {
      dW[std::size_t(r) * cols + j] += d[r] * v[j];
      if (dv) dv[j] += W[std::size_t(r) * cols + j] * d[r];
    }
  }
}

// Layer norm of v in place (v := v̂ = (v − μ)/sqrt(σ² + ε)); returns 1/sqrt(σ² + ε).
template <class Real>
Real normalize(std::vector<Real>& v) {
  const double n = double(v.size());
  double mean = 0, var = 0;
  for (Real e : v) mean += double(e);
  mean /= n;
  for (Real e : v) var += (double(e) - mean) * (double(e) - mean);
  const Real r = Real(1 / std::sqrt(var / n + 1e-5));
  for (Real& e : v) e = (e - Real(mean)) * r;
  return r;
}

// Back through out = v̂ γ + β: g = dL/dout on entry, dL/dv on exit; dγ += g v̂, dβ += g (dβ may
// be nullptr).
template <class Real>
void normalize_backward(std::vector<Real>& g, const std::vector<Real>& vhat, Real r,
                        const Real* gamma, Real* dgamma, Real* dbeta) {
  const std::size_t n = g.size();
  double m1 = 0, m2 = 0;
  for (std::size_t j = 0; j < n; ++j) {
    dgamma[j] += g[j] * vhat[j];
    if (dbeta) dbeta[j] += g[j];
    g[j] *= gamma[j];  // dL/dv̂
    m1 += double(g[j]);
    m2 += double(g[j]) * double(vhat[j]);
  }
  m1 /= double(n), m2 /= double(n);
  for (std::size_t j = 0; j < n; ++j) g[j] = r * (g[j] - Real(m1) - vhat[j] * Real(m2));
}

// Everything one unit remembers of one step of one sequence.
template <class Real>
struct Saved {
  std::vector<Real> act;     // [G·H] gate activations (Elman: h')
  std::vector<Real> hn;      // [H] GRU: W_hn h + b_hn
  std::vector<Real> tc;      // [H] LSTM: tanh(c')
  std::vector<Real> m;       // [H] LSTM with a projection: o ⊙ tanh(c'), h' = W_hr m
  std::vector<Real> h_prev;  // [H_out] the state the step started from
  std::vector<Real> c_prev;  // [H] LSTM
  std::vector<Real> in;      // the step's input
  std::vector<Real> xhat, hhat, chat;  // layer norm: LN(W_ih x), LN(W_hh h), LSTM LN(c')
  Real rx = 0, rh = 0, rc = 0;         // and their 1/sqrt(σ² + ε)
  std::vector<Real> h_in;              // what entered W_hh: h_prev ⊙ mask_recurrent
  std::vector<Real> kh, kc;            // zoneout's keep factors of h' and c'
};

// Zoneout's keep factors of row b of unit u at data step t: the batch's flags, else z.
template <class Real>
std::vector<Real> keep_factors(std::span<const Real> flags, double z, int U, int B, int u, int t,
                               int b, int width) {
  std::vector<Real> k(std::size_t(width), static_cast<Real>(z));
  if (!flags.empty())
    for (int j = 0; j < width; ++j)
      k[std::size_t(j)] = flags[((std::size_t(t) * U + u) * B + b) * width + j];
  return k;
}

// θ(z) for one row.
template <class Real>
void readout(Activation theta, int O, const Real* z, Real* y) {
  if (theta == Activation::softmax) {
    Real m = z[0];
    for (int o = 1; o < O; ++o) m = std::max(m, z[o]);
    Real sum = 0;
    for (int o = 0; o < O; ++o) sum += (y[o] = std::exp(z[o] - m));
    for (int o = 0; o < O; ++o) y[o] /= sum;
  } else {
    for (int o = 0; o < O; ++o) y[o] = phi(theta, z[o]);
  }
}

// The loss of one step and its dL/dz (unscaled: the mean over the batch's weight comes later).
template <class Real>
double step_loss(LossKind loss, Activation theta, int O, const Real* zr, const Real* yr,
                 const Real* y, std::int64_t cls, Real* d) {
  double l = 0;
  switch (loss) {
    case LossKind::mse: {
      std::vector<Real> dy(O);
      for (int o = 0; o < O; ++o) {
        const Real e = yr[o] - y[o];
        l += double(e) * double(e) / O;
        dy[o] = Real(2) * e / Real(O);
      }
      // Back through θ.
      if (theta == Activation::softmax) {
        Real dot = 0;
        for (int o = 0; o < O; ++o) dot += dy[o] * yr[o];
        for (int o = 0; o < O; ++o) d[o] = yr[o] * (dy[o] - dot);
      } else {
        for (int o = 0; o < O; ++o) d[o] = dy[o] * phi_grad_from_output(theta, yr[o]);
      }
      break;
    }
    case LossKind::bce:
      for (int o = 0; o < O; ++o) {
        const Real v = zr[o];
        l += double(std::max(v, Real(0)) - v * y[o] + std::log1p(std::exp(-std::abs(v)))) / O;
        d[o] = (sigmoid(v) - y[o]) / Real(O);
      }
      break;
    case LossKind::xent: {
      Real m = zr[0];
      for (int o = 1; o < O; ++o) m = std::max(m, zr[o]);
      Real sum = 0;
      for (int o = 0; o < O; ++o) sum += std::exp(zr[o] - m);
      l = double(m + std::log(sum) - zr[cls]);
      for (int o = 0; o < O; ++o) d[o] = std::exp(zr[o] - m) / sum - (o == cls ? 1 : 0);
      break;
    }
  }
  return l;
}

}  // namespace

// Sequence by sequence: layer by layer, each direction over its steps in its own order (left to
// right t = 0..len−1; right to left t = len−1..0), its output at step t the state after step t
// and past the length its final state; then the head and the loss; then the same backwards.
template <class Real>
double reference_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                    LossKind loss, Gradients<Real>& grads,
                                    std::vector<Real>* yhat) {
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, L = cfg.num_layers, H = cfg.hidden_size;
  const int O = cfg.output_size, I = cfg.input_size, G = cfg.gates(), GH = G * H;
  const int D = cfg.directions(), HO = cfg.state_size(), W = cfg.output_width(),
            P = cfg.proj_size;
  const ParamViews<const Real> V = model.views();
  ParamViews<Real> dV(cfg, grads.params.data());
  const int U = cfg.units();
  const bool zo_h = !batch.zoneout_h.empty() || cfg.zoneout_h > 0,
             zo_c = cfg.cell == CellKind::lstm && (!batch.zoneout_c.empty() || cfg.zoneout_c > 0);
  // W_hh as the recurrence uses it (⊙ mask_weight_hh), unit by unit, and its gradient dW̃.
  const std::size_t n_hh = std::size_t(GH) * HO;
  std::vector<std::vector<Real>> w_hh(static_cast<std::size_t>(U)),
      dw_hh(static_cast<std::size_t>(U), std::vector<Real>(n_hh, Real(0)));
  for (int u = 0; u < U; ++u) {
    const Real* w = V.layers[std::size_t(u)].w_hh;
    w_hh[std::size_t(u)].assign(w, w + std::size_t(GH) * HO);
    if (!batch.mask_weight_hh.empty())
      for (std::size_t i = 0; i < std::size_t(GH) * HO; ++i)
        w_hh[std::size_t(u)][i] *= batch.mask_weight_hh[std::size_t(u) * GH * HO + i];
  }
  const auto tb = [&](int t, int b) { return std::size_t(t) * B + b; };  // [T, B] index
  using Vec = std::vector<Real>;

  double Wsum = 0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) Wsum += double(batch.weight(t, b));
  if (!(Wsum > 0))
    throw Error(ErrorKind::value, "reference",
                "every step has weight 0 (all masked or past the lengths)",
                "give at least one step inside a sequence a positive mask value");
  std::vector<Real> out_all(std::size_t(T) * B * O);
  double total = 0;

  for (int b = 0; b < B; ++b) {
    const int len = batch.lengths.empty() ? T : int(batch.lengths[std::size_t(b)]);
    const auto order = [&](int d, int i) { return d == 0 ? i : len - 1 - i; };  // i-th step
    // ---- forward: out[k][t] = [h_t of each direction] (W wide) ----
    std::vector<std::vector<Vec>> out(L, std::vector<Vec>(T, Vec(W, Real(0))));
    std::vector<Vec> final_state(L, Vec(W, Real(0)));  // [h_n(d = 0) ; h_n(d = 1)] per layer
    std::vector<std::vector<Saved<Real>>> saved(std::size_t(L) * D, std::vector<Saved<Real>>(T));
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        const int u = k * D + d;
        const LayerParams<const Real>& p = V.layers[std::size_t(u)];
        Vec h(HO, Real(0)), c(H, Real(0));
        for (int j = 0; j < HO; ++j) {
          if (!batch.h0.empty()) h[j] = batch.h0[(std::size_t(u) * B + b) * HO + j];
          else if (V.h0) h[j] = V.h0[std::size_t(u) * HO + j];
        }
        for (int j = 0; j < H && cfg.cell == CellKind::lstm; ++j) {
          if (!batch.c0.empty()) c[j] = batch.c0[(std::size_t(u) * B + b) * H + j];
          else if (V.c0) c[j] = V.c0[std::size_t(u) * H + j];
        }
        for (int i = 0; i < len; ++i) {
          const int t = order(d, i);
          Saved<Real>& s = saved[std::size_t(u)][std::size_t(t)];
          s.in = k == 0 ? Vec(&batch.x[tb(t, b) * I], &batch.x[tb(t, b) * I] + I) : out[k - 1][t];
          if (k == 0 && !batch.mask_input.empty())
            for (int j = 0; j < I; ++j) s.in[j] *= batch.mask_input[std::size_t(b) * I + j];
          s.h_prev = h;
          s.c_prev = c;
          s.h_in = h;
          if (!batch.mask_recurrent.empty())
            for (int j = 0; j < HO; ++j)
              s.h_in[j] *= batch.mask_recurrent[(std::size_t(u) * B + b) * HO + j];
          Vec gx(GH), gh(GH), hn(H);
          const bool ln = cfg.layer_norm;
          affine(GH, p.in, p.w_ih, ln ? nullptr : p.b_ih, s.in.data(), gx.data());
          affine(GH, HO, w_hh[std::size_t(u)].data(), ln ? nullptr : p.b_hh, s.h_in.data(), gh.data());
          if (ln) {  // gx = LN(W_ih x) γ_ih + b_ih, gh = LN(W_hh h) γ_hh + b_hh
            s.rx = normalize(gx), s.rh = normalize(gh);
            s.xhat = gx, s.hhat = gh;
            for (int j = 0; j < GH; ++j) {
              gx[j] = gx[j] * p.ln_ih[j] + (p.b_ih ? p.b_ih[j] : Real(0));
              gh[j] = gh[j] * p.ln_hh[j] + (p.b_hh ? p.b_hh[j] : Real(0));
            }
          }
          s.act.assign(GH, Real(0));
          switch (cfg.cell) {
            case CellKind::elman:
              for (int j = 0; j < H; ++j) hn[j] = s.act[j] = phi(cfg.nonlinearity, gx[j] + gh[j]);
              break;
            case CellKind::lstm:
              s.tc.assign(H, Real(0));
              for (int j = 0; j < H; ++j) {
                const Real ig = sigmoid(gx[j] + gh[j]);
                const Real f = sigmoid(gx[H + j] + gh[H + j]);
                const Real g = std::tanh(gx[2 * H + j] + gh[2 * H + j]);
                const Real o = sigmoid(gx[3 * H + j] + gh[3 * H + j]);
                c[j] = f * c[j] + ig * g;
                s.tc[j] = std::tanh(c[j]);
                hn[j] = o * s.tc[j];
                s.act[j] = ig, s.act[H + j] = f, s.act[2 * H + j] = g, s.act[3 * H + j] = o;
              }
              if (ln) {  // h' = o tanh(LN(c') γ_c + β_c), c' itself carried
                s.chat = c;
                s.rc = normalize(s.chat);
                for (int j = 0; j < H; ++j) {
                  s.tc[j] = std::tanh(s.chat[j] * p.ln_c_w[j] + p.ln_c_b[j]);
                  hn[j] = s.act[3 * H + j] * s.tc[j];
                }
              }
              break;
            case CellKind::gru:
              s.hn.assign(H, Real(0));
              for (int j = 0; j < H; ++j) {
                const Real r = sigmoid(gx[j] + gh[j]);
                const Real z = sigmoid(gx[H + j] + gh[H + j]);  // the update gate
                s.hn[j] = gh[2 * H + j];
                const Real n = std::tanh(gx[2 * H + j] + r * s.hn[j]);
                hn[j] = (Real(1) - z) * n + z * h[j];
                s.act[j] = r, s.act[H + j] = z, s.act[2 * H + j] = n;
              }
              break;
          }
          if (P > 0) {  // h' = W_hr m
            s.m = hn;
            affine(P, H, p.w_hr, static_cast<const Real*>(nullptr), s.m.data(), h.data());
          } else {
            h = hn;
          }
          if (zo_h) {  // h' = k h + (1 − k) h̄'
            s.kh = keep_factors(batch.zoneout_h, cfg.zoneout_h, U, B, u, t, b, HO);
            for (int j = 0; j < HO; ++j) h[j] = s.kh[j] * s.h_prev[j] + (Real(1) - s.kh[j]) * h[j];
          }
          if (zo_c) {  // c' = k c + (1 − k) c̄' (h̄' above read c̄')
            s.kc = keep_factors(batch.zoneout_c, cfg.zoneout_c, U, B, u, t, b, H);
            for (int j = 0; j < H; ++j) c[j] = s.kc[j] * s.c_prev[j] + (Real(1) - s.kc[j]) * c[j];
          }
          std::copy(h.begin(), h.end(), out[k][t].begin() + std::ptrdiff_t(d) * HO);
        }
        for (int t = len; t < T; ++t)  // past the length: the final state
          std::copy(h.begin(), h.end(), out[k][t].begin() + std::ptrdiff_t(d) * HO);
        std::copy(h.begin(), h.end(), final_state[k].begin() + std::ptrdiff_t(d) * HO);
      }
    }
    // ---- head, loss and dL/dz ----
    // The head's input at step t: the top layer's output, or its final states at every step.
    const bool final_readout = cfg.readout == Readout::final_state;
    std::vector<Vec> head_ins(T);  // the head's input at each step, ⊙ mask_output
    for (int t = 0; t < T; ++t) {
      head_ins[t] = final_readout ? final_state[L - 1] : out[L - 1][t];
      if (!batch.mask_output.empty())
        for (int j = 0; j < W; ++j) head_ins[t][j] *= batch.mask_output[std::size_t(b) * W + j];
    }
    const auto head_in = [&](int t) -> const Vec& { return head_ins[t]; };
    std::vector<Vec> dz(T, Vec(O, Real(0)));
    for (int t = 0; t < T; ++t) {
      Vec z(O);
      Real* yr = &out_all[tb(t, b) * O];
      if (cfg.head)
        affine(O, W, V.w_o, V.b_o, head_in(t).data(), z.data());
      else  // a head-less model: z is the head's input itself (O = W)
        z = head_in(t);
      readout(cfg.output_activation, O, z.data(), yr);
      const Real w = batch.weight(t, b);
      if (w == Real(0)) continue;
      const double l = step_loss(loss, cfg.output_activation, O, z.data(), yr,
                                 batch.y.empty() ? nullptr : &batch.y[tb(t, b) * O],
                                 batch.classes.empty() ? 0 : batch.classes[tb(t, b)], dz[t].data());
      total += double(w) * l / Wsum;
      for (int o = 0; o < O; ++o) dz[t][o] *= Real(double(w) / Wsum);
    }
    // ---- backward: dout[t] = dL/d out[k][t], top layer first ----
    std::vector<Vec> dout(T, Vec(W, Real(0)));
    Vec dfinal(W, Real(0));  // final readout: dL/d[h_n(d = 0) ; h_n(d = 1)] of the top layer
    for (int t = 0; t < T; ++t) {
      Vec dv(W, Real(0));
      if (cfg.head)
        affine_backward(O, W, V.w_o, dz[t].data(), head_in(t).data(), dV.w_o, dV.b_o, dv.data());
      else
        for (int o = 0; o < O; ++o) dv[o] += dz[t][std::size_t(o)];
      Real* to = final_readout ? dfinal.data() : dout[t].data();
      for (int j = 0; j < W; ++j)
        to[j] += dv[j] * (batch.mask_output.empty() ? Real(1) : batch.mask_output[std::size_t(b) * W + j]);
    }
    for (int k = L - 1; k >= 0; --k) {
      const int in_w = cfg.layer_input_size(k);
      std::vector<Vec> din(T, Vec(in_w, Real(0)));
      for (int d = 0; d < D; ++d) {
        const int u = k * D + d;
        const LayerParams<const Real>& p = V.layers[std::size_t(u)];
        const LayerParams<Real>& dp = dV.layers[std::size_t(u)];
        Vec dh(HO, Real(0)), dc(H, Real(0));
        for (int t = len; t < T; ++t)  // the final state was the output past the length
          for (int j = 0; j < HO; ++j) dh[j] += dout[t][std::size_t(d) * HO + j];
        if (k == L - 1 && final_readout)  // and the head's input at every step
          for (int j = 0; j < HO; ++j) dh[j] += dfinal[std::size_t(d) * HO + j];
        for (int i = len - 1; i >= 0; --i) {
          const int t = order(d, i);
          const Saved<Real>& s = saved[std::size_t(u)][std::size_t(t)];
          Vec dht(HO);
          for (int j = 0; j < HO; ++j) dht[j] = dh[j] + dout[t][std::size_t(d) * HO + j];
          Vec keep_h(HO, Real(0)), keep_c(H, Real(0));  // zoneout: straight to h, c of the step before
          if (zo_h)
            for (int j = 0; j < HO; ++j) keep_h[j] = s.kh[j] * dht[j], dht[j] *= Real(1) - s.kh[j];
          if (zo_c)
            for (int j = 0; j < H; ++j) keep_c[j] = s.kc[j] * dc[j], dc[j] *= Real(1) - s.kc[j];
          if (P > 0) {  // through h' = W_hr m: dW_hr += dh' ⊗ m, dL/dm = W_hrᵀ dh'
            Vec dm(H, Real(0));
            affine_backward(P, H, p.w_hr, dht.data(), s.m.data(), dp.w_hr,
                            static_cast<Real*>(nullptr), dm.data());
            dht = dm;
          }
          Vec dgx(GH, Real(0)), dgh(GH, Real(0));  // dL/d(x-side), dL/d(h-side) pre-activations
          Vec dhp(HO, Real(0));                      // direct (non-matrix) part of dL/dh_{t-1}
          switch (cfg.cell) {
            case CellKind::elman:
              for (int j = 0; j < H; ++j)
                dgx[j] = dgh[j] = dht[j] * phi_grad_from_output(cfg.nonlinearity, s.act[j]);
              break;
            case CellKind::lstm: {
              Vec dcl(H);  // the part of dL/dc' through the output path
              for (int j = 0; j < H; ++j)
                dcl[j] = dht[j] * s.act[3 * H + j] * (Real(1) - s.tc[j] * s.tc[j]);
              if (cfg.layer_norm) normalize_backward(dcl, s.chat, s.rc, p.ln_c_w, dp.ln_c_w, dp.ln_c_b);
              for (int j = 0; j < H; ++j) {
                const Real ig = s.act[j], f = s.act[H + j], g = s.act[2 * H + j],
                           o = s.act[3 * H + j], tc = s.tc[j];
                const Real dct = dc[j] + dcl[j];
                dgx[j] = dct * g * ig * (Real(1) - ig);
                dgx[H + j] = dct * s.c_prev[j] * f * (Real(1) - f);
                dgx[2 * H + j] = dct * ig * (Real(1) - g * g);
                dgx[3 * H + j] = dht[j] * tc * o * (Real(1) - o);
                dc[j] = dct * f;
              }
              dgh = dgx;
              break;
            }
            case CellKind::gru:
              for (int j = 0; j < H; ++j) {
                const Real r = s.act[j], z = s.act[H + j], n = s.act[2 * H + j];
                const Real dn = dht[j] * (Real(1) - z) * (Real(1) - n * n);
                dgx[2 * H + j] = dn;
                dgh[2 * H + j] = dn * r;
                dgx[j] = dgh[j] = dn * s.hn[j] * r * (Real(1) - r);
                dgx[H + j] = dgh[H + j] = dht[j] * (s.h_prev[j] - n) * z * (Real(1) - z);
                dhp[j] = dht[j] * z;
              }
              break;
          }
          if (cfg.layer_norm) {  // back through LN(·) γ + b: dgx, dgh become dL/d(W x), dL/d(W h)
            normalize_backward(dgx, s.xhat, s.rx, p.ln_ih, dp.ln_ih, dp.b_ih);
            normalize_backward(dgh, s.hhat, s.rh, p.ln_hh, dp.ln_hh, dp.b_hh);
          }
          affine_backward(GH, in_w, p.w_ih, dgx.data(), s.in.data(), dp.w_ih,
                          cfg.layer_norm ? nullptr : dp.b_ih, din[t].data());
          Vec dh_in(HO, Real(0));  // dL/d(h ⊙ mask_recurrent)
          affine_backward(GH, HO, w_hh[std::size_t(u)].data(), dgh.data(), s.h_in.data(),
                          dw_hh[std::size_t(u)].data(), cfg.layer_norm ? nullptr : dp.b_hh,
                          dh_in.data());
          for (int j = 0; j < HO; ++j)
            dhp[j] += dh_in[j] * (batch.mask_recurrent.empty()
                                      ? Real(1)
                                      : batch.mask_recurrent[(std::size_t(u) * B + b) * HO + j]);
          dh = dhp;
          for (int j = 0; j < HO; ++j) dh[j] += keep_h[j];
          for (int j = 0; j < H && zo_c; ++j) dc[j] += keep_c[j];
        }
        for (int j = 0; j < HO; ++j) {
          grads.h0[(std::size_t(u) * B + b) * HO + j] += dh[j];
          if (dV.h0 && batch.h0.empty()) dV.h0[std::size_t(u) * HO + j] += dh[j];
        }
        for (int j = 0; j < H && cfg.cell == CellKind::lstm; ++j) {
          grads.c0[(std::size_t(u) * B + b) * H + j] += dc[j];
          if (dV.c0 && batch.c0.empty()) dV.c0[std::size_t(u) * H + j] += dc[j];
        }
      }
      if (k == 0) {
        for (int t = 0; t < T; ++t)
          for (int j = 0; j < I; ++j)
            grads.x[tb(t, b) * I + j] +=
                din[t][j] * (batch.mask_input.empty() ? Real(1) : batch.mask_input[std::size_t(b) * I + j]);
      } else {
        dout = din;
      }
    }
  }
  for (int u = 0; u < U; ++u)  // dW_hh = dW̃ ⊙ mask_weight_hh
    for (std::size_t i = 0; i < std::size_t(GH) * HO; ++i)
      dV.layers[std::size_t(u)].w_hh[i] +=
          dw_hh[std::size_t(u)][i] *
          (batch.mask_weight_hh.empty() ? Real(1) : batch.mask_weight_hh[std::size_t(u) * GH * HO + i]);
  if (yhat) *yhat = out_all;
  return total;
}
template double reference_loss_and_gradients<float>(const Model<float>&, const BatchView<float>&,
                                                     LossKind, Gradients<float>&,
                                                     std::vector<float>*);
template double reference_loss_and_gradients<double>(const Model<double>&, const BatchView<double>&,
                                                      LossKind, Gradients<double>&,
                                                      std::vector<double>*);

}  // namespace bptt
