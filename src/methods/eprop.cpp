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
    const std::size_t BH = std::size_t(B) * cfg.hidden_size;
    lh_.resize(BH);
    if (cfg.cell == CellKind::lstm) {
      xx_.resize(std::size_t(cfg.gates()) * BH);
      xh_.resize(std::size_t(cfg.gates()) * BH);
    }
  }

  void reset() override { std::fill(eps_.begin(), eps_.end(), Real(0)); }

  void update(const Model<Real>&, Step<Real>& st, const Real* e, const unsigned char* valid,
              std::int64_t, std::uint64_t, Real* grad) override {
    const int B = B_, H = cfg_.hidden_size, G = cfg_.gates();
    const std::size_t BH = std::size_t(B) * H;
    const bool lstm = cfg_.cell == CellKind::lstm;
    const int qs = lstm ? 1 : 0;  // s* in the local derivatives: c for LSTM, else h
    const LayerStep<Real>& l = st.layer(0);
    // The rows' coefficients at (b, j): L·∂h/∂s* and, for LSTM, L·(K_h − ∂h/∂s*·K_{s*}) per gate
    // and input (the o rows' direct part).
    for (std::size_t i = 0; i < BH; ++i) lh_[i] = e[i] * (lstm ? l.dh_dc[i] : Real(1));
    if (lstm)
      for (int g = 0; g < G; ++g)
        for (std::size_t i = 0; i < BH; ++i) {
          const Real hs = l.dh_dc[i];
          xx_[std::size_t(g) * BH + i] = e[i] * (st.kx_of(0, 0, g)[i] - hs * st.kx_of(0, qs, g)[i]);
          xh_[std::size_t(g) * BH + i] = e[i] * (st.kh_of(0, 0, g)[i] - hs * st.kh_of(0, qs, g)[i]);
        }
    const Real* carry = st.carry_of(0, qs, qs);
    // ε ← Δ* ε + K_{s*}·input, g += L·(∂h/∂s*·ε + extra·input): by groups of sequences
    // (trace_rows).
    for (const std::vector<int>& group : sequence_groups(valid, B))
      for_blocks(o_, G, H, [&](const Block& blk) {
        const Real* k = blk.hidden ? st.kh_of(0, qs, blk.g) : st.kx_of(0, qs, blk.g);
        const Real* x = !lstm ? nullptr : (blk.hidden ? xh_ : xx_).data() + std::size_t(blk.g) * BH;
        TraceSeq<Real> t[kGroup];
        for (std::size_t i = 0; i < group.size(); ++i) {
          const std::size_t b = std::size_t(group[i]);
          const std::size_t i0 = b * H + blk.j0;
          t[i] = {eps_.data() + b * P_ + blk.off, nullptr, carry + i0, nullptr, nullptr, nullptr,
                  k + i0, nullptr, lh_.data() + i0, x ? x + i0 : nullptr,
                  block_input(blk, l, b, H)};
        }
        trace_rows(t, int(group.size()), grad + blk.off, blk.rows, blk.n);
      });
    for (int b = 0; b < B; ++b)
      if (!valid || valid[b]) work += 4 * std::int64_t(P_);
  }

  std::vector<Carried<Real>> carried() override { return {{"eprop.eps", &eps_}}; }

 private:
  ModelConfig cfg_;
  int B_;
  LayerOffsets o_;
  std::size_t P_;
  std::vector<Real> eps_;      // [B, P_rec]
  std::vector<Real> lh_;       // [B, H] L·∂h/∂s*
  std::vector<Real> xx_, xh_;  // [G, B, H] LSTM: L·(K_h − ∂h/∂s*·K_{s*}) for u and h'
};

}  // namespace

template <class Real>
std::unique_ptr<Estimator<Real>> make_eprop(const ModelConfig& cfg, int B) {
  return std::make_unique<Eprop<Real>>(cfg, B);
}

template std::unique_ptr<Estimator<float>> make_eprop<float>(const ModelConfig&, int);
template std::unique_ptr<Estimator<double>> make_eprop<double>(const ModelConfig&, int);

}  // namespace bptt::online
