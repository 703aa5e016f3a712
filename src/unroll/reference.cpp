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
//   Steps with t ≥ lengths[b] keep h and c (and pass their gradient straight through).
//   Head: z = W_o h_top + b_o, ŷ = θ(z); loss as in bptt/loss.hpp.
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
  throw Error("reference", "softmax is not an elementwise nonlinearity");
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
  throw Error("reference", "softmax is not an elementwise nonlinearity");
}

// out[r] = b[r] + Σ_j W[r, j] v[j] for r in [0, rows): one naive dot product per row.
template <class Real>
void affine(int rows, int cols, const Real* W, const Real* b, const Real* v, Real* out) {
  for (int r = 0; r < rows; ++r) {
    Real s = b[r];
    for (int j = 0; j < cols; ++j) s += W[std::size_t(r) * cols + j] * v[j];
    out[r] = s;
  }
}

// dW += d ⊗ v, db += d, dv += Wᵀ d (dv may be nullptr).
template <class Real>
void affine_backward(int rows, int cols, const Real* W, const Real* d, const Real* v, Real* dW,
                     Real* db, Real* dv) {
  for (int r = 0; r < rows; ++r) {
    db[r] += d[r];
    for (int j = 0; j < cols; ++j) {
      dW[std::size_t(r) * cols + j] += d[r] * v[j];
      if (dv) dv[j] += W[std::size_t(r) * cols + j] * d[r];
    }
  }
}

// Everything one layer remembers of one step of one sequence.
template <class Real>
struct Saved {
  std::vector<Real> act;  // [G·H] gate activations (Elman: h')
  std::vector<Real> hn;   // [H] GRU: W_hn h + b_hn
  std::vector<Real> tc;   // [H] LSTM: tanh(c')
};

}  // namespace

template <class Real>
double reference_loss_and_gradients(const Model<Real>& model, const Batch<Real>& batch,
                                    LossKind loss, Gradients<Real>& grads,
                                    std::vector<Real>* yhat) {
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, L = cfg.num_layers, H = cfg.hidden_size;
  const int O = cfg.output_size, I = cfg.input_size, G = cfg.gates(), GH = G * H;
  const bool lstm = cfg.cell == CellKind::lstm;
  const ParamViews<const Real> P = model.views();
  ParamViews<Real> D(cfg, grads.params.data());
  const auto lb = [&](int k, int b) { return std::size_t(k) * B + b; };  // [L, B] index
  const auto tb = [&](int t, int b) { return std::size_t(t) * B + b; };  // [T, B] index

  // ---- forward: states h[k][t][b] for t = 0..T (t = 0 is the initial state) ----
  using Vec = std::vector<Real>;
  std::vector<std::vector<std::vector<Vec>>> h(L), c(L);
  std::vector<std::vector<std::vector<Saved<Real>>>> saved(L);
  for (int k = 0; k < L; ++k) {
    h[k].assign(T + 1, std::vector<Vec>(B, Vec(H, Real(0))));
    c[k].assign(T + 1, std::vector<Vec>(B, Vec(H, Real(0))));
    saved[k].assign(T, std::vector<Saved<Real>>(B));
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < H; ++j) {
        if (!batch.h0.empty()) h[k][0][b][j] = batch.h0[lb(k, b) * H + j];
        if (!batch.c0.empty()) c[k][0][b][j] = batch.c0[lb(k, b) * H + j];
      }
  }
  std::vector<Real> z(std::size_t(T) * B * O), out(std::size_t(T) * B * O);

  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      for (int k = 0; k < L; ++k) {
        const Real* in = k == 0 ? &batch.x[tb(t, b) * I] : h[k - 1][t + 1][b].data();
        const Vec& hp = h[k][t][b];
        const Vec& cp = c[k][t][b];
        Vec& hn = h[k][t + 1][b];
        Vec& cn = c[k][t + 1][b];
        if (!batch.valid(t, b)) {  // past the end: the state is carried unchanged
          hn = hp;
          cn = cp;
          continue;
        }
        const LayerParams<const Real>& p = P.layers[k];
        Vec gx(GH), gh(GH);
        affine(GH, p.in, p.w_ih, p.b_ih, in, gx.data());
        affine(GH, H, p.w_hh, p.b_hh, hp.data(), gh.data());
        Saved<Real>& s = saved[k][t][b];
        s.act.assign(GH, Real(0));
        switch (cfg.cell) {
          case CellKind::elman:
            for (int j = 0; j < H; ++j) hn[j] = s.act[j] = phi(cfg.nonlinearity, gx[j] + gh[j]);
            break;
          case CellKind::lstm:
            s.tc.assign(H, Real(0));
            for (int j = 0; j < H; ++j) {
              const Real i = sigmoid(gx[j] + gh[j]);
              const Real f = sigmoid(gx[H + j] + gh[H + j]);
              const Real g = std::tanh(gx[2 * H + j] + gh[2 * H + j]);
              const Real o = sigmoid(gx[3 * H + j] + gh[3 * H + j]);
              cn[j] = f * cp[j] + i * g;
              s.tc[j] = std::tanh(cn[j]);
              hn[j] = o * s.tc[j];
              s.act[j] = i, s.act[H + j] = f, s.act[2 * H + j] = g, s.act[3 * H + j] = o;
            }
            break;
          case CellKind::gru:
            s.hn.assign(H, Real(0));
            for (int j = 0; j < H; ++j) {
              const Real r = sigmoid(gx[j] + gh[j]);
              const Real u = sigmoid(gx[H + j] + gh[H + j]);  // z, the update gate
              s.hn[j] = gh[2 * H + j];
              const Real n = std::tanh(gx[2 * H + j] + r * s.hn[j]);
              hn[j] = (Real(1) - u) * n + u * hp[j];
              s.act[j] = r, s.act[H + j] = u, s.act[2 * H + j] = n;
            }
            break;
        }
      }
      // Head on the top layer's state (also at padded steps, where it is the carried state).
      Real* zr = &z[tb(t, b) * O];
      Real* yr = &out[tb(t, b) * O];
      affine(O, H, P.w_o, P.b_o, h[L - 1][t + 1][b].data(), zr);
      if (cfg.output_activation == Activation::softmax) {
        Real m = zr[0];
        for (int o = 1; o < O; ++o) m = std::max(m, zr[o]);
        Real sum = 0;
        for (int o = 0; o < O; ++o) sum += (yr[o] = std::exp(zr[o] - m));
        for (int o = 0; o < O; ++o) yr[o] /= sum;
      } else {
        for (int o = 0; o < O; ++o) yr[o] = phi(cfg.output_activation, zr[o]);
      }
    }
  }
  if (yhat) *yhat = out;

  // ---- loss and dL/dz ----
  double W = 0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) W += double(batch.weight(t, b));
  if (!(W > 0))
    throw Error("reference", "every step has weight 0 (all masked or past the lengths)",
                "give at least one step inside a sequence a positive mask value");
  double total = 0;
  std::vector<Real> dz(std::size_t(T) * B * O, Real(0));
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      const Real w = batch.weight(t, b);
      if (w == Real(0)) continue;
      const Real scale = Real(double(w) / W);
      const Real* zr = &z[tb(t, b) * O];
      const Real* yr = &out[tb(t, b) * O];
      Real* d = &dz[tb(t, b) * O];
      double l = 0;
      switch (loss) {
        case LossKind::mse: {
          const Real* y = &batch.y[tb(t, b) * O];
          std::vector<Real> dy(O);
          for (int o = 0; o < O; ++o) {
            const Real e = yr[o] - y[o];
            l += double(e) * double(e) / O;
            dy[o] = Real(2) * e / Real(O);
          }
          // Back through θ.
          if (cfg.output_activation == Activation::softmax) {
            Real dot = 0;
            for (int o = 0; o < O; ++o) dot += dy[o] * yr[o];
            for (int o = 0; o < O; ++o) d[o] = yr[o] * (dy[o] - dot);
          } else {
            for (int o = 0; o < O; ++o)
              d[o] = dy[o] * phi_grad_from_output(cfg.output_activation, yr[o]);
          }
          break;
        }
        case LossKind::bce: {
          const Real* y = &batch.y[tb(t, b) * O];
          for (int o = 0; o < O; ++o) {
            const Real v = zr[o];
            l += double(std::max(v, Real(0)) - v * y[o] + std::log1p(std::exp(-std::abs(v)))) / O;
            d[o] = (sigmoid(v) - y[o]) / Real(O);
          }
          break;
        }
        case LossKind::xent: {
          const std::int64_t cls = batch.classes[tb(t, b)];
          Real m = zr[0];
          for (int o = 1; o < O; ++o) m = std::max(m, zr[o]);
          Real sum = 0;
          for (int o = 0; o < O; ++o) sum += std::exp(zr[o] - m);
          l = double(m + std::log(sum) - zr[cls]);
          for (int o = 0; o < O; ++o) d[o] = std::exp(zr[o] - m) / sum - (o == cls ? 1 : 0);
          break;
        }
      }
      total += double(w) * l / W;
      for (int o = 0; o < O; ++o) d[o] *= scale;
    }
  }

  // ---- backward: t = T-1..0, layers top to bottom; dh/dc carried per layer and sequence ----
  std::vector<std::vector<Vec>> dh(L, std::vector<Vec>(B, Vec(H, Real(0))));
  std::vector<std::vector<Vec>> dc = dh;
  for (int t = T - 1; t >= 0; --t) {
    for (int b = 0; b < B; ++b) {
      Vec from_above(H, Real(0));  // dL/dh_t from the head, then from the layer above
      affine_backward(O, H, P.w_o, &dz[tb(t, b) * O], h[L - 1][t + 1][b].data(), D.w_o, D.b_o,
                      from_above.data());
      for (int k = L - 1; k >= 0; --k) {
        Vec dht(H);
        for (int j = 0; j < H; ++j) dht[j] = dh[k][b][j] + from_above[j];
        Vec dx(cfg.layer_input_size(k), Real(0));
        if (!batch.valid(t, b)) {  // h_t = h_{t-1}: pass through; the input was not used
          dh[k][b] = dht;
          from_above = dx;
          continue;
        }
        const LayerParams<const Real>& p = P.layers[k];
        const LayerParams<Real>& dp = D.layers[k];
        const Saved<Real>& s = saved[k][t][b];
        const Vec& hp = h[k][t][b];
        Vec dgx(GH, Real(0)), dgh(GH, Real(0));  // dL/d(x-side), dL/d(h-side) pre-activations
        Vec dhp(H, Real(0));                       // direct (non-matrix) part of dL/dh_{t-1}
        switch (cfg.cell) {
          case CellKind::elman:
            for (int j = 0; j < H; ++j)
              dgx[j] = dgh[j] = dht[j] * phi_grad_from_output(cfg.nonlinearity, s.act[j]);
            break;
          case CellKind::lstm:
            for (int j = 0; j < H; ++j) {
              const Real i = s.act[j], f = s.act[H + j], g = s.act[2 * H + j],
                         o = s.act[3 * H + j], tc = s.tc[j];
              const Real dct = dc[k][b][j] + dht[j] * o * (Real(1) - tc * tc);
              dgx[j] = dct * g * i * (Real(1) - i);
              dgx[H + j] = dct * c[k][t][b][j] * f * (Real(1) - f);
              dgx[2 * H + j] = dct * i * (Real(1) - g * g);
              dgx[3 * H + j] = dht[j] * tc * o * (Real(1) - o);
              dc[k][b][j] = dct * f;
            }
            dgh = dgx;
            break;
          case CellKind::gru:
            for (int j = 0; j < H; ++j) {
              const Real r = s.act[j], u = s.act[H + j], n = s.act[2 * H + j];
              const Real dn = dht[j] * (Real(1) - u) * (Real(1) - n * n);
              dgx[2 * H + j] = dn;
              dgh[2 * H + j] = dn * r;
              dgx[j] = dgh[j] = dn * s.hn[j] * r * (Real(1) - r);
              dgx[H + j] = dgh[H + j] = dht[j] * (hp[j] - n) * u * (Real(1) - u);
              dhp[j] = dht[j] * u;
            }
            break;
        }
        const Real* in = k == 0 ? &batch.x[tb(t, b) * I] : h[k - 1][t + 1][b].data();
        affine_backward(GH, p.in, p.w_ih, dgx.data(), in, dp.w_ih, dp.b_ih, dx.data());
        affine_backward(GH, H, p.w_hh, dgh.data(), hp.data(), dp.w_hh, dp.b_hh, dhp.data());
        dh[k][b] = dhp;
        if (k == 0)
          for (int j = 0; j < I; ++j) grads.x[tb(t, b) * I + j] += dx[j];
        from_above = dx;
      }
    }
  }
  for (int k = 0; k < L; ++k)
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < H; ++j) {
        grads.h0[lb(k, b) * H + j] += dh[k][b][j];
        if (lstm) grads.c0[lb(k, b) * H + j] += dc[k][b][j];
      }
  return total;
}

template double reference_loss_and_gradients<float>(const Model<float>&, const Batch<float>&,
                                                     LossKind, Gradients<float>&,
                                                     std::vector<float>*);
template double reference_loss_and_gradients<double>(const Model<double>&, const Batch<double>&,
                                                      LossKind, Gradients<double>&,
                                                      std::vector<double>*);

}  // namespace bptt
