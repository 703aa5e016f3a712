// The scalar network of include/bptt/explain.hpp: forward pass, backward recursion (t = T..1)
// and the finite-difference check, side by side.
#include "explain/explain.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/core.h>

#include "bptt/error.hpp"

namespace bptt {
namespace {

double activate(Activation f, double a) {
  switch (f) {
    case Activation::identity: return a;
    case Activation::tanh: return std::tanh(a);
    case Activation::relu: return a > 0.0 ? a : 0.0;
    case Activation::sigmoid: return 1.0 / (1.0 + std::exp(-a));
    case Activation::softmax: return 1.0;  // softmax of one value; rejected by validate()
  }
  return a;
}

// f'(a), written with the saved output fa = f(a) as the cells do (tanh' = 1 - t^2, ...).
double derivative(Activation f, double a, double fa) {
  switch (f) {
    case Activation::identity: return 1.0;
    case Activation::tanh: return 1.0 - fa * fa;
    case Activation::relu: return a > 0.0 ? 1.0 : 0.0;
    case Activation::sigmoid: return fa * (1.0 - fa);
    case Activation::softmax: return 0.0;
  }
  return 1.0;
}

void check_finite(double value, const char* field) {
  if (!std::isfinite(value))
    throw Error(ErrorKind::value, field, fmt::format("{} is not a finite number", value),
                "give a finite value");
}

void check_finite(const std::vector<double>& values, const char* field) {
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      throw Error(
          ErrorKind::value, field,
          fmt::format("value {} (t = {}) is {}, not a finite number", i + 1, i + 1, values[i]),
          "give finite values");
}

void check_activation(Activation f, const char* field) {
  if (f == Activation::softmax)
    throw Error(ErrorKind::usage, field, "softmax is not allowed in the scalar network",
                "softmax of a single value is always 1, so nothing would depend on it; "
                "use identity, tanh, relu or sigmoid");
}

// The result must be finite everywhere, or the explanation explains nothing.
void check_overflow(const ExplainResult& r) {
  for (const ScalarForwardRow& f : r.forward)
    if (!std::isfinite(f.s) || !std::isfinite(f.h) || !std::isfinite(f.y_hat) ||
        !std::isfinite(f.loss))
      throw Error(ErrorKind::value, "",
                  fmt::format("the forward pass overflows at t = {} (s = {:.6g}, h = {:.6g}, "
                              "loss = {:.6g})",
                              f.t, f.s, f.h, f.loss),
                  "use smaller |w|, |v| or |x|, or a bounded phi (tanh, sigmoid)");
  const double all[] = {r.loss,      r.grad.w,      r.grad.v,     r.grad.h0,
                        r.numeric.w, r.numeric.v, r.numeric.h0};
  for (double value : all)
    if (!std::isfinite(value))
      throw Error(ErrorKind::value, "", "the gradient overflows",
                  "use smaller |w|, |v| or |x|, or fewer steps");
}

}  // namespace

ScalarRnn builtin_example() {
  ScalarRnn net;
  net.w = 0.8;
  net.v = 0.5;
  net.h0 = 0.1;
  net.phi = Activation::tanh;
  net.theta = Activation::identity;
  net.x = {1.0, 0.5, -1.5, 2.0};
  net.y = {0.0, 1.0, 0.5, -1.5};  // y_t = x_{t-1}: recall the previous input
  return net;
}

void validate(const ScalarRnn& net) {
  if (net.x.empty())
    throw Error(ErrorKind::shape, "x", "no time steps (x is empty)",
                "give at least one input value");
  if (net.y.size() != net.x.size())
    throw Error(ErrorKind::shape, "y",
                fmt::format("{} value{}, but x has {}", net.y.size(), net.y.size() == 1 ? "" : "s",
                            net.x.size()),
                "give one target per input step");
  check_activation(net.phi, "phi");
  check_activation(net.theta, "theta");
  check_finite(net.w, "w");
  check_finite(net.v, "v");
  check_finite(net.h0, "h0");
  check_finite(net.x, "x");
  check_finite(net.y, "y");
}

double finite_difference_step(double p) { return 1e-6 * std::max(1.0, std::abs(p)); }

double scalar_loss(const ScalarRnn& net) {
  double h = net.h0, loss = 0.0;
  const std::size_t T = std::min(net.x.size(), net.y.size());
  for (std::size_t t = 0; t < T; ++t) {
    h = activate(net.phi, net.w * h + net.v * net.x[t]);
    const double e = activate(net.theta, h) - net.y[t];
    loss += 0.5 * e * e;
  }
  return loss;
}

ExplainResult explain(const ScalarRnn& net) {
  validate(net);
  const std::size_t T = net.x.size();
  ExplainResult r;

  // Forward, t = 1..T: s_t = w h_{t-1} + v x_t, h_t = phi(s_t), yhat_t = theta(h_t).
  r.forward.resize(T);
  double h_prev = net.h0;
  for (std::size_t i = 0; i < T; ++i) {
    ScalarForwardRow& f = r.forward[i];
    f.t = static_cast<int>(i + 1);
    f.x = net.x[i];
    f.y = net.y[i];
    f.s = net.w * h_prev + net.v * f.x;
    f.h = activate(net.phi, f.s);
    f.y_hat = activate(net.theta, f.h);
    f.loss = 0.5 * (f.y_hat - f.y) * (f.y_hat - f.y);
    r.loss += f.loss;
    h_prev = f.h;
  }

  // Backward, t = T..1, from dL/ds_{T+1} = 0. Row i of forward is step t = i + 1.
  r.backward.reserve(T);
  double dL_ds_next = 0.0;  // dL/ds_{t+1}
  for (std::size_t i = T; i-- > 0;) {
    const ScalarForwardRow& f = r.forward[i];
    ScalarBackwardRow b;
    b.t = f.t;
    b.dL_dyhat = f.y_hat - f.y;
    b.theta_prime = derivative(net.theta, f.h, f.y_hat);
    b.carry = i + 1 == T ? 0.0 : net.w * dL_ds_next;  // w * 0 would print as -0 for w < 0
    b.dL_dh = b.dL_dyhat * b.theta_prime + b.carry;
    b.phi_prime = derivative(net.phi, f.s, f.h);
    b.dL_ds = b.dL_dh * b.phi_prime;
    const double h_before = i == 0 ? net.h0 : r.forward[i - 1].h;  // h_{t-1}
    r.grad.w += b.dL_ds * h_before;
    r.grad.v += b.dL_ds * f.x;
    r.backward.push_back(b);
    dL_ds_next = b.dL_ds;
  }
  r.grad.h0 = net.w * dL_ds_next;  // dL_ds_next is now dL/ds_1

  // Central differences (L(p + e) - L(p - e)) / 2e for each parameter; dividing by the step as
  // actually represented (hi - lo) rather than 2e keeps rounding of p + e out of the result.
  auto central = [&net](double ScalarRnn::*p) {
    const double e = finite_difference_step(net.*p);
    ScalarRnn plus = net, minus = net;
    plus.*p = net.*p + e;
    minus.*p = net.*p - e;
    return (scalar_loss(plus) - scalar_loss(minus)) / (plus.*p - minus.*p);
  };
  r.numeric.w = central(&ScalarRnn::w);
  r.numeric.v = central(&ScalarRnn::v);
  r.numeric.h0 = central(&ScalarRnn::h0);

  check_overflow(r);
  return r;
}

}  // namespace bptt
