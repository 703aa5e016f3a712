// The branch-free float exp, sigmoid and tanh (src/kernels/vmath.hpp) against double-precision
// references over about 21 million inputs each: every 257th float bit pattern (so every sign
// and exponent: ±0, subnormals, huge values, ±inf and NaNs), a dense grid over [−30, 30] where
// the cells use them, and every float around ±ln2/4 ≈ ±0.173, where tanh's reduction of 2|x|
// first takes n = 1 (its largest errors are there). The error bounds are the ones vmath.hpp
// states; each test prints what it measured.
//
// Each ISA level the cells are compiled for (kernels/simd.hpp) is checked when this machine can
// run it: the x86-64-v3/v4 builds contract a·b + c into FMAs and so round differently.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "kernels/simd.hpp"
#include "kernels/vmath.hpp"

namespace bptt::kernels {
namespace {

enum class Fn { exp, sigmoid, tanh };

template <Fn F>
BPTT_ALWAYS_INLINE void apply(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (F == Fn::exp)
      y[i] = vec::exp(x[i]);
    else if constexpr (F == Fn::sigmoid)
      y[i] = vec::sigmoid(x[i]);
    else
      y[i] = vec::tanh(x[i]);
  }
}

// y = f(x) for n elements, the loop compiled for one ISA level (as in the cell kernels).
#define BPTT_APPLY_AT_LEVEL(NAME, ATTR)                                \
  ATTR void NAME(Fn f, const float* x, float* y, std::size_t n) {      \
    switch (f) {                                                       \
      case Fn::exp: return apply<Fn::exp>(x, y, n);                    \
      case Fn::sigmoid: return apply<Fn::sigmoid>(x, y, n);            \
      case Fn::tanh: return apply<Fn::tanh>(x, y, n);                  \
    }                                                                  \
  }
BPTT_APPLY_AT_LEVEL(apply_baseline, )
#if BPTT_HAVE_CPU_LEVELS
BPTT_APPLY_AT_LEVEL(apply_v3, __attribute__((target("arch=x86-64-v3"))))
BPTT_APPLY_AT_LEVEL(apply_v4, __attribute__((target("arch=x86-64-v4"))))
#endif
#undef BPTT_APPLY_AT_LEVEL

using ApplyFn = void (*)(Fn, const float*, float*, std::size_t);

// The variant named `level`, or nullptr where it is not built or this CPU cannot run it.
ApplyFn variant(const std::string& level) {
  if (level == "baseline") return apply_baseline;
#if BPTT_HAVE_CPU_LEVELS
  __builtin_cpu_init();
  if (level == "x86_64_v3" && __builtin_cpu_supports("x86-64-v3")) return apply_v3;
  if (level == "x86_64_v4" && __builtin_cpu_supports("x86-64-v4")) return apply_v4;
#endif
  return nullptr;
}

float y_of(ApplyFn f, Fn fn, float x) {
  float y = 0;
  f(fn, &x, &y, 1);
  return y;
}

// The inputs: every 257th bit pattern, a grid of step 2^-12 over [−30, 30], and every float in
// [0.16, 0.19] and its negation.
const std::vector<float>& sweep_inputs() {
  static const std::vector<float> in = [] {
    std::vector<float> v;
    for (std::uint64_t b = 0; b <= 0xFFFFFFFFull; b += 257)
      v.push_back(std::bit_cast<float>(std::uint32_t(b)));
    for (int k = -30 * 4096; k <= 30 * 4096; ++k) v.push_back(float(k) / 4096.0f);
    for (float x = 0.16f; x <= 0.19f; x = std::nextafter(x, 1.0f)) {
      v.push_back(x);
      v.push_back(-x);
    }
    return v;
  }();
  return in;
}

double reference(Fn f, float x) {
  const double d = x;
  switch (f) {
    case Fn::exp: return std::exp(d);
    case Fn::sigmoid: return 1.0 / (1.0 + std::exp(-d));
    case Fn::tanh: return std::tanh(d);
  }
  return 0;
}

// Worst errors over a sweep, and the inputs where they happen.
struct Worst {
  double rel = 0, abs = 0, rel_far = 0;  // rel_far: tanh's relative error for |x| > 1e-3
  float rel_at = 0, abs_at = 0, rel_far_at = 0;
  std::size_t wrong = 0;  // NaN, inf, sign or oddness failures
  std::string first_wrong;
  void note_wrong(float x, float y, const char* what) {
    if (wrong++ == 0)
      first_wrong = std::string(what) + " at x = " + std::to_string(x) + " (bits " +
                    std::to_string(std::bit_cast<std::uint32_t>(x)) + "), got " +
                    std::to_string(y);
  }
};

Worst sweep(ApplyFn apply_fn, Fn f) {
  const std::vector<float>& in = sweep_inputs();
  std::vector<float> y(in.size()), y_neg;
  apply_fn(f, in.data(), y.data(), in.size());
  if (f == Fn::tanh) {  // and tanh(−x), to check oddness
    std::vector<float> neg_in(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) neg_in[i] = -in[i];
    y_neg.resize(in.size());
    apply_fn(f, neg_in.data(), y_neg.data(), in.size());
  }
  Worst w;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const float x = in[i], got = y[i];
    if (std::isnan(x)) {
      if (!std::isnan(got)) w.note_wrong(x, got, "NaN in, not NaN out");
      continue;
    }
    const double ref = reference(f, x);
    if (std::isnan(got)) {
      w.note_wrong(x, got, "NaN out");
      continue;
    }
    const auto bits = [](float v) { return std::bit_cast<std::uint32_t>(v); };
    if (f == Fn::tanh && bits(y_neg[i]) != bits(-got))
      w.note_wrong(x, got, "tanh(-x) != -tanh(x)");
    if (ref > double(FLT_MAX)) {  // only exp gets here
      if (got != std::numeric_limits<float>::infinity())
        w.note_wrong(x, got, "e^x > FLT_MAX but not inf");
      continue;
    }
    const double abs_err = std::abs(double(got) - ref);
    if (abs_err > w.abs) w.abs = abs_err, w.abs_at = x;
    if (std::abs(ref) >= double(FLT_MIN)) {  // relative error where the result is a normal float
      const double rel = abs_err / std::abs(ref);
      if (rel > w.rel) w.rel = rel, w.rel_at = x;
      if (std::abs(x) > 1e-3f && rel > w.rel_far) w.rel_far = rel, w.rel_far_at = x;
    }
  }
  return w;
}

class KernelVmath : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    apply_ = variant(GetParam());
    if (!apply_) GTEST_SKIP() << GetParam() << " is not built or this CPU cannot run it";
  }
  void report(const char* name, const Worst& w) {
    std::printf("[ %s %s ] max rel %.3g (x = %.9g)  max abs %.3g (x = %.9g)  over %zu inputs\n",
                name, GetParam().c_str(), w.rel, double(w.rel_at), w.abs, double(w.abs_at),
                sweep_inputs().size());
    EXPECT_EQ(w.wrong, 0u) << w.first_wrong;
  }
  ApplyFn apply_ = nullptr;
};

TEST_P(KernelVmath, ExpIsWithin1e7Relative) {
  const Worst w = sweep(apply_, Fn::exp);
  report("exp", w);
  EXPECT_LE(w.rel, 1e-7) << "at x = " << w.rel_at;
  // Subnormal results (x in (−104, −87.3)): within one subnormal step of the true value.
  for (float x = -104.0f; x < -87.33f; x += 1.0f / 64) {
    const double err = std::abs(double(y_of(apply_, Fn::exp, x)) - std::exp(double(x)));
    ASSERT_LE(err, 0x1p-149) << "x = " << x;
  }
}

TEST_P(KernelVmath, SigmoidIsWithin2e7Relative) {
  const Worst w = sweep(apply_, Fn::sigmoid);
  report("sigmoid", w);
  EXPECT_LE(w.rel, 2e-7) << "at x = " << w.rel_at;
  EXPECT_LE(w.abs, 1.2e-7) << "at x = " << w.abs_at;  // below FLT_MIN the error is absolute only
}

TEST_P(KernelVmath, TanhIsWithin2e7RelativeAndOdd) {
  const Worst w = sweep(apply_, Fn::tanh);
  report("tanh", w);
  EXPECT_LE(w.rel, 2e-7) << "at x = " << w.rel_at;
  EXPECT_LE(w.rel_far, 2e-7) << "at x = " << w.rel_far_at;
  EXPECT_LE(w.abs, 1.2e-7) << "at x = " << w.abs_at;
}

TEST_P(KernelVmath, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  auto exp_ = [&](float x) { return y_of(apply_, Fn::exp, x); };
  auto sig = [&](float x) { return y_of(apply_, Fn::sigmoid, x); };
  auto tanh_ = [&](float x) { return y_of(apply_, Fn::tanh, x); };
  EXPECT_EQ(exp_(0.0f), 1.0f);
  EXPECT_EQ(exp_(-0.0f), 1.0f);
  EXPECT_EQ(exp_(-inf), 0.0f);
  EXPECT_EQ(exp_(-1e30f), 0.0f);
  EXPECT_EQ(exp_(inf), inf);
  EXPECT_EQ(exp_(89.0f), inf);
  EXPECT_LT(exp_(88.72283f), inf);  // largest float with e^x ≤ FLT_MAX
  EXPECT_TRUE(std::isnan(exp_(nan)));
  EXPECT_TRUE(std::isnan(exp_(-nan)));
  EXPECT_EQ(sig(0.0f), 0.5f);
  EXPECT_EQ(sig(inf), 1.0f);
  EXPECT_EQ(sig(100.0f), 1.0f);
  EXPECT_EQ(sig(-inf), 0.0f);
  EXPECT_EQ(sig(-1000.0f), 0.0f);
  EXPECT_TRUE(std::isnan(sig(nan)));
  EXPECT_EQ(tanh_(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(tanh_(-0.0f)));
  EXPECT_EQ(tanh_(1e-40f), 1e-40f);  // subnormal: tanh x = x
  EXPECT_EQ(tanh_(inf), 1.0f);
  EXPECT_EQ(tanh_(-inf), -1.0f);
  EXPECT_EQ(tanh_(20.0f), 1.0f);
  EXPECT_TRUE(std::isnan(tanh_(nan)));
}

INSTANTIATE_TEST_SUITE_P(Levels, KernelVmath,
                         testing::Values("baseline", "x86_64_v3", "x86_64_v4"),
                         [](const testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace bptt::kernels
