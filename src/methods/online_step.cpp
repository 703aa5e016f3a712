// One step of a plain stacked model for the online methods (online.hpp): the forward pass with
// each cell's local derivatives, and the step's forward-mode and reverse-mode passes built from
// them (docs/math.md 8e, "A cell's local derivatives").
#include <algorithm>
#include <cmath>

#include "bptt/error.hpp"
#include "kernels/activations.hpp"
#include "kernels/gemm.hpp"
#include "methods/online.hpp"

namespace bptt::online {

template <class Real>
Step<Real>::Step(const ModelConfig& cfg, int B)
    : cfg_(cfg),
      B_(B),
      H_(cfg.hidden_size),
      G_(cfg.gates()),
      Q_(cfg.cell == CellKind::lstm ? 2 : 1),
      L_(cfg.num_layers),
      S_(cfg.num_layers * (cfg.cell == CellKind::lstm ? 2 : 1) * cfg.hidden_size) {
  const std::size_t BH = std::size_t(B) * H_, BGH = BH * G_;
  const bool lstm = cfg.cell == CellKind::lstm;
  layers_.resize(std::size_t(L_));
  for (int k = 0; k < L_; ++k) {
    LayerStep<Real>& l = layers_[std::size_t(k)];
    l.in = cfg.layer_input_size(k);
    l.u.resize(std::size_t(B) * l.in);
    l.hp.resize(BH);
    l.h.resize(BH);
    l.cp.resize(lstm ? BH : 0);
    l.c.resize(lstm ? BH : 0);
    l.ax.resize(BGH);
    l.ah.resize(BGH);
    l.kx.assign(std::size_t(Q_) * BGH, Real(0));
    l.kh.assign(std::size_t(Q_) * BGH, Real(0));
    l.carry.assign(std::size_t(Q_) * Q_ * BH, Real(0));
    l.dh_dc.resize(lstm ? BH : 0);
  }
  cot_.resize(BH);
}

template <class Real>
void Step<Real>::forward(const Model<Real>& model, const Real* x, const std::vector<Real>& h,
                         const std::vector<Real>& c) {
  const auto V = model.views();
  const int B = B_, H = H_, G = G_, GH = G * H;
  const std::size_t BH = std::size_t(B) * H;
  for (int k = 0; k < L_; ++k) {
    LayerStep<Real>& l = layers_[std::size_t(k)];
    const auto& p = V.layers[std::size_t(k)];
    const Real* u = k == 0 ? x : layers_[std::size_t(k - 1)].h.data();
    std::copy(u, u + std::size_t(B) * l.in, l.u.begin());
    std::copy(h.begin() + std::ptrdiff_t(k * BH), h.begin() + std::ptrdiff_t((k + 1) * BH),
              l.hp.begin());
    if (!l.cp.empty())
      std::copy(c.begin() + std::ptrdiff_t(k * BH), c.begin() + std::ptrdiff_t((k + 1) * BH),
                l.cp.begin());
    work += std::int64_t(B) * GH * (l.in + H + Q_ * G);  // the two products, the cell
    kernels::gemm(false, true, B, GH, l.in, Real(1), l.u.data(), l.in, p.w_ih, l.in, Real(0),
                  l.ax.data(), GH);
    kernels::gemm(false, true, B, GH, H, Real(1), l.hp.data(), H, p.w_hh, H, Real(0),
                  l.ah.data(), GH);
    if (p.b_ih)
      for (int b = 0; b < B; ++b)
        for (int r = 0; r < GH; ++r) {
          l.ax[std::size_t(b) * GH + r] += p.b_ih[r];
          l.ah[std::size_t(b) * GH + r] += p.b_hh[r];
        }
    // K[q][g] and Δ[q][q'] at (b, j): index ((q·G + g)·B + b)·H + j and ((q·Q + q')·B + b)·H + j.
    const auto KX = [&](int q, int g) { return l.kx.data() + (std::size_t(q) * G + g) * BH; };
    const auto KH = [&](int q, int g) { return l.kh.data() + (std::size_t(q) * G + g) * BH; };
    const auto CR = [&](int q, int q2) { return l.carry.data() + (std::size_t(q) * Q_ + q2) * BH; };
    for (int b = 0; b < B; ++b) {
      const Real* ax = l.ax.data() + std::size_t(b) * GH;
      const Real* ah = l.ah.data() + std::size_t(b) * GH;
      for (int j = 0; j < H; ++j) {
        const std::size_t i = std::size_t(b) * H + j;
        switch (cfg_.cell) {
          case CellKind::elman: {
            const Real hv = kernels::activate(cfg_.nonlinearity, ax[j] + ah[j]);
            const Real d = kernels::derivative_from_output(cfg_.nonlinearity, hv);
            l.h[i] = hv;
            KX(0, 0)[i] = KH(0, 0)[i] = d;
            CR(0, 0)[i] = Real(0);
            break;
          }
          case CellKind::lstm: {
            const Real ig = kernels::sigmoid(ax[j] + ah[j]);
            const Real fg = kernels::sigmoid(ax[H + j] + ah[H + j]);
            const Real gg = kernels::tanh(ax[2 * H + j] + ah[2 * H + j]);
            const Real og = kernels::sigmoid(ax[3 * H + j] + ah[3 * H + j]);
            const Real cp = l.cp[i];
            const Real cn = fg * cp + ig * gg, tc = kernels::tanh(cn);
            const Real hc = og * (Real(1) - tc * tc);  // ∂h/∂c
            const Real kc[4] = {ig * (Real(1) - ig) * gg, fg * (Real(1) - fg) * cp,
                                ig * (Real(1) - gg * gg), Real(0)};
            const Real kh[4] = {hc * kc[0], hc * kc[1], hc * kc[2], og * (Real(1) - og) * tc};
            for (int g = 0; g < 4; ++g) {
              KX(0, g)[i] = KH(0, g)[i] = kh[g];
              KX(1, g)[i] = KH(1, g)[i] = kc[g];
            }
            CR(0, 0)[i] = Real(0);
            CR(0, 1)[i] = hc * fg;
            CR(1, 0)[i] = Real(0);
            CR(1, 1)[i] = fg;
            l.dh_dc[i] = hc;
            l.c[i] = cn;
            l.h[i] = og * tc;
            break;
          }
          case CellKind::gru: {
            const Real r = kernels::sigmoid(ax[j] + ah[j]);
            const Real z = kernels::sigmoid(ax[H + j] + ah[H + j]);
            const Real hn = ah[2 * H + j];  // W_hn h' + b_hn
            const Real n = kernels::tanh(ax[2 * H + j] + r * hn);
            const Real hp = l.hp[i];
            const Real dn = Real(1) - n * n;
            const Real kr = (Real(1) - z) * dn * hn * r * (Real(1) - r);
            const Real kz = (hp - n) * z * (Real(1) - z);
            KX(0, 0)[i] = KH(0, 0)[i] = kr;
            KX(0, 1)[i] = KH(0, 1)[i] = kz;
            KX(0, 2)[i] = (Real(1) - z) * dn;
            KH(0, 2)[i] = (Real(1) - z) * dn * r;
            CR(0, 0)[i] = z;
            l.h[i] = (Real(1) - z) * n + z * hp;
            break;
          }
        }
      }
    }
  }
}

template <class Real>
void Step<Real>::jvp(const Model<Real>& model, int R, const Real* prev, Real* next, int first) {
  const auto V = model.views();
  const int B = B_, H = H_, G = G_, GH = G * H, Q = Q_, S = S_;
  const int rows = B * R;
  const std::size_t BH = std::size_t(B) * H;
  tx_.resize(std::size_t(rows) * GH);
  th_.resize(std::size_t(rows) * GH);
  for (int k = first; k < L_; ++k) {
    const LayerStep<Real>& l = layers_[std::size_t(k)];
    const auto& p = V.layers[std::size_t(k)];
    const std::size_t base = std::size_t(k) * Q * H;  // layer k in the state vector
    const bool has_x = k > 0, has_h = prev != nullptr;
    work += std::int64_t(rows) * GH * ((has_x ? l.in : 0) + (has_h ? H : 0)) +
            std::int64_t(rows) * Q * H * (2 * G + Q);
    if (has_x)  // ȧ^x = (layer k−1's new h tangent) W_ihᵀ
      kernels::gemm(false, true, rows, GH, l.in, Real(1), next + base - std::size_t(Q) * H, S,
                    p.w_ih, l.in, Real(0), tx_.data(), GH);
    if (has_h)  // ȧ^h = (the previous h tangent) W_hhᵀ
      kernels::gemm(false, true, rows, GH, H, Real(1), prev + base, S, p.w_hh, H, Real(0),
                    th_.data(), GH);
    for (int b = 0; b < B; ++b)
      for (int r = 0; r < R; ++r) {
        const std::size_t row = std::size_t(b) * R + r;
        const Real* tx = tx_.data() + row * GH;
        const Real* th = th_.data() + row * GH;
        const Real* sp = has_h ? prev + row * S + base : nullptr;
        Real* sn = next + row * S + base;
        for (int q = 0; q < Q; ++q)
          for (int j = 0; j < H; ++j) {
            const std::size_t i = std::size_t(b) * H + j;
            Real v = 0;
            for (int g = 0; g < G; ++g) {
              const std::size_t at = (std::size_t(q) * G + g) * BH + i;
              if (has_x) v += l.kx[at] * tx[g * H + j];
              if (has_h) v += l.kh[at] * th[g * H + j];
            }
            if (has_h)
              for (int q2 = 0; q2 < Q; ++q2)
                v += l.carry[(std::size_t(q) * Q + q2) * BH + i] * sp[q2 * H + j];
            sn[q * H + j] = v;
          }
      }
  }
}

template <class Real>
void Step<Real>::vjp(const Model<Real>& model, const Real* cot,
                     std::vector<std::vector<Real>>& dax, std::vector<std::vector<Real>>& dah) {
  const auto V = model.views();
  const int B = B_, H = H_, G = G_, GH = G * H, Q = Q_, S = S_;
  const std::size_t BH = std::size_t(B) * H;
  dax.resize(std::size_t(L_));
  dah.resize(std::size_t(L_));
  for (int k = L_ - 1; k >= 0; --k) {
    const LayerStep<Real>& l = layers_[std::size_t(k)];
    const std::size_t base = std::size_t(k) * Q * H;
    dax[std::size_t(k)].resize(std::size_t(B) * GH);
    dah[std::size_t(k)].resize(std::size_t(B) * GH);
    // The cotangent of this layer's new h: its own, plus what layer k + 1 sends within the step.
    for (int b = 0; b < B; ++b)
      std::copy(cot + std::size_t(b) * S + base, cot + std::size_t(b) * S + base + H,
                cot_.begin() + std::ptrdiff_t(std::size_t(b) * H));
    work += std::int64_t(B) * GH * (2 * Q + (k + 1 < L_ ? H : 0));
    if (k + 1 < L_)
      kernels::gemm(false, false, B, H, GH, Real(1), dax[std::size_t(k + 1)].data(), GH,
                    V.layers[std::size_t(k + 1)].w_ih, H, Real(1), cot_.data(), H);
    for (int b = 0; b < B; ++b)
      for (int g = 0; g < G; ++g)
        for (int j = 0; j < H; ++j) {
          const std::size_t i = std::size_t(b) * H + j;
          Real vx = 0, vh = 0;
          for (int q = 0; q < Q; ++q) {
            const Real sq = q == 0 ? cot_[i] : cot[std::size_t(b) * S + base + std::size_t(q) * H + j];
            const std::size_t at = (std::size_t(q) * G + g) * BH + i;
            vx += l.kx[at] * sq;
            vh += l.kh[at] * sq;
          }
          dax[std::size_t(k)][std::size_t(b) * GH + std::size_t(g) * H + j] = vx;
          dah[std::size_t(k)][std::size_t(b) * GH + std::size_t(g) * H + j] = vh;
        }
  }
}

template <class Real>
void Step<Real>::add_param_grad(int k, const Real* dax, const Real* dah, Real* grad) const {
  const LayerStep<Real>& l = layers_[std::size_t(k)];
  const ParamViews<Real> D(cfg_, grad);
  const auto& d = D.layers[std::size_t(k)];
  const int GH = G_ * H_;
  work += std::int64_t(B_) * GH * (l.in + H_ + 2);
  kernels::gemm(true, false, GH, l.in, B_, Real(1), dax, GH, l.u.data(), l.in, Real(1), d.w_ih,
                l.in);
  kernels::gemm(true, false, GH, H_, B_, Real(1), dah, GH, l.hp.data(), H_, Real(1), d.w_hh, H_);
  if (d.b_ih) {
    kernels::sum_rows(B_, GH, dax, d.b_ih);
    kernels::sum_rows(B_, GH, dah, d.b_hh);
  }
}

std::vector<LayerOffsets> layer_offsets(const ModelConfig& cfg) {
  Model<double> m(cfg);
  const auto V = m.views();
  const double* base = m.params.data();
  std::vector<LayerOffsets> out;
  for (int k = 0; k < cfg.num_layers; ++k) {
    const auto& p = V.layers[std::size_t(k)];
    out.push_back({std::size_t(p.w_ih - base), std::size_t(p.w_hh - base),
                   p.b_ih ? std::size_t(p.b_ih - base) : kNone,
                   p.b_hh ? std::size_t(p.b_hh - base) : kNone, p.in});
  }
  return out;
}

std::size_t recurrent_count(const ModelConfig& cfg) {
  Model<double> m(cfg);
  return std::size_t(m.views().rnn_end - m.params.data());
}

template class Step<float>;
template class Step<double>;

}  // namespace bptt::online
