// The pointwise cell kernels (src/cells/) one step at a time, float against double on the same
// inputs, at hidden sizes the unroller tests do not reach: H ∈ {1, 5, 16, 37, 130} runs the
// vectorized loops' main bodies and their remainders (16 floats per AVX-512 vector). The float
// kernels are the branch-free, multi-versioned ones; double runs libm, so this checks the float
// path's arithmetic, gate order and saved values at sizes where SIMD matters. Also: rows with
// valid = 0 copy the state and pass the gradient through exactly, and backward gives the same
// result with dgh aliasing dgi (Elman, LSTM) as with separate buffers. Backward writes dgi over
// the gates (cells/cell.hpp), so `saved` keeps what forward left there.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "cells/cell.hpp"
#include "test_util.hpp"

namespace bptt::test {
namespace {

struct CellCase {
  CellVariant cell;
  int H = 1;
  std::string name() const { return cell.name() + "_h" + std::to_string(H); }
};

void PrintTo(const CellCase& c, std::ostream* os) { *os << c.name(); }

std::vector<CellCase> cell_cases() {
  std::vector<CellCase> out;
  for (const CellVariant& c : all_cells())
    for (int H : {1, 5, 16, 37, 130}) out.push_back({c, H});
  return out;
}

int gates_of(CellKind k) {
  switch (k) {
    case CellKind::elman: return 1;
    case CellKind::lstm: return 4;
    case CellKind::gru: return 3;
  }
  return 1;
}

constexpr int kB = 4;
const std::vector<std::uint8_t> kValid = {1, 0, 1, 1};

// Every buffer of one step, in one precision. Outputs start as NaN so that anything the kernel
// should write but does not shows up.
template <class Real>
struct StepData {
  int H, G;
  std::vector<Real> gates, gh, h_prev, h, c_prev, c, aux;  // forward
  std::vector<Real> dh, dc, dgi, dgh, dh_prev;               // backward

  StepData(const CellCase& cc, std::uint64_t seed) : H(cc.H), G(gates_of(cc.cell.cell)) {
    const std::size_t BH = std::size_t(kB) * H, BGH = BH * G;
    const Real nan = std::numeric_limits<Real>::quiet_NaN();
    std::mt19937_64 rng(seed);
    // Pre-activations up to ±6 reach both of σ's and tanh's saturated ends and tanh's switch
    // at 0.625; drawn in double and rounded to float, so both precisions see the same inputs.
    auto fill = [&](std::vector<Real>& v, std::size_t n, double lo, double hi) {
      std::uniform_real_distribution<double> u(lo, hi);
      v.resize(n);
      for (Real& x : v) x = Real(float(u(rng)));
    };
    fill(gates, BGH, -6, 6);
    fill(gh, BGH, -6, 6);
    fill(h_prev, BH, -1, 1);
    fill(c_prev, BH, -3, 3);
    fill(dh, BH, -1, 1);
    fill(dc, BH, -1, 1);
    h.assign(BH, nan);
    c.assign(BH, nan);
    aux.assign(BH, nan);
    dgi.assign(BGH, nan);
    dgh.assign(BGH, nan);
    dh_prev.assign(BH, nan);
  }

  cells::CellStep<Real> step() {
    cells::CellStep<Real> s;
    s.B = kB;
    s.H = H;
    s.valid = kValid.data();
    s.gates = gates.data();
    s.gh = gh.data();
    s.h_prev = h_prev.data();
    s.h = h.data();
    s.c_prev = c_prev.data();
    s.c = c.data();
    s.aux = aux.data();
    return s;
  }

  std::vector<Real> saved;  // the gates as forward left them (backward overwrites them: dgi)

  // Forward, then backward (dgh aliasing dgi, i.e. the gates, when `aliased`).
  void run(const CellVariant& cv, bool aliased) {
    const cells::CellStep<Real> s = step();
    cells::cell_forward(cv.cell, cv.phi, s);
    saved = gates;
    cells::CellStepGrad<Real> g;
    g.dh = dh.data();
    g.dc = dc.data();
    g.dgh = aliased ? gates.data() : dgh.data();
    g.dh_prev = dh_prev.data();
    cells::cell_backward(cv.cell, cv.phi, s, g);
    dgi = gates;
    if (aliased) dgh = gates;
  }
};

// The buffers the kernels write for cell `k` (c and aux only where the cell has them; aux is
// left alone in invalid rows).
template <class Real>
std::vector<std::pair<const char*, const std::vector<Real>*>> outputs(CellKind k,
                                                                      const StepData<Real>& d) {
  std::vector<std::pair<const char*, const std::vector<Real>*>> o = {
      {"h", &d.h}, {"gates", &d.saved}, {"dgi", &d.dgi}, {"dgh", &d.dgh}, {"dh_prev", &d.dh_prev}};
  if (k == CellKind::lstm) o.push_back({"c", &d.c}), o.push_back({"dc", &d.dc});
  if (k == CellKind::gru) o.push_back({"aux", &d.aux});
  return o;
}

class CellKernels : public testing::TestWithParam<CellCase> {};

TEST_P(CellKernels, FloatMatchesDouble) {
  const CellCase cc = GetParam();
  const std::uint64_t seed = 1000 + std::uint64_t(cc.H) * 7 + std::uint64_t(cc.cell.cell) * 31 +
                             std::uint64_t(cc.cell.phi);
  StepData<float> f(cc, seed);
  StepData<double> d(cc, seed);
  f.run(cc.cell, false);
  d.run(cc.cell, false);
  const auto fo = outputs(cc.cell.cell, f);
  const auto dd = outputs(cc.cell.cell, d);
  for (std::size_t k = 0; k < fo.size(); ++k) {
    const std::vector<float>& a = *fo[k].second;
    const std::vector<double>& b = *dd[k].second;
    const std::size_t per_row = a.size() / kB;
    int bad = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!kValid[i / per_row] && std::string(fo[k].first) == "aux") continue;
      if (!close(double(a[i]), b[i], 2e-6) && ++bad <= 5)
        ADD_FAILURE() << fo[k].first << "[" << i << "]: float " << a[i] << " vs double " << b[i];
    }
  }
}

TEST_P(CellKernels, InvalidRowsCopyStateAndPassGradient) {
  const CellCase cc = GetParam();
  StepData<float> f(cc, 77);
  const std::vector<float> dc_in = f.dc;
  f.run(cc.cell, false);
  const std::size_t H = std::size_t(cc.H), GH = H * std::size_t(f.G);
  for (int b = 0; b < kB; ++b) {
    if (kValid[std::size_t(b)]) continue;
    for (std::size_t j = 0; j < H; ++j) {
      const std::size_t r = std::size_t(b) * H + j;
      EXPECT_EQ(f.h[r], f.h_prev[r]) << "h row " << b;
      EXPECT_EQ(f.dh_prev[r], f.dh[r]) << "dh_prev row " << b;
      if (cc.cell.cell == CellKind::lstm) {
        EXPECT_EQ(f.c[r], f.c_prev[r]) << "c row " << b;
        EXPECT_EQ(f.dc[r], dc_in[r]) << "dc row " << b;
      }
    }
    for (std::size_t j = 0; j < GH; ++j) {
      EXPECT_EQ(f.dgi[std::size_t(b) * GH + j], 0.0f) << "dgi row " << b;
      EXPECT_EQ(f.dgh[std::size_t(b) * GH + j], 0.0f) << "dgh row " << b;
    }
  }
}

// Elman and LSTM only: the GRU needs dgi and dgh separate (cells/cell.hpp).
class CellKernelsAliased : public testing::TestWithParam<CellCase> {};

TEST_P(CellKernelsAliased, DghAliasingDgiGivesTheSameResult) {
  const CellCase cc = GetParam();
  StepData<float> a(cc, 5), s(cc, 5);
  a.run(cc.cell, true);
  s.run(cc.cell, false);
  EXPECT_EQ(a.dgi, s.dgi);
  EXPECT_EQ(a.dgi, s.dgh);
  EXPECT_EQ(a.dh_prev, s.dh_prev);
  EXPECT_EQ(a.dc, s.dc);
}

std::vector<CellCase> aliasable_cases() {
  std::vector<CellCase> out;
  for (const CellCase& c : cell_cases())
    if (c.cell.cell != CellKind::gru) out.push_back(c);
  return out;
}

std::string cell_case_name(const testing::TestParamInfo<CellCase>& i) { return i.param.name(); }

INSTANTIATE_TEST_SUITE_P(Steps, CellKernels, testing::ValuesIn(cell_cases()), cell_case_name);
INSTANTIATE_TEST_SUITE_P(Steps, CellKernelsAliased, testing::ValuesIn(aliasable_cases()),
                         cell_case_name);

}  // namespace
}  // namespace bptt::test
