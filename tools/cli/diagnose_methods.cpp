// bptt diagnose --methods LIST: each method's gradient against full BPTT (compare_methods,
// include/bptt/diagnose.hpp), per layer and tensor: cosine, norm ratio and, over --samples seeds
// for the stochastic methods, the bias of the mean and the variance. A table, --json, or with
// --out DIR methods.json, methods.dat and methods.png (docs/diagnostics.md).
#include "diagnose_methods.hpp"

#include <fmt/core.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "embed.hpp"
#include "gnuplot.hpp"

namespace bptt::cli {
namespace {

using json = nlohmann::ordered_json;

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json part_json(const Alignment& a) {
  return {{"name", a.name},
          {"cosine", number(a.cosine)},
          {"norm_ratio", number(a.norm_ratio)},
          {"bias", number(a.bias)},
          {"variance", number(a.variance)}};
}

json report_json(const std::vector<MethodReport>& reports, const MethodsRun& r, int T, int B) {
  json j;
  j["T"] = T;
  j["B"] = B;
  j["loss"] = r.loss;
  j["dtype"] = r.dtype;
  j["seed"] = r.seed;
  json ms = json::array();
  for (const MethodReport& m : reports) {
    json layers = json::array(), tensors = json::array();
    for (const Alignment& a : m.layers) layers.push_back(part_json(a));
    for (const Alignment& a : m.tensors) tensors.push_back(part_json(a));
    ms.push_back({{"method", m.method}, {"samples", m.samples}, {"layers", layers},
                  {"tensors", tensors}});
  }
  j["methods"] = ms;
  return j;
}

std::string cell(double v) { return std::isfinite(v) ? fmt::format("{:.4g}", v) : "-"; }

void print_table(const std::vector<MethodReport>& reports, int T, int B) {
  fmt::print("methods against full BPTT (T = {}, B = {}): cosine and norm ratio are the samples' "
             "mean;\nbias = ||mean - g|| / ||g||, variance = E||g_s - mean||^2 / ||g||^2\n\n",
             T, B);
  fmt::print("{:<14} {:>7}  {:<24} {:>9} {:>10} {:>10} {:>10}\n", "method", "samples", "part",
             "cosine", "norm ratio", "bias", "variance");
  for (const MethodReport& m : reports) {
    bool first = true;
    const auto row = [&](const Alignment& a, const std::string& indent) {
      fmt::print("{:<14} {:>7}  {:<24} {:>9} {:>10} {:>10} {:>10}\n", first ? m.method : "",
                 first ? std::to_string(m.samples) : "", indent + a.name, cell(a.cosine),
                 cell(a.norm_ratio), cell(a.bias), cell(a.variance));
      first = false;
    };
    for (const Alignment& a : m.layers) row(a, "");
    for (const Alignment& a : m.tensors) row(a, "  ");
  }
}

// methods.dat: one block per method (gnuplot index), a row per layer part.
std::string data_file(const std::vector<MethodReport>& reports) {
  std::string s = "# per method (one block each): part cosine norm_ratio bias variance\n";
  for (const MethodReport& m : reports) {
    s += "# " + m.method + "\n";
    for (const Alignment& a : m.layers)
      s += fmt::format("{} {} {} {} {}\n", a.name, std::isfinite(a.cosine) ? fmt::format("{:.17g}", a.cosine) : "NaN",
                       std::isfinite(a.norm_ratio) ? fmt::format("{:.17g}", a.norm_ratio) : "NaN",
                       fmt::format("{:.17g}", a.bias), fmt::format("{:.17g}", a.variance));
    s += "\n\n";
  }
  return s;
}

// Two panels: the cosine of each layer part, and log10 of the relative variance, a bar per
// method within each part.
std::string script(const std::vector<MethodReport>& reports, const NameOf& name) {
  bool spread = false;  // a variance to draw (the stochastic methods with samples > 1)
  for (const MethodReport& m : reports)
    for (const Alignment& a : m.layers) spread = spread || a.variance > 1e-12;
  std::string s =
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 900,900 "
      "enhanced font ',10' } else { set terminal png size 900,900 }\n"
      "set output " + quoted(name("methods.png")) + "\n"
      "set datafile missing 'NaN'\nset style data histograms\nset style histogram clustered gap 1\n"
      "set style fill solid 0.8 border -1\nset grid ytics\nset key top right\n" +
      fmt::format("set multiplot layout {},1\n", spread ? 3 : 2);
  const std::string file = quoted(name("methods.dat"));
  const auto plot = [&](const std::string& column) {
    std::string p = "plot ";
    for (std::size_t i = 0; i < reports.size(); ++i)
      p += fmt::format("{}{} index {} using {}:xtic(1) title {}", i ? ", " : "", file, i, column,
                       quoted(reports[i].method));
    return p + "\n";
  };
  s += "set key outside right top\n";
  s += "set title 'cosine with the BPTT gradient (1: the same direction)' noenhanced\n"
       "set yrange [-1:1.05]\n";
  s += plot("2");
  s += "set title 'norm ratio ||g_method|| / ||g_BPTT||' noenhanced\nset yrange [0:*]\n";
  s += plot("3");
  if (spread) {
    s += "set title 'relative variance over the seeds, log10 (below 1e-12: not drawn)' "
         "noenhanced\nset yrange [*:*]\n";
    s += plot("($5 > 1e-12 ? log10($5) : NaN)");
  }
  s += "unset multiplot\nset output\n";
  return s;
}

}  // namespace

template <class Real>
void report_methods(const Model<Real>& model, const Batch<Real>& batch, LossKind loss,
                    const MethodsRun& r) {
  const auto reports = compare_methods(model, batch, loss, r.methods, r.samples, r.seed);
  const json j = report_json(reports, r, batch.T, batch.B);
  std::vector<std::string> written;
  if (!r.out.empty())
    written = write_drawn(
        r.out, {{"methods.json", j.dump(2) + "\n"}, {"methods.dat", data_file(reports)},
                {"methods.gp", "# Redraw with: cd DIR && gnuplot methods.gp\n" +
                                   script(reports, [](const std::string& n) { return n; })}},
        {"methods.png"}, [&](const NameOf& name) { return script(reports, name); });
  if (r.json) {
    emit(j.dump(2) + "\n");
    return;
  }
  print_table(reports, batch.T, batch.B);
  if (!written.empty()) {
    fmt::print("\nwritten to {}:", r.out);
    for (const std::string& p : written)
      fmt::print(" {}", std::filesystem::path(p).filename().string());
    fmt::print("\n");
  }
}

template <class Real>
std::string methods_json(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                         const MethodsRun& r) {
  const auto reports = compare_methods(model, batch, loss, r.methods, r.samples, r.seed);
  return report_json(reports, r, batch.T, batch.B).dump();
}

template std::string methods_json<float>(const Model<float>&, const BatchView<float>&, LossKind,
                                         const MethodsRun&);
template std::string methods_json<double>(const Model<double>&, const BatchView<double>&,
                                          LossKind, const MethodsRun&);
template void report_methods<float>(const Model<float>&, const Batch<float>&, LossKind,
                                    const MethodsRun&);
template void report_methods<double>(const Model<double>&, const Batch<double>&, LossKind,
                                     const MethodsRun&);

}  // namespace bptt::cli
