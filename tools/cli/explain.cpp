// `bptt explain`: the scalar recurrent network of include/bptt/explain.hpp, step by step.
// Prints the forward pass, the backward recursion from t = T down to 1 and the gradients next to
// central finite differences; --json prints the same numbers as one JSON object.
#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "explain/explain.hpp"
#include "bptt/types.hpp"
#include "embed.hpp"
#include "verbs.hpp"

namespace bptt::cli {
namespace {

struct ExplainOptions {
  std::string w, v, h0, phi, theta, x, y;
  bool json = false;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One number, all of `text` (surrounding blanks allowed); false if it is not one.
bool parse_number(std::string_view text, double& out) {
  text = trim(text);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end;
}

double number_option(const std::string& text, const std::string& option) {
  double value = 0.0;
  if (!parse_number(text, value))
    throw Error(ErrorKind::usage, option,
                fmt::format("'{}' is not a number", data::printable(text, 40)),
                "write e.g. 0.8 or -1e-2");
  return value;
}

// Comma-separated numbers, e.g. "1,0.5,-1". An empty string is an empty list.
std::vector<double> list_option(const std::string& text, const std::string& option) {
  std::vector<double> values;
  if (trim(text).empty()) return values;
  std::string_view rest = text;
  while (true) {
    const std::size_t comma = rest.find(',');
    double value = 0.0;
    if (!parse_number(rest.substr(0, comma), value))
      throw Error(ErrorKind::usage, option,
                  fmt::format("'{}' is not a list of numbers", data::printable(text, 40)),
                  "write comma-separated numbers, e.g. 1,0.5,-1");
    values.push_back(value);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return values;
}

Activation activation_option(const std::string& text, const std::string& option) {
  for (Activation f : {Activation::identity, Activation::tanh, Activation::relu,
                       Activation::sigmoid, Activation::softmax})
    if (text == to_string(f)) return f;  // softmax is refused, with its reason, by validate()
  throw Error(ErrorKind::usage, option,
              fmt::format("unknown activation '{}'", data::printable(text, 40)),
              "use one of identity, tanh, relu, sigmoid");
}

std::string join(const std::vector<double>& values) {
  std::string s;
  for (std::size_t i = 0; i < values.size(); ++i) s += fmt::format("{}{}", i ? "," : "", values[i]);
  return s;
}

ScalarRnn network_from(const ExplainOptions& o) {
  ScalarRnn net;
  net.w = number_option(o.w, "--w");
  net.v = number_option(o.v, "--v");
  net.h0 = number_option(o.h0, "--h0");
  net.phi = activation_option(o.phi, "--phi");
  net.theta = activation_option(o.theta, "--theta");
  net.x = list_option(o.x, "--x");
  net.y = list_option(o.y, "--y");
  return net;
}

// A number in a column: fixed point when that is readable, otherwise scientific.
std::string num(double value) {
  const double a = std::abs(value);
  if (value == 0.0 || (a >= 1e-4 && a < 1e5)) return fmt::format("{:.6f}", value);
  return fmt::format("{:.4e}", value);
}

std::string gradient_num(double value) {
  const double a = std::abs(value);
  if (value == 0.0 || (a >= 1e-4 && a < 1e5)) return fmt::format("{:.10f}", value);
  return fmt::format("{:.8e}", value);
}

void print_text(const ScalarRnn& net, const ExplainResult& r) {
  const std::size_t T = net.x.size();
  fmt::print("Scalar recurrent network, T = {} step{}:\n", T, T == 1 ? "" : "s");
  fmt::print("  s_t = w*h_{{t-1}} + v*x_t    h_t = phi(s_t)    yhat_t = theta(h_t)\n");
  fmt::print("  L = sum_t 1/2 (yhat_t - y_t)^2\n");
  fmt::print("  w = {}   v = {}   h_0 = {}   phi = {}   theta = {}\n\n", net.w, net.v, net.h0,
             to_string(net.phi), to_string(net.theta));

  fmt::print("Forward pass, t = 1 .. T (h_0 = {}):\n", net.h0);
  fmt::print("  {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n", "t", "x_t", "s_t", "h_t",
             "yhat_t", "y_t", "(yhat-y)^2/2");
  for (const ScalarForwardRow& f : r.forward)
    fmt::print("  {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n", f.t, num(f.x), num(f.s),
               num(f.h), num(f.y_hat), num(f.y), num(f.loss));
  fmt::print("  L = {}\n\n", num(r.loss));

  fmt::print("Backward pass, t = T .. 1. dL/ds_t needs dL/ds_{{t+1}}, so start at the end:\n");
  fmt::print("  dL/ds_{{T+1}} = 0   (nothing after step T depends on s)\n");
  fmt::print("  dL/dyhat_t = yhat_t - y_t\n");
  fmt::print("  dL/dh_t    = dL/dyhat_t * theta'(h_t) + w * dL/ds_{{t+1}}\n");
  fmt::print("  dL/ds_t    = dL/dh_t * phi'(s_t)\n");
  fmt::print("  {:>4} {:>12} {:>12} {:>14} {:>12} {:>12} {:>12}\n", "t", "dL/dyhat_t",
             "theta'(h_t)", "w*dL/ds_{t+1}", "dL/dh_t", "phi'(s_t)", "dL/ds_t");
  for (const ScalarBackwardRow& b : r.backward)
    fmt::print("  {:>4} {:>12} {:>12} {:>14} {:>12} {:>12} {:>12}\n", b.t, num(b.dL_dyhat),
               num(b.theta_prime), num(b.carry), num(b.dL_dh), num(b.phi_prime), num(b.dL_ds));
  fmt::print("\n");

  fmt::print("Gradients: the backward pass against central differences\n");
  fmt::print("  (L(p+e) - L(p-e)) / 2e with e = 1e-6 * max(1, |p|):\n");
  fmt::print("  {:<33} {:>17} {:>17} {:>10}\n", "", "backward pass", "finite diff.", "|diff|");
  struct Line {
    const char* formula;
    double grad, numeric;
  };
  const Line lines[] = {{"dL/dw  = sum_t dL/ds_t * h_{t-1}", r.grad.w, r.numeric.w},
                        {"dL/dv  = sum_t dL/ds_t * x_t", r.grad.v, r.numeric.v},
                        {"dL/dh0 = w * dL/ds_1", r.grad.h0, r.numeric.h0}};
  bool disagree = false;
  for (const Line& l : lines) {
    const double diff = std::abs(l.grad - l.numeric);
    disagree = disagree || diff > 1e-5 * std::max(1.0, std::abs(l.grad));
    fmt::print("  {:<33} {:>17} {:>17} {:>10.1e}\n", l.formula, gradient_num(l.grad),
               gradient_num(l.numeric), diff);
  }
  if (disagree)
    fmt::print("  note: the two disagree by more than 1e-5; a relu kink (s_t or h_t at 0) within\n"
               "  the finite-difference step, or a badly scaled loss, makes differences inexact.\n");
}

void print_json(const ScalarRnn& net, const ExplainResult& r) {
  nlohmann::json forward = nlohmann::json::array();
  for (const ScalarForwardRow& f : r.forward)
    forward.push_back({{"t", f.t}, {"x", f.x}, {"s", f.s}, {"h", f.h}, {"y_hat", f.y_hat},
                       {"y", f.y}, {"loss", f.loss}});
  nlohmann::json backward = nlohmann::json::array();
  for (const ScalarBackwardRow& b : r.backward)
    backward.push_back({{"t", b.t}, {"dL_dyhat", b.dL_dyhat}, {"theta_prime", b.theta_prime},
                        {"carry", b.carry}, {"dL_dh", b.dL_dh}, {"phi_prime", b.phi_prime},
                        {"dL_ds", b.dL_ds}});
  const nlohmann::json out = {
      {"model",
       {{"w", net.w}, {"v", net.v}, {"h0", net.h0}, {"phi", std::string(to_string(net.phi))},
        {"theta", std::string(to_string(net.theta))}, {"x", net.x}, {"y", net.y}}},
      {"loss", r.loss},
      {"forward", forward},
      {"backward", backward},
      {"grad", {{"w", r.grad.w}, {"v", r.grad.v}, {"h0", r.grad.h0}}},
      {"numeric", {{"w", r.numeric.w}, {"v", r.numeric.v}, {"h0", r.numeric.h0}}}};
  emit(out.dump() + "\n");
}

void run_explain(const ExplainOptions& o) {
  const ScalarRnn net = network_from(o);
  ExplainResult r;
  try {
    r = explain(net);
  } catch (const Error& e) {  // name the option the library's field comes from
    throw Error(e.kind(), e.where().empty() ? "explain" : "--" + e.where(), e.problem(), e.hint());
  }
  if (o.json)
    print_json(net, r);
  else
    print_text(net, r);
}

}  // namespace

void add_explain(CLI::App& app, Runner& run) {
  const ScalarRnn example = builtin_example();
  auto o = std::make_shared<ExplainOptions>();
  o->w = fmt::format("{}", example.w);
  o->v = fmt::format("{}", example.v);
  o->h0 = fmt::format("{}", example.h0);
  o->phi = std::string(to_string(example.phi));
  o->theta = std::string(to_string(example.theta));
  o->x = join(example.x);
  o->y = join(example.y);

  CLI::App* sub = app.add_subcommand(
      "explain", "Backpropagation through time in one scalar network, step by step");
  sub->footer(
      "The network, for t = 1..T:\n"
      "  s_t = w*h_{t-1} + v*x_t,  h_t = phi(s_t),  yhat_t = theta(h_t),\n"
      "  L = sum_t 1/2 (yhat_t - y_t)^2.\n"
      "dL/ds_t depends on dL/ds_{t+1}, so the gradient is computed backwards from t = T,\n"
      "starting with dL/ds_{T+1} = 0:\n"
      "  dL/dh_t = (yhat_t - y_t)*theta'(h_t) + w*dL/ds_{t+1},  dL/ds_t = dL/dh_t*phi'(s_t),\n"
      "  dL/dw = sum_t dL/ds_t*h_{t-1},  dL/dv = sum_t dL/ds_t*x_t,  dL/dh0 = w*dL/ds_1.\n"
      "The three gradients are printed next to central finite differences.\n"
      "Without options the built-in example runs: the targets are the previous inputs\n"
      "(y_t = x_{t-1}), so the loss depends on w through time. Lists may start with a\n"
      "negative number: '--x -1,2' or '--x=-1,2'. See docs/math.md, section 1.");
  sub->add_option("--w", o->w, "Recurrent weight w")->type_name("W")->capture_default_str();
  sub->add_option("--v", o->v, "Input weight v")->type_name("V")->capture_default_str();
  sub->add_option("--h0", o->h0, "Initial state h_0")->type_name("H0")->capture_default_str();
  sub->add_option("--phi", o->phi, "State activation phi: identity, tanh, relu or sigmoid")
      ->type_name("F")
      ->capture_default_str();
  sub->add_option("--theta", o->theta, "Readout activation theta: identity, tanh, relu or sigmoid")
      ->type_name("F")
      ->capture_default_str();
  sub->add_option("--x", o->x, "Inputs x_1..x_T, comma-separated (e.g. 1,0.5,-1)")
      ->type_name("LIST")
      ->capture_default_str();
  sub->add_option("--y", o->y, "Targets y_1..y_T, comma-separated, as many as --x")
      ->type_name("LIST")
      ->capture_default_str();
  sub->add_flag("--json", o->json,
                "Print one JSON object (loss, forward, backward, grad, numeric) instead of text");
  sub->callback([o, &run] { run = [o] { run_explain(*o); }; });
}

}  // namespace bptt::cli
