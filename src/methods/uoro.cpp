// UORO (Tallec & Ollivier 2018): each sequence carries a rank-one, unbiased estimate s̃ θ̃ᵀ of its
// influence matrix ∂s_t/∂θ (docs/math.md 8e). Per step and sequence:
//   ṡ  = J_t s̃                                 (Step::jvp, one tangent)
//   g += e_tᵀ D_t + (e_t · ṡ) θ̃                 (the immediate part exact: Step::vjp with e_t)
//   v  = νᵀ D_t                                 (Step::vjp with the random signs ν)
//   ρ₀ = √(‖θ̃‖ / (‖ṡ‖ + ε)) + ε,  ρ₁ = √(‖v‖ / (‖ν‖ + ε)) + ε
//   s̃ ← ρ₀ ṡ + ρ₁ ν,   θ̃ ← θ̃/ρ₀ + v/ρ₁
// θ̃ spans the recurrent layers' parameters ([0, recurrent_count) of the arena); v is, per
// layer, the outer products (dax ⊗ u, dah ⊗ h', dax, dah), so ‖v‖² = Σ ‖dax‖²(‖u‖² + 1) + … and
// the update, the gradient term and the next ‖θ̃‖ are one pass over θ̃ (uoro_rows).
#include <algorithm>
#include <cmath>

#include "methods/online.hpp"

namespace bptt::online {
namespace {

template <class Real>
class Uoro final : public Estimator<Real> {
 public:
  Uoro(const ModelConfig& cfg, int B)
      : cfg_(cfg), B_(B), offsets_(layer_offsets(cfg)), P_(recurrent_count(cfg)) {
    const int Q = cfg.cell == CellKind::lstm ? 2 : 1;
    S_ = cfg.num_layers * Q * cfg.hidden_size;
    s_.assign(std::size_t(B) * S_, Real(0));
    theta_.assign(std::size_t(B) * P_, Real(0));
    norm_.assign(std::size_t(B), Real(0));
    sdot_.resize(s_.size());
    nu_.resize(s_.size());
    cot_.resize(s_.size());
    c_.resize(std::size_t(B));
    inv0_.resize(std::size_t(B));
    inv1_.resize(std::size_t(B));
    n2_.resize(std::size_t(B));
  }

  void reset() override {
    std::fill(s_.begin(), s_.end(), Real(0));
    std::fill(theta_.begin(), theta_.end(), Real(0));
    std::fill(norm_.begin(), norm_.end(), Real(0));
  }

  void update(const Model<Real>& model, Step<Real>& st, const Real* e,
              const unsigned char* valid, std::int64_t t, std::uint64_t seed,
              Real* grad) override {
    const int B = B_, S = S_, H = cfg_.hidden_size, L = cfg_.num_layers, G = cfg_.gates();
    const int GH = G * H;
    const std::size_t top = std::size_t(L - 1) * st.Q() * H;  // the top h in the state vector
    // ṡ = J_t s̃ for every sequence (one tangent each).
    st.jvp(model, 1, s_.data(), sdot_.data(), 0);
    // The immediate part, exact: e_tᵀ D_t summed over the batch.
    std::fill(cot_.begin(), cot_.end(), Real(0));
    for (int b = 0; b < B; ++b)
      std::copy(e + std::size_t(b) * H, e + std::size_t(b + 1) * H,
                cot_.begin() + std::ptrdiff_t(std::size_t(b) * S + top));
    st.vjp(model, cot_.data(), dax_, dah_);
    for (int k = 0; k < L; ++k)
      st.add_param_grad(k, dax_[std::size_t(k)].data(), dah_[std::size_t(k)].data(), grad);
    // v = νᵀ D_t per sequence, through the pre-activation cotangents.
    for (int b = 0; b < B; ++b) signs(seed, t, b, S, nu_.data() + std::size_t(b) * S);
    st.vjp(model, nu_.data(), dax_, dah_);
    const double nu_norm = std::sqrt(double(S));
    const bool bias = offsets_[0].b_ih != kNone;
    // Each sequence's scalars: c = e_t · ṡ, ‖v‖, ρ₀ and ρ₁; and s̃ ← ρ₀ ṡ + ρ₁ ν.
    for (int b = 0; b < B; ++b) {
      if (valid && !valid[b]) continue;
      const Real* sd = sdot_.data() + std::size_t(b) * S;
      double c = 0;
      for (int j = 0; j < H; ++j) c += double(e[std::size_t(b) * H + j]) * double(sd[top + j]);
      double v2 = 0;
      for (int k = 0; k < L; ++k) {
        const LayerStep<Real>& l = st.layer(k);
        const double ax2 = sq_norm(dax_[std::size_t(k)].data() + std::size_t(b) * GH, GH);
        const double ah2 = sq_norm(dah_[std::size_t(k)].data() + std::size_t(b) * GH, GH);
        const double u2 = sq_norm(l.u.data() + std::size_t(b) * l.in, std::size_t(l.in));
        const double h2 = sq_norm(l.hp.data() + std::size_t(b) * H, std::size_t(H));
        v2 += ax2 * (u2 + (bias ? 1 : 0)) + ah2 * (h2 + (bias ? 1 : 0));
      }
      const double rho0 = balance(double(norm_[std::size_t(b)]), std::sqrt(sq_norm(sd, S)));
      const double rho1 = balance(std::sqrt(v2), nu_norm);
      Real* sb = s_.data() + std::size_t(b) * S;
      const Real* nb = nu_.data() + std::size_t(b) * S;
      for (int i = 0; i < S; ++i) sb[i] = Real(rho0 * double(sd[i]) + rho1 * double(nb[i]));
      c_[std::size_t(b)] = Real(c);
      inv0_[std::size_t(b)] = Real(1 / rho0);
      inv1_[std::size_t(b)] = Real(1 / rho1);
      n2_[std::size_t(b)] = 0;
      work += std::int64_t(3 * S + H) + 3 * std::int64_t(P_) +
              std::int64_t(L) * 2 * (GH + st.layer(0).in + H);
    }
    // One pass over θ̃: grad += c·θ̃ (the old one), θ̃ ← θ̃/ρ₀ + v/ρ₁ with v's rows
    // (dax ⊗ u, dah ⊗ h', dax, dah), and the new ‖θ̃‖²; by groups of sequences (uoro_rows).
    for (const std::vector<int>& group : sequence_groups(valid, B))
      for (int k = 0; k < L; ++k) {
        const LayerStep<Real>& l = st.layer(k);
        for_blocks(offsets_[std::size_t(k)], G, H, [&](const Block& blk) {
          UoroSeq<Real> q[kGroup];
          for (std::size_t i = 0; i < group.size(); ++i) {
            const std::size_t b = std::size_t(group[i]);
            q[i].w = theta_.data() + b * P_ + blk.off;
            q[i].d = (blk.hidden ? dah_ : dax_)[std::size_t(k)].data() + b * GH +
                     std::size_t(blk.g) * H + blk.j0;
            q[i].src = block_input(blk, l, b, H);
            q[i].cr = c_[b];
            q[i].inv0 = inv0_[b];
            q[i].inv1 = inv1_[b];
            q[i].n2 = 0;
          }
          uoro_rows(q, int(group.size()), grad + blk.off, blk.rows, blk.n);
          for (std::size_t i = 0; i < group.size(); ++i) n2_[std::size_t(group[i])] += q[i].n2;
        });
      }
    for (int b = 0; b < B; ++b)
      if (!valid || valid[b]) norm_[std::size_t(b)] = Real(std::sqrt(n2_[std::size_t(b)]));
  }

  std::vector<Carried<Real>> carried() override {
    return {{"uoro.s", &s_}, {"uoro.theta", &theta_}, {"uoro.theta_norm", &norm_}};
  }

 private:
  ModelConfig cfg_;
  int B_, S_ = 0;
  std::vector<LayerOffsets> offsets_;
  std::size_t P_;
  std::vector<Real> s_;      // [B, S] s̃
  std::vector<Real> theta_;  // [B, P_rec] θ̃
  std::vector<Real> norm_;   // [B] ‖θ̃‖
  std::vector<Real> sdot_, nu_, cot_;
  std::vector<Real> c_, inv0_, inv1_;  // [B] e_t · ṡ, 1/ρ₀, 1/ρ₁ of this step
  std::vector<double> n2_;             // [B] the new ‖θ̃‖²
  std::vector<std::vector<Real>> dax_, dah_;
};

}  // namespace

template <class Real>
std::unique_ptr<Estimator<Real>> make_uoro(const ModelConfig& cfg, int B) {
  return std::make_unique<Uoro<Real>>(cfg, B);
}

template std::unique_ptr<Estimator<float>> make_uoro<float>(const ModelConfig&, int);
template std::unique_ptr<Estimator<double>> make_uoro<double>(const ModelConfig&, int);

}  // namespace bptt::online
