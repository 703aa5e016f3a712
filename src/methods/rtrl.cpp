// Real-time recurrent learning: the exact gradient in forward mode.
//
// Each sequence carries its state s_t (h and, for LSTM, c of every layer) and the sensitivities
// M_t = ∂s_t/∂v for N numbers v (columns): the parameters, and for the whole-batch gradient
// also the sequence's own inputs and initial state. One step of layer k with input u (x_t, or
// layer k−1's new h) and tangent M_u:
//   dA_x = W_ih·M_u + ∂(W_ih u + b_ih)/∂v|direct     dA_h = W_hh·M_{h,t−1} + ∂(W_hh h + b_hh)/∂v|direct
// where the direct parts are u_c in column W_ih[r, c], 1 in column b_ih[r], and so on; then the
// cell's pointwise derivative (Elman: M_h = φ'(a) ⊙ (dA_x + dA_h); LSTM and GRU below). The loss
// of step t adds (∂ℓ_t/∂h_t)ᵀ M_{h,t} to the gradient, plus the head's direct part.
// Everything here is written out again from the equations (docs/math.md); nothing from the
// cells' fast kernels is used, so it is an independent check of them.
#include <algorithm>
#include <cmath>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "kernels/gemm.hpp"

namespace bptt {
namespace {

template <class Real>
Real sigmoid(Real v) {
  return Real(1) / (Real(1) + std::exp(-v));
}

template <class Real>
Real phi(Activation f, Real v) {
  switch (f) {
    case Activation::identity: return v;
    case Activation::tanh: return std::tanh(v);
    case Activation::relu: return v > Real(0) ? v : Real(0);
    case Activation::sigmoid: return sigmoid(v);
    case Activation::softmax: break;
  }
  throw Error("rtrl", "softmax is not an elementwise nonlinearity");
}

// φ' in terms of the output a = φ(v).
template <class Real>
Real phi_grad(Activation f, Real a) {
  switch (f) {
    case Activation::identity: return Real(1);
    case Activation::tanh: return Real(1) - a * a;
    case Activation::relu: return a > Real(0) ? Real(1) : Real(0);
    case Activation::sigmoid: return a * (Real(1) - a);
    case Activation::softmax: break;
  }
  throw Error("rtrl", "softmax is not an elementwise nonlinearity");
}

// Column offsets of one layer's parameters in the arena (= their column in M).
struct LayerCols {
  std::size_t w_ih, w_hh, b_ih, b_hh;
};

// One sequence's state and sensitivities, and the scratch of one step.
template <class Real>
struct Carry {
  std::size_t N = 0;
  std::vector<Real> h, c;    // [L, H]
  std::vector<Real> Mh, Mc;  // [L, H, N]
};

template <class Real>
struct Scratch {
  std::vector<Real> ax, ah;    // [G·H] pre-activations, x side and h side
  std::vector<Real> dax, dah;  // [G·H, N]
  std::vector<Real> hn, cn, Mhn, Mcn;  // one layer's new state [H] and sensitivities [H, N]
};

// The forward-mode step of every layer of one sequence. x: [I]; x_col: the column of x_t[0] in
// M (inputs are columns x_col .. x_col + I − 1), or npos when inputs are not differentiated.
template <class Real>
void advance(const Model<Real>& model, const std::vector<LayerCols>& cols, const Real* x,
             std::size_t x_col, Carry<Real>& s, Scratch<Real>& w) {
  constexpr std::size_t npos = std::size_t(-1);
  const ModelConfig& cfg = model.cfg;
  const int H = cfg.hidden_size, G = cfg.gates(), GH = G * H;
  const std::size_t N = s.N;
  const auto P = model.views();
  w.ax.resize(std::size_t(GH));
  w.ah.resize(std::size_t(GH));
  w.dax.resize(std::size_t(GH) * N);
  w.dah.resize(std::size_t(GH) * N);
  w.hn.resize(std::size_t(H));
  w.cn.resize(std::size_t(H));
  w.Mhn.resize(std::size_t(H) * N);
  w.Mcn.resize(std::size_t(H) * N);
  for (int k = 0; k < cfg.num_layers; ++k) {
    const auto& p = P.layers[std::size_t(k)];
    const LayerCols& lc = cols[std::size_t(k)];
    const int in = p.in;
    const Real* u = k == 0 ? x : s.h.data() + std::size_t(k - 1) * H;  // already the new h(k-1)
    Real* hp = s.h.data() + std::size_t(k) * H;
    Real* cp = s.c.empty() ? nullptr : s.c.data() + std::size_t(k) * H;
    Real* Mhp = s.Mh.data() + std::size_t(k) * H * N;
    Real* Mcp = s.Mc.empty() ? nullptr : s.Mc.data() + std::size_t(k) * H * N;
    // Values.
    for (int r = 0; r < GH; ++r) {
      Real a = p.b_ih[r], b = p.b_hh[r];
      for (int c = 0; c < in; ++c) a += p.w_ih[std::size_t(r) * in + c] * u[c];
      for (int c = 0; c < H; ++c) b += p.w_hh[std::size_t(r) * H + c] * hp[c];
      w.ax[std::size_t(r)] = a, w.ah[std::size_t(r)] = b;
    }
    // Tangents: the products through the state, then the direct parts.
    if (k == 0)
      std::fill(w.dax.begin(), w.dax.end(), Real(0));
    else
      kernels::gemm(false, false, GH, int(N), in, Real(1), p.w_ih, in,
                    s.Mh.data() + std::size_t(k - 1) * H * N, int(N), Real(0), w.dax.data(),
                    int(N));
    kernels::gemm(false, false, GH, int(N), H, Real(1), p.w_hh, H, Mhp, int(N), Real(0),
                  w.dah.data(), int(N));
    for (int r = 0; r < GH; ++r) {
      Real* dx = w.dax.data() + std::size_t(r) * N;
      Real* dh = w.dah.data() + std::size_t(r) * N;
      for (int c = 0; c < in; ++c) dx[lc.w_ih + std::size_t(r) * in + c] += u[c];
      dx[lc.b_ih + std::size_t(r)] += Real(1);
      for (int c = 0; c < H; ++c) dh[lc.w_hh + std::size_t(r) * H + c] += hp[c];
      dh[lc.b_hh + std::size_t(r)] += Real(1);
      if (k == 0 && x_col != npos)
        for (int c = 0; c < in; ++c) dx[x_col + std::size_t(c)] += p.w_ih[std::size_t(r) * in + c];
    }
    // The cell.
    for (int j = 0; j < H; ++j) {
      Real* Mh = w.Mhn.data() + std::size_t(j) * N;
      const Real* Mhj = Mhp + std::size_t(j) * N;
      const auto row = [&](const std::vector<Real>& d, int gate) {
        return d.data() + (std::size_t(gate) * H + std::size_t(j)) * N;
      };
      switch (cfg.cell) {
        case CellKind::elman: {
          const Real h = phi(cfg.nonlinearity, w.ax[std::size_t(j)] + w.ah[std::size_t(j)]);
          const Real d = phi_grad(cfg.nonlinearity, h);
          const Real *ax = row(w.dax, 0), *ah = row(w.dah, 0);
          for (std::size_t n = 0; n < N; ++n) Mh[n] = d * (ax[n] + ah[n]);
          w.hn[std::size_t(j)] = h;
          break;
        }
        case CellKind::lstm: {
          const std::size_t J = std::size_t(j);
          const Real i = sigmoid(w.ax[J] + w.ah[J]);
          const Real f = sigmoid(w.ax[H + J] + w.ah[H + J]);
          const Real g = std::tanh(w.ax[2 * H + J] + w.ah[2 * H + J]);
          const Real o = sigmoid(w.ax[3 * H + J] + w.ah[3 * H + J]);
          const Real c = f * cp[J] + i * g, tc = std::tanh(c);
          const Real di = i * (1 - i), df = f * (1 - f), dg = 1 - g * g, dO = o * (1 - o);
          const Real *axi = row(w.dax, 0), *ahi = row(w.dah, 0), *axf = row(w.dax, 1),
                     *ahf = row(w.dah, 1), *axg = row(w.dax, 2), *ahg = row(w.dah, 2),
                     *axo = row(w.dax, 3), *aho = row(w.dah, 3);
          const Real* Mcj = Mcp + J * N;
          Real* Mc = w.Mcn.data() + J * N;
          for (std::size_t n = 0; n < N; ++n) {
            const Real dc = df * (axf[n] + ahf[n]) * cp[J] + f * Mcj[n] +
                            di * (axi[n] + ahi[n]) * g + i * dg * (axg[n] + ahg[n]);
            Mc[n] = dc;
            Mh[n] = dO * (axo[n] + aho[n]) * tc + o * (1 - tc * tc) * dc;
          }
          w.cn[J] = c;
          w.hn[J] = o * tc;
          break;
        }
        case CellKind::gru: {
          const std::size_t J = std::size_t(j);
          const Real r = sigmoid(w.ax[J] + w.ah[J]);
          const Real z = sigmoid(w.ax[H + J] + w.ah[H + J]);
          const Real hn = w.ah[2 * H + J];  // W_hn h + b_hn
          const Real nn = std::tanh(w.ax[2 * H + J] + r * hn);
          const Real dr = r * (1 - r), dz = z * (1 - z), dn = 1 - nn * nn;
          const Real *axr = row(w.dax, 0), *ahr = row(w.dah, 0), *axz = row(w.dax, 1),
                     *ahz = row(w.dah, 1), *axn = row(w.dax, 2), *ahn = row(w.dah, 2);
          for (std::size_t n = 0; n < N; ++n) {
            const Real tr = dr * (axr[n] + ahr[n]), tz = dz * (axz[n] + ahz[n]);
            const Real tn = dn * (axn[n] + tr * hn + r * ahn[n]);
            Mh[n] = (1 - z) * tn - tz * nn + tz * hp[J] + z * Mhj[n];
          }
          w.hn[J] = (1 - z) * nn + z * hp[J];
          break;
        }
      }
    }
    std::copy(w.hn.begin(), w.hn.end(), hp);
    std::copy(w.Mhn.begin(), w.Mhn.end(), Mhp);
    if (cp) {
      std::copy(w.cn.begin(), w.cn.end(), cp);
      std::copy(w.Mcn.begin(), w.Mcn.end(), Mcp);
    }
  }
}

template <class Real>
std::vector<LayerCols> layer_columns(const Model<Real>& model) {
  const auto P = model.views();
  const Real* base = model.params.data();
  std::vector<LayerCols> cols;
  for (const auto& p : P.layers)
    cols.push_back({std::size_t(p.w_ih - base), std::size_t(p.w_hh - base),
                    std::size_t(p.b_ih - base), std::size_t(p.b_hh - base)});
  return cols;
}

// The loss of one step of one sequence and the head's part of the gradient:
//   z = W_o h_top + b_o, ℓ (weight w / norm), dL/dz; grad[v] += dzᵀ W_o M_top[:, v] for the
// N columns, and the head's parameters (direct) into param_grad.
template <class Real>
class StepLoss {
 public:
  explicit StepLoss(const ModelConfig& cfg) : cfg_(cfg) {
    one_.T = 1, one_.B = 1;
    z_.resize(std::size_t(cfg.output_size));
    yhat_ = dz_ = z_;
    dh_.resize(std::size_t(cfg.hidden_size));
  }

  double apply(const Model<Real>& model, LossKind loss, const Real* y, const std::int64_t* cls,
               double weight, double norm, const Carry<Real>& s, Real* grad_cols,
               Real* param_grad) {
    const int H = cfg_.hidden_size, O = cfg_.output_size, L = cfg_.num_layers;
    const auto P = model.views();
    const Real* h = s.h.data() + std::size_t(L - 1) * H;
    for (int o = 0; o < O; ++o) {
      Real v = P.b_o[o];
      for (int j = 0; j < H; ++j) v += P.w_o[std::size_t(o) * H + j] * h[j];
      z_[std::size_t(o)] = v;
    }
    apply_output_activation(cfg_.output_activation, 1, O, z_.data(), yhat_.data());
    if (loss == LossKind::xent)
      one_.classes.assign(cls, cls + 1), one_.y.clear();
    else
      one_.y.assign(y, y + O), one_.classes.clear();
    const double l = loss_and_dz(loss, cfg_, one_, z_.data(), yhat_.data(), dz_.data());
    const Real scale = Real(weight / norm);
    for (auto& v : dz_) v *= scale;
    // Head parameters (direct): dW_o += dz hᵀ, db_o += dz.
    ParamViews<Real> D(cfg_, param_grad);
    for (int o = 0; o < O; ++o) {
      D.b_o[o] += dz_[std::size_t(o)];
      for (int j = 0; j < H; ++j) D.w_o[std::size_t(o) * H + j] += dz_[std::size_t(o)] * h[j];
    }
    // Through the state: dL/dh_top = W_oᵀ dz, then grad += dhᵀ M.
    std::fill(dh_.begin(), dh_.end(), Real(0));
    for (int o = 0; o < O; ++o)
      for (int j = 0; j < H; ++j) dh_[std::size_t(j)] += P.w_o[std::size_t(o) * H + j] * dz_[std::size_t(o)];
    const Real* M = s.Mh.data() + std::size_t(L - 1) * H * s.N;
    kernels::gemm(false, false, 1, int(s.N), H, Real(1), dh_.data(), H, M, int(s.N), Real(1),
                  grad_cols, int(s.N));
    return l * weight / norm;
  }

 private:
  ModelConfig cfg_;
  Batch<Real> one_;
  std::vector<Real> z_, yhat_, dz_, dh_;
};

}  // namespace

template <class Real>
double rtrl_loss_and_gradients(const Model<Real>& model, const Batch<Real>& batch, LossKind loss,
                               Gradients<Real>& grads) {
  const ModelConfig& cfg = model.cfg;
  require_options(cfg, {.causal = true, .projection = false, .no_bias = false,
                        .learned_initial_state = false},
                  "rtrl", "RTRL");
  const int T = batch.T, B = batch.B, L = cfg.num_layers, H = cfg.hidden_size,
            I = cfg.input_size;
  const bool lstm = cfg.cell == CellKind::lstm;
  const std::size_t P = model.params.size(), LH = std::size_t(L) * H;
  // Columns: parameters | this sequence's x [T, I] | h0 [L, H] | c0 [L, H] (LSTM).
  const std::size_t col_x = P, col_h0 = col_x + std::size_t(T) * I, col_c0 = col_h0 + LH;
  const std::size_t N = col_c0 + (lstm ? LH : 0);
  const double norm = total_weight(batch);
  if (!(norm > 0))
    throw Error("rtrl", "every step has weight 0 (all masked or past the lengths)",
                "give at least one step inside a sequence a positive mask value");
  const auto cols = layer_columns(model);
  StepLoss<Real> head(cfg);
  Carry<Real> s;
  Scratch<Real> w;
  std::vector<Real> g(N);
  double total = 0;
  for (int b = 0; b < B; ++b) {
    s.N = N;
    s.h.assign(LH, Real(0));
    s.c.assign(lstm ? LH : 0, Real(0));
    for (int k = 0; k < L; ++k)
      for (int j = 0; j < H; ++j) {
        const std::size_t i = (std::size_t(k) * B + b) * H + j;
        if (!batch.h0.empty()) s.h[std::size_t(k) * H + j] = batch.h0[i];
        if (lstm && !batch.c0.empty()) s.c[std::size_t(k) * H + j] = batch.c0[i];
      }
    s.Mh.assign(LH * N, Real(0));
    s.Mc.assign(lstm ? LH * N : 0, Real(0));
    for (std::size_t r = 0; r < LH; ++r) {
      s.Mh[r * N + col_h0 + r] = Real(1);
      if (lstm) s.Mc[r * N + col_c0 + r] = Real(1);
    }
    std::fill(g.begin(), g.end(), Real(0));
    for (int t = 0; t < T; ++t) {
      if (!batch.valid(t, b)) continue;  // past the end: state and sensitivities carried
      const std::size_t tb = std::size_t(t) * B + b;
      advance(model, cols, batch.x.data() + tb * I, col_x + std::size_t(t) * I, s, w);
      const double weight = double(batch.weight(t, b));
      if (weight == 0) continue;
      total += head.apply(model, loss,
                          batch.y.empty() ? nullptr : batch.y.data() + tb * cfg.output_size,
                          batch.classes.empty() ? nullptr : batch.classes.data() + tb, weight,
                          norm, s, g.data(), grads.params.data());
    }
    for (std::size_t i = 0; i < P; ++i) grads.params[i] += g[i];
    if (!grads.x.empty())
      for (int t = 0; t < T; ++t)
        for (int i = 0; i < I; ++i)
          grads.x[(std::size_t(t) * B + b) * I + i] += g[col_x + std::size_t(t) * I + i];
    for (int k = 0; k < L; ++k)
      for (int j = 0; j < H; ++j) {
        const std::size_t i = (std::size_t(k) * B + b) * H + j, r = std::size_t(k) * H + j;
        grads.h0[i] += g[col_h0 + r];
        if (lstm && !grads.c0.empty()) grads.c0[i] += g[col_c0 + r];
      }
  }
  return total;
}

// ---- online RTRL over streams ----

template <class Real>
RtrlStream<Real>::RtrlStream(const ModelConfig& cfg, int B) : cfg_(cfg), B_(B) {
  require_options(cfg, {.causal = true, .projection = false, .no_bias = false,
                        .learned_initial_state = false},
                  "rtrl", "online RTRL");
  reset({}, {});
}

template <class Real>
void RtrlStream<Real>::reset(const std::vector<Real>& h0, const std::vector<Real>& c0) {
  const std::size_t LBH = std::size_t(cfg_.num_layers) * B_ * cfg_.hidden_size;
  const std::size_t P = param_count(cfg_);
  const bool lstm = cfg_.cell == CellKind::lstm;
  h_ = h0.empty() ? std::vector<Real>(LBH, Real(0)) : h0;
  c_ = !lstm ? std::vector<Real>{} : c0.empty() ? std::vector<Real>(LBH, Real(0)) : c0;
  Mh_.assign(LBH * P, Real(0));
  Mc_.assign(lstm ? LBH * P : 0, Real(0));
}

template <class Real>
double RtrlStream<Real>::step(const Model<Real>& model, LossKind loss, const Real* x,
                              const Real* y, const std::int64_t* classes, const Real* w,
                              double norm, std::vector<Real>& grad) {
  const int L = cfg_.num_layers, H = cfg_.hidden_size, I = cfg_.input_size,
            O = cfg_.output_size;
  const std::size_t P = model.params.size(), LH = std::size_t(L) * H, BH = std::size_t(B_) * H;
  const bool lstm = cfg_.cell == CellKind::lstm;
  const auto cols = layer_columns(model);
  grad.assign(P, Real(0));
  StepLoss<Real> head(cfg_);
  Carry<Real> s;
  s.N = P;
  Scratch<Real> scratch;
  std::vector<Real> g(P);
  double total = 0;
  for (int b = 0; b < B_; ++b) {
    // Gather sequence b's state ([L, B, H] -> [L, H]) and sensitivities ([B, L, H, P]).
    s.h.resize(LH);
    s.c.resize(lstm ? LH : 0);
    for (int k = 0; k < L; ++k)
      for (int j = 0; j < H; ++j) {
        s.h[std::size_t(k) * H + j] = h_[std::size_t(k) * BH + std::size_t(b) * H + j];
        if (lstm) s.c[std::size_t(k) * H + j] = c_[std::size_t(k) * BH + std::size_t(b) * H + j];
      }
    const std::size_t m0 = std::size_t(b) * LH * P;
    s.Mh.assign(Mh_.begin() + std::ptrdiff_t(m0), Mh_.begin() + std::ptrdiff_t(m0 + LH * P));
    if (lstm)
      s.Mc.assign(Mc_.begin() + std::ptrdiff_t(m0), Mc_.begin() + std::ptrdiff_t(m0 + LH * P));
    else
      s.Mc.clear();
    advance(model, cols, x + std::size_t(b) * I, std::size_t(-1), s, scratch);
    const double weight = w ? double(w[b]) : 1.0;
    if (weight != 0) {
      std::fill(g.begin(), g.end(), Real(0));
      total += head.apply(model, loss, y ? y + std::size_t(b) * O : nullptr,
                          classes ? classes + b : nullptr, weight, norm, s, g.data(),
                          grad.data());
      for (std::size_t i = 0; i < P; ++i) grad[i] += g[i];
    }
    for (int k = 0; k < L; ++k)
      for (int j = 0; j < H; ++j) {
        h_[std::size_t(k) * BH + std::size_t(b) * H + j] = s.h[std::size_t(k) * H + j];
        if (lstm) c_[std::size_t(k) * BH + std::size_t(b) * H + j] = s.c[std::size_t(k) * H + j];
      }
    std::copy(s.Mh.begin(), s.Mh.end(), Mh_.begin() + std::ptrdiff_t(m0));
    if (lstm) std::copy(s.Mc.begin(), s.Mc.end(), Mc_.begin() + std::ptrdiff_t(m0));
  }
  return total;
}

template <class Real>
void RtrlStream<Real>::state(std::vector<Real>& h, std::vector<Real>& c) const {
  h = h_;
  c = c_;
}

template <class Real>
std::size_t RtrlStream<Real>::bytes() const {
  return (h_.size() + c_.size() + Mh_.size() + Mc_.size()) * sizeof(Real);
}

template double rtrl_loss_and_gradients<float>(const Model<float>&, const Batch<float>&, LossKind,
                                               Gradients<float>&);
template double rtrl_loss_and_gradients<double>(const Model<double>&, const Batch<double>&,
                                                LossKind, Gradients<double>&);
template class RtrlStream<float>;
template class RtrlStream<double>;

}  // namespace bptt
