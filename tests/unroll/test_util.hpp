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
#include "support/compare.hpp"

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

// Where a case's initial state comes from: the batch's h0 (and c0) with a zero-initialised
// model (the default), the model's learned init.h0/init.c0 with none in the batch, or a learned
// state that the batch overrides in part (h0 given, c0 learned for LSTM).
enum class InitCase { given, learned, learned_given };

// The torch.nn options of a case (model.hpp), named by suffixes as bench's shape strings:
// _bi, _p{P}, _nobias, _ln (layer norm), then _learn / _learnh0, _final (the head reads the final states), _nohead
// (a head-less model: ŷ = θ(h of the top layer), O = D·H_out) and _nolen (a batch without
// lengths).
struct Options {
  bool bi = false;
  int P = 0;
  bool bias = true;
  InitCase init = InitCase::given;
  bool lengths = true;
  bool final_readout = false;
  bool headless = false;  // REQUIRES the Case's O = D·H_out (with_headless sets it)
  bool ln = false;        // layer-normalized cells
  // Issue 18's regularization: drop gives the batch all four dropout masks (input, recurrent,
  // output, weight_hh); zoneout gives it keep flags for h (and c); zoneout_eval gives the model
  // zoneout probabilities and the batch no flags (evaluation mode: the expectation).
  bool drop = false;
  bool zoneout = false;
  bool zoneout_eval = false;
  std::string name() const {
    std::string s;
    if (bi) s += "_bi";
    if (P) s += "_p" + std::to_string(P);
    if (!bias) s += "_nobias";
    if (ln) s += "_ln";
    if (drop) s += "_drop";
    if (zoneout) s += "_zo";
    if (zoneout_eval) s += "_zoeval";
    if (init == InitCase::learned) s += "_learn";
    if (init == InitCase::learned_given) s += "_learnh0";
    if (final_readout) s += "_final";
    if (headless) s += "_nohead";
    if (!lengths) s += "_nolen";
    return s;
  }
};

struct Case {
  CellVariant cell;
  LossPair loss;
  int L = 1, T = 1, B = 3, I = 2, H = 3, O = 3;
  Options opt = {};

  std::string name() const {
    std::string s = cell.name() + "_l" + std::to_string(L) + "_t" + std::to_string(T) + "_b" +
                    std::to_string(B);
    if (I != 2 || H != 3 || O != 3)  // the grid's default sizes are left out of the name
      s += "_i" + std::to_string(I) + "_h" + std::to_string(H) + "_o" + std::to_string(O);
    return s + opt.name() + "_" + loss.name();
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
    c.bidirectional = opt.bi;
    c.proj_size = opt.P;
    c.bias = opt.bias;
    c.initial_state = opt.init == InitCase::given ? InitialState::zero : InitialState::learned;
    c.readout = opt.final_readout ? Readout::final_state : Readout::steps;
    c.head = !opt.headless;
    c.layer_norm = opt.ln;
    if (opt.zoneout || opt.zoneout_eval) {
      c.zoneout_h = 0.3;
      if (c.cell == CellKind::lstm) c.zoneout_c = 0.2;
    }
    c.validate("test");
    return c;
  }
  int HO() const { return opt.P ? opt.P : H; }  // H_out
  // This case without a head: O becomes D·H_out.
  Case with_headless() const {
    Case c = *this;
    c.opt.headless = true;
    c.O = (opt.bi ? 2 : 1) * HO();
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

// Sizes that cross every blocking boundary of the kernels, for every cell × loss pairing:
//  - H ∈ {16, 37, 70}: G·H spans one to nine of float's 32-column packed panels (kernels/
//    step_gemm) and backward's product (N = H) crosses a panel at 37 and 70; the cells' 16-wide
//    vector loops run whole vectors and remainders (37 = 2·16 + 5, 70 = 4·16 + 6);
//  - I = 40: layer 0's x-side product is hoisted for H = 16, 37 (I > H) and formed in the step
//    for H = 70 (src/unroll/x_product.hpp; never in the step for the GRU); layer 1 (in = H) in
//    the step;
//  - B = 9: the step kernels' 8-row tile plus a 1-row tail;
//  - O = 5, 35, 9 with H: the readout's product crosses a panel at O = 35;
//  - T = 20, L = 2, lengths from make_lengths (full, shorter and one empty sequence).
inline std::vector<Case> large_shapes(const std::vector<int>& Hs = {16, 37, 70}) {
  std::vector<Case> out;
  for (const CellVariant& c : all_cells())
    for (const LossPair& l : all_losses())
      for (int H : Hs) out.push_back(Case{c, l, 2, 20, 9, 40, H, H == 37 ? 35 : H == 16 ? 5 : 9});
  return out;
}

// large_shapes() with each cell × loss pairing at one H in turn (36 cases), so that each cell and
// each loss still meets every H: for the checks that cost seconds per case.
inline std::vector<Case> large_shapes_rotated() {
  std::vector<Case> out;
  const std::vector<Case> all = large_shapes();
  for (std::size_t i = 0; i < all.size(); i += 3) out.push_back(all[i + (i / 3) % 3]);
  return out;
}

// Every combination of the torch.nn options (bidirectional with and without lengths, 1-3
// layers, projections, bias-free layers, learned and given initial states) and of layer norm
// with them for Elman (tanh and
// relu), LSTM and GRU, small sizes, the losses in turn. Projections are LSTM's only.
inline std::vector<Case> option_cases() {
  struct Combo {
    Options opt;
    int L, T;
  };
  const InitCase learned = InitCase::learned, given_h0 = InitCase::learned_given;
  const std::vector<Combo> common = {
      {{.bi = true}, 1, 5},
      {{.bi = true}, 2, 7},
      {{.bi = true}, 3, 3},
      {{.bi = true, .lengths = false}, 2, 4},
      {{.bias = false}, 2, 5},
      {{.init = learned}, 2, 5},
      {{.init = given_h0}, 2, 4},
      {{.bi = true, .bias = false, .init = learned}, 2, 5},
      {{.bi = true, .init = given_h0}, 1, 4},
      {{.bi = true, .final_readout = true}, 1, 5},
      {{.bi = true, .lengths = false, .final_readout = true}, 2, 4},
      {{.final_readout = true}, 2, 5},
      {{.headless = true}, 2, 5},
      {{.bi = true, .headless = true}, 2, 5},
      {{.bias = false, .init = learned, .headless = true}, 1, 4},
      {{.bi = true, .final_readout = true, .headless = true}, 1, 4},
      {{.ln = true}, 1, 5},
      {{.ln = true}, 2, 6},
      {{.bi = true, .ln = true}, 2, 5},
      {{.lengths = false, .ln = true}, 2, 4},
      {{.bias = false, .init = learned, .ln = true}, 2, 4},
      {{.bi = true, .init = given_h0, .final_readout = true, .ln = true}, 1, 4},
      {{.headless = true, .ln = true}, 2, 3},
      {{.drop = true}, 2, 5},
      {{.bi = true, .drop = true}, 2, 5},
      {{.zoneout = true}, 2, 6},
      {{.bi = true, .zoneout = true}, 2, 5},
      {{.zoneout_eval = true}, 2, 5},
      {{.ln = true, .drop = true, .zoneout = true}, 2, 5},
      {{.bi = true, .init = learned, .final_readout = true, .drop = true, .zoneout = true}, 2, 4},
      {{.lengths = false, .headless = true, .drop = true, .zoneout_eval = true}, 1, 4},
  };
  const std::vector<Combo> lstm_only = {
      {{.P = 2}, 1, 5},
      {{.P = 2}, 2, 6},
      {{.bi = true, .P = 2}, 2, 7},
      {{.bi = true, .P = 1, .lengths = false}, 1, 4},
      {{.P = 2, .bias = false, .init = learned}, 2, 5},
      {{.bi = true, .P = 2, .bias = false, .init = learned}, 3, 4},
      {{.bi = true, .P = 2, .init = given_h0}, 2, 5},
      {{.bi = true, .P = 2, .bias = false, .init = learned, .final_readout = true}, 2, 5},
      {{.P = 2, .headless = true}, 2, 5},
      {{.bi = true, .P = 2, .init = given_h0, .headless = true}, 2, 4},
      {{.P = 2, .ln = true}, 2, 5},
      {{.bi = true, .P = 2, .bias = false, .init = learned, .ln = true}, 2, 4},
      {{.P = 2, .drop = true, .zoneout = true}, 2, 5},
      {{.bi = true, .P = 2, .ln = true, .drop = true, .zoneout = true}, 2, 4},
      {{.P = 2, .zoneout_eval = true}, 1, 5},
  };
  const std::vector<LossPair> losses = all_losses();
  std::vector<Case> out;
  std::size_t i = 0;
  const std::vector<CellVariant> cells = {{CellKind::elman, Activation::tanh},
                                          {CellKind::elman, Activation::relu},
                                          {CellKind::lstm, Activation::tanh},
                                          {CellKind::gru, Activation::tanh}};
  for (const CellVariant& cell : cells) {
    std::vector<Combo> combos = common;
    if (cell.cell == CellKind::lstm) combos.insert(combos.end(), lstm_only.begin(), lstm_only.end());
    for (const Combo& co : combos) {
      Case c{cell, losses[i++ % losses.size()], co.L, co.T, 3, 2, 3, 3, co.opt};
      if (co.opt.bi) c.B = 4;  // rows of different lengths for the right-to-left frame
      if (co.opt.headless) c = c.with_headless();
      out.push_back(c);
    }
  }
  return out;
}

// The same model or batch in another precision, element by element (float → double is exact).
template <class To, class From>
Model<To> cast_model(const Model<From>& m) {
  Model<To> out(m.cfg);
  for (std::size_t i = 0; i < m.params.size(); ++i) out.params[i] = To(m.params[i]);
  out.metadata = m.metadata;
  return out;
}
template <class To, class From>
Batch<To> cast_batch(const Batch<From>& b) {
  const auto cast = [](const std::vector<From>& v) { return std::vector<To>(v.begin(), v.end()); };
  Batch<To> out;
  out.T = b.T;
  out.B = b.B;
  out.x = cast(b.x);
  out.y = cast(b.y);
  out.mask = cast(b.mask);
  out.h0 = cast(b.h0);
  out.c0 = cast(b.c0);
  out.lengths = b.lengths;
  out.classes = b.classes;
  out.mask_input = cast(b.mask_input);
  out.mask_recurrent = cast(b.mask_recurrent);
  out.mask_output = cast(b.mask_output);
  out.mask_weight_hh = cast(b.mask_weight_hh);
  out.zoneout_h = cast(b.zoneout_h);
  out.zoneout_c = cast(b.zoneout_c);
  return out;
}

inline std::string case_name(const testing::TestParamInfo<Case>& info) {
  return info.param.name();
}

// Parameters uniform in (−a, a), filled directly into the arena: a = 0.7 for the small cases,
// 2/√(I + H) for the large ones (H ≥ 16), so that pre-activations stay O(1) and an identity
// Elman network neither explodes nor dies out over T = 20 (W_hh's spectral radius is about
// a·√(H/3): 0.62 at H = 16, 0.92 at H = 70).
template <class Real>
Model<Real> make_model(const Case& c, std::uint64_t salt = 0) {
  Model<Real> m(c.config());
  std::mt19937_64 rng(c.seed() ^ (salt * 0x9e3779b97f4a7c15ull) ^ 0x1234);
  const double a = c.H >= 16 ? 2.0 / std::sqrt(double(c.I + c.H)) : 0.7;
  std::uniform_real_distribution<double> u(-a, a);
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
  const std::size_t TB = std::size_t(c.T) * c.B, UB = std::size_t(cfg.units()) * c.B;
  Batch<Real> b;
  b.T = c.T;
  b.B = c.B;
  b.x.resize(TB * c.I);
  for (Real& v : b.x) v = Real(u(rng));
  if (c.opt.lengths) b.lengths = make_lengths(c.T, c.B);
  b.mask.resize(TB);
  for (std::size_t i = 0; i < TB; ++i)
    b.mask[i] = Real(i % 4 == 1 || i % 7 == 5 ? 0.0 : unif(0.3, 2.0));
  b.mask[0] = Real(1.5);
  b.h0.resize(UB * c.HO());
  for (Real& v : b.h0) v = Real(0.8 * u(rng));
  if (c.cell.cell == CellKind::lstm) {
    b.c0.resize(UB * c.H);
    for (Real& v : b.c0) v = Real(1.2 * u(rng));
  }
  if (c.opt.init == InitCase::learned) b.h0.clear();
  if (c.opt.init != InitCase::given) b.c0.clear();
  // Dropout masks: 0 with probability 0.3, else 1/0.7; zoneout flags 1 with probability 0.3.
  const auto drop = [&](std::vector<Real>& m, std::size_t n) {
    m.resize(n);
    for (Real& v : m) v = Real(unif(0, 1) < 0.3 ? 0.0 : 1 / 0.7);
  };
  const auto flags = [&](std::vector<Real>& m, std::size_t n) {
    m.resize(n);
    for (Real& v : m) v = Real(unif(0, 1) < 0.3 ? 1.0 : 0.0);
  };
  const std::size_t GH = std::size_t(cfg.gates()) * c.H, W = std::size_t(cfg.output_width());
  if (c.opt.drop) {
    drop(b.mask_input, std::size_t(c.B) * c.I);
    drop(b.mask_recurrent, UB * c.HO());
    drop(b.mask_output, std::size_t(c.B) * W);
    drop(b.mask_weight_hh, std::size_t(cfg.units()) * GH * c.HO());
  }
  if (c.opt.zoneout) {
    flags(b.zoneout_h, std::size_t(c.T) * UB * c.HO());
    if (c.cell.cell == CellKind::lstm) flags(b.zoneout_c, std::size_t(c.T) * UB * c.H);
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

// |a − b| ≤ tol · max(1, |b|), both finite (support/compare.hpp): the bound of the float64
// checks, absolute below 1 and relative above.
inline bool close(double a, double b, double tol) { return close(a, b, Tol{tol, 1.0}); }

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
template <class A, class B>
void expect_all_close(const std::string& what, const A* a, const B* b, std::size_t n,
                      double tol, const std::function<std::string(std::size_t)>& name) {
  expect_close(what, a, b, n, Tol{tol, 1.0}, name);
}

// Every gradient of `a` against `b` (parameters tensor by tensor, then x, h0, c0), element by
// element. Two bounds:
//  - expect_gradients_close(c, a, b, double tol): tol · max(1, |b|), for results that agree to
//    rounding in float64 (absolute below 1, relative above);
//  - expect_gradients_close(c, a, b, Tol{rel, frac}, true): rel · max(|b|, frac · max|b| over
//    the tensor), relative per element with a floor that scales with the tensor (float32, where
//    an element that is a sum of cancelling terms keeps only the terms' absolute error).
template <class A, class B>
void expect_gradients_close(const Case& c, const Gradients<A>& a, const Gradients<B>& b,
                            Tol tol, bool floor_is_fraction) {
  const ModelConfig cfg = c.config();
  ASSERT_EQ(a.params.size(), b.params.size());
  ASSERT_EQ(a.x.size(), b.x.size());
  ASSERT_EQ(a.h0.size(), b.h0.size());
  ASSERT_EQ(a.c0.size(), b.c0.size());
  const auto tol_for = [&](const B* ref, std::size_t n) {
    return floor_is_fraction ? Tol{tol.rel, tol.floor * max_abs(ref, n)} : tol;
  };
  for (const ParamInfo& p : param_layout(cfg)) {
    const B* ref = b.params.data() + p.offset;
    expect_close("d " + p.name, a.params.data() + p.offset, ref, p.size, tol_for(ref, p.size),
                 [&](std::size_t i) { return p.name + "[" + std::to_string(i) + "]"; });
  }
  expect_close("d x", a.x.data(), b.x.data(), a.x.size(), tol_for(b.x.data(), b.x.size()),
               [&](std::size_t i) { return index3("x", i, c.B, c.I); });
  expect_close("d h0", a.h0.data(), b.h0.data(), a.h0.size(), tol_for(b.h0.data(), b.h0.size()),
               [&](std::size_t i) { return index3("h0", i, c.B, c.HO()); });
  expect_close("d c0", a.c0.data(), b.c0.data(), a.c0.size(), tol_for(b.c0.data(), b.c0.size()),
               [&](std::size_t i) { return index3("c0", i, c.B, c.H); });
}

template <class A, class B>
void expect_gradients_close(const Case& c, const Gradients<A>& a, const Gradients<B>& b,
                            double tol) {
  expect_gradients_close(c, a, b, Tol{tol, 1.0}, false);
}

// The float32 bound of the fast path against float64 on the same (float-rounded) model and
// batch, per element: 5e-4 · max(|ref|, 1e-2 · max|ref| over the tensor). Measured at the large
// sizes (T = 20, H up to 70, dot products of up to 110 terms): the worst relative error above
// the floor is 1.7e-4 (identity Elman at H = 70, whose rounding errors grow along T), 6e-5 for
// every other cell; below the floor the error is a few ulp of the tensor's largest element
// (rounding in sums whose terms cancel). 5e-4 leaves a margin of 3; a wrong offset, stride or
// gate gives errors of order 1. The loss, a sum of positive terms, agrees to 1.3e-7: 1e-6.
inline constexpr Tol kFloat32{5e-4, 1e-2};  // floor: a fraction of each tensor's max |ref|
inline constexpr double kFloat32Loss = 1e-6;
// Layer norm over a row of n entries removes two of its n dimensions (the mean and the
// direction of v̂), and its backward leaves a residual of terms that cancel; over the option
// cases' rows of 3 to 12 entries (H = 3; Elman's row is 3 wide, a 1-dimensional residual) the
// float residual keeps only about 1e-4 of the tensor's largest element (measured 1.3e-4 for dL/dx
// of a 2-layer Elman under masks and zoneout, against 2e-7 without layer norm; 2.6e-4 for the
// same under recompute with a bce loss at the x86-64-v4 level of a Zen 5, whose dL/dx is 2.6e-5
// at most; 5.8e-4 for dL/dh0 of a bidirectional ReLU Elman with a learned h0 at the baseline
// level, 6e-8 at most). Rows narrower than 16 entries get 1e-3 of the tensor's largest element;
// a wrong offset, stride or gate is off by about 1. The large cases (rows of 37 to 148) keep
// kFloat32.
inline constexpr Tol kFloat32LayerNorm{1e-3, 1.0};

// The float64 reference (src/unroll/reference.cpp) on a model and batch of either precision
// (a float one widened exactly).
struct Float64Reference {
  double loss = 0;
  Gradients<double> g;
  std::vector<double> yhat;
};
template <class Real>
Float64Reference float64_reference(const Case& c, const Model<Real>& m, const Batch<Real>& b) {
  Float64Reference r{0, Gradients<double>(c.config(), c.T, c.B), {}};
  r.g.zero();
  r.loss = reference_loss_and_gradients(cast_model<double>(m), cast_batch<double>(b),
                                        c.loss.loss, r.g, &r.yhat);
  return r;
}

// A float32 result (loss, ŷ and gradients) against the float64 reference, within kFloat32.
inline void expect_float32_matches(const Case& c, double loss, const float* yhat,
                                   const Gradients<float>& g, const Float64Reference& ref) {
  EXPECT_TRUE(close(loss, ref.loss, Tol{kFloat32Loss, 1e-300}))
      << "loss: float32 " << loss << " float64 reference " << ref.loss;
  const std::size_t n = ref.yhat.size();
  expect_close("yhat", yhat, ref.yhat.data(), n,
               Tol{kFloat32.rel, kFloat32.floor * max_abs(ref.yhat.data(), n)},
               [&](std::size_t i) { return index3("yhat", i, c.B, c.O); });
  const bool narrow_ln = c.opt.ln && c.config().gates() * c.H < 16;
  expect_gradients_close(c, g, ref.g, narrow_ln ? kFloat32LayerNorm : kFloat32, true);
}

}  // namespace bptt::test
