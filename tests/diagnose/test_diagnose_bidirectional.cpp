// The gradient diagnostics of bidirectional models (include/bptt/diagnose.hpp), each against an
// independent computation:
//   - ‖dL/dh_t‖ per unit (steps in data order, h_0 of each direction) against central
//     differences of the loss, with the state of one unit at one step perturbed, in a
//     bidirectional Elman network written out step by step here (variable lengths, two layers);
//   - ‖∂h_n/∂h_t‖_F per unit, measured from each direction's own final state, against central
//     differences of a run resumed from the exact states between the perturbed state and the
//     final one, for every cell, every distance and sequences of different lengths;
//   - the mirror: with the right-to-left weights equal to the left-to-right ones (and the
//     layers' input halves and the head's swapped to match), a time-reversed batch gives every
//     unit the numbers of its mirror unit, steps reversed;
//   - the rows' names and count, and no truncation rows (with the reason) for the models
//     truncated BPTT refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bptt/diagnose.hpp"
#include "bptt/loss.hpp"
#include "bptt/methods.hpp"
#include "bptt/unroll.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

// ---------------------------------------------------------------------------------------------
// ‖∂h_n/∂h_t‖_F by central differences

// ‖∂h^u_n/∂h^u_t‖_F of sequence s of a batch without lengths, at the distance `dist` from unit
// u's own final state (left to right the state after step T − dist, 1-based; right to left the
// state after step dist + 1, its final state being the one after step 1), by central
// differences of the run over the steps in between, resumed from the exact states: every unit
// of u's direction from its state next to the window (c held fixed for LSTM), the other
// direction from its initial state, so the run reproduces the whole one on those steps.
double fd_unit_jacobian_norm(const Case& c, const Model<double>& m, const Batch<double>& b, int u,
                             int dist, int s) {
  const int HO = c.HO(), H = c.H;
  if (dist == 0) return std::sqrt(double(HO));  // ∂h_n/∂h_n = I
  const ModelConfig cfg = c.config();
  const int T = b.T, B = b.B, D = cfg.directions(), U = cfg.units();
  const bool reverse = u % D == 1;
  Workspace<double> ws(cfg, T, B);
  forward(m, b, ws);
  std::vector<double> hs, cs, h0, c0;
  ws.step_states(hs, cs);  // [U, T, B, ·] in data order
  initial_states(m, b, h0, c0);
  const int first = reverse ? 0 : T - dist, last = reverse ? dist : T;
  Batch<double> sub;
  slice_steps(b, first, last, sub);
  sub.h0 = h0;
  sub.c0 = c0;
  // The 0-based data row whose state u's direction resumes from (−1 or T: the initial state).
  const int at = reverse ? last : first - 1;
  if (at >= 0 && at < T)
    for (int v = reverse ? 1 : 0; v < U; v += D) {
      const std::size_t hrow = (std::size_t(v) * T + std::size_t(at)) * B * HO;
      std::copy(hs.begin() + std::ptrdiff_t(hrow),
                hs.begin() + std::ptrdiff_t(hrow + std::size_t(B) * HO),
                sub.h0.begin() + std::ptrdiff_t(std::size_t(v) * B * HO));
      if (!cs.empty()) {
        const std::size_t crow = (std::size_t(v) * T + std::size_t(at)) * B * H;
        std::copy(cs.begin() + std::ptrdiff_t(crow),
                  cs.begin() + std::ptrdiff_t(crow + std::size_t(B) * H),
                  sub.c0.begin() + std::ptrdiff_t(std::size_t(v) * B * H));
      }
    }
  const std::size_t off = (std::size_t(u) * B + std::size_t(s)) * HO;
  auto final_h = [&](const Batch<double>& x) {
    Workspace<double> w(cfg, x.T, x.B);
    forward(m, x, w);
    std::vector<double> hn, cn;
    w.state_at(x.T, hn, cn);  // every unit's final state, the right-to-left one's too
    return std::vector<double>(hn.begin() + std::ptrdiff_t(off), hn.begin() + std::ptrdiff_t(off) + HO);
  };
  const double eps = 1e-6;
  double sum = 0;
  for (int j = 0; j < HO; ++j) {
    Batch<double> plus = sub, minus = sub;
    plus.h0[off + std::size_t(j)] += eps;
    minus.h0[off + std::size_t(j)] -= eps;
    const auto a = final_h(plus), z = final_h(minus);
    for (int i = 0; i < HO; ++i) sum += std::pow((a[std::size_t(i)] - z[std::size_t(i)]) / (2 * eps), 2);
  }
  return std::sqrt(sum);
}

// Sequence s of a batch alone, cut to its length (no lengths, its own h0/c0).
Batch<double> one_sequence(const Batch<double>& b, int s, int units) {
  Batch<double> row, out;
  slice_rows(b, s, s + 1, units, row);
  const int n = b.lengths.empty() ? b.T : int(b.lengths[std::size_t(s)]);
  slice_steps(row, 0, n, out);
  out.lengths.clear();
  out.h0 = row.h0;
  out.c0 = row.c0;
  return out;
}

// Every unit's N(d) = sqrt(mean over the sequences b with length >= d of ‖J_b(d)‖_F²) at every
// distance, each J_b by differences on sequence b alone.
void expect_unit_jacobians_match_differences(const Case& c, const Model<double>& m,
                                             const Batch<double>& b, const Diagnosis& d) {
  const ModelConfig cfg = c.config();
  const int U = cfg.units();
  ASSERT_EQ(int(d.jacobian_norm_by_distance.size()), U);
  for (int u = 0; u < U; ++u)
    for (int dist = 0; dist <= b.T; ++dist) {
      double sum = 0;
      int count = 0;
      for (int s = 0; s < b.B; ++s) {
        const int n = b.lengths.empty() ? b.T : int(b.lengths[std::size_t(s)]);
        if (n < dist) continue;
        const double j = fd_unit_jacobian_norm(c, m, one_sequence(b, s, U), u, dist, 0);
        sum += j * j;
        ++count;
      }
      const double got = d.jacobian_norm_by_distance[std::size_t(u)][std::size_t(dist)];
      EXPECT_EQ(d.sequences_by_distance[std::size_t(dist)], count) << "distance " << dist;
      if (count == 0) {
        EXPECT_TRUE(std::isnan(got)) << d.unit_names[std::size_t(u)] << ", distance " << dist;
        continue;
      }
      const double want = std::sqrt(sum / count);
      EXPECT_NEAR(got, want, 1e-7 * std::max(1.0, want))
          << d.unit_names[std::size_t(u)] << ", distance " << dist;
    }
}

class DiagnoseBidirectional : public testing::TestWithParam<CellVariant> {};

std::string cell_name(const testing::TestParamInfo<CellVariant>& p) { return p.param.name(); }

// Two bidirectional layers, lengths 5, 3, 0, 5: each direction's distances count from its own
// final state in each sequence.
TEST_P(DiagnoseBidirectional, JacobianAgainstFiniteDifferences) {
  Case c{GetParam(), {LossKind::mse, Activation::tanh}, 2, 5};
  c.B = 4;
  c.H = 4;
  c.opt = {.bi = true};
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  ASSERT_EQ(b.lengths, (std::vector<std::int64_t>{5, 3, 0, 5}));
  DiagnoseOptions o;
  o.truncation = false;
  const Diagnosis d = diagnose(m, b, c.loss.loss, o);
  EXPECT_EQ(d.sequences_by_distance, (std::vector<int>{4, 3, 3, 3, 2, 2}));
  expect_unit_jacobians_match_differences(c, m, b, d);
  // The two directions measure different things on this batch (the test is not vacuous).
  EXPECT_GT(std::abs(d.jacobian_norm_by_distance[0][3] - d.jacobian_norm_by_distance[1][3]), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// The mirror

// The batch with its time axis reversed (every sequence of full length).
Batch<double> time_reversed(const Batch<double>& b) {
  Batch<double> r = b;
  const int T = b.T;
  const std::size_t B = std::size_t(b.B);
  auto flip = [&](const std::vector<double>& v, std::vector<double>& out) {
    if (v.empty()) return;
    const std::size_t row = v.size() / std::size_t(T);  // B · width
    for (int t = 0; t < T; ++t)
      std::copy(v.begin() + std::ptrdiff_t(std::size_t(t) * row),
                v.begin() + std::ptrdiff_t(std::size_t(t + 1) * row),
                out.begin() + std::ptrdiff_t(std::size_t(T - 1 - t) * row));
  };
  flip(b.x, r.x);
  flip(b.y, r.y);
  flip(b.mask, r.mask);
  for (int t = 0; t < T; ++t)
    for (std::size_t s = 0; s < B && !b.classes.empty(); ++s)
      r.classes[std::size_t(T - 1 - t) * B + s] = b.classes[std::size_t(t) * B + s];
  return r;
}

// The right-to-left unit of every layer gets the left-to-right one's weights and initial state;
// above layer 0 its W_ih's column halves swapped (it reads [h→ ; h←] where its mirror reads
// [h← ; h→]), and the head reads both halves alike. Then a time-reversed batch runs every unit
// as its mirror unit ran on the batch, steps reversed, and the loss is the same.
TEST_P(DiagnoseBidirectional, TimeReversedBatchMirrorsTheDirections) {
  Case c{GetParam(), {LossKind::mse, Activation::tanh}, 2, 6};
  c.B = 3;
  c.opt = {.bi = true, .P = GetParam().cell == CellKind::lstm ? 2 : 0, .lengths = false};
  auto m = make_model<double>(c);
  const ModelConfig cfg = c.config();
  const int HO = c.HO(), H = c.H, GH = cfg.gates() * H, W = 2 * HO, T = c.T, B = c.B;
  auto V = m.views();
  for (int k = 0; k < c.L; ++k) {
    const auto& p = V.layers[std::size_t(2 * k)];
    const auto& q = V.layers[std::size_t(2 * k + 1)];
    std::copy(p.w_hh, p.w_hh + GH * HO, q.w_hh);
    std::copy(p.b_ih, p.b_ih + GH, q.b_ih);
    std::copy(p.b_hh, p.b_hh + GH, q.b_hh);
    if (c.opt.P) std::copy(p.w_hr, p.w_hr + c.opt.P * H, q.w_hr);
    for (int r = 0; r < GH; ++r)
      for (int j = 0; j < p.in; ++j)
        q.w_ih[r * p.in + j] = p.w_ih[r * p.in + (k == 0 ? j : (j + HO) % W)];
  }
  for (int o = 0; o < c.O; ++o)
    for (int j = 0; j < HO; ++j) V.w_o[o * W + HO + j] = V.w_o[o * W + j];
  auto b = make_batch<double>(c);
  ASSERT_TRUE(b.lengths.empty());
  for (int k = 0; k < c.L; ++k) {
    const std::size_t f = std::size_t(2 * k) * B, r = f + std::size_t(B);
    std::copy(b.h0.begin() + std::ptrdiff_t(f * HO), b.h0.begin() + std::ptrdiff_t(r * HO),
              b.h0.begin() + std::ptrdiff_t(r * HO));
    if (!b.c0.empty())
      std::copy(b.c0.begin() + std::ptrdiff_t(f * H), b.c0.begin() + std::ptrdiff_t(r * H),
                b.c0.begin() + std::ptrdiff_t(r * H));
  }
  const Batch<double> rb = time_reversed(b);
  const Diagnosis d = diagnose(m, b, c.loss.loss), e = diagnose(m, rb, c.loss.loss);
  const auto near = [](double a, double want) {
    return std::abs(a - want) <= 1e-12 * std::max(1.0, std::abs(want));
  };
  EXPECT_TRUE(near(e.loss, d.loss)) << e.loss << " " << d.loss;
  EXPECT_TRUE(near(e.full_grad_norm, d.full_grad_norm));
  double asymmetry = 0;
  for (int u = 0; u < 2 * c.L; ++u) {
    const std::size_t mu = std::size_t(u ^ 1), su = std::size_t(u);
    SCOPED_TRACE(d.unit_names[su] + " against " + e.unit_names[mu] + " reversed");
    for (int t = 0; t < T; ++t) {
      const double a = d.grad_norm_by_step[su][std::size_t(t)];
      const double z = e.grad_norm_by_step[mu][std::size_t(T - 1 - t)];
      EXPECT_TRUE(near(z, a)) << "step " << t + 1 << ": " << z << " vs " << a;
      EXPECT_GT(a, 0.0);
      asymmetry = std::max(asymmetry, std::abs(a - d.grad_norm_by_step[mu][std::size_t(T - 1 - t)]));
    }
    EXPECT_TRUE(near(e.grad_norm_h0[mu], d.grad_norm_h0[su]));
    for (int dist = 0; dist <= T; ++dist)
      EXPECT_TRUE(near(e.jacobian_norm_by_distance[mu][std::size_t(dist)],
                       d.jacobian_norm_by_distance[su][std::size_t(dist)]))
          << "distance " << dist;
    EXPECT_TRUE(near(d.w_hh_sigma[mu].sigma_max, d.w_hh_sigma[su].sigma_max));
  }
  // On the batch itself the two directions differ: the mirror is the reversal's doing.
  EXPECT_GT(asymmetry, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(, DiagnoseBidirectional,
                         testing::Values(CellVariant{CellKind::elman, Activation::tanh},
                                         CellVariant{CellKind::elman, Activation::relu},
                                         CellVariant{CellKind::lstm, Activation::tanh},
                                         CellVariant{CellKind::gru, Activation::tanh}),
                         cell_name);

// ---------------------------------------------------------------------------------------------
// ‖dL/dh_t‖ by central differences

// Adds eps to element j of unit u's state after data step t of sequence b (t = −1: its initial
// state; t at or past the sequence's length: the output there, a copy of the final state).
struct Nudge {
  int u = -1, t = 0, b = 0, j = 0;
  double eps = 0;
};

// The loss of a bidirectional Elman model written out step by step (docs/math.md 8a): the left-
// to-right unit reads steps 0..n−1, the right-to-left one n−1..0 from its own initial state, a
// layer's output is [h→_t ; h←_t], and past a sequence's length both directions output their
// final state. The head and the loss are the library's (they are not what is tested).
double bidirectional_elman_loss(const Case& c, const Model<double>& m, const Batch<double>& batch,
                                const Nudge& nudge) {
  const ModelConfig cfg = c.config();
  const int T = batch.T, B = batch.B, H = c.H, W = 2 * H, O = c.O;
  const auto V = m.views();
  std::vector<double> below = batch.x, out;
  for (int k = 0; k < c.L; ++k) {
    out.assign(std::size_t(T) * B * W, 0.0);
    for (int dir = 0; dir < 2; ++dir) {
      const int u = 2 * k + dir;
      const auto& p = V.layers[std::size_t(u)];
      for (int b = 0; b < B; ++b) {
        const int n = batch.lengths.empty() ? T : int(batch.lengths[std::size_t(b)]);
        const bool here = nudge.u == u && nudge.b == b;
        std::vector<double> h(batch.h0.begin() + std::ptrdiff_t((std::size_t(u) * B + b) * H),
                              batch.h0.begin() + std::ptrdiff_t((std::size_t(u) * B + b + 1) * H));
        if (here && nudge.t == -1) h[std::size_t(nudge.j)] += nudge.eps;
        for (int i = 0; i < n; ++i) {
          const int t = dir == 0 ? i : n - 1 - i;
          const double* x = below.data() + (std::size_t(t) * B + b) * p.in;
          std::vector<double> next(static_cast<std::size_t>(H));
          for (int r = 0; r < H; ++r) {
            double s = p.b_ih[r] + p.b_hh[r];
            for (int j = 0; j < p.in; ++j) s += p.w_ih[r * p.in + j] * x[j];
            for (int j = 0; j < H; ++j) s += p.w_hh[r * H + j] * h[std::size_t(j)];
            next[std::size_t(r)] = c.cell.phi == Activation::tanh ? std::tanh(s) : std::max(s, 0.0);
          }
          h = next;
          if (here && nudge.t == t) h[std::size_t(nudge.j)] += nudge.eps;
          std::copy(h.begin(), h.end(),
                    out.begin() + std::ptrdiff_t((std::size_t(t) * B + b) * W + dir * H));
        }
        for (int t = n; t < T; ++t) {
          double* o = out.data() + (std::size_t(t) * B + b) * W + dir * H;
          std::copy(h.begin(), h.end(), o);
          if (here && nudge.t == t) o[nudge.j] += nudge.eps;
        }
      }
    }
    below = out;
  }
  std::vector<double> z(std::size_t(T) * B * O), yhat(z.size()), dz(z.size());
  for (std::size_t r = 0; r < std::size_t(T) * B; ++r)
    for (int o = 0; o < O; ++o) {
      double s = V.b_o[o];
      for (int j = 0; j < W; ++j) s += V.w_o[o * W + j] * below[r * W + j];
      z[r * O + o] = s;
    }
  apply_output_activation(cfg.output_activation, T * B, O, z.data(), yhat.data());
  return loss_and_dz(c.loss.loss, cfg, batch, z.data(), yhat.data(), dz.data());
}

TEST(DiagnoseBidirectionalTrace, GradNormAgainstPerturbedStates) {
  for (const Activation phi : {Activation::tanh, Activation::relu}) {
    Case c{{CellKind::elman, phi}, {LossKind::mse, Activation::identity}, 2, 5};
    c.B = 4;  // lengths 5, 3, 0, 5
    c.opt = {.bi = true};
    SCOPED_TRACE(c.name());
    const auto m = make_model<double>(c);
    const auto b = make_batch<double>(c);
    DiagnoseOptions o;
    o.truncation = false;
    const Diagnosis d = diagnose(m, b, c.loss.loss, o);
    ASSERT_EQ(d.grad_norm_by_step.size(), 4u);
    EXPECT_NEAR(bidirectional_elman_loss(c, m, b, {}), d.loss, 1e-13);  // the same model
    const double eps = 1e-6;
    for (int u = 0; u < 4; ++u)
      for (int t = -1; t < c.T; ++t) {
        double sum = 0;
        for (int s = 0; s < c.B; ++s)
          for (int j = 0; j < c.H; ++j) {
            const double a = bidirectional_elman_loss(c, m, b, {u, t, s, j, eps}),
                         z = bidirectional_elman_loss(c, m, b, {u, t, s, j, -eps});
            sum += std::pow((a - z) / (2 * eps), 2);
          }
        const double want = std::sqrt(sum);
        const double got = t < 0 ? d.grad_norm_h0[std::size_t(u)]
                                 : d.grad_norm_by_step[std::size_t(u)][std::size_t(t)];
        EXPECT_NEAR(got, want, 1e-8 + 1e-6 * want)
            << d.unit_names[std::size_t(u)] << ", step " << t + 1;
        if (t < 3) {  // steps every sequence but the empty one reaches
          EXPECT_GT(want, 1e-4) << "step " << t + 1;
        }
      }
  }
}

// ---------------------------------------------------------------------------------------------
// Rows, names, truncation

TEST(DiagnoseBidirectionalRows, NamesAndNoTruncation) {
  Case c{{CellKind::lstm, Activation::tanh}, {LossKind::mse, Activation::tanh}, 2, 5};
  c.B = 4;
  c.H = 4;
  c.opt = {.bi = true, .P = 2, .bias = false, .init = InitCase::learned};
  const auto m = make_model<double>(c);
  const auto b = make_batch<double>(c);
  const Diagnosis d = diagnose(m, b, c.loss.loss, DiagnoseOptions{});
  EXPECT_EQ(d.D, 2);
  EXPECT_EQ(d.L, 2);
  EXPECT_EQ(d.H, 2);  // the projection's P
  EXPECT_EQ(d.unit_names, (std::vector<std::string>{"l0", "l0_reverse", "l1", "l1_reverse"}));
  EXPECT_EQ(d.grad_norm_by_step.size(), 4u);
  EXPECT_EQ(d.grad_norm_h0.size(), 4u);
  EXPECT_EQ(d.jacobian_norm_by_distance.size(), 4u);
  ASSERT_EQ(d.w_hh_sigma.size(), 4u);
  ASSERT_EQ(d.w_hh_gate_sigma.size(), 4u);
  // σ_max of each unit's own W_hh.
  const auto V = m.views();
  for (int u = 0; u < 4; ++u)
    EXPECT_EQ(d.w_hh_sigma[std::size_t(u)].sigma_max,
              largest_singular_value(V.layers[std::size_t(u)].w_hh, 4 * c.H, 2, 2).sigma_max);
  EXPECT_TRUE(d.truncation.empty());
  EXPECT_NE(d.truncation_skipped.find("bidirectional"), std::string::npos) << d.truncation_skipped;
  expect_unit_jacobians_match_differences(c, m, b, d);

  // Unidirectional: one row per layer named l0, l1, and the truncation rows.
  Case uni = c;
  uni.opt.bi = false;
  const Diagnosis du = diagnose(make_model<double>(uni), make_batch<double>(uni), uni.loss.loss);
  EXPECT_EQ(du.D, 1);
  EXPECT_EQ(du.unit_names, (std::vector<std::string>{"l0", "l1"}));
  EXPECT_FALSE(du.truncation.empty());
  EXPECT_TRUE(du.truncation_skipped.empty());

  // A head that reads the final state: truncated BPTT refuses it too, so no rows and a reason
  // (not an error); nor when the rows were not asked for.
  Case fin = uni;
  fin.opt.final_readout = true;
  const auto mf = make_model<double>(fin);
  const auto bf = make_batch<double>(fin);
  const Diagnosis df = diagnose(mf, bf, fin.loss.loss);
  EXPECT_TRUE(df.truncation.empty());
  EXPECT_NE(df.truncation_skipped.find("final"), std::string::npos) << df.truncation_skipped;
  DiagnoseOptions none;
  none.truncation = false;
  EXPECT_TRUE(diagnose(mf, bf, fin.loss.loss, none).truncation_skipped.empty());
}

}  // namespace
}  // namespace bptt::test
