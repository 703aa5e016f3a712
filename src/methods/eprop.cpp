// e-prop (Bellec et al. 2020) with symmetric feedback, one layer (docs/math.md 8e). Each unit's
// internal state s* (LSTM: c; GRU, Elman: h) carries itself by Δ* at fixed pre-activations
// (LSTM f, GRU z, Elman 0); h' is an input like x. Per sequence, unit j and own parameter θ:
//   ε[θ] ← Δ* ε[θ] + K_{s*} · input          (the eligibility vector)
//   e[θ]  = ∂h/∂s* · ε[θ] + (K_h − ∂h/∂s*·K_{s*}) · input   (LSTM: the o rows' direct part)
//   g[θ] += L_{t,j} e[θ],   L_{t,j} = ∂ℓ_t/∂h_{t,j}        (no propagation through time)
// ε is stored like the arena's recurrent part: [B, P_rec].
#include <algorithm>

#include "bptt/error.hpp"
#include "methods/online.hpp"

namespace bptt::online {
namespace {

template <class Real>
class Eprop final : public Estimator<Real> {
 public:
  Eprop(const ModelConfig& cfg, int B)
      : cfg_(cfg), B_(B), o_(layer_offsets(cfg)[0]), P_(recurrent_count(cfg)) {
    if (cfg.num_layers != 1)
      throw Error(ErrorKind::usage, "eprop", "e-prop is defined for one layer",
                  "use --layers 1, or uoro or kf-rtrl for a stacked model");
    eps_.assign(std::size_t(B) * P_, Real(0));
  }

  void reset() override { std::fill(eps_.begin(), eps_.end(), Real(0)); }

  void update(const Model<Real>&, Step<Real>& st, const Real* e, const unsigned char* valid,
              std::int64_t, std::uint64_t, Real* grad) override {
    const int B = B_, H = cfg_.hidden_size, G = cfg_.gates();
    const bool lstm = cfg_.cell == CellKind::lstm;
    const int qs = lstm ? 1 : 0;  // s* in the local derivatives: c for LSTM, else h
    const LayerStep<Real>& l = st.layer(0);
    const int in = l.in;
    for (int b = 0; b < B; ++b) {
      if (valid && !valid[b]) continue;
      Real* eb = eps_.data() + std::size_t(b) * P_;
      const Real* u = l.u.data() + std::size_t(b) * in;
      const Real* hp = l.hp.data() + std::size_t(b) * H;
      for (int j = 0; j < H; ++j) {
        const std::size_t i = std::size_t(b) * H + j;
        const Real carry = st.carry_of(0, qs, qs)[i];
        const Real hs = lstm ? l.dh_dc[i] : Real(1);  // ∂h/∂s*
        const Real Lj = e[i];
        for (int g = 0; g < G; ++g) {
          const std::size_t r = std::size_t(g) * H + j;
          const Real ksx = st.kx_of(0, qs, g)[i], ksh = st.kh_of(0, qs, g)[i];
          const Real extra_x = lstm ? st.kx_of(0, 0, g)[i] - hs * ksx : Real(0);
          const Real extra_h = lstm ? st.kh_of(0, 0, g)[i] - hs * ksh : Real(0);
          const auto row = [&](std::size_t off, Real k, Real extra, const Real* src, int n) {
            work += 4 * std::int64_t(n);
            Real* ev = eb + off;
            Real* gw = grad + off;
            const Real a = Lj * hs, x = Lj * extra;
            for (int c = 0; c < n; ++c) {
              const Real in_c = src ? src[c] : Real(1);
              const Real v = carry * ev[c] + k * in_c;
              ev[c] = v;
              gw[c] += a * v + x * in_c;
            }
          };
          row(o_.w_ih + r * in, ksx, extra_x, u, in);
          row(o_.w_hh + r * H, ksh, extra_h, hp, H);
          if (o_.b_ih != kNone) {
            row(o_.b_ih + r, ksx, extra_x, nullptr, 1);
            row(o_.b_hh + r, ksh, extra_h, nullptr, 1);
          }
        }
      }
    }
  }

  std::vector<Carried<Real>> carried() override { return {{"eprop.eps", &eps_}}; }

 private:
  ModelConfig cfg_;
  int B_;
  LayerOffsets o_;
  std::size_t P_;
  std::vector<Real> eps_;  // [B, P_rec]
};

}  // namespace

template <class Real>
std::unique_ptr<Estimator<Real>> make_eprop(const ModelConfig& cfg, int B) {
  return std::make_unique<Eprop<Real>>(cfg, B);
}

template std::unique_ptr<Estimator<float>> make_eprop<float>(const ModelConfig&, int);
template std::unique_ptr<Estimator<double>> make_eprop<double>(const ModelConfig&, int);

}  // namespace bptt::online
