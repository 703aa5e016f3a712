// KF-RTRL (Mujika, Meier & Steger 2018): the influence of each parameter group carried as a
// Kronecker product u ⊗ A, an unbiased estimate (docs/math.md 8e). A group is a set of tensors
// whose rows feed the same pre-activation: Elman and LSTM one per layer, [W_ih | W_hh | b_ih |
// b_hh] with input ĥ = [u; h'; 1; 1]; GRU two, [W_ih | b_ih] with [u; 1] and [W_hh | b_hh] with
// [h'; 1]. Per step, sequence and group (signs c₁, c₂ = signs 2γ, 2γ + 1):
//   A' = J_t A                (Step::jvp with the G·H columns of A as tangents)
//   D  = ∂s_t/∂a              (the layer's K on its own units, carried through the layers above)
//   p₁ = √(‖A'‖ / (‖u‖ + ε)) + ε,  p₂ = √(‖D‖ / (‖ĥ‖ + ε)) + ε
//   u ← c₁p₁ u + c₂p₂ ĥ,  A ← (c₁/p₁) A' + (c₂/p₂) D,   g[W̃[r, c]] += (e_tᵀ A)_r u_c
// A is stored tangent-major, [B, G·H, S]: column r of sequence b is a state vector.
#include <algorithm>
#include <cmath>

#include "kernels/gemm.hpp"
#include "methods/online.hpp"

namespace bptt::online {
namespace {

// Where a group's input vector comes from, piece by piece.
enum class Source { u, hp, one };

struct Piece {
  std::size_t offset;  // the tensor's first element in the arena
  int cols;            // its row length (1 for a bias)
  Source source;
};

struct Group {
  int layer;
  bool h_side;  // the pre-activation it feeds: a^h (GRU's W_hh group) or a^x (= a for the others)
  std::vector<Piece> pieces;
  int m = 0;    // the input vector's length
};

template <class Real>
class KfRtrl final : public Estimator<Real> {
 public:
  KfRtrl(const ModelConfig& cfg, int B) : cfg_(cfg), B_(B) {
    const int H = cfg.hidden_size, GH = cfg.gates() * H;
    S_ = cfg.num_layers * (cfg.cell == CellKind::lstm ? 2 : 1) * H;
    const auto offsets = layer_offsets(cfg);
    for (int k = 0; k < cfg.num_layers; ++k) {
      const LayerOffsets& o = offsets[std::size_t(k)];
      const bool bias = o.b_ih != kNone;
      if (cfg.cell == CellKind::gru) {
        Group x{k, false, {{o.w_ih, o.in, Source::u}}};
        Group h{k, true, {{o.w_hh, H, Source::hp}}};
        if (bias) {
          x.pieces.push_back({o.b_ih, 1, Source::one});
          h.pieces.push_back({o.b_hh, 1, Source::one});
        }
        groups_.push_back(x);
        groups_.push_back(h);
      } else {
        Group g{k, false, {{o.w_ih, o.in, Source::u}, {o.w_hh, H, Source::hp}}};
        if (bias) {
          g.pieces.push_back({o.b_ih, 1, Source::one});
          g.pieces.push_back({o.b_hh, 1, Source::one});
        }
        groups_.push_back(g);
      }
    }
    for (Group& g : groups_) {
      for (const Piece& p : g.pieces) g.m += p.cols;
      u_.emplace_back(std::size_t(B) * g.m, Real(0));
      A_.emplace_back(std::size_t(B) * GH * S_, Real(0));
    }
    Ap_.resize(std::size_t(B) * GH * S_);
    D_.resize(Ap_.size());
    int widest = 0;
    for (const Group& g : groups_) widest = std::max(widest, g.m);
    hat_.resize(std::size_t(B) * widest);
    rho_.resize(std::size_t(B) * GH);
    signs_.resize(std::size_t(B) * 2 * groups_.size());  // [B, 2·groups] this step's
  }

  void reset() override {
    for (auto& u : u_) std::fill(u.begin(), u.end(), Real(0));
    for (auto& a : A_) std::fill(a.begin(), a.end(), Real(0));
  }

  void update(const Model<Real>& model, Step<Real>& st, const Real* e,
              const unsigned char* valid, std::int64_t t, std::uint64_t seed,
              Real* grad) override {
    const int B = B_, S = S_, H = cfg_.hidden_size, G = cfg_.gates(), GH = G * H, Q = st.Q(),
              L = cfg_.num_layers;
    const std::size_t tile = std::size_t(GH) * S;
    const std::size_t top = std::size_t(L - 1) * Q * H;
    const int groups = int(groups_.size());
    for (int b = 0; b < B; ++b)  // c₁, c₂ of every group: signs 2γ, 2γ + 1 of sequence b
      signs(seed, t, b, 2 * groups, signs_.data() + std::size_t(b) * 2 * groups);
    for (int gi = 0; gi < groups; ++gi) {
      const Group& grp = groups_[std::size_t(gi)];
      const int k = grp.layer, m = grp.m;
      std::vector<Real>& u = u_[std::size_t(gi)];
      std::vector<Real>& A = A_[std::size_t(gi)];
      // A' = J_t A.
      st.jvp(model, GH, A.data(), Ap_.data(), 0);
      // D = ∂s_t/∂a of layer k: its own units' K, then the layers above within the step.
      std::fill(D_.begin(), D_.end(), Real(0));
      const std::size_t base = std::size_t(k) * Q * H;
      for (int b = 0; b < B; ++b)
        for (int g = 0; g < G; ++g)
          for (int j = 0; j < H; ++j) {
            Real* col = D_.data() + (std::size_t(b) * GH + std::size_t(g) * H + j) * S + base;
            for (int q = 0; q < Q; ++q)
              col[std::size_t(q) * H + j] =
                  (grp.h_side ? st.kh_of(k, q, g) : st.kx_of(k, q, g))[std::size_t(b) * H + j];
          }
      if (k + 1 < L) st.jvp(model, GH, nullptr, D_.data(), k + 1);
      // The update and e_tᵀ A per sequence.
      const LayerStep<Real>& l = st.layer(k);
      for (int b = 0; b < B; ++b) {
        Real* rho = rho_.data() + std::size_t(b) * GH;
        if (valid && !valid[b]) {
          std::fill(rho, rho + GH, Real(0));
          continue;
        }
        Real* hat = hat_.data() + std::size_t(b) * m;
        int at = 0;
        for (const Piece& p : grp.pieces) {
          const Real* src = p.source == Source::u    ? l.u.data() + std::size_t(b) * l.in
                            : p.source == Source::hp ? l.hp.data() + std::size_t(b) * H
                                                     : nullptr;
          for (int c = 0; c < p.cols; ++c) hat[at + c] = src ? src[c] : Real(1);
          at += p.cols;
        }
        const Real* sg = signs_.data() + std::size_t(b) * 2 * groups;
        const double c1 = double(sg[2 * gi]), c2 = double(sg[2 * gi + 1]);
        Real* ub = u.data() + std::size_t(b) * m;
        Real* Ab = A.data() + std::size_t(b) * tile;
        const Real* Apb = Ap_.data() + std::size_t(b) * tile;
        const Real* Db = D_.data() + std::size_t(b) * tile;
        const double p1 = balance(std::sqrt(sq_norm(Apb, tile)), std::sqrt(sq_norm(ub, std::size_t(m))));
        const double p2 = balance(std::sqrt(sq_norm(Db, tile)), std::sqrt(sq_norm(hat, std::size_t(m))));
        for (int c = 0; c < m; ++c) ub[c] = Real(c1 * p1 * double(ub[c]) + c2 * p2 * double(hat[c]));
        const Real a1 = Real(c1 / p1), a2 = Real(c2 / p2);
        for (std::size_t i = 0; i < tile; ++i) Ab[i] = a1 * Apb[i] + a2 * Db[i];
        const Real* eb = e + std::size_t(b) * H;
        work += std::int64_t(4 * tile) + 4 * m + std::int64_t(GH) * H;
        for (int r = 0; r < GH; ++r) {
          const Real* col = Ab + std::size_t(r) * S + top;
          Real v = 0;
          for (int j = 0; j < H; ++j) v += eb[j] * col[j];
          rho[r] = v;
        }
      }
      work += std::int64_t(B) * GH * Q + std::int64_t(GH) * m * (B + 1);  // D; the outer product
      // g[W̃[r, c]] += Σ_b ρ_b[r] u_b[c]: one GEMM into the group's [G·H, m] block, then scattered.
      outer_.resize(std::size_t(GH) * m);
      kernels::gemm(true, false, GH, m, B, Real(1), rho_.data(), GH, u.data(), m, Real(0),
                    outer_.data(), m);
      int c0 = 0;
      for (const Piece& p : grp.pieces) {
        for (int r = 0; r < GH; ++r)
          for (int c = 0; c < p.cols; ++c)
            grad[p.offset + std::size_t(r) * p.cols + c] += outer_[std::size_t(r) * m + c0 + c];
        c0 += p.cols;
      }
    }
  }

  std::vector<Carried<Real>> carried() override {
    std::vector<Carried<Real>> out;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      out.push_back({"kf.u" + std::to_string(g), &u_[g]});
      out.push_back({"kf.A" + std::to_string(g), &A_[g]});
    }
    return out;
  }

 private:
  ModelConfig cfg_;
  int B_, S_ = 0;
  std::vector<Group> groups_;
  std::vector<std::vector<Real>> u_;  // per group [B, m]
  std::vector<std::vector<Real>> A_;  // per group [B, G·H, S]
  std::vector<Real> Ap_, D_, hat_, rho_, signs_, outer_;
};

}  // namespace

template <class Real>
std::unique_ptr<Estimator<Real>> make_kf_rtrl(const ModelConfig& cfg, int B) {
  return std::make_unique<KfRtrl<Real>>(cfg, B);
}

template std::unique_ptr<Estimator<float>> make_kf_rtrl<float>(const ModelConfig&, int);
template std::unique_ptr<Estimator<double>> make_kf_rtrl<double>(const ModelConfig&, int);

}  // namespace bptt::online
