// SnAp-1 (Menick et al. 2021), one layer: of the influence matrix, only each unit's state
// against the unit's own parameters (rows j, H + j, … of every weight and bias), the entries
// RTRL has after one step (docs/math.md 8e). Per sequence, unit j and own parameter θ:
//   B_{q,q'} = Δ_{q,q'} + [q' = h] Σ_g K^h_{q,g} W_hh[gH + j, j]            (Q × Q)
//   M[q, θ] ← Σ_{q'} B_{q,q'} M[q', θ] + D[q, θ]     (D: K^x u_c, K^h h'_c, K^x, K^h)
//   g[θ] += e_{t,j} M[h, θ]
// M is stored like the arena's recurrent part, one copy per state component: [B, Q, P_rec].
#include <algorithm>

#include "bptt/error.hpp"
#include "methods/online.hpp"

namespace bptt::online {
namespace {

template <class Real>
class Snap1 final : public Estimator<Real> {
 public:
  Snap1(const ModelConfig& cfg, int B)
      : cfg_(cfg), B_(B), o_(layer_offsets(cfg)[0]), P_(recurrent_count(cfg)) {
    if (cfg.num_layers != 1)
      throw Error(ErrorKind::usage, "snap1", "SnAp-1 is defined for one layer",
                  "use --layers 1, or uoro or kf-rtrl for a stacked model");
    Q_ = cfg.cell == CellKind::lstm ? 2 : 1;
    M_.assign(std::size_t(B) * Q_ * P_, Real(0));
    A_.resize(std::size_t(Q_) * Q_ * B * cfg.hidden_size);
  }

  void reset() override { std::fill(M_.begin(), M_.end(), Real(0)); }

  void update(const Model<Real>& model, Step<Real>& st, const Real* e,
              const unsigned char* valid, std::int64_t, std::uint64_t, Real* grad) override {
    const int B = B_, H = cfg_.hidden_size, G = cfg_.gates(), Q = Q_;
    const std::size_t BH = std::size_t(B) * H;
    const Real* w_hh = model.params.data() + o_.w_hh;
    const LayerStep<Real>& l = st.layer(0);
    // Every unit's own block of J_t, B_{q,q'} at (b, j) (A_ here; B is the batch): Δ_{q,q'}
    // plus, for q' = h, the unit's own recurrent weights through K^h.
    for (int q = 0; q < Q; ++q)
      for (int q2 = 0; q2 < Q; ++q2) {
        Real* a = A_.data() + (std::size_t(q) * Q + q2) * BH;
        std::copy(st.carry_of(0, q, q2), st.carry_of(0, q, q2) + BH, a);
        if (q2 != 0) continue;
        for (int g = 0; g < G; ++g) {
          const Real* kh = st.kh_of(0, q, g);
          for (int b = 0; b < B; ++b)
            for (int j = 0; j < H; ++j)
              a[std::size_t(b) * H + j] +=
                  kh[std::size_t(b) * H + j] * w_hh[(std::size_t(g) * H + j) * H + j];
        }
      }
    const auto A = [&](int q, int q2) { return A_.data() + (std::size_t(q) * Q + q2) * BH; };
    // M ← A M + D, g += e_t M[h]: by groups of sequences (trace_rows).
    for (const std::vector<int>& group : sequence_groups(valid, B, kGroup / Q))
      for_blocks(o_, G, H, [&](const Block& blk) {
        const auto K = [&](int q) {
          return blk.hidden ? st.kh_of(0, q, blk.g) : st.kx_of(0, q, blk.g);
        };
        TraceSeq<Real> t[kGroup];
        for (std::size_t i = 0; i < group.size(); ++i) {
          const std::size_t b = std::size_t(group[i]);
          const std::size_t i0 = b * H + blk.j0;  // the block's first unit
          Real* m0 = M_.data() + b * Q * P_ + blk.off;
          t[i] = {m0,         Q == 2 ? m0 + P_ : nullptr,
                  A(0, 0) + i0, Q == 2 ? A(0, 1) + i0 : nullptr,
                  Q == 2 ? A(1, 0) + i0 : nullptr, Q == 2 ? A(1, 1) + i0 : nullptr,
                  K(0) + i0,  Q == 2 ? K(1) + i0 : nullptr,
                  e + i0,     nullptr,
                  block_input(blk, l, b, H)};
        }
        trace_rows(t, int(group.size()), grad + blk.off, blk.rows, blk.n);
      });
    for (int b = 0; b < B; ++b)
      if (!valid || valid[b]) work += std::int64_t(P_) * Q * (Q + 2);
  }

  std::vector<Carried<Real>> carried() override { return {{"snap1.M", &M_}}; }

 private:
  ModelConfig cfg_;
  int B_, Q_ = 1;
  LayerOffsets o_;
  std::size_t P_;
  std::vector<Real> M_;  // [B, Q, P_rec]
  std::vector<Real> A_;  // [Q, Q, B, H] every unit's own block of J_t
};

}  // namespace

template <class Real>
std::unique_ptr<Estimator<Real>> make_snap1(const ModelConfig& cfg, int B) {
  return std::make_unique<Snap1<Real>>(cfg, B);
}

template std::unique_ptr<Estimator<float>> make_snap1<float>(const ModelConfig&, int);
template std::unique_ptr<Estimator<double>> make_snap1<double>(const ModelConfig&, int);

}  // namespace bptt::online
