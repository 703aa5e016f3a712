// The online methods' row kernels (src/methods/online_rows.cpp: vector lanes, groups of
// sequences sharing the gradient's pass, bias rows as one vector) against the obvious loops in
// double, for float and double, every group size, one and two trace components, row lengths that
// leave a tail and ones that do not. The suite's name matches the per-CPU-level runs (*Kernels*
// in tests/CMakeLists.txt), so each compiled level is checked.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "methods/online.hpp"

namespace bptt::online {
namespace {

template <class Real>
std::vector<Real> random(std::mt19937& rng, std::size_t n) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Real> v(n);
  for (Real& x : v) x = Real(u(rng));
  return v;
}

template <class Real>
double tolerance() {
  return sizeof(Real) == 4 ? 2e-6 : 1e-14;
}

template <class Real>
void expect_near(const std::vector<Real>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(double(got[i]), want[i], tolerance<Real>() * (1 + std::abs(want[i])))
        << what << " at " << i;
}

template <class Real>
void check_uoro(int count, int rows, int n, bool bias) {
  std::mt19937 rng(unsigned(97 * count + 13 * n + rows + bias));
  const std::size_t len = bias ? std::size_t(rows) : std::size_t(rows) * n;
  const std::size_t C = std::size_t(count);
  std::vector<std::vector<Real>> w(C), d(C), src(C);
  std::vector<Real> g = random<Real>(rng, len);
  std::vector<double> gw(g.begin(), g.end());
  std::vector<std::vector<double>> ww(C);
  UoroSeq<Real> q[kGroup];
  std::vector<double> n2(C, 0.0);
  for (int s = 0; s < count; ++s) {
    const std::size_t i = std::size_t(s);
    w[i] = random<Real>(rng, len);
    d[i] = random<Real>(rng, std::size_t(rows));
    src[i] = random<Real>(rng, std::size_t(n));
    ww[i].assign(w[i].begin(), w[i].end());
    q[s] = {w[i].data(), d[i].data(), bias ? nullptr : src[i].data(), Real(0.3 + 0.1 * s),
            Real(0.9 - 0.05 * s), Real(0.7 + 0.02 * s), 0.0};
    // The obvious loop, in double from the same (rounded) inputs.
    for (std::size_t k = 0; k < len; ++k) {
      const std::size_t r = bias ? k : k / std::size_t(n), c = bias ? 0 : k % std::size_t(n);
      const double in = bias ? 1.0 : double(src[i][c]);
      gw[k] += double(q[s].cr) * ww[i][k];
      ww[i][k] = ww[i][k] * double(q[s].inv0) + double(q[s].inv1) * double(d[i][r]) * in;
      n2[i] += ww[i][k] * ww[i][k];
    }
  }
  uoro_rows(q, count, g.data(), rows, bias ? 1 : n);
  expect_near(g, gw, "gradient");
  for (int s = 0; s < count; ++s) {
    const std::size_t i = std::size_t(s);
    expect_near(w[i], ww[i], "theta");
    EXPECT_NEAR(q[s].n2, n2[i], tolerance<Real>() * 10 * n2[i]);
  }
}

template <class Real>
void check_trace(int Q, int count, int rows, int n, bool bias, bool with_x) {
  std::mt19937 rng(unsigned(7 * Q + 31 * count + 11 * n + rows + bias + 2 * with_x));
  const std::size_t len = bias ? std::size_t(rows) : std::size_t(rows) * n;
  const std::size_t R = std::size_t(rows);
  struct Seq {
    std::vector<Real> m0, m1, a00, a01, a10, a11, k0, k1, e, x, src;
  };
  const std::size_t C = std::size_t(count);
  std::vector<Seq> in(C);
  std::vector<Real> g = random<Real>(rng, len);
  std::vector<double> gw(g.begin(), g.end());
  std::vector<std::vector<double>> m0w(C), m1w(C);
  TraceSeq<Real> t[kGroup];
  for (int s = 0; s < count; ++s) {
    Seq& v = in[std::size_t(s)];
    v.m0 = random<Real>(rng, len), v.m1 = random<Real>(rng, len);
    v.a00 = random<Real>(rng, R), v.a01 = random<Real>(rng, R), v.a10 = random<Real>(rng, R);
    v.a11 = random<Real>(rng, R), v.k0 = random<Real>(rng, R), v.k1 = random<Real>(rng, R);
    v.e = random<Real>(rng, R), v.x = random<Real>(rng, R);
    v.src = random<Real>(rng, std::size_t(n));
    std::vector<double>& m0 = m0w[std::size_t(s)];
    std::vector<double>& m1 = m1w[std::size_t(s)];
    m0.assign(v.m0.begin(), v.m0.end());
    m1.assign(v.m1.begin(), v.m1.end());
    const bool two = Q == 2;
    t[s] = {v.m0.data(),  two ? v.m1.data() : nullptr,  v.a00.data(),
            two ? v.a01.data() : nullptr, two ? v.a10.data() : nullptr,
            two ? v.a11.data() : nullptr, v.k0.data(), two ? v.k1.data() : nullptr,
            v.e.data(), with_x ? v.x.data() : nullptr, bias ? nullptr : v.src.data()};
    for (std::size_t k = 0; k < len; ++k) {
      const std::size_t r = bias ? k : k / std::size_t(n), c = bias ? 0 : k % std::size_t(n);
      const double u = bias ? 1.0 : double(v.src[c]);
      double n0 = double(v.a00[r]) * m0[k] + double(v.k0[r]) * u;
      if (two) {
        n0 += double(v.a01[r]) * m1[k];
        m1[k] = double(v.a10[r]) * m0[k] + double(v.a11[r]) * m1[k] + double(v.k1[r]) * u;
      }
      m0[k] = n0;
      gw[k] += double(v.e[r]) * n0 + (with_x ? double(v.x[r]) * u : 0.0);
    }
  }
  trace_rows(t, count, g.data(), rows, bias ? 1 : n);
  expect_near(g, gw, "gradient");
  for (int s = 0; s < count; ++s) {
    expect_near(in[std::size_t(s)].m0, m0w[std::size_t(s)], "m0");
    if (Q == 2) expect_near(in[std::size_t(s)].m1, m1w[std::size_t(s)], "m1");
  }
}

TEST(OnlineRowKernels, UoroMatchesTheObviousLoop) {
  for (int count = 1; count <= kGroup; ++count)
    for (int n : {1, 5, 16, 37})
      for (bool bias : {false, true}) {
        SCOPED_TRACE(testing::Message() << "count " << count << " n " << n << " bias " << bias);
        check_uoro<float>(count, 3, n, bias);
        check_uoro<double>(count, 3, n, bias);
        check_uoro<float>(count, 21, n, bias);  // bias rows: 21 values, a vector and a tail
      }
}

TEST(OnlineRowKernels, TraceMatchesTheObviousLoop) {
  for (int Q : {1, 2})
    for (int count = 1; count <= kGroup; ++count)
      for (int n : {1, 5, 16, 37})
        for (bool bias : {false, true})
          for (bool with_x : {false, true}) {
            SCOPED_TRACE(testing::Message() << "Q " << Q << " count " << count << " n " << n
                                            << " bias " << bias << " x " << with_x);
            check_trace<float>(Q, count, 3, n, bias, with_x);
            check_trace<double>(Q, count, 3, n, bias, with_x);
          }
}

TEST(OnlineRowKernels, GroupsKeepOrderAndSkipFinishedSequences) {
  const unsigned char valid[7] = {1, 0, 1, 1, 1, 0, 1};
  const auto groups = sequence_groups(valid, 7, 2);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0], (std::vector<int>{0, 2}));
  EXPECT_EQ(groups[1], (std::vector<int>{3, 4}));
  EXPECT_EQ(groups[2], (std::vector<int>{6}));
  EXPECT_EQ(sequence_groups(nullptr, 9).size(), 3u);
  EXPECT_EQ(sequence_groups(nullptr, 9).back(), (std::vector<int>{8}));
}

}  // namespace
}  // namespace bptt::online
