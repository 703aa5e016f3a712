// The gradient diagnostics (include/bptt/diagnose.hpp), each against an independent computation:
//   - power iteration against matrices built with known singular values;
//   - ‖dL/dh_t‖ and ‖∂h_T/∂h_t‖_F of an identity Elman layer against the hand recursion and
//     the matrix powers W_hh^d; the random-probe estimate within a few percent;
//   - ‖∂h_T/∂h_t‖_F of tanh Elman, LSTM and GRU (two layers) against central differences of a
//     re-run from the state at step t, for every distance;
//   - the truncation rows: K = T equals the full gradient, K = 1 does not.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bptt/diagnose.hpp"
#include "bptt/methods.hpp"
#include "bptt/unroll.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Power iteration

// Q = I − 2wwᵀ/‖w‖² (n × n), an orthogonal matrix.
std::vector<double> householder(int n, int seed) {
  std::vector<double> w(static_cast<std::size_t>(n)), q(static_cast<std::size_t>(n) * n);
  double n2 = 0;
  for (int i = 0; i < n; ++i) {
    w[std::size_t(i)] = std::sin(1.3 * i + 0.7 * seed) + 0.1 * seed;
    n2 += w[std::size_t(i)] * w[std::size_t(i)];
  }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      q[std::size_t(i) * n + j] = (i == j ? 1.0 : 0.0) - 2 * w[std::size_t(i)] * w[std::size_t(j)] / n2;
  return q;
}

// A = U diag(s) Vᵀ, rows × cols (rows >= cols = s.size()), stored with leading dimension ld.
std::vector<double> with_singular_values(int rows, const std::vector<double>& s, int ld) {
  const int cols = int(s.size());
  const std::vector<double> U = householder(rows, 1), V = householder(cols, 2);
  std::vector<double> a(std::size_t(rows) * ld, 99.0);  // padding that must not be read
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      double v = 0;
      for (int k = 0; k < cols; ++k)
        v += U[std::size_t(i) * rows + k] * s[std::size_t(k)] * V[std::size_t(j) * cols + k];
      a[std::size_t(i) * ld + j] = v;
    }
  return a;
}

TEST(DiagnosePower, KnownSingularValues) {
  struct Case {
    int rows, ld;
    std::vector<double> s;
  };
  for (const Case& c : {Case{4, 4, {3.0, 2.0, 1.0, 0.5}}, Case{7, 6, {0.9, 0.3, 0.2, 0.1, 0.05}},
                        Case{6, 6, {2.0, 1.9, 1.8, 0.1, 0.0, 0.0}},  // close top values
                        Case{5, 5, {1.0, 1.0, 1.0, 1.0, 1.0}}}) {      // orthogonal
    SCOPED_TRACE("rows " + std::to_string(c.rows) + ", sigma_max " + std::to_string(c.s[0]));
    const auto a = with_singular_values(c.rows, c.s, c.ld);
    const SingularValue sv = largest_singular_value(a.data(), c.rows, int(c.s.size()), c.ld);
    EXPECT_TRUE(sv.converged) << sv.iterations;
    EXPECT_NEAR(sv.sigma_max, c.s[0], 1e-6 * c.s[0]);
    // float storage: the same to float's precision
    const std::vector<float> af(a.begin(), a.end());
    const SingularValue svf = largest_singular_value(af.data(), c.rows, int(c.s.size()), c.ld);
    EXPECT_NEAR(svf.sigma_max, c.s[0], 1e-5 * c.s[0]);
  }
  const std::vector<double> zero(9, 0.0);
  const SingularValue z = largest_singular_value(zero.data(), 3, 3, 3);
  EXPECT_TRUE(z.converged);
  EXPECT_EQ(z.sigma_max, 0.0);
  // A rank-one matrix u vᵀ: σ = ‖u‖‖v‖.
  const std::vector<double> r1 = {1 * 2.0, 1 * -1.0, 3 * 2.0, 3 * -1.0};  // u = (1, 3), v = (2, −1)
  EXPECT_NEAR(largest_singular_value(r1.data(), 2, 2, 2).sigma_max, std::sqrt(10.0 * 5.0), 1e-9);
}

TEST(DiagnosePower, GateBlocksAndBound) {
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::identity}, 1, 4};
  auto m = make_model<double>(c);
  // Block g of W_hh = (g + 1) · I: σ_max = g + 1 per gate block, and the whole [4H, H] stack
  // has WᵀW = (1 + 4 + 9 + 16) I, so σ_max = √30.
  auto w = m.views().layers[0].w_hh;
  const int H = c.H;
  for (int g = 0; g < 4; ++g)
    for (int i = 0; i < H; ++i)
      for (int j = 0; j < H; ++j) w[(std::size_t(g) * H + i) * H + j] = i == j ? g + 1.0 : 0.0;
  const auto b = make_batch<double>(c);
  DiagnoseOptions o;
  o.truncation = false;
  const Diagnosis d = diagnose(m, b, c.loss.loss, o);
  ASSERT_EQ(d.w_hh_gate_sigma.size(), 1u);
  ASSERT_EQ(d.w_hh_gate_sigma[0].size(), 4u);
  for (int g = 0; g < 4; ++g) EXPECT_NEAR(d.w_hh_gate_sigma[0][std::size_t(g)].sigma_max, g + 1.0, 1e-9);
  EXPECT_NEAR(d.w_hh_sigma[0].sigma_max, std::sqrt(30.0), 1e-9);
  EXPECT_EQ(d.gate_names, (std::vector<std::string>{"i", "f", "g", "o"}));
  EXPECT_FALSE(d.bound_applies);
  EXPECT_TRUE(d.truncation.empty());

  EXPECT_EQ(activation_derivative_bound(Activation::tanh), 1.0);
  EXPECT_EQ(activation_derivative_bound(Activation::sigmoid), 0.25);
  EXPECT_EQ(activation_derivative_bound(Activation::relu), 1.0);
  EXPECT_EQ(activation_derivative_bound(Activation::identity), 1.0);
  Case e{{CellKind::elman, Activation::sigmoid}, {LossKind::mse, Activation::identity}, 1, 3};
  const Diagnosis ds = diagnose(make_model<double>(e), make_batch<double>(e), LossKind::mse, o);
  EXPECT_TRUE(ds.bound_applies);
  EXPECT_EQ(ds.gamma, 0.25);
  EXPECT_EQ(ds.threshold, 4.0);
  EXPECT_EQ(ds.activation, "sigmoid");
}

// ---------------------------------------------------------------------------------------------
// The identity Elman layer by hand

// Row-major n × n product.
std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int n) {
  std::vector<double> c(std::size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < n; ++j)
        c[std::size_t(i) * n + j] += a[std::size_t(i) * n + k] * b[std::size_t(k) * n + j];
  return c;
}

double frobenius(const std::vector<double>& a) {
  double s = 0;
  for (double v : a) s += v * v;
  return std::sqrt(s);
}

// One identity Elman layer, every sequence of full length, mse on an identity readout: h_t =
// W_hh h_{t−1} + W_ih x_t + b, so ∂h_T/∂h_t = W_hh^{T−t}, and dL/dh_t = W_oᵀ dz_t + W_hhᵀ dL/dh_{t+1}.
TEST(DiagnoseTrace, IdentityElmanByHand) {
  Case c{{CellKind::elman, Activation::identity}, {LossKind::mse, Activation::identity}, 1, 6};
  c.B = 2;
  c.H = 3;
  const auto m = make_model<double>(c);
  auto b = make_batch<double>(c);
  b.lengths.clear();
  b.mask.clear();
  const int T = c.T, B = c.B, H = c.H, I = c.I, O = c.O;
  const Diagnosis d = diagnose(m, b, LossKind::mse);
  ASSERT_TRUE(d.jacobian_exact);  // H = 3 <= 16 probes: the unit vectors

  const auto v = m.views();
  const auto& p = v.layers[0];
  std::vector<double> W(p.w_hh, p.w_hh + H * H), Wd(std::size_t(H) * H, 0.0);
  for (int i = 0; i < H; ++i) Wd[std::size_t(i) * H + i] = 1;
  for (int dist = 0; dist <= T; ++dist) {
    EXPECT_NEAR(d.jacobian_norm_by_distance[0][std::size_t(dist)], frobenius(Wd),
                1e-10 * std::max(1.0, frobenius(Wd)))
        << "distance " << dist;
    EXPECT_EQ(d.sequences_by_distance[std::size_t(dist)], B);
    Wd = matmul(Wd, W, H);
  }

  // Forward by hand, then dL/dh_t backwards.
  std::vector<std::vector<double>> h(std::size_t(T) + 1, std::vector<double>(std::size_t(B) * H));
  for (std::size_t i = 0; i < h[0].size(); ++i) h[0][i] = b.h0[i];
  std::vector<double> dz(std::size_t(T) * B * O);
  for (int t = 0; t < T; ++t)
    for (int s = 0; s < B; ++s) {
      for (int i = 0; i < H; ++i) {
        double a = p.b_ih[i] + p.b_hh[i];
        for (int j = 0; j < I; ++j) a += p.w_ih[i * I + j] * b.x[(std::size_t(t) * B + s) * I + j];
        for (int j = 0; j < H; ++j) a += p.w_hh[i * H + j] * h[std::size_t(t)][std::size_t(s) * H + j];
        h[std::size_t(t) + 1][std::size_t(s) * H + i] = a;
      }
      for (int o = 0; o < O; ++o) {
        double z = v.b_o[o];
        for (int j = 0; j < H; ++j) z += v.w_o[o * H + j] * h[std::size_t(t) + 1][std::size_t(s) * H + j];
        const std::size_t r = (std::size_t(t) * B + s) * O + o;
        dz[r] = 2 * (z - b.y[r]) / (O * T * B);
      }
    }
  std::vector<double> g(std::size_t(B) * H, 0.0), next(std::size_t(B) * H, 0.0);
  for (int t = T - 1; t >= -1; --t) {
    for (int s = 0; s < B; ++s)
      for (int i = 0; i < H; ++i) {
        double a = 0;
        if (t >= 0)
          for (int o = 0; o < O; ++o) a += v.w_o[o * H + i] * dz[(std::size_t(t) * B + s) * O + o];
        for (int j = 0; j < H; ++j) a += p.w_hh[j * H + i] * next[std::size_t(s) * H + j];
        g[std::size_t(s) * H + i] = a;
      }
    const double want = frobenius(g);
    const double got = t >= 0 ? d.grad_norm_by_step[0][std::size_t(t)] : d.grad_norm_h0[0];
    EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, want)) << "step " << t + 1;
    next = g;
  }
}

TEST(DiagnoseTrace, RandomProbesEstimateFrobenius) {
  Case c{{CellKind::elman, Activation::identity}, {LossKind::mse, Activation::identity}, 1, 4};
  c.B = 8;
  c.H = 24;
  auto m = make_model<double>(c);
  for (double& x : m.params) x *= 0.35;  // keep W_hh^d moderate
  auto b = make_batch<double>(c);
  b.lengths.clear();
  DiagnoseOptions o;
  o.truncation = false;
  const Diagnosis exact = [&] {
    DiagnoseOptions e = o;
    e.probes = 24;
    return diagnose(m, b, LossKind::mse, e);
  }();
  ASSERT_TRUE(exact.jacobian_exact);
  o.probes = 16;  // < H: 16 random unit probes per sequence, 128 in all
  const Diagnosis est = diagnose(m, b, LossKind::mse, o);
  ASSERT_FALSE(est.jacobian_exact);
  EXPECT_EQ(est.jacobian_probes, 16);
  for (int dist = 0; dist <= c.T; ++dist) {
    const double want = exact.jacobian_norm_by_distance[0][std::size_t(dist)];
    const double got = est.jacobian_norm_by_distance[0][std::size_t(dist)];
    EXPECT_NEAR(got, want, 0.05 * want) << "distance " << dist;  // within 1% with this seed
  }
  EXPECT_NEAR(exact.jacobian_norm_by_distance[0][0], std::sqrt(24.0), 1e-12);
}

// ---------------------------------------------------------------------------------------------
// Every cell against central differences

// ‖∂h^k_n/∂h^k_t‖_F of sequence `s` for the distance d = T − t by central differences: the run
// over steps [T − d, T) started from the exact state at T − d (c held fixed for LSTM).
double fd_jacobian_norm(const Case& c, const Model<double>& m, const Batch<double>& b, int k,
                        int d, int s) {
  const int H = c.HO();  // the state's width (a projection's P)
  if (d == 0) return std::sqrt(double(H));  // ∂h_n/∂h_n = I
  const ModelConfig cfg = c.config();
  Workspace<double> ws(cfg, b.T, b.B);
  forward(m, b, ws);
  std::vector<double> h, cc;
  ws.state_at(b.T - d, h, cc);
  Batch<double> sub;
  slice_steps(b, b.T - d, b.T, sub);
  sub.h0 = h;
  if (cfg.cell == CellKind::lstm) sub.c0 = cc;
  const std::size_t BH = std::size_t(b.B) * H, at = std::size_t(k) * BH + std::size_t(s) * H;
  auto final_h = [&](const Batch<double>& x) {
    Workspace<double> w(cfg, x.T, x.B);
    forward(m, x, w);
    std::vector<double> hn, cn;
    w.state_at(x.T, hn, cn);
    return std::vector<double>(hn.begin() + std::ptrdiff_t(at), hn.begin() + std::ptrdiff_t(at) + H);
  };
  const double eps = 1e-6;
  double sum = 0;
  for (int j = 0; j < H; ++j) {
    Batch<double> plus = sub, minus = sub;
    plus.h0[at + std::size_t(j)] += eps;
    minus.h0[at + std::size_t(j)] -= eps;
    const auto a = final_h(plus), z = final_h(minus);
    for (int i = 0; i < H; ++i) sum += std::pow((a[std::size_t(i)] - z[std::size_t(i)]) / (2 * eps), 2);
  }
  return std::sqrt(sum);
}

// Every layer's ‖∂h_n/∂h_t‖_F at every distance against fd_jacobian_norm (sequence 0).
void expect_jacobians_match_differences(const Case& c, const Model<double>& m,
                                        const Batch<double>& b, const Diagnosis& d) {
  for (int k = 0; k < c.L; ++k)
    for (int dist = 0; dist <= c.T; ++dist) {
      const double want = fd_jacobian_norm(c, m, b, k, dist, 0);
      EXPECT_NEAR(d.jacobian_norm_by_distance[std::size_t(k)][std::size_t(dist)], want,
                  1e-7 * std::max(1.0, want))
          << "layer " << k << ", distance " << dist;
    }
}

class DiagnoseCells : public testing::TestWithParam<CellVariant> {};

std::string cell_name(const testing::TestParamInfo<CellVariant>& p) { return p.param.name(); }

TEST_P(DiagnoseCells, JacobianAgainstFiniteDifferences) {
  Case c{GetParam(), {LossKind::mse, Activation::tanh}, 2, 5};
  c.B = 1;
  c.H = 4;
  const auto m = make_model<double>(c);
  auto b = make_batch<double>(c);
  b.lengths.clear();
  DiagnoseOptions o;
  o.truncation = false;
  const Diagnosis d = diagnose(m, b, c.loss.loss, o);
  expect_jacobians_match_differences(c, m, b, d);
}

// Variable lengths: each sequence's distances count from its own end; the distance T is reached
// only by the full-length sequence, h_0 of an empty sequence is its distance 0.
TEST_P(DiagnoseCells, DistancesCountFromEachSequencesEnd) {
  Case c{GetParam(), {LossKind::xent, Activation::softmax}, 1, 5};  // lengths 5, 3, 0
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  ASSERT_EQ(b.lengths, (std::vector<std::int64_t>{5, 3, 0}));
  DiagnoseOptions o;
  o.truncation = false;
  const Diagnosis d = diagnose(m, b, c.loss.loss, o);
  EXPECT_EQ(d.sequences_by_distance, (std::vector<int>{3, 2, 2, 2, 1, 1}));
  Batch<double> first = b;  // sequence 0 alone reaches distances 4 and 5
  first.lengths.clear();
  EXPECT_NEAR(d.jacobian_norm_by_distance[0][5], fd_jacobian_norm(c, m, first, 0, 5, 0), 1e-7);
  EXPECT_NEAR(d.jacobian_norm_by_distance[0][0], std::sqrt(double(c.H)), 1e-12);
}

// A projected, bias-free LSTM with a learned initial state: the state, the probes and the
// Jacobians are P wide; truncation rows as well. (Bidirectional models:
// test_diagnose_bidirectional.cpp.)
TEST(DiagnoseOptions, ProjectedLearnedBiasFreeLstm) {
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::tanh}, 2, 5};
  c.B = 1;
  c.H = 4;
  c.opt = {.P = 2, .bias = false, .init = InitCase::learned};
  const auto m = make_model<double>(c);
  auto b = make_batch<double>(c);
  b.lengths.clear();
  const Diagnosis d = diagnose(m, b, c.loss.loss, DiagnoseOptions{});
  EXPECT_EQ(d.H, 2);
  EXPECT_EQ(d.w_hh_sigma.size(), 2u);
  expect_jacobians_match_differences(c, m, b, d);
  ASSERT_FALSE(d.truncation.empty());
  EXPECT_NEAR(d.truncation.back().cosine, 1.0, 1e-12);  // K = T: the full gradient
}

INSTANTIATE_TEST_SUITE_P(, DiagnoseCells,
                         testing::Values(CellVariant{CellKind::elman, Activation::tanh},
                                         CellVariant{CellKind::elman, Activation::relu},
                                         CellVariant{CellKind::lstm, Activation::tanh},
                                         CellVariant{CellKind::gru, Activation::tanh}),
                         cell_name);

// ---------------------------------------------------------------------------------------------
// Truncation

TEST(DiagnoseTruncation, Windows) {
  EXPECT_EQ(truncation_windows(1), (std::vector<int>{1}));
  EXPECT_EQ(truncation_windows(2), (std::vector<int>{1, 2}));
  EXPECT_EQ(truncation_windows(8), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(truncation_windows(10), (std::vector<int>{1, 2, 4, 8, 10}));
  EXPECT_EQ(truncation_windows(100, 5), (std::vector<int>{1, 2, 4, 100}));
}

TEST(DiagnoseTruncation, FullWindowIsUnbiased) {
  for (const CellVariant& cell : all_cells()) {
    Case c{cell, {LossKind::mse, Activation::tanh}, 2, 6};
    SCOPED_TRACE(c.name());
    const auto m = make_model<double>(c);
    const auto b = make_batch<double>(c);
    const Diagnosis d = diagnose(m, b, c.loss.loss);
    ASSERT_EQ(d.truncation.size(), 4u);  // 1, 2, 4, 6
    EXPECT_EQ(d.truncation.back().K, 6);
    EXPECT_NEAR(d.truncation.back().cosine, 1.0, 1e-12);
    EXPECT_LT(d.truncation.back().relative_error, 1e-12);
    EXPECT_NEAR(d.truncation.back().grad_norm, d.full_grad_norm, 1e-12 * d.full_grad_norm);
    EXPECT_GT(d.truncation.front().relative_error, 1e-4);  // K = 1 drops the recurrent paths
    EXPECT_LT(d.truncation.front().cosine, 1.0 - 1e-9);

    // The full gradient and the loss are loss_and_gradients'.
    Workspace<double> ws(c.config(), c.T, c.B);
    Gradients<double> g(c.config(), c.T, c.B);
    g.zero();
    const double L = loss_and_gradients(m, b, c.loss.loss, ws, g);
    EXPECT_NEAR(d.loss, L, 1e-14);
    double n2 = 0;
    for (double x : g.params) n2 += x * x;
    EXPECT_NEAR(d.full_grad_norm, std::sqrt(n2), 1e-12 * std::sqrt(n2));
  }
}

TEST(DiagnoseTruncation, FloatRuns) {
  Case c{{CellKind::gru, Activation::tanh}, {LossKind::bce, Activation::sigmoid}, 2, 5};
  const auto m = make_model<float>(c);
  const auto b = make_batch<float>(c);
  const Diagnosis d = diagnose(m, b, c.loss.loss);
  EXPECT_NEAR(d.truncation.back().cosine, 1.0, 1e-5);
  const Diagnosis d64 = diagnose(make_model<double>(c), make_batch<double>(c), c.loss.loss);
  for (int k = 0; k < c.L; ++k)
    for (int t = 0; t < c.T; ++t)
      EXPECT_NEAR(d.grad_norm_by_step[std::size_t(k)][std::size_t(t)],
                  d64.grad_norm_by_step[std::size_t(k)][std::size_t(t)], 1e-5);
}

}  // namespace
}  // namespace bptt::test
