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
#include "bptt/precision.hpp"
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
  throw Error(ErrorKind::usage, "rtrl", "softmax is not an elementwise nonlinearity");
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
  throw Error(ErrorKind::usage, "rtrl", "softmax is not an elementwise nonlinearity");
}

constexpr std::size_t npos = std::size_t(-1);

// Column offsets of one layer's parameters in the arena (= their column in M); npos for the
// tensors the layer does not have (biases of a bias-free layer, W_hr without a projection).
struct LayerCols {
  std::size_t w_ih, w_hh, b_ih, b_hh, w_hr;
};

// One sequence's state and sensitivities, and the scratch of one step.
template <class Real>
struct Carry {
  std::size_t N = 0;
  std::vector<Real> h, c;    // [L, H_out], [L, H]
  std::vector<Real> Mh, Mc;  // [L, H_out, N], [L, H, N]
};

template <class Real>
struct Scratch {
  std::vector<Real> ax, ah;    // [G·H] pre-activations, x side and h side
  std::vector<Real> dax, dah;  // [G·H, N]
  std::vector<Real> hn, cn, Mhn, Mcn;  // one layer's cell output [H] (m with a projection),
                                       // new c [H] and their sensitivities [H, N]
  std::vector<Real> hp, Mhp;           // with a projection: h = W_hr m [P] and its [P, N]
};

// The forward-mode step of every layer of one sequence. x: [I]; x_col: the column of x_t[0] in
// M (inputs are columns x_col .. x_col + I − 1), or npos when inputs are not differentiated.
template <class Real>
void advance(const Model<Real>& model, const std::vector<LayerCols>& cols, const Real* x,
             std::size_t x_col, Carry<Real>& s, Scratch<Real>& w) {
  const ModelConfig& cfg = model.cfg;
  const int H = cfg.hidden_size, G = cfg.gates(), GH = G * H, HO = cfg.state_size(),
            P = cfg.proj_size;
  const std::size_t N = s.N;
  const auto V = model.views();
  w.ax.resize(std::size_t(GH));
  w.ah.resize(std::size_t(GH));
  w.dax.resize(std::size_t(GH) * N);
  w.dah.resize(std::size_t(GH) * N);
  w.hn.resize(std::size_t(H));
  w.cn.resize(std::size_t(H));
  w.Mhn.resize(std::size_t(H) * N);
  w.Mcn.resize(std::size_t(H) * N);
  w.hp.resize(std::size_t(P));
  w.Mhp.resize(std::size_t(P) * N);
  for (int k = 0; k < cfg.num_layers; ++k) {
    const auto& p = V.layers[std::size_t(k)];
    const LayerCols& lc = cols[std::size_t(k)];
    const int in = p.in;
    const Real* u = k == 0 ? x : s.h.data() + std::size_t(k - 1) * HO;  // already the new h(k-1)
    Real* hp = s.h.data() + std::size_t(k) * HO;
    Real* cp = s.c.empty() ? nullptr : s.c.data() + std::size_t(k) * H;
    Real* Mhp = s.Mh.data() + std::size_t(k) * HO * N;
    Real* Mcp = s.Mc.empty() ? nullptr : s.Mc.data() + std::size_t(k) * H * N;
    // Values.
    for (int r = 0; r < GH; ++r) {
      Real a = p.b_ih ? p.b_ih[r] : Real(0), b = p.b_hh ? p.b_hh[r] : Real(0);
      for (int c = 0; c < in; ++c) a += p.w_ih[std::size_t(r) * in + c] * u[c];
      for (int c = 0; c < HO; ++c) b += p.w_hh[std::size_t(r) * HO + c] * hp[c];
      w.ax[std::size_t(r)] = a, w.ah[std::size_t(r)] = b;
    }
    // Tangents: the products through the state, then the direct parts.
    if (k == 0)
      std::fill(w.dax.begin(), w.dax.end(), Real(0));
    else
      kernels::gemm(false, false, GH, int(N), in, Real(1), p.w_ih, in,
                    s.Mh.data() + std::size_t(k - 1) * HO * N, int(N), Real(0), w.dax.data(),
                    int(N));
    kernels::gemm(false, false, GH, int(N), HO, Real(1), p.w_hh, HO, Mhp, int(N), Real(0),
                  w.dah.data(), int(N));
    for (int r = 0; r < GH; ++r) {
      Real* dx = w.dax.data() + std::size_t(r) * N;
      Real* dh = w.dah.data() + std::size_t(r) * N;
      for (int c = 0; c < in; ++c) dx[lc.w_ih + std::size_t(r) * in + c] += u[c];
      if (lc.b_ih != npos) dx[lc.b_ih + std::size_t(r)] += Real(1);
      for (int c = 0; c < HO; ++c) dh[lc.w_hh + std::size_t(r) * HO + c] += hp[c];
      if (lc.b_hh != npos) dh[lc.b_hh + std::size_t(r)] += Real(1);
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
          w.hn[J] = o * tc;  // m with a projection
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
    if (P) {  // h = W_hr m: M_h = W_hr M_m + m in the columns of W_hr
      for (int r = 0; r < P; ++r) {
        Real v = 0;
        for (int c = 0; c < H; ++c) v += p.w_hr[std::size_t(r) * H + c] * w.hn[std::size_t(c)];
        w.hp[std::size_t(r)] = v;
      }
      kernels::gemm(false, false, P, int(N), H, Real(1), p.w_hr, H, w.Mhn.data(), int(N),
                    Real(0), w.Mhp.data(), int(N));
      for (int r = 0; r < P; ++r)
        for (int c = 0; c < H; ++c)
          w.Mhp[std::size_t(r) * N + lc.w_hr + std::size_t(r) * H + c] += w.hn[std::size_t(c)];
      std::copy(w.hp.begin(), w.hp.end(), hp);
      std::copy(w.Mhp.begin(), w.Mhp.end(), Mhp);
    } else {
      std::copy(w.hn.begin(), w.hn.end(), hp);
      std::copy(w.Mhn.begin(), w.Mhn.end(), Mhp);
    }
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
  const auto col = [&](const Real* p) { return p ? std::size_t(p - base) : npos; };
  std::vector<LayerCols> cols;
  for (const auto& p : P.layers)
    cols.push_back({col(p.w_ih), col(p.w_hh), col(p.b_ih), col(p.b_hh), col(p.w_hr)});
  return cols;
}

// The initial state of one sequence b (the batch's, the learned one or zeros: initial_states)
// with its sensitivities: ∂h0/∂(the sequence's own h0) = I in columns col_h0 (npos: none), and
// ∂h0/∂init.h0 = I in init.h0's parameter columns when the model learns it and the batch does
// not give it; the same for c.
template <class Real>
void start(const Model<Real>& model, const BatchView<Real>* batch, const std::vector<Real>& h0,
           const std::vector<Real>& c0, int B, int b, std::size_t col_h0, std::size_t col_c0,
           Carry<Real>& s) {
  const ModelConfig& cfg = model.cfg;
  const int L = cfg.num_layers, H = cfg.hidden_size, HO = cfg.state_size();
  const bool lstm = cfg.cell == CellKind::lstm;
  const std::size_t N = s.N, LHO = std::size_t(L) * HO, LH = std::size_t(L) * H;
  const auto V = model.views();
  s.h.assign(LHO, Real(0));
  s.c.assign(lstm ? LH : 0, Real(0));
  for (int k = 0; k < L; ++k) {
    for (int j = 0; j < HO; ++j) s.h[std::size_t(k) * HO + j] = h0[(std::size_t(k) * B + b) * HO + j];
    for (int j = 0; j < H && lstm; ++j) s.c[std::size_t(k) * H + j] = c0[(std::size_t(k) * B + b) * H + j];
  }
  s.Mh.assign(LHO * N, Real(0));
  s.Mc.assign(lstm ? LH * N : 0, Real(0));
  const bool own_h = !batch || !batch->h0.empty(), own_c = !batch || !batch->c0.empty();
  const std::size_t init_h = V.h0 ? std::size_t(V.h0 - model.params.data()) : npos,
                    init_c = V.c0 ? std::size_t(V.c0 - model.params.data()) : npos;
  for (std::size_t r = 0; r < LHO; ++r) {
    if (col_h0 != npos) s.Mh[r * N + col_h0 + r] = Real(1);
    if (init_h != npos && !own_h) s.Mh[r * N + init_h + r] = Real(1);
  }
  for (std::size_t r = 0; r < LH && lstm; ++r) {
    if (col_c0 != npos) s.Mc[r * N + col_c0 + r] = Real(1);
    if (init_c != npos && !own_c) s.Mc[r * N + init_c + r] = Real(1);
  }
}

// The loss of one step of one sequence and the head's part of the gradient:
//   z = W_o h_top + b_o, ℓ (weight w / norm), dL/dz; grad[v] += dzᵀ W_o M_top[:, v] for the
// N columns, and the head's parameters (direct) into param_grad. A head-less model has z = h_top
// (W_o = I, no parameters).
template <class Real>
class StepLoss {
 public:
  explicit StepLoss(const ModelConfig& cfg) : cfg_(cfg) {
    one_.T = 1, one_.B = 1;
    z_.resize(std::size_t(cfg.output_size));
    yhat_ = dz_ = z_;
    dh_.resize(std::size_t(cfg.state_size()));
  }

  double apply(const Model<Real>& model, LossKind loss, const Real* y, const std::int64_t* cls,
               double weight, double norm, const Carry<Real>& s, Real* grad_cols,
               Real* param_grad) {
    const int H = cfg_.state_size(), O = cfg_.output_size, L = cfg_.num_layers;
    const auto P = model.views();
    const Real* h = s.h.data() + std::size_t(L - 1) * H;
    for (int o = 0; o < O; ++o) {
      if (!P.w_o) {  // head-less: O = H
        z_[std::size_t(o)] = h[o];
        continue;
      }
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
    if (D.w_o)
      for (int o = 0; o < O; ++o) {
        D.b_o[o] += dz_[std::size_t(o)];
        for (int j = 0; j < H; ++j) D.w_o[std::size_t(o) * H + j] += dz_[std::size_t(o)] * h[j];
      }
    // Through the state: dL/dh_top = W_oᵀ dz (dz itself without a head), then grad += dhᵀ M.
    if (!P.w_o) {
      std::copy(dz_.begin(), dz_.end(), dh_.begin());
    } else {
      std::fill(dh_.begin(), dh_.end(), Real(0));
      for (int o = 0; o < O; ++o)
        for (int j = 0; j < H; ++j)
          dh_[std::size_t(j)] += P.w_o[std::size_t(o) * H + j] * dz_[std::size_t(o)];
    }
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

// RTRL's influence-matrix products run at the model's own precision: under bf16 products
// (bptt/precision.hpp) it refuses rather than compute something else than asked.
static void refuse_bf16(const char* what) {
  if (MatmulScope::current() == Matmul::bf16)
    throw Error(ErrorKind::usage, "rtrl", std::string(what) + " runs its products in the model's own precision, not bf16",
                "use --dtype f32, or a BPTT method (bptt, recompute, truncated:K) for bf16");
}

template <class Real>
double rtrl_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                               Gradients<Real>& grads) {
  const ModelConfig& cfg = model.cfg;
  refuse_bf16("RTRL");
  model.check("model");
  require_options(cfg, {.causal = true, .layer_norm = false, .zoneout = false}, "rtrl", "RTRL");
  require_no_masks<Real>(batch, "rtrl", "RTRL");
  batch.check_shapes(cfg, "batch");
  batch.check_targets(cfg, loss, "batch");
  grads.check(cfg, batch.T, batch.B);
  const int T = batch.T, B = batch.B, L = cfg.num_layers, H = cfg.hidden_size,
            HO = cfg.state_size(), I = cfg.input_size;
  const bool lstm = cfg.cell == CellKind::lstm;
  const std::size_t P = model.params.size(), LHO = std::size_t(L) * HO, LH = std::size_t(L) * H;
  // Columns: parameters | this sequence's x [T, I] | h0 [L, H_out] | c0 [L, H] (LSTM).
  const std::size_t col_x = P, col_h0 = col_x + std::size_t(T) * I, col_c0 = col_h0 + LHO;
  const std::size_t N = col_c0 + (lstm ? LH : 0);
  const double norm = total_weight<Real>(batch);
  if (!(norm > 0))
    throw Error(ErrorKind::value, "rtrl",
                "every step has weight 0 (all masked or past the lengths)",
                "give at least one step inside a sequence a positive mask value");
  const auto cols = layer_columns(model);
  StepLoss<Real> head(cfg);
  Carry<Real> s;
  Scratch<Real> w;
  std::vector<Real> g(N), h0, c0;
  initial_states(model, batch, h0, c0);
  double total = 0;
  for (int b = 0; b < B; ++b) {
    s.N = N;
    start(model, &batch, h0, c0, B, b, col_h0, col_c0, s);
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
    for (int k = 0; k < L; ++k) {
      for (int j = 0; j < HO; ++j)
        grads.h0[(std::size_t(k) * B + b) * HO + j] += g[col_h0 + std::size_t(k) * HO + j];
      for (int j = 0; j < H && lstm && !grads.c0.empty(); ++j)
        grads.c0[(std::size_t(k) * B + b) * H + j] += g[col_c0 + std::size_t(k) * H + j];
    }
  }
  return total;
}

// ---- online RTRL over streams ----

template <class Real>
RtrlStream<Real>::RtrlStream(const ModelConfig& cfg, int B) : cfg_(cfg), B_(B) {
  refuse_bf16("online RTRL");
  require_options(cfg, {.causal = true, .layer_norm = false, .zoneout = false}, "rtrl",
                  "online RTRL");
  if (cfg.initial_state == InitialState::zero) reset({}, {});
}

template <class Real>
void RtrlStream<Real>::reset(const std::vector<Real>& h0, const std::vector<Real>& c0) {
  if (cfg_.initial_state == InitialState::learned && (h0.empty() || (cfg_.cell == CellKind::lstm && c0.empty())))
    throw Error(ErrorKind::usage, "rtrl",
                "the model learns its initial state, which reset(h0, c0) does not see",
                "call reset(model, h0, c0)");
  reset(Model<Real>(cfg_), h0, c0);
}

template <class Real>
void RtrlStream<Real>::reset(const Model<Real>& model, const std::vector<Real>& h0,
                             const std::vector<Real>& c0) {
  const std::size_t P = param_count(cfg_), LHO = std::size_t(cfg_.num_layers) * cfg_.state_size(),
                    LH = std::size_t(cfg_.num_layers) * cfg_.hidden_size;
  const bool lstm = cfg_.cell == CellKind::lstm;
  Batch<Real> given;  // the states as a batch, for initial_states
  given.B = B_;
  given.h0 = h0;
  given.c0 = lstm ? c0 : std::vector<Real>{};
  initial_states(model, given, h_, c_);
  Mh_.assign(std::size_t(B_) * LHO * P, Real(0));
  Mc_.assign(lstm ? std::size_t(B_) * LH * P : 0, Real(0));
  Carry<Real> s;
  s.N = P;
  const BatchView<Real> given_view = given;
  for (int b = 0; b < B_; ++b) {  // the learned state's columns (none for given states)
    start(model, &given_view, h_, c_, B_, b, npos, npos, s);
    std::copy(s.Mh.begin(), s.Mh.end(), Mh_.begin() + std::ptrdiff_t(std::size_t(b) * LHO * P));
    if (lstm) std::copy(s.Mc.begin(), s.Mc.end(), Mc_.begin() + std::ptrdiff_t(std::size_t(b) * LH * P));
  }
}

template <class Real>
double RtrlStream<Real>::step(const Model<Real>& model, LossKind loss, const Real* x,
                              const Real* y, const std::int64_t* classes, const Real* w,
                              double norm, std::vector<Real>& grad) {
  const int L = cfg_.num_layers, H = cfg_.hidden_size, HO = cfg_.state_size(),
            I = cfg_.input_size, O = cfg_.output_size;
  const std::size_t P = model.params.size(), LH = std::size_t(L) * H, BH = std::size_t(B_) * H,
                    LHO = std::size_t(L) * HO, BHO = std::size_t(B_) * HO;
  if (Mh_.size() != std::size_t(B_) * LHO * P)
    throw Error(ErrorKind::usage, "rtrl", "the stream has no state yet",
                "call reset(model, h0, c0) first");
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
    // Gather sequence b's state ([L, B, ·] -> [L, ·]) and sensitivities ([B, L, ·, P]).
    s.h.resize(LHO);
    s.c.resize(lstm ? LH : 0);
    for (int k = 0; k < L; ++k) {
      for (int j = 0; j < HO; ++j)
        s.h[std::size_t(k) * HO + j] = h_[std::size_t(k) * BHO + std::size_t(b) * HO + j];
      for (int j = 0; j < H && lstm; ++j)
        s.c[std::size_t(k) * H + j] = c_[std::size_t(k) * BH + std::size_t(b) * H + j];
    }
    const std::size_t mh = std::size_t(b) * LHO * P, mc = std::size_t(b) * LH * P;
    s.Mh.assign(Mh_.begin() + std::ptrdiff_t(mh), Mh_.begin() + std::ptrdiff_t(mh + LHO * P));
    if (lstm)
      s.Mc.assign(Mc_.begin() + std::ptrdiff_t(mc), Mc_.begin() + std::ptrdiff_t(mc + LH * P));
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
    for (int k = 0; k < L; ++k) {
      for (int j = 0; j < HO; ++j)
        h_[std::size_t(k) * BHO + std::size_t(b) * HO + j] = s.h[std::size_t(k) * HO + j];
      for (int j = 0; j < H && lstm; ++j)
        c_[std::size_t(k) * BH + std::size_t(b) * H + j] = s.c[std::size_t(k) * H + j];
    }
    std::copy(s.Mh.begin(), s.Mh.end(), Mh_.begin() + std::ptrdiff_t(mh));
    if (lstm) std::copy(s.Mc.begin(), s.Mc.end(), Mc_.begin() + std::ptrdiff_t(mc));
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

template double rtrl_loss_and_gradients<float>(const Model<float>&, const BatchView<float>&, LossKind,
                                               Gradients<float>&);
template double rtrl_loss_and_gradients<double>(const Model<double>&, const BatchView<double>&,
                                                LossKind, Gradients<double>&);
template class RtrlStream<float>;
template class RtrlStream<double>;

}  // namespace bptt
