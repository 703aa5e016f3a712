// Float exp, sigmoid and tanh written for the auto-vectorizer: no calls and no branches. Clamps
// are integer mins on the bit patterns and the selects have no arithmetic in their arms, since
// with GCC's default -ftrapping-math a branch whose arm holds float arithmetic is never turned
// into a blend (see exp and tanh for how such branches would arise). A loop over j that calls
// these compiles to SIMD code at -O3 on every x86-64 level; the cell kernels (src/cells/) rely on
// that. Double precision does not come here: float64 is the verification precision and stays on
// libm (kernels/activations.hpp).
//
// Accuracy against double-precision references, measured over all 2^32 floats, for the baseline
// build and the x86-64-v4 build (which contracts into FMAs); tests/kernels/test_vmath.cpp checks
// every 257th bit pattern plus dense ranges at each level:
//   exp(x)      ≤ 8.5e-8 relative for normal results, x ∈ [−87.33, 88.72]; subnormal results
//               within one subnormal step down to x ≈ −103.97, then 0; +inf from 88.7228 on
//               (where e^x > FLT_MAX); NaN → NaN.
//   sigmoid(x)  ≤ 1.5e-7 relative where the result is a normal float (x ≥ −87.33); below that
//               it is subnormal or 0 (absolute error < 1.2e-38). σ(+inf) = 1, σ(−inf) = 0,
//               NaN → NaN.
//   tanh(x)     ≤ 1.8e-7 relative everywhere (1.76e-7 in the v4 build, 1.80e-7 in the
//               baseline; subnormal x: tanh x = x), ≤ 9e-8 absolute; exactly odd
//               (tanh(−0) = −0); tanh(±inf) = ±1; NaN → NaN.
// Float epsilon is 1.19e-7: these are one to one and a half ulp.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/simd.hpp"

namespace bptt::kernels::vec {

// Cody–Waite range reduction: x = n·ln2 + r with |r| ≤ ln2/2, for |x| < 2^21 (callers clamp
// first). ln2 is split in a 9-bit head C1, so n·C1 is exact, and a tail C2. Returns r; n_out = n.
BPTT_ALWAYS_INLINE float reduce_ln2(float x, std::int32_t& n_out) {
  constexpr float kRound = 0x1.8p23f;  // adding it rounds |v| < 2^22 to an integer
  const float shifted = x * 1.44269504088896341f + kRound;  // x·log2(e) + 1.5·2^23
  const float n = shifted - kRound;                         // round(x·log2(e))
  n_out = std::bit_cast<std::int32_t>(shifted) - std::bit_cast<std::int32_t>(kRound);  // n
  const float r = x - n * 0.693359375f;  // C1
  return r - n * -2.12194440e-4f;        // C2; C1 + C2 = ln2 to float precision and beyond
}

// e^r − 1 for |r| ≤ ln2/2: Cephes expf's degree-7 polynomial for e^r without its constant term,
// r + r²·P(r), so that a small r keeps its relative accuracy.
BPTT_ALWAYS_INLINE float expm1_poly(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r;
}

// 2^n built in the exponent bits, for n ∈ [−126, 127] (n = 128 gives +inf).
BPTT_ALWAYS_INLINE float pow2(std::int32_t n) {
  return std::bit_cast<float>(std::uint32_t(n + 127) << 23);
}

// The common part of exp and exp_in_denominator: e^r of x's reduction (x already clamped).
// Returns e^r; n_out = n.
BPTT_ALWAYS_INLINE float exp_reduced(float xc, std::int32_t& n_out) {
  return expm1_poly(reduce_ln2(xc, n_out)) + 1.0f;
}

// x clamped to [lo, hi] (lo < 0 < hi) on its bit pattern; a NaN stays NaN. For x ≥ +0 the
// bits, as int32, grow with x: signed min against hi's bits clamps them (and leaves every
// negative x alone). For x ≤ −0 the bits, as uint32, grow with |x| and lie above every positive
// x: unsigned min against lo's bits clamps them. A NaN keeps its own bits (the select's arms are
// plain values) and the arithmetic passes it on.
BPTT_ALWAYS_INLINE float clamp_bits(float x, float lo, float hi) {
  const std::int32_t bits = std::bit_cast<std::int32_t>(x), h = std::bit_cast<std::int32_t>(hi);
  const std::uint32_t upper = std::uint32_t(bits < h ? bits : h),
                      l = std::bit_cast<std::uint32_t>(lo);
  const std::uint32_t clamped = upper < l ? upper : l;
  return std::bit_cast<float>(x != x ? std::uint32_t(bits) : clamped);
}

// e^x: reduce_ln2, Cephes expf's degree-7 polynomial for e^r, then 2^n built in the exponent
// bits. The scale is applied as 2^⌊n/2⌋·2^⌈n/2⌉ so both factors stay normal for
// every n in [−150, 129]: subnormal results and results near FLT_MAX come out right without a
// branch, and the last product rounds to +inf exactly when e^x > FLT_MAX, as std::exp does.
//
// The input is clamped to [−104, 89] first, so n and the exponent bits stay in range. The clamp
// works on the bit patterns, with integer min (which never becomes a branch): a float clamp
// `x < lo ? lo : x` leaves a branch with a constant arm, GCC's PRE then folds the rest of the
// function on that arm, and with the default -ftrapping-math the loop no longer vectorizes.
BPTT_ALWAYS_INLINE float exp(float x) {
  // e^89 > FLT_MAX: the result is +inf from there on; e^x rounds to 0 below about −103.97.
  std::int32_t ni;
  const float p = exp_reduced(clamp_bits(x, -104.0f, 89.0f), ni);
  const std::int32_t n1 = ni >> 1, n2 = ni - n1;
  return p * pow2(n1) * pow2(n2);
}

// e^x for σ and tanh, which use it only as 1 + e^x in a denominator, so neither subnormal results
// nor the exact overflow point matter: the input is clamped to [−87.3, 88.72] and 2^n is one
// scale (n ∈ [−126, 128]; n = 128 gives +inf, from x ≈ 88.38 on, where e^x is within 1.4× of
// FLT_MAX). Elsewhere it is exp's reduction and polynomial, to the same accuracy. Six operations
// fewer than exp: σ and tanh run about 13% faster in the LSTM cell.
BPTT_ALWAYS_INLINE float exp_in_denominator(float x) {
  std::int32_t ni;
  const float p = exp_reduced(clamp_bits(x, -87.3f, 88.72f), ni);
  return p * pow2(ni);  // n = 128: +inf
}

// σ(x) = 1 / (1 + e^−x) in one form for every x: e^−x is at most +inf (then σ = 0), never NaN.
BPTT_ALWAYS_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_in_denominator(-x)); }

// tanh(x) = m / (m + 2) with m = e^{2|x|} − 1, given x's sign at the end (so it is exactly odd).
// One formula for every x, with no cancellation: m is formed from exp's reduction
// 2|x| = n·ln2 + r as 2^n·(e^r − 1) + (2^n − 1), where e^r − 1 is expm1_poly (small r keeps its
// relative accuracy) and 2^n·(e^r − 1) is exact, so that sum is rounded once. |x| is clamped to
// 10 on its bit pattern first (tanh rounds to 1 from |x| ≈ 9.01 on, and n stays ≤ 29); a NaN,
// which the clamp would turn into 10, is passed on by a bit mask. About 20% faster than
// evaluating a small-|x| polynomial and 1 − 2/(e^{2|x|} + 1) and picking one, and within 1.5 ulp.
// The sign and the NaN are put in with integer masks, not a select on x != x: GCC turned that
// select into a branch around the division (which, without -ffast-math, it may not compute
// speculatively), so no loop calling tanh vectorized, and tanh ran at 4.5 ns per element on an
// AVX2 core instead of 0.6 (the LSTM step's two tanh per unit were most of its pointwise time).
// The results are bit for bit those of the select.
BPTT_ALWAYS_INLINE float tanh(float x) {
  const std::int32_t xb = std::bit_cast<std::int32_t>(x), ab = xb & 0x7FFFFFFF;
  const std::int32_t cap = std::bit_cast<std::int32_t>(10.0f);
  const float y = 2.0f * std::bit_cast<float>(ab < cap ? ab : cap);  // min(2|x|, 20); NaN → 20
  std::int32_t n;
  const float r = reduce_ln2(y, n);  // n ∈ [0, 29]
  const float s = pow2(n);
  const float m = s * expm1_poly(r) + (s - 1.0f);                       // e^y − 1
  const float t = m / (m + 2.0f);
  const std::int32_t signed_t = std::bit_cast<std::int32_t>(t) | (xb & INT32_MIN);
  // All ones when x is a NaN (|x|'s bits above +inf's), else 0.
  const std::int32_t nan = (std::bit_cast<std::int32_t>(std::numeric_limits<float>::infinity()) - ab) >> 31;
  return std::bit_cast<float>((signed_t & ~nan) | (xb & nan));
}


}  // namespace bptt::kernels::vec
