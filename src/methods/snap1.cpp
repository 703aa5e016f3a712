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
  }

  void reset() override { std::fill(M_.begin(), M_.end(), Real(0)); }

  void update(const Model<Real>& model, Step<Real>& st, const Real* e,
              const unsigned char* valid, std::int64_t, std::uint64_t, Real* grad) override {
    const int B = B_, H = cfg_.hidden_size, G = cfg_.gates(), Q = Q_;
    const Real* w_hh = model.params.data() + o_.w_hh;
    const LayerStep<Real>& l = st.layer(0);
    const int in = l.in;
    for (int b = 0; b < B; ++b) {
      if (valid && !valid[b]) continue;
      Real* Mb = M_.data() + std::size_t(b) * Q * P_;
      const Real* u = l.u.data() + std::size_t(b) * in;
      const Real* hp = l.hp.data() + std::size_t(b) * H;
      for (int j = 0; j < H; ++j) {
        const std::size_t i = std::size_t(b) * H + j;
        // The unit's own block of J_t.
        Real Bm[2][2] = {{0, 0}, {0, 0}};
        for (int q = 0; q < Q; ++q) {
          for (int q2 = 0; q2 < Q; ++q2) Bm[q][q2] = st.carry_of(0, q, q2)[i];
          for (int g = 0; g < G; ++g)
            Bm[q][0] += st.kh_of(0, q, g)[i] * w_hh[(std::size_t(g) * H + j) * H + j];
        }
        const Real ej = e[i];
        for (int g = 0; g < G; ++g) {
          const std::size_t r = std::size_t(g) * H + j;
          Real kx[2] = {0, 0}, kh[2] = {0, 0};
          for (int q = 0; q < Q; ++q) kx[q] = st.kx_of(0, q, g)[i], kh[q] = st.kh_of(0, q, g)[i];
          const auto row = [&](std::size_t off, const Real* k, const Real* src, int n) {
            work += std::int64_t(n) * Q * (Q + 2);
            Real* m0 = Mb + off;
            Real* gw = grad + off;
            if (Q == 1) {
              const Real b00 = Bm[0][0], k0 = k[0];
              for (int c = 0; c < n; ++c) {
                const Real v = b00 * m0[c] + k0 * (src ? src[c] : Real(1));
                m0[c] = v;
                gw[c] += ej * v;
              }
              return;
            }
            Real* m1 = m0 + P_;
            for (int c = 0; c < n; ++c) {
              const Real in_c = src ? src[c] : Real(1);
              const Real vh = Bm[0][0] * m0[c] + Bm[0][1] * m1[c] + k[0] * in_c;
              const Real vc = Bm[1][0] * m0[c] + Bm[1][1] * m1[c] + k[1] * in_c;
              m0[c] = vh;
              m1[c] = vc;
              gw[c] += ej * vh;
            }
          };
          row(o_.w_ih + r * in, kx, u, in);
          row(o_.w_hh + r * H, kh, hp, H);
          if (o_.b_ih != kNone) {
            row(o_.b_ih + r, kx, nullptr, 1);
            row(o_.b_hh + r, kh, nullptr, 1);
          }
        }
      }
    }
  }

  std::vector<Carried<Real>> carried() override { return {{"snap1.M", &M_}}; }

 private:
  ModelConfig cfg_;
  int B_, Q_ = 1;
  LayerOffsets o_;
  std::size_t P_;
  std::vector<Real> M_;  // [B, Q, P_rec]
};

}  // namespace

template <class Real>
std::unique_ptr<Estimator<Real>> make_snap1(const ModelConfig& cfg, int B) {
  return std::make_unique<Snap1<Real>>(cfg, B);
}

template std::unique_ptr<Estimator<float>> make_snap1<float>(const ModelConfig&, int);
template std::unique_ptr<Estimator<double>> make_snap1<double>(const ModelConfig&, int);

}  // namespace bptt::online
