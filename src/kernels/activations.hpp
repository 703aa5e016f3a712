// Scalar activation functions and their derivatives written in terms of the saved OUTPUT
// (σ' = s(1−s), tanh' = 1−t², relu' = [y > 0], identity' = 1), so backward needs no
// pre-activations.
//
// Float sigmoid and tanh are the branch-free versions of kernels/vmath.hpp (≤ 1.8e-7 relative
// error, forced inline), so loops that call them vectorize. Double keeps libm: float64 is the
// verification precision.
#pragma once

#include <cmath>

#include "bptt/types.hpp"
#include "kernels/simd.hpp"
#include "kernels/vmath.hpp"

namespace bptt::kernels {

template <class Real>
inline Real sigmoid(Real x) {
  // Stable for large |x|: never evaluates exp of a large positive number.
  if (x >= Real(0)) return Real(1) / (Real(1) + std::exp(-x));
  Real e = std::exp(x);
  return e / (Real(1) + e);
}

template <>
BPTT_ALWAYS_INLINE float sigmoid<float>(float x) {
  return vec::sigmoid(x);
}

template <class Real>
inline Real tanh(Real x) {
  return std::tanh(x);
}

template <>
BPTT_ALWAYS_INLINE float tanh<float>(float x) {
  return vec::tanh(x);
}

// φ(x) and φ'(x) through y = φ(x), with φ known at compile time: the cell kernels instantiate
// their loops once per φ, so the loop body has no switch and vectorizes.
template <Activation A, class Real>
BPTT_ALWAYS_INLINE Real activate(Real x) {
  if constexpr (A == Activation::tanh) return kernels::tanh(x);
  else if constexpr (A == Activation::relu) return x > Real(0) ? x : Real(0);
  else if constexpr (A == Activation::sigmoid) return kernels::sigmoid(x);
  else return x;  // identity (softmax is row-wise and handled by the loss module)
}

template <Activation A, class Real>
BPTT_ALWAYS_INLINE Real derivative_from_output(Real y) {
  if constexpr (A == Activation::tanh) return Real(1) - y * y;
  else if constexpr (A == Activation::relu) return y > Real(0) ? Real(1) : Real(0);
  else if constexpr (A == Activation::sigmoid) return y * (Real(1) - y);
  else return Real(1);  // identity (softmax: see above)
}

// dy ⊙ φ'(x) through y = φ(x). For relu a select (0 where y ≤ 0, like PyTorch's
// threshold_backward): dy·(y > 0 ? 1 : 0) leaves a branch in GCC's output that stops
// vectorization on baseline x86-64.
template <Activation A, class Real>
BPTT_ALWAYS_INLINE Real backprop_from_output(Real y, Real dy) {
  if constexpr (A == Activation::relu) return y > Real(0) ? dy : Real(0);
  else return dy * derivative_from_output<A>(y);
}

// The same with φ chosen at run time, element by element.
template <class Real>
inline Real activate(Activation a, Real x) {
  switch (a) {
    case Activation::identity: return activate<Activation::identity>(x);
    case Activation::tanh: return activate<Activation::tanh>(x);
    case Activation::relu: return activate<Activation::relu>(x);
    case Activation::sigmoid: return activate<Activation::sigmoid>(x);
    case Activation::softmax: return x;  // not elementwise; rejected by ModelConfig::validate
  }
  return x;
}

template <class Real>
inline Real derivative_from_output(Activation a, Real y) {
  switch (a) {
    case Activation::identity: return derivative_from_output<Activation::identity>(y);
    case Activation::tanh: return derivative_from_output<Activation::tanh>(y);
    case Activation::relu: return derivative_from_output<Activation::relu>(y);
    case Activation::sigmoid: return derivative_from_output<Activation::sigmoid>(y);
    case Activation::softmax: return Real(1);  // not elementwise; see above
  }
  return Real(1);
}

}  // namespace bptt::kernels
