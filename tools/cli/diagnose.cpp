// bptt diagnose: why gradients vanish or explode over time. The numbers come from the library
// (include/bptt/diagnose.hpp); this file prints them as a table or one JSON document, and with
// --out DIR writes the data files, gnuplot pictures and diagnose.json (docs/diagnostics.md).
//
// Every output file is written as "<name>.tmp-<pid>" first and all are renamed into place only
// after gnuplot has drawn every picture, so a failed run leaves no file behind.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bptt/diagnose.hpp"
#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "io/temp_files.hpp"
#include "common.hpp"
#include "gnuplot.hpp"
#include "diagnose_methods.hpp"
#include "embed.hpp"
#include "verbs.hpp"


namespace bptt::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct DiagnoseCliOptions {
  std::string model, data, loss, out, dtype;
  int threads = 1;
  bool json = false;
  int probes = 16;
  int max_k = 0;
  std::vector<std::string> methods;  // --methods: compare these with BPTT instead
  int samples = 8;
  std::uint64_t seed = 1;
};

struct RunInfo {
  ModelConfig cfg;
  std::string loss, dtype;
};

// log10 of a norm; NaN for 0 or NaN (JSON null, gnuplot skips it).
double log10_or_nan(double v) { return v > 0 ? std::log10(v) : std::nan(""); }

// A number for JSON: NaN and ±inf become null.
json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json number_rows(const std::vector<std::vector<double>>& rows, bool take_log = false) {
  json out = json::array();
  for (const auto& r : rows) {
    json a = json::array();
    for (double v : r) a.push_back(number(take_log ? log10_or_nan(v) : v));
    out.push_back(std::move(a));
  }
  return out;
}

// Rows are units u = k·D + d (layer k, direction d = 1 right to left): one per layer for a
// unidirectional model.
int units(const Diagnosis& d) { return d.L * d.D; }
bool is_reverse(const Diagnosis& d, int u) { return d.D == 2 && u % 2 == 1; }

// A unit's name in the table and pictures: "layer 0", "layer 0 (reverse)".
std::string unit_label(const Diagnosis& d, int u) {
  return fmt::format("layer {}{}", u / d.D, is_reverse(d, u) ? " (reverse)" : "");
}

// A unit's column in the data files: "layer_0", "layer_0_reverse".
std::string unit_column(const Diagnosis& d, int u) {
  return fmt::format("layer_{}{}", u / d.D, is_reverse(d, u) ? "_reverse" : "");
}

json to_json(const Diagnosis& d, const RunInfo& info) {
  json j;
  j["model"] = {{"cell", std::string(to_string(info.cfg.cell))},
                {"nonlinearity", d.activation},
                {"input_size", info.cfg.input_size},
                {"hidden_size", info.cfg.hidden_size},
                {"proj_size", info.cfg.proj_size},
                {"num_layers", d.L},
                {"output_size", info.cfg.output_size},
                {"bidirectional", info.cfg.bidirectional}};
  j["steps"] = d.T;
  j["batch"] = d.B;
  j["loss"] = info.loss;
  j["dtype"] = info.dtype;
  j["loss_value"] = number(d.loss);
  j["full_grad_norm"] = number(d.full_grad_norm);
  j["directions"] = d.D;
  j["unit_names"] = d.unit_names;

  j["grad_norm_by_step"] = number_rows(d.grad_norm_by_step);
  json h0 = json::array();
  for (double v : d.grad_norm_h0) h0.push_back(number(v));
  j["grad_norm_h0"] = h0;
  j["grad_norm_reduction"] =
      d.D == 1 ? "2-norm over the batch's B*H numbers of dL/dh_t, L the batch loss (weighted mean "
                 "over steps and sequences); [layer][t - 1] for steps t = 1..T"
               : "2-norm over the batch's B*H numbers of dL/dh_t, L the batch loss (weighted mean "
                 "over steps and sequences); [unit][t - 1] for steps t = 1..T in data order for "
                 "both directions, units as unit_names (layer-major, direction-minor); a "
                 "right-to-left unit's h_0 is its state before its first step (at the last valid "
                 "step)";

  j["jacobian_norm_by_distance"] = number_rows(d.jacobian_norm_by_distance);
  j["jacobian_log10_norm_by_distance"] = number_rows(d.jacobian_norm_by_distance, true);
  j["sequences_by_distance"] = d.sequences_by_distance;
  j["jacobian_probes"] = {
      {"kind", d.jacobian_exact ? "exact" : "random"},
      {"count", d.jacobian_probes},
      {"norm", d.D == 1 ? "frobenius, within each layer, root mean square over the sequences; "
                          "[layer][d] for d = (sequence length) - t = 0..T"
                        : "frobenius, within each unit, root mean square over the sequences; "
                          "[unit][d] for d = 0..T the distance from the unit's own final state: "
                          "d = (sequence length) - t left to right, d = t - 1 right to left "
                          "(its final state is h_1)"}};

  json sv = json::array(), gates = json::array(), power = json::array();
  for (int u = 0; u < units(d); ++u) {
    const SingularValue& s = d.w_hh_sigma[std::size_t(u)];
    sv.push_back(s.sigma_max);
    json g = json::array();
    for (const SingularValue& gs : d.w_hh_gate_sigma[std::size_t(u)]) g.push_back(gs.sigma_max);
    gates.push_back(std::move(g));
    bool all = s.converged;
    int most = s.iterations;
    for (const SingularValue& gs : d.w_hh_gate_sigma[std::size_t(u)]) {
      all = all && gs.converged;
      most = std::max(most, gs.iterations);
    }
    power.push_back({{"layer", u / d.D},
                     {"converged", all},
                     {"max_iterations_used", most},
                     {"unit", d.unit_names[std::size_t(u)]},
                     {"reverse", is_reverse(d, u)}});
  }
  j["w_hh_singular_values"] = sv;
  j["w_hh_gate_singular_values"] = gates;
  j["gate_names"] = d.gate_names;
  j["power_iteration"] = power;

  json layers = json::array();
  for (int u = 0; u < units(d); ++u) {
    const double s = d.w_hh_sigma[std::size_t(u)].sigma_max;
    layers.push_back({{"layer", u / d.D},
                      {"sigma_max", s},
                      {"sigma_max_times_gamma", s * d.gamma},
                      {"vanishing_guaranteed", d.bound_applies && s * d.gamma < 1},
                      {"unit", d.unit_names[std::size_t(u)]},
                      {"reverse", is_reverse(d, u)}});
  }
  j["pascanu_bound"] = {
      {"activation", d.activation},
      {"gamma", d.gamma},
      {"threshold", d.threshold},
      {"applies", d.bound_applies},
      {"note", d.bound_applies
                   ? "sigma_max(W_hh) < 1/gamma is sufficient for long-term gradients to vanish; "
                     "sigma_max >= 1/gamma is necessary for them to explode"
                   : "the bound is derived for the Elman recursion h_t = phi(W_hh h_{t-1} + ...); "
                     "LSTM/GRU gates change the Jacobian, so it is shown for reference only"},
      {"layers", layers}};

  json tb = json::array();
  for (const TruncationBias& t : d.truncation)
    tb.push_back({{"K", t.K},
                  {"cosine", number(t.cosine)},
                  {"relative_error", number(t.relative_error)},
                  {"grad_norm", number(t.grad_norm)}});
  j["truncation_bias"] = tb;
  // null, or why there are no truncation rows (a bidirectional model, a final-state readout).
  j["truncation_skipped"] =
      d.truncation_skipped.empty() ? json(nullptr) : json(d.truncation_skipped);
  return j;
}

// Row indices to print out of 0..n-1: all when few, else 0, 1, 2, 3, 4, 6, 8, 12, 16, … and n-1.
std::vector<int> rows_to_show(int n) {
  std::vector<int> r;
  if (n <= 25) {
    for (int i = 0; i < n; ++i) r.push_back(i);
    return r;
  }
  std::set<int> s = {0, 1, 2, 3, n - 1};
  for (int p = 4; p < n; p *= 2) {
    s.insert(p);
    if (p + p / 2 < n) s.insert(p + p / 2);
  }
  return {s.begin(), s.end()};
}

std::string cell(double v, int width = 11) {
  if (std::isnan(v)) return fmt::format("{:>{}}", "-", width);
  return fmt::format("{:>{}.4e}", v, width);
}

void print_table(const Diagnosis& d, const RunInfo& info) {
  std::string cellname(to_string(info.cfg.cell));
  if (info.cfg.cell == CellKind::elman) cellname += " (" + d.activation + ")";
  if (d.D == 2) cellname = "bidirectional " + cellname;
  fmt::print("{}, L = {}, H = {}; T = {}, B = {}; loss {} = {:.6g} ({}); "
             "‖g‖ = ‖dL/dparams‖ = {:.4e}\n\n",
             cellname, d.L, d.H, d.T, d.B, info.loss, d.loss, info.dtype, d.full_grad_norm);

  // One column per unit; "layer 0 (reverse)" needs a wider one.
  const int U = units(d), cw = d.D == 2 ? 19 : 11;
  std::string layers_head;
  for (int u = 0; u < U; ++u) layers_head += fmt::format("{:>{}}", unit_label(d, u), cw);

  fmt::print("1. Gradient reaching each step's state: ‖dL/dh_t‖ (2-norm over the batch's B·H "
             "numbers;\n   L is the batch-mean loss)\n");
  if (d.D == 2)
    fmt::print("   (steps t in data order for both directions; a reverse unit's h0 is its state "
               "before its\n   first step, which it takes at each sequence's last valid step)\n");
  fmt::print("{:>8}{}\n", "step t", layers_head);
  const std::vector<int> steps = rows_to_show(d.T + 1);  // rows t = 0..T, t = 0 is h_0
  for (int t : steps) {
    std::string line = fmt::format("{:>8}", t == 0 ? "0 (h0)" : std::to_string(t));
    for (int u = 0; u < U; ++u)
      line += cell(t == 0 ? d.grad_norm_h0[std::size_t(u)]
                          : d.grad_norm_by_step[std::size_t(u)][std::size_t(t - 1)],
                   cw);
    fmt::print("{}\n", line);
  }
  if (int(steps.size()) < d.T + 1)
    fmt::print("   ({} of {} rows; --json or --out DIR for all)\n", steps.size(), d.T + 1);

  const std::string probes =
      d.jacobian_exact ? fmt::format("exact: the {} unit vectors as probes", d.jacobian_probes)
                       : fmt::format("estimated from {} random unit probes per sequence",
                                     d.jacobian_probes);
  if (d.D == 1)
    fmt::print("\n2. ‖∂h_T/∂h_t‖_F within each layer against the distance T − t ({}; nothing "
               "from the head)\n",
               probes);
  else
    fmt::print("\n2. ‖∂h_n/∂h_t‖_F within each unit against the distance d from its own final "
               "state h_n\n   ({}; nothing from the head):\n   left to right d = T − t; right "
               "to left d = t − 1 (its final state is the one after step 1)\n",
               probes);
  std::string jhead;
  for (int u = 0; u < U; ++u) jhead += fmt::format("{:>{}}{:>8}", unit_label(d, u), cw, "log10");
  fmt::print("{:>8}{:>6}{}\n", d.D == 1 ? "T − t" : "d", "seqs", jhead);
  const std::vector<int> dists = rows_to_show(d.T + 1);
  for (int dist : dists) {
    std::string line = fmt::format("{:>8}{:>6}", dist, d.sequences_by_distance[std::size_t(dist)]);
    for (int u = 0; u < U; ++u) {
      const double v = d.jacobian_norm_by_distance[std::size_t(u)][std::size_t(dist)];
      const double lg = log10_or_nan(v);
      line += cell(v, cw) +
              (std::isnan(lg) ? fmt::format("{:>8}", "-") : fmt::format("{:>8.2f}", lg));
    }
    fmt::print("{}\n", line);
  }
  if (int(dists.size()) < d.T + 1)
    fmt::print("   ({} of {} rows; --json or --out DIR for all)\n", dists.size(), d.T + 1);

  fmt::print("\n3. Largest singular value of W_hh (power iteration) and Pascanu et al. 2013's "
             "bound:\n   gradients vanish when σ_max < 1/γ, γ = sup|φ'| = {:g} ({}), 1/γ = {:g}\n",
             d.gamma, d.activation, d.threshold);
  if (!d.bound_applies)
    fmt::print("   (the bound is for the Elman recursion; for {} it is shown for reference only)\n",
               to_string(info.cfg.cell));
  std::string ghead;
  if (d.gate_names.size() > 1)
    for (const std::string& g : d.gate_names) ghead += fmt::format("{:>10}", "σ(" + g + ")");
  const int lw = d.D == 2 ? 13 : 8;  // "0 (reverse)"
  fmt::print("{:>{}}{:>11}{}{:>10}   {}\n", "layer", lw, "σ_max", ghead, "σ_max·γ", "verdict");
  for (int u = 0; u < U; ++u) {
    const SingularValue& s = d.w_hh_sigma[std::size_t(u)];
    const std::string name =
        std::to_string(u / d.D) + (is_reverse(d, u) ? " (reverse)" : "");
    std::string line = fmt::format("{:>{}}{:>11.6f}", name, lw, s.sigma_max);
    if (d.gate_names.size() > 1)
      for (const SingularValue& g : d.w_hh_gate_sigma[std::size_t(u)])
        line += fmt::format("{:>10.4f}", g.sigma_max);
    line += fmt::format("{:>10.4f}   ", s.sigma_max * d.gamma);
    line += !d.bound_applies ? "(bound not applicable)"
            : s.sigma_max * d.gamma < 1
                ? "< 1: long-term gradients vanish"
                : ">= 1: may explode (necessary, not sufficient)";
    if (!s.converged) line += fmt::format(" [not converged after {} iterations]", s.iterations);
    fmt::print("{}\n", line);
  }

  if (!d.truncation_skipped.empty())
    fmt::print("\n4. Truncated BPTT against the full gradient: skipped\n   {}\n",
               d.truncation_skipped);
  if (!d.truncation.empty()) {
    fmt::print("\n4. Truncated BPTT against the full gradient g (all parameters)\n");
    fmt::print("{:>8}{:>12}{:>16}{:>12}\n", "K", "cosine", "‖g_K − g‖/‖g‖", "‖g_K‖");
    for (const TruncationBias& t : d.truncation)
      fmt::print("{:>8}{:>12.6f}{:>16.4e}{:>12.4e}\n", t.K, t.cosine, t.relative_error,
                 t.grad_norm);
  }
}

// ---------------------------------------------------------------------------------------------
// Files and gnuplot

// Removes files when it goes out of scope, unless released.
std::string num(double v) { return std::isfinite(v) ? fmt::format("{:.17g}", v) : "NaN"; }

struct DataFiles {
  std::string grad, jacobian, sigma, truncation;  // file contents
};

DataFiles data_files(const Diagnosis& d) {
  DataFiles f;
  const int U = units(d);
  f.grad = d.D == 1 ? "# ||dL/dh_t||_2 over the batch (B*H numbers); step 0 is h_0\n# step"
                    : "# ||dL/dh_t||_2 over the batch (B*H numbers); steps in data order; step 0 "
                      "is each unit's h_0 (a reverse unit's: before its first step, at the "
                      "sequence's end)\n# step";
  for (int u = 0; u < U; ++u) f.grad += " " + unit_column(d, u);
  f.grad += "\n";
  for (int t = 0; t <= d.T; ++t) {
    f.grad += std::to_string(t);
    for (int u = 0; u < U; ++u)
      f.grad += " " + num(t == 0 ? d.grad_norm_h0[std::size_t(u)]
                                 : d.grad_norm_by_step[std::size_t(u)][std::size_t(t - 1)]);
    f.grad += "\n";
  }

  f.jacobian = fmt::format("# ||dh_T/dh_t||_F within each {} ({} probes: {}); NaN: no sequence"
                           " that long{}\n# distance sequences",
                           d.D == 1 ? "layer" : "unit", d.jacobian_exact ? "exact" : "random",
                           d.jacobian_probes,
                           d.D == 1 ? "" : "; distance from each unit's own final state (T - t "
                                           "left to right, t - 1 right to left)");
  for (int u = 0; u < U; ++u) f.jacobian += " norm_" + unit_column(d, u);
  for (int u = 0; u < U; ++u) f.jacobian += " log10_" + unit_column(d, u);
  f.jacobian += "\n";
  for (int dist = 0; dist <= d.T; ++dist) {
    f.jacobian += fmt::format("{} {}", dist, d.sequences_by_distance[std::size_t(dist)]);
    for (int u = 0; u < U; ++u)
      f.jacobian += " " + num(d.jacobian_norm_by_distance[std::size_t(u)][std::size_t(dist)]);
    for (int u = 0; u < U; ++u)
      f.jacobian +=
          " " + num(log10_or_nan(d.jacobian_norm_by_distance[std::size_t(u)][std::size_t(dist)]));
    f.jacobian += "\n";
  }

  f.sigma = fmt::format("# sigma_max(W_hh) and of each gate block; gamma = {} ({}), 1/gamma = {}\n"
                        "# layer sigma_max",
                        num(d.gamma), d.activation, num(d.threshold));
  for (const std::string& g : d.gate_names) f.sigma += " sigma_" + g;
  if (d.D == 2) f.sigma += " direction";
  f.sigma += "\n";
  for (int u = 0; u < U; ++u) {
    f.sigma += fmt::format("{} {}", u / d.D, num(d.w_hh_sigma[std::size_t(u)].sigma_max));
    for (const SingularValue& g : d.w_hh_gate_sigma[std::size_t(u)]) f.sigma += " " + num(g.sigma_max);
    if (d.D == 2) f.sigma += is_reverse(d, u) ? " 1" : " 0";
    f.sigma += "\n";
  }

  f.truncation = "# truncated BPTT (window K) against the full gradient\n";
  if (!d.truncation_skipped.empty()) f.truncation += "# skipped: " + d.truncation_skipped + "\n";
  f.truncation += "# K cosine relative_error grad_norm\n";
  for (const TruncationBias& t : d.truncation)
    f.truncation += fmt::format("{} {} {} {}\n", t.K, num(t.cosine), num(t.relative_error),
                                num(t.grad_norm));
  return f;
}

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

// The gnuplot script: `name(x)` maps a file name of DIR to the path the script should use
// (the temporary files when run here; the plain names in the saved diagnose.gp).
template <class Name>
std::string script(const Diagnosis& d, const RunInfo& info, Name name) {
  std::string s =
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 900,540 "
      "enhanced font ',10' } else { set terminal png size 900,540 }\n"
      "set grid\nset key top right\nset datafile missing 'NaN'\n";
  const std::string what = fmt::format("{}{}{}, L = {}, H = {}, T = {}, B = {}",
                                       d.D == 2 ? "bidirectional " : "",
                                       to_string(info.cfg.cell),
                                       info.cfg.cell == CellKind::elman ? " " + d.activation : "",
                                       d.L, d.H, d.T, d.B);
  auto color = [](int u) { return kColors[u % 6]; };
  const int U = units(d);

  // 1. ‖dL/dh_t‖ against t.
  s += "set output " + quoted(name("grad_norm_by_step.png")) + "\n";
  s += "set title " + quoted("gradient reaching each step: ||dL/dh_t||  (" + what + ")") +
       " noenhanced\n";
  if (d.D == 1)
    s += "set xlabel 'step t (0: h_0)' noenhanced\n";
  else
    s += fmt::format("set xlabel 'step t in data order (0: h_0 left to right; {}: h_0 right to "
                     "left)' noenhanced\n",
                     d.T + 1);
  s += "set ylabel '||dL/dh_t||_2 over the batch' noenhanced\nset logscale y\nset format y "
       "'%.0e'\n";
  s += "plot ";
  for (int u = 0; u < U; ++u) {
    const std::string file = quoted(name("grad_norm_by_step.dat"));
    if (!is_reverse(d, u)) {
      s += fmt::format("{}{} using 1:{} with linespoints pt 7 ps 0.5 lw 1.5 lc rgb '{}' title "
                       "'{}'",
                       u ? ", " : "", file, u + 2, color(u), unit_label(d, u));
      continue;
    }
    // A right-to-left unit starts at the sequence's end: its h_0 (row 0) is drawn at T + 1.
    s += fmt::format(", {} every ::1 using 1:{} with linespoints pt 5 ps 0.5 lw 1.5 dt 3 lc rgb "
                     "'{}' title '{}', {} every ::0::0 using ({}):{} with points pt 5 ps 0.8 "
                     "lc rgb '{}' notitle",
                     file, u + 2, color(u), unit_label(d, u), file, d.T + 1, u + 2, color(u));
  }
  s += "\n";

  // 2. ‖∂h_T/∂h_t‖_F against T − t, with the Elman bound √H (γ σ_max)^d.
  s += "set output " + quoted(name("jacobian_norm_by_distance.png")) + "\n";
  s += "set title " +
       quoted((d.D == 1 ? "||dh_T/dh_t||_F against T - t  ("
                        : "||dh_n/dh_t||_F against the distance from each unit's final state  (") +
              what + ")") +
       " noenhanced\n";
  s += d.D == 1 ? "set xlabel 'distance T - t' noenhanced\n"
                : "set xlabel 'distance from the unit''s final state (T - t left to right, t - 1 "
                  "right to left)' noenhanced\n";
  s += "set ylabel '||dh_T/dh_t||_F' noenhanced\n";
  // The y range of the measured norms (a decade either side), so that an exploding bound leaves
  // the picture instead of flattening the curves.
  double lo = INFINITY, hi = 0;
  for (const auto& row : d.jacobian_norm_by_distance)
    for (double v : row)
      if (std::isfinite(v) && v > 0) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  if (hi > 0) s += fmt::format("set yrange [{:.6g}:{:.6g}]\n", lo / 10, hi * 10);
  s += "plot ";
  for (int u = 0; u < U; ++u) {
    s += fmt::format("{}{} using 1:{} with linespoints pt {} ps 0.5 lw 1.5 lc rgb '{}' title "
                     "'{}'",
                     u ? ", " : "", quoted(name("jacobian_norm_by_distance.dat")), u + 3,
                     is_reverse(d, u) ? 5 : 7, color(u), unit_label(d, u));
    if (d.bound_applies)
      s += fmt::format(", {} using 1:(sqrt({})*({:.17g})**$1) with lines dt 2 lc rgb '{}' title "
                       "'{} bound sqrt(H)(gamma sigma_max)^d' noenhanced",
                       quoted(name("jacobian_norm_by_distance.dat")), d.H,
                       d.gamma * d.w_hh_sigma[std::size_t(u)].sigma_max, color(u),
                       unit_label(d, u));
  }
  s += "\n";

  // 3. Truncation bias against K.
  s += "set output " + quoted(name("truncation_bias.png")) + "\n";
  s += "set title " + quoted("truncated BPTT against the full gradient  (" + what + ")") +
       " noenhanced\n";
  s += "unset logscale y\nset autoscale y\nset format y '%g'\nset logscale x 2\nset xlabel 'window K' "
       "noenhanced\nset ylabel 'cosine(g_K, g)' noenhanced\nset y2label "
       "'||g_K - g|| / ||g||' noenhanced\nset ytics nomirror\nset y2tics\nset yrange [*:1.05]\n"
       "set key bottom right\n";
  if (!d.truncation.empty()) s += fmt::format("set xrange [0.9:{}]\n", d.T * 1.1);
  if (d.truncation.empty()) {  // an empty frame with the reason (a curve below the y range)
    s += "set label 1 'no truncation rows' at graph 0.5, graph 0.55 center noenhanced\n";
    if (!d.truncation_skipped.empty())
      s += "set label 2 " + quoted(d.truncation_skipped) +
           " at graph 0.5, graph 0.45 center noenhanced\n";
    s += "unset y2tics\nunset y2label\nset yrange [0:1]\nplot [1:2] -1 notitle\n";
  }
  else
    s += "plot " + quoted(name("truncation_bias.dat")) +
         " using 1:2 axes x1y1 with linespoints pt 7 lw 1.5 lc rgb '#1f77b4' title 'cosine', " +
         quoted(name("truncation_bias.dat")) +
         " using 1:3 axes x1y2 with linespoints pt 5 lw 1.5 lc rgb '#d62728' title "
         "'relative error'\n";
  s += "set output\n";
  return s;
}

// DIR must be a directory or not exist yet (it is created when the results are written).
void check_out_dir(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (fs::exists(st) && !fs::is_directory(st))
    throw Error(ErrorKind::io, dir, "exists and is not a directory",
                "give a directory for the pictures and data files (created if missing)");
}

// Writes the data files, diagnose.json and the pictures under DIR (all or nothing).
std::vector<std::string> write_outputs(const std::string& dir, const Diagnosis& d,
                                       const RunInfo& info, const std::string& json_text) {
  const DataFiles df = data_files(d);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"grad_norm_by_step.dat", df.grad},
      {"jacobian_norm_by_distance.dat", df.jacobian},
      {"w_hh_singular_values.dat", df.sigma},
      {"truncation_bias.dat", df.truncation},
      {"diagnose.json", json_text + "\n"},
      {"diagnose.gp", "# Redraw with: cd DIR && gnuplot diagnose.gp\n" +
                          script(d, info, [](const std::string& n) { return n; })}};
  return write_drawn(dir, files,
                     {"grad_norm_by_step.png", "jacobian_norm_by_distance.png",
                      "truncation_bias.png"},
                     [&](const NameOf& name) { return script(d, info, name); });
}

template <class Real>
void run_diagnose(const DiagnoseCliOptions& o, const safetensors::File& mf, LossKind loss) {
  const Model<Real> model = load_model<Real>(mf);
  const Batch<Real> batch = load_batch<Real>(safetensors::File::read(o.data), model.cfg, loss);
  if (!o.methods.empty()) {
    report_methods(model, batch, loss,
                   MethodsRun{o.methods, o.samples, o.seed, o.out, o.json,
                              std::string(to_string(loss)),
                              std::is_same_v<Real, float> ? "f32" : "f64"});
    return;
  }
  DiagnoseOptions opts;
  opts.probes = o.probes;
  opts.max_truncation = o.max_k;
  const Diagnosis d = diagnose(model, batch, loss, opts);
  RunInfo info{model.cfg, std::string(to_string(loss)),
               std::is_same_v<Real, float> ? "f32" : "f64"};
  const json j = to_json(d, info);
  std::vector<std::string> written;
  if (!o.out.empty()) written = write_outputs(o.out, d, info, j.dump(2));
  if (o.json) {
    emit(j.dump(2) + "\n");
    return;
  }
  print_table(d, info);
  if (!written.empty()) {
    fmt::print("\nwritten to {}:", o.out);
    for (const std::string& p : written) fmt::print(" {}", fs::path(p).filename().string());
    fmt::print("\n");
  }
}

}  // namespace

template <class Real>
std::string diagnose_json(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                          const DiagnoseOptions& options) {
  const Diagnosis d = diagnose(model, batch, loss, options);
  const RunInfo info{model.cfg, std::string(to_string(loss)),
                     std::is_same_v<Real, float> ? "f32" : "f64"};
  return to_json(d, info).dump();
}
template std::string diagnose_json(const Model<float>&, const BatchView<float>&, LossKind,
                                   const DiagnoseOptions&);
template std::string diagnose_json(const Model<double>&, const BatchView<double>&, LossKind,
                                   const DiagnoseOptions&);

void add_diagnose(CLI::App& app, Runner& run) {
  auto o = std::make_shared<DiagnoseCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "diagnose",
      "Show why gradients vanish or explode over time (docs/diagnostics.md): per layer and step\n"
      "the gradient reaching the state ||dL/dh_t||; ||dh_T/dh_t||_F against the distance T - t;\n"
      "sigma_max(W_hh) (per gate block too) beside Pascanu et al. 2013's bound 1/gamma; and the\n"
      "truncated gradient (K = 1, 2, 4, ..., T) against the full one. Prints a table, or with\n"
      "--json one JSON document; --out DIR also writes PNGs (gnuplot), their data and\n"
      "diagnose.json. A bidirectional model gets a row per layer and direction (no truncation).");
  cmd->add_option("--model", o->model, "Model file (safetensors, see docs/file_format.md)")
      ->required();
  cmd->add_option("--data", o->data, "Data file: x [T, B, I], y, optional lengths, mask, h0, c0")
      ->required();
  cmd->add_option("--loss", o->loss, "Loss: mse, bce (from logits) or xent (from logits)")
      ->required()
      ->check(CLI::IsMember({"mse", "bce", "xent"}));
  cmd->add_option("--out", o->out,
                  "Directory for the pictures (PNG), their data files and diagnose.json "
                  "(created if missing)");
  cmd->add_flag("--json", o->json, "Print one JSON document instead of the table");
  cmd->add_option("--probes", o->probes,
                  "Probe directions per layer for ||dh_T/dh_t||_F (default 16; exact with the "
                  "H unit vectors when H <= probes)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-k", o->max_k,
                  "Largest truncation window below T to try (default: every power of two < T; "
                  "K = T is always tried)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--methods", o->methods,
                  "Instead: compare these gradient methods with full BPTT (comma-separated: "
                  "uoro, kf-rtrl, snap1, eprop, truncated:K, rtrl, ...): cosine, norm ratio, and "
                  "over --samples seeds the bias and variance, per layer and tensor; --out DIR "
                  "writes methods.json, methods.dat and methods.png")
      ->delimiter(',');
  cmd->add_option("--samples", o->samples,
                  "--methods: seeds drawn for the stochastic methods uoro and kf-rtrl "
                  "(default 8)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", o->seed, "--methods: the first seed (then seed + 1, ...)")
      ->capture_default_str();
  add_dtype_option(cmd, o->dtype);
  add_threads_option(cmd, o->threads);
  cmd->callback([o, &run] {
    run = [o] {
      const ThreadCount on_threads(o->threads);
      const LossKind loss = parse_loss(o->loss, "--loss");
      if (!o->out.empty()) check_out_dir(o->out);
      const auto mf = safetensors::File::read(o->model);
      const DType dtype = o->dtype.empty() ? stored_dtype(mf) : parse_dtype(o->dtype, "--dtype");
      with_dtype(dtype, [&]<class Real>() { run_diagnose<Real>(*o, mf, loss); });
    };
  });
}

}  // namespace bptt::cli
