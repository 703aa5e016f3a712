// Reproducible test operands: the same numbers for the same seed on every run and machine
// (std::mt19937 is specified bit for bit; the distribution is libstdc++'s).
#pragma once

#include <cstddef>
#include <random>
#include <vector>

namespace bptt::test {

// n floats uniform in [lo, hi), drawn from `seed`.
inline std::vector<float> uniform(std::size_t n, unsigned seed, float lo = -2.0f,
                                        float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace bptt::test
