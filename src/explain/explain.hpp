// The question behind the project, answered in one scalar network (docs/math.md, section 1).
//
//   s_t = w h_{t-1} + v x_t,   h_t = phi(s_t),   yhat_t = theta(h_t),   t = 1..T
//   L   = sum_t 1/2 (yhat_t - y_t)^2
//
// dL/ds_t depends on dL/ds_{t+1}, so the gradients are computed backwards, t = T down to 1,
// starting from dL/ds_{T+1} = 0 (nothing after the last step depends on it):
//
//   dL/dyhat_t = yhat_t - y_t
//   dL/dh_t    = dL/dyhat_t * theta'(h_t) + w * dL/ds_{t+1}     (theta', not phi': yhat = theta(h))
//   dL/ds_t    = dL/dh_t * phi'(s_t)
//   dL/dw = sum_t dL/ds_t h_{t-1},   dL/dv = sum_t dL/ds_t x_t,   dL/dh0 = w * dL/ds_1
//
// explain() runs that recursion, keeps every intermediate value for display (`bptt explain`) and
// checks the three gradients against central finite differences of the loss.
#pragma once

#include <vector>

#include "bptt/types.hpp"

namespace bptt {

// One scalar recurrent network with its data. phi and theta are identity, tanh, relu or sigmoid
// (softmax of a single value is the constant 1 and is rejected). x and y hold one value per step.
struct ScalarRnn {
  double w = 0.0;   // recurrent weight
  double v = 0.0;   // input weight
  double h0 = 0.0;  // initial state h_0
  Activation phi = Activation::tanh;        // state activation
  Activation theta = Activation::identity;  // readout activation
  std::vector<double> x;  // inputs x_1..x_T
  std::vector<double> y;  // targets y_1..y_T
};

// The example `bptt explain` shows without options: T = 4, w = 0.8, v = 0.5, h0 = 0.1,
// phi = tanh, theta = identity, x = (1, 0.5, -1.5, 2) and targets y_t = x_{t-1} (y_1 = 0):
// the network is asked to recall the previous input, so the loss depends on w through time.
ScalarRnn builtin_example();

// Throws bptt::Error if the network cannot be explained. where() names the field ("x", "y",
// "phi", "theta", "w", "v", "h0"): x empty, x and y of different lengths, phi or theta softmax,
// a number that is not finite.
void validate(const ScalarRnn& net);

// The loss L of a forward pass alone (no validation; may be inf/nan for bad input).
double scalar_loss(const ScalarRnn& net);

struct ScalarForwardRow {
  int t = 0;  // 1-based step
  double x = 0, s = 0, h = 0, y_hat = 0, y = 0;
  double loss = 0;  // 1/2 (y_hat - y)^2
};

struct ScalarBackwardRow {
  int t = 0;              // 1-based step; rows run t = T down to 1
  double dL_dyhat = 0;    // yhat_t - y_t
  double theta_prime = 0; // theta'(h_t)
  double carry = 0;       // w * dL/ds_{t+1} (0 at t = T)
  double dL_dh = 0;       // dL_dyhat * theta_prime + carry
  double phi_prime = 0;   // phi'(s_t)
  double dL_ds = 0;       // dL_dh * phi_prime
};

struct ScalarGradient {
  double w = 0, v = 0, h0 = 0;
};

struct ExplainResult {
  double loss = 0;
  std::vector<ScalarForwardRow> forward;    // t = 1..T
  std::vector<ScalarBackwardRow> backward;  // t = T..1
  ScalarGradient grad;     // by the backward recursion
  ScalarGradient numeric;  // by central differences, step finite_difference_step(p)
};

// The central-difference step for a parameter of value p: 1e-6 * max(1, |p|).
double finite_difference_step(double p);

// Validates `net` (see validate()), runs the forward pass, the backward recursion and the finite
// differences. Throws bptt::Error (where() empty) if any value overflows to inf or nan.
ExplainResult explain(const ScalarRnn& net);

}  // namespace bptt
