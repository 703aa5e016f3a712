// What the online gradient methods (UORO, KF-RTRL, SnAp-1, e-prop; docs/math.md, section 8e)
// share: one time step of a plain stacked model for B sequences, with each cell's local
// derivatives, its forward-mode (JVP) and reverse-mode (VJP) passes of one step, the counter
// that draws their random signs, and the interface each method implements in its own file
// (uoro.cpp, kf_rtrl.cpp, snap1.cpp, eprop.cpp).
//
// Written from the equations, like rtrl.cpp; the cells' fast kernels are not used. The loops that
// stream the per-sequence arrays (online_rows.cpp) are the one part tuned for speed, and are
// tested against the obvious loops (tests/methods/test_online_rows.cpp).
// Layouts are row-major; a sequence's state vector s stacks every layer's h and, for LSTM, c:
// layer k at [k·Q·H, k·Q·H + H) (h) and [k·Q·H + H, (k + 1)·Q·H) (c), Q = 2 for LSTM, else 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bptt/methods.hpp"
#include "bptt/model.hpp"

namespace bptt::online {

// ---- the work done, counted where it is done ----

// Multiply-adds (or elementwise updates) this thread has executed in the online methods: each
// GEMM adds M·N·K, each loop its trip count times its operations per element. Tests read it
// to measure how a method's cost per step grows with H (a count, unlike a time, does not depend
// on what else the machine runs).
inline thread_local std::int64_t work = 0;

// ---- random signs: a counter, so the reference and a resumed run draw the same ----

inline std::uint64_t mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Signs 0 .. n−1 of sequence b at step t (±1 into out[0 .. n)).
template <class Real>
void signs(std::uint64_t seed, std::int64_t t, int b, int n, Real* out) {
  const std::uint64_t key = mix(mix(mix(seed) ^ std::uint64_t(t)) ^ std::uint64_t(b));
  std::uint64_t word = 0;
  for (int i = 0; i < n; ++i) {
    if (i % 64 == 0) word = mix(key + std::uint64_t(i / 64));
    out[i] = (word >> (i % 64)) & 1 ? Real(-1) : Real(1);
  }
}

// ---- the variance-minimizing scale of the unbiased estimators ----

// UORO's ρ₀, ρ₁ and KF-RTRL's p₁, p₂ (docs/math.md 8e): a product a ⊗ b carried as
// (ρ a) ⊗ (b / ρ) has the least variance for ρ = √(‖b‖ / ‖a‖); ε keeps it finite when a norm is 0.
inline constexpr double kEps = 1e-7;
inline double balance(double norm_b, double norm_a) {
  return std::sqrt(norm_b / (norm_a + kEps)) + kEps;
}

template <class Real>
double sq_norm(const Real* v, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += double(v[i]) * double(v[i]);
  return s;
}

// ---- where a layer's parameters sit in the arena ----

inline constexpr std::size_t kNone = std::size_t(-1);

struct LayerOffsets {
  std::size_t w_ih, w_hh, b_ih, b_hh;  // b_ih, b_hh: kNone without biases
  int in;                              // the layer's input width
};
std::vector<LayerOffsets> layer_offsets(const ModelConfig& cfg);
// The recurrent layers' parameters, which come first in the arena: [0, recurrent_count).
std::size_t recurrent_count(const ModelConfig& cfg);

// ---- the row kernels (online_rows.cpp) ----

// The per-sequence methods keep, for each sequence, an array shaped like the recurrent part of
// the arena and stream it once per step: memory-bound, so each pass takes a group of sequences
// at a time, each streaming its array(s) from start to end (block by block: for_blocks) while
// the group shares one pass over the gradient. Four streams at once ran fastest on a Zen 5 at
// H = 256, B = 32 (UORO: four sequences; SnAp-1 on LSTM, two arrays each: two sequences); blocks
// of the gradient kept in L1 while every sequence's block passed ran 1.8× slower (the short jumps
// defeat the prefetchers).
inline constexpr int kGroup = 4;  // at most this many sequences in a group
// In a block, rows r = 0 .. rows−1 are rows j0 + r of gate g, of n values each; src is the rows'
// input (u or h', n values) or nullptr for bias rows (n = 1, input 1).

// UORO, for `count` sequences (at most kGroup) whose blocks share the gradient's: for each,
// g += cr·w, then w ← inv0·w + inv1·d[r]·src, and n2 += Σ w² of the new w. All take src, or
// none.
template <class Real>
struct UoroSeq {
  Real* w;
  const Real *d, *src;
  Real cr, inv0, inv1;
  double n2;
};
void uoro_rows(UoroSeq<float>* q, int count, float* g, int rows, int n);
void uoro_rows(UoroSeq<double>* q, int count, double* g, int rows, int n);
// A trace, for `count` sequences (at most kGroup) whose blocks share the gradient's: for each,
// [m0; m1] ← A[r]·[m0; m1] + [k0; k1][r]·src and g += e[r]·m0 + x[r]·src. One component (m1,
// a01, a10, a11, k1 unused) when m1 is nullptr; x nullptr: 0. All take src, or none.
template <class Real>
struct TraceSeq {
  Real *m0, *m1;
  const Real *a00, *a01, *a10, *a11, *k0, *k1, *e, *x, *src;
};
void trace_rows(const TraceSeq<float>* q, int count, float* g, int rows, int n);
void trace_rows(const TraceSeq<double>* q, int count, double* g, int rows, int n);

// The sequences a step updates (valid[b] != 0; all when valid is nullptr), in groups of `size`
// (at most kGroup; the default for one array per sequence, kGroup / 2 for two).
inline std::vector<std::vector<int>> sequence_groups(const unsigned char* valid, int B,
                                                     int size = kGroup) {
  std::vector<std::vector<int>> groups;
  for (int b = 0; b < B; ++b) {
    if (valid && !valid[b]) continue;
    if (groups.empty() || groups.back().size() == std::size_t(size)) groups.emplace_back();
    groups.back().push_back(b);
  }
  return groups;
}

// One block of a layer's parameters: values [off, off + rows·n) of the arena, rows j0 .. j0 +
// rows − 1 of gate g of W_ih (n = in), W_hh (n = H) or a bias (n = 1); `hidden`: its input is h'
// (W_hh, b_hh), else u (W_ih, b_ih).
struct Block {
  std::size_t off;
  int n, g, j0, rows;
  bool hidden, bias;
};

// Calls f(block) for every block of the layer at o, at most kBlockValues values each.
inline constexpr int kBlockValues = 4096;
template <class F>
void for_blocks(const LayerOffsets& o, int G, int H, F&& f) {
  const auto region = [&](std::size_t base, int n, bool hidden, bool bias) {
    const int R = std::max(1, kBlockValues / n);
    for (int g = 0; g < G; ++g)
      for (int j0 = 0; j0 < H; j0 += R) {
        const int rows = std::min(R, H - j0);
        f(Block{base + (std::size_t(g) * H + j0) * std::size_t(n), n, g, j0, rows, hidden, bias});
      }
  };
  region(o.w_ih, o.in, false, false);
  region(o.w_hh, H, true, false);
  if (o.b_ih != kNone) {
    region(o.b_ih, 1, false, true);
    region(o.b_hh, 1, true, true);
  }
}

// ---- one step of the stack, with its local derivatives ----

// One layer's values at the current step, [B, ·] row-major.
template <class Real>
struct LayerStep {
  int in = 0;                // its input width
  std::vector<Real> u;       // [B, in] its input (x, or the new h of the layer below)
  std::vector<Real> hp, cp;  // [B, H] the previous h and (LSTM) c
  std::vector<Real> ax, ah;  // [B, G·H] W_ih u + b_ih and W_hh h' + b_hh
  std::vector<Real> h, c;    // [B, H] the new h and (LSTM) c
  // The local derivatives (docs/math.md 8e), component q (0: h, 1: c), gate g, [B, H] each:
  std::vector<Real> kx, kh;  // [Q, G, B, H]: ∂s_{q,j}/∂a^x_{g,j}, ∂s_{q,j}/∂a^h_{g,j}
  std::vector<Real> carry;   // [Q, Q, B, H]: Δ_{q,q'} = ∂s_{q,j}/∂s'_{q',j} at fixed a
  std::vector<Real> dh_dc;   // [B, H] LSTM: ∂h_j/∂c_j = o·(1 − tanh² c)
};

// The input of a block's rows for sequence b: u or h' of layer l (H units); nullptr for bias
// rows, whose input is 1.
template <class Real>
const Real* block_input(const Block& blk, const LayerStep<Real>& l, std::size_t b, int H) {
  return blk.bias     ? nullptr
         : blk.hidden ? l.hp.data() + b * std::size_t(H)
                      : l.u.data() + b * std::size_t(l.in);
}

template <class Real>
class Step {
 public:
  Step(const ModelConfig& cfg, int B);
  int Q() const { return Q_; }  // state components per unit: 2 for LSTM (h, c), else 1
  const LayerStep<Real>& layer(int k) const { return layers_[std::size_t(k)]; }
  // ∂s_{q,j}/∂a^x_{g,j} of layer k as a [B, H] array (and kh_of, carry_of likewise).
  const Real* kx_of(int k, int q, int g) const {
    return layers_[std::size_t(k)].kx.data() + (std::size_t(q) * G_ + g) * std::size_t(B_) * H_;
  }
  const Real* kh_of(int k, int q, int g) const {
    return layers_[std::size_t(k)].kh.data() + (std::size_t(q) * G_ + g) * std::size_t(B_) * H_;
  }
  const Real* carry_of(int k, int q, int q2) const {
    return layers_[std::size_t(k)].carry.data() + (std::size_t(q) * Q_ + q2) * std::size_t(B_) * H_;
  }

  // The step from the state h [L, B, H], c [L, B, H] (LSTM; else ignored) and x [B, I]: every
  // layer's values and local derivatives. The new state is layer(k).h / .c.
  void forward(const Model<Real>& model, const Real* x, const std::vector<Real>& h,
               const std::vector<Real>& c);

  // Forward mode (J_t applied to tangents): R tangents per sequence, prev and next [B, R, S].
  // Layers below `first` are taken from next as they are (the caller sets them); layer `first`
  // reads its input tangent from next's layer first − 1 (none for first = 0), and every layer
  // its previous-state tangent from prev (nullptr: zero, the immediate influence).
  void jvp(const Model<Real>& model, int R, const Real* prev, Real* next, int first = 0);

  // Reverse mode restricted to this step (D_tᵀ applied to a cotangent): cot [B, S] on the new
  // state (every layer) gives each layer's pre-activation cotangents dax, dah [B, G·H] (the
  // parameters' cotangents follow from them and the layer's u and hp), with layer k's h
  // cotangent including what layer k + 1 sends back within the step. The previous state's
  // cotangent is not formed (no method needs it).
  void vjp(const Model<Real>& model, const Real* cot, std::vector<std::vector<Real>>& dax,
           std::vector<std::vector<Real>>& dah);

  // grad += Σ_b (dax_b ⊗ u_b, dah_b ⊗ hp_b, dax_b, dah_b) for layer k (one GEMM per weight).
  void add_param_grad(int k, const Real* dax, const Real* dah, Real* grad) const;

 private:
  ModelConfig cfg_;
  int B_, H_, G_, Q_, L_, S_;
  std::vector<LayerStep<Real>> layers_;
  std::vector<Real> tx_, th_;  // jvp scratch [B·R, G·H]
  std::vector<Real> cot_;      // vjp scratch [B, H]
};

// ---- the methods ----

// A named array a method carries, for snapshots (its size is fixed by the constructor).
template <class Real>
struct Carried {
  std::string name;
  std::vector<Real>* data;
};

template <class Real>
class Estimator {
 public:
  virtual ~Estimator() = default;
  // Every sequence's estimate back to zero (the start of a sequence).
  virtual void reset() = 0;
  // After st.forward(): e = ∂ℓ_t/∂h_top [B, H] (weighted; zero rows where the step has no
  // loss), valid[b] = 0 for a sequence past its end (its estimate stays as it is), t the step
  // counter of the signs. ADDS the recurrent layers' gradient of this step to grad (the arena).
  virtual void update(const Model<Real>& model, Step<Real>& st, const Real* e,
                      const unsigned char* valid, std::int64_t t, std::uint64_t seed,
                      Real* grad) = 0;
  virtual std::vector<Carried<Real>> carried() = 0;
};

template <class Real>
std::unique_ptr<Estimator<Real>> make_uoro(const ModelConfig& cfg, int B);
template <class Real>
std::unique_ptr<Estimator<Real>> make_kf_rtrl(const ModelConfig& cfg, int B);
template <class Real>
std::unique_ptr<Estimator<Real>> make_snap1(const ModelConfig& cfg, int B);
template <class Real>
std::unique_ptr<Estimator<Real>> make_eprop(const ModelConfig& cfg, int B);

}  // namespace bptt::online
