// Shared helpers for the unroller tests: the configuration grid, named as short shape strings
// (`lstm_l2_t7_b3_xent`, `elman_relu_l1_t3_b3_mse_sigmoid`), and deterministic random models and
// batches. Everything is drawn in double and then cast, so the float and double builds of one
// case hold the same numbers up to rounding.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/loss.hpp"
#include "bptt/model.hpp"
#include "bptt/types.hpp"
#include "bptt/unroll.hpp"

namespace bptt::test {

// One recurrent cell as the grid names it: Elman with its φ, LSTM or GRU.
struct CellVariant {
  CellKind cell = CellKind::lstm;
  Activation phi = Activation::tanh;
  std::string name() const {
    std::string s(to_string(cell));
    if (cell == CellKind::elman) {
      s += '_';
      s += to_string(phi);
    }
    return s;
  }
};

// A loss and the readout θ it is paired with.
struct LossPair {
  LossKind loss = LossKind::mse;
  Activation theta = Activation::identity;
  std::string name() const {
    std::string s(to_string(loss));
    if (loss == LossKind::mse) s += "_" + std::string(to_string(theta));
    return s;  // bce goes with sigmoid, xent with softmax
  }
};

struct Case {
  CellVariant cell;
  LossPair loss;
  int L = 1, T = 1, B = 3, I = 2, H = 3, O = 3;

  std::string name() const {
    std::string s = cell.name() + "_l" + std::to_string(L) + "_t" + std::to_string(T) + "_b" +
                    std::to_string(B);
    if (I != 2 || H != 3 || O != 3)  // the grid's default sizes are left out of the name
      s += "_i" + std::to_string(I) + "_h" + std::to_string(H) + "_o" + std::to_string(O);
    return s + "_" + loss.name();
  }
  ModelConfig config() const {
    ModelConfig c;
    c.cell = cell.cell;
    c.nonlinearity = cell.phi;
    c.output_activation = loss.theta;
    c.input_size = I;
    c.hidden_size = H;
    c.num_layers = L;
    c.output_size = O;
    c.validate("test");
    return c;
  }
  // A seed of its own for every configuration (FNV-1a of the name).
  std::uint64_t seed() const {
    std::uint64_t h = 1469598103934665603ull;
    for (char ch : name()) h = (h ^ std::uint8_t(ch)) * 1099511628211ull;
    return h;
  }
};

inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

inline std::vector<CellVariant> all_cells() {
  return {{CellKind::elman, Activation::tanh},     {CellKind::elman, Activation::relu},
          {CellKind::elman, Activation::sigmoid},  {CellKind::elman, Activation::identity},
          {CellKind::lstm, Activation::tanh},      {CellKind::gru, Activation::tanh}};
}

inline std::vector<LossPair> all_losses() {
  return {{LossKind::mse, Activation::identity}, {LossKind::mse, Activation::tanh},
          {LossKind::mse, Activation::sigmoid},  {LossKind::mse, Activation::softmax},
          {LossKind::bce, Activation::sigmoid},  {LossKind::xent, Activation::softmax}};
}

// Every cell × every loss pairing × Ls × Ts, with B = 3, I = 2, H = 3, O = 3.
inline std::vector<Case> grid(const std::vector<int>& Ls, const std::vector<int>& Ts) {
  std::vector<Case> out;
  for (const CellVariant& c : all_cells())
    for (const LossPair& l : all_losses())
      for (int L : Ls)
        for (int T : Ts) out.push_back(Case{c, l, L, T});
  return out;
}

// Every cell × every loss pairing with sizes that all differ (B = 4, I = 6, H = 5, O = 2), so a
// transposed or mis-strided matrix cannot hide behind a square one; L = 2, T = 5. With I > H,
// Elman and LSTM form layer 0's x-side product hoisted and layer 1's in the step
// (src/unroll/x_product.hpp): both paths in one model (the grid, I < H, has only the second).
inline std::vector<Case> odd_shapes() {
  std::vector<Case> out;
  for (const CellVariant& c : all_cells())
    for (const LossPair& l : all_losses()) out.push_back(Case{c, l, 2, 5, 4, 6, 5, 2});
  return out;
}

inline std::string case_name(const testing::TestParamInfo<Case>& info) {
  return info.param.name();
}

// Parameters uniform in (−0.7, 0.7), filled directly into the arena.
template <class Real>
Model<Real> make_model(const Case& c, std::uint64_t salt = 0) {
  Model<Real> m(c.config());
  std::mt19937_64 rng(c.seed() ^ (salt * 0x9e3779b97f4a7c15ull) ^ 0x1234);
  std::uniform_real_distribution<double> u(-0.7, 0.7);
  for (Real& p : m.params) p = Real(u(rng));
  return m;
}

// Lengths for B sequences of T steps: {T, max(1, T−2), T == 7 ? 2 : 0, then T, T−1, ...}, so
// every T > 1 has a sequence shorter than T and T ∈ {1, 3} has an empty one.
inline std::vector<std::int64_t> make_lengths(int T, int B) {
  std::vector<std::int64_t> len(B);
  for (int b = 0; b < B; ++b) {
    if (b == 0) len[b] = T;
    else if (b == 1) len[b] = std::max(1, T - 2);
    else if (b == 2) len[b] = T == 7 ? 2 : 0;
    else len[b] = std::max(0, T - (b - 3));
  }
  return len;
}

// A batch for `loss` (targets drawn to suit θ): x uniform(−1, 1), the lengths above, a mask with
// zeros and non-unit weights (step (0, 0) always counts), nonzero h0 and, for LSTM, c0.
template <class Real>
Batch<Real> make_batch(const Case& c, std::uint64_t salt = 0) {
  const ModelConfig cfg = c.config();
  std::mt19937_64 rng(c.seed() ^ (salt * 0xbf58476d1ce4e5b9ull) ^ 0xba7c4);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const auto unif = [&](double lo, double hi) { return lo + (hi - lo) * (u(rng) + 1.0) / 2.0; };
  const std::size_t TB = std::size_t(c.T) * c.B, LBH = std::size_t(c.L) * c.B * c.H;
  Batch<Real> b;
  b.T = c.T;
  b.B = c.B;
  b.x.resize(TB * c.I);
  for (Real& v : b.x) v = Real(u(rng));
  b.lengths = make_lengths(c.T, c.B);
  b.mask.resize(TB);
  for (std::size_t i = 0; i < TB; ++i)
    b.mask[i] = Real(i % 4 == 1 || i % 7 == 5 ? 0.0 : unif(0.3, 2.0));
  b.mask[0] = Real(1.5);
  b.h0.resize(LBH);
  for (Real& v : b.h0) v = Real(0.8 * u(rng));
  if (c.cell.cell == CellKind::lstm) {
    b.c0.resize(LBH);
    for (Real& v : b.c0) v = Real(1.2 * u(rng));
  }
  switch (c.loss.loss) {
    case LossKind::mse:
    case LossKind::bce: {
      const bool unit = c.loss.loss == LossKind::bce || c.loss.theta == Activation::sigmoid ||
                        c.loss.theta == Activation::softmax;
      b.y.resize(TB * c.O);
      for (Real& v : b.y) v = Real(unit ? unif(0.05, 0.95) : 0.9 * u(rng));
      break;
    }
    case LossKind::xent:
      b.classes.resize(TB);
      for (std::int64_t& k : b.classes) k = std::int64_t(rng() % std::uint64_t(c.O));
      break;
  }
  b.validate(cfg, c.loss.loss, "test batch");
  return b;
}

// |a − b| ≤ tol · max(1, |b|)
inline bool close(double a, double b, double tol) {
  return std::abs(a - b) <= tol * std::max(1.0, std::abs(b));
}

// Names of gradient elements for failure messages.
inline std::string param_name(const ModelConfig& cfg, std::size_t i) {
  for (const ParamInfo& p : param_layout(cfg))
    if (i >= p.offset && i < p.offset + p.size)
      return p.name + "[" + std::to_string(i - p.offset) + "]";
  return "params[" + std::to_string(i) + "]";
}

inline std::string index3(const char* what, std::size_t i, int d1, int d2) {
  const std::size_t a = i / (std::size_t(d1) * d2), r = i % (std::size_t(d1) * d2);
  return std::string(what) + "[" + std::to_string(a) + "," + std::to_string(r / d2) + "," +
         std::to_string(r % d2) + "]";
}

// EXPECTs close(a[i], b[i], tol) for all i, naming the first few mismatches.
template <class Real>
void expect_all_close(const std::string& what, const Real* a, const Real* b, std::size_t n,
                      double tol, const std::function<std::string(std::size_t)>& name) {
  std::size_t bad = 0;
  std::string msg;
  for (std::size_t i = 0; i < n; ++i) {
    if (close(double(a[i]), double(b[i]), tol)) continue;
    if (++bad <= 8)
      msg += "\n  " + name(i) + ": " + std::to_string(double(a[i])) + " vs " +
             std::to_string(double(b[i])) + " (diff " + std::to_string(double(a[i] - b[i])) +
             ")";
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << n << " elements differ" << msg;
}

template <class Real>
void expect_gradients_close(const Case& c, const Gradients<Real>& a, const Gradients<Real>& b,
                            double tol) {
  const ModelConfig cfg = c.config();
  ASSERT_EQ(a.params.size(), b.params.size());
  ASSERT_EQ(a.c0.size(), b.c0.size());
  expect_all_close("d params", a.params.data(), b.params.data(), a.params.size(), tol,
                   [&](std::size_t i) { return param_name(cfg, i); });
  expect_all_close("d x", a.x.data(), b.x.data(), a.x.size(), tol,
                   [&](std::size_t i) { return index3("x", i, c.B, c.I); });
  expect_all_close("d h0", a.h0.data(), b.h0.data(), a.h0.size(), tol,
                   [&](std::size_t i) { return index3("h0", i, c.B, c.H); });
  expect_all_close("d c0", a.c0.data(), b.c0.data(), a.c0.size(), tol,
                   [&](std::size_t i) { return index3("c0", i, c.B, c.H); });
}

}  // namespace bptt::test
