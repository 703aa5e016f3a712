// The CPU level of bptt's own float kernels (bptt/cpu.hpp): names, what this machine supports,
// forcing a level, and that a forced level really changes the code that runs (the x86-64-v3/v4
// builds contract a·b + c into FMAs, so somewhere over a few thousand cell outputs their floats
// differ from the baseline's in the last bit; a dispatch that ignored the level would give
// identical bits and pass every other test).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "cells/cell.hpp"

namespace bptt {
namespace {

const CpuLevel kAll[] = {CpuLevel::baseline, CpuLevel::x86_64_v3, CpuLevel::x86_64_v4};

// Restores the level the test started with.
class CpuLevelTest : public testing::Test {
 protected:
  void SetUp() override { saved_ = cpu_level(); }
  void TearDown() override { set_cpu_level(saved_); }
  CpuLevel saved_ = CpuLevel::baseline;
};

TEST(CpuLevel, NamesRoundTripAndOthersAreRefused) {
  for (CpuLevel l : kAll) EXPECT_EQ(parse_cpu_level(to_string(l), "test"), l);
  EXPECT_EQ(to_string(CpuLevel::x86_64_v4), "x86-64-v4");
  for (const char* bad : {"", "avx512", "x86_64_v3", "Baseline", "x86-64-v5"})
    EXPECT_THROW(parse_cpu_level(bad, "test"), Error) << bad;
}

TEST(CpuLevel, SupportedLevelsStartWithBaselineAndIncludeTheActiveOne) {
  const std::vector<CpuLevel> s = supported_cpu_levels();
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.front(), CpuLevel::baseline);
  EXPECT_TRUE(cpu_supports(CpuLevel::baseline));
  bool active = false;
  for (CpuLevel l : s) active = active || l == cpu_level();
  EXPECT_TRUE(active) << to_string(cpu_level());
  // Without BPTT_CPU_LEVEL, the highest.
  const char* env = std::getenv("BPTT_CPU_LEVEL");
  if (env == nullptr || *env == '\0')
    EXPECT_EQ(cpu_level(), s.back());
  else
    EXPECT_EQ(to_string(cpu_level()), std::string(env));
}

TEST_F(CpuLevelTest, SetSwitchesAndRefusesWhatTheCpuLacks) {
  for (CpuLevel l : kAll) {
    if (cpu_supports(l)) {
      set_cpu_level(l);
      EXPECT_EQ(cpu_level(), l);
    } else {
      const CpuLevel before = cpu_level();
      EXPECT_THROW(set_cpu_level(l), Error) << to_string(l);
      EXPECT_EQ(cpu_level(), before) << "a refused level must change nothing";
    }
  }
}

// One LSTM step (forward and backward) on fixed inputs at the active level: every output.
std::vector<float> lstm_step_outputs() {
  const int B = 4, H = 130, G = 4 * H;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<float> u(-3, 3);
  std::vector<float> gates(std::size_t(B) * G), gh(gates.size()), h_prev(std::size_t(B) * H),
      c_prev(h_prev.size()), h(h_prev.size()), c(h_prev.size()), dh(h_prev.size()),
      dc(h_prev.size()), dgh(gates.size()), dh_prev(h_prev.size());
  for (auto* v : {&gates, &gh, &h_prev, &c_prev, &dh, &dc})
    for (float& x : *v) x = u(rng);
  const std::vector<std::uint8_t> valid(B, 1);
  cells::CellStep<float> s;
  s.B = B;
  s.H = H;
  s.valid = valid.data();
  s.gates = gates.data();
  s.gh = gh.data();
  s.h_prev = h_prev.data();
  s.h = h.data();
  s.c_prev = c_prev.data();
  s.c = c.data();
  cells::cell_forward(CellKind::lstm, Activation::tanh, s);
  std::vector<float> out = h;
  out.insert(out.end(), c.begin(), c.end());
  cells::CellStepGrad<float> g;
  g.dh = dh.data();
  g.dc = dc.data();
  g.dgh = dgh.data();
  g.dh_prev = dh_prev.data();
  cells::cell_backward(CellKind::lstm, Activation::tanh, s, g);
  out.insert(out.end(), gates.begin(), gates.end());  // dgi
  out.insert(out.end(), dc.begin(), dc.end());
  return out;
}

TEST_F(CpuLevelTest, AForcedLevelChangesTheCodeThatRuns) {
  const std::vector<CpuLevel> s = supported_cpu_levels();
  if (s.size() < 2) GTEST_SKIP() << "this CPU runs only the baseline level";
  set_cpu_level(CpuLevel::baseline);
  const std::vector<float> base = lstm_step_outputs();
  EXPECT_EQ(lstm_step_outputs(), base) << "one level must be deterministic";
  for (std::size_t k = 1; k < s.size(); ++k) {
    set_cpu_level(s[k]);
    const std::vector<float> other = lstm_step_outputs();
    ASSERT_EQ(other.size(), base.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < base.size(); ++i) differ += other[i] != base[i];
    EXPECT_GT(differ, 0u) << to_string(s[k]) << " gave the baseline's bits exactly: the level "
                          << "did not reach the cell kernels";
  }
}

}  // namespace
}  // namespace bptt
