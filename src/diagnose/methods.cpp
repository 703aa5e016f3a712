// compare_methods (include/bptt/diagnose.hpp): an approximate gradient method against full BPTT,
// per tensor, per layer and over all parameters: cosine, norm ratio, and over seeds the bias of
// the mean and the variance (docs/diagnostics.md, "Methods against BPTT").
#include <cmath>
#include <limits>
#include <type_traits>

#include "bptt/diagnose.hpp"
#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "bptt/unroll.hpp"

namespace bptt {
namespace {

// The layer a tensor belongs to: "l0" for rnn.*_l0, "l0_reverse" for rnn.*_l0_reverse, "head"
// for head.*, "init" for init.*.
std::string part_of(const std::string& name) {
  if (name.rfind("rnn.", 0) == 0) {
    const auto at = name.rfind("_l");
    if (at != std::string::npos) return name.substr(at + 1);
  }
  return name.substr(0, name.find('.'));
}

// The alignment of samples (each a whole arena) against g over the index ranges of one part.
Alignment align(const std::string& name, const std::vector<std::vector<double>>& samples,
                const std::vector<double>& g,
                const std::vector<std::pair<std::size_t, std::size_t>>& ranges) {
  const auto each = [&](auto&& f) {
    for (const auto& [from, to] : ranges)
      for (std::size_t i = from; i < to; ++i) f(i);
  };
  double gg = 0;
  each([&](std::size_t i) { gg += g[i] * g[i]; });
  const double gn = std::sqrt(gg);
  const double N = double(samples.size());
  Alignment a;
  a.name = name;
  std::vector<double> mean(g.size(), 0.0);
  for (const auto& s : samples) {
    double ss = 0, sg = 0;
    each([&](std::size_t i) {
      ss += s[i] * s[i];
      sg += s[i] * g[i];
      mean[i] += s[i] / N;
    });
    const double sn = std::sqrt(ss);
    a.cosine += (sn == 0 && gn == 0 ? 1.0 : sn == 0 || gn == 0 ? 0.0 : sg / (sn * gn)) / N;
    a.norm_ratio += (gn > 0 ? sn / gn : std::numeric_limits<double>::quiet_NaN()) / N;
  }
  double bias2 = 0, spread = 0;
  each([&](std::size_t i) { bias2 += (mean[i] - g[i]) * (mean[i] - g[i]); });
  for (const auto& s : samples) each([&](std::size_t i) { spread += (s[i] - mean[i]) * (s[i] - mean[i]); });
  a.bias = gn > 0 ? std::sqrt(bias2) / gn : std::sqrt(bias2);
  a.variance = samples.size() > 1 ? spread / ((N - 1) * (gn > 0 ? gg : 1.0)) : 0.0;
  return a;
}

template <class Real>
std::vector<double> gradient_of(const GradMethodSpec& m, std::uint64_t seed,
                                const Model<Real>& model, const BatchArg<Real>& batch,
                                LossKind loss) {
  Gradients<Real> g(model.cfg, batch.T, batch.B);
  g.zero();
  switch (m.method) {
    case GradMethod::bptt: {
      Workspace<Real> ws(model.cfg, batch.T, batch.B);
      loss_and_gradients(model, batch, loss, ws, g);
      break;
    }
    case GradMethod::recompute: {
      Recompute<Real> r(model.cfg, batch.T, batch.B, m.K ? m.K : default_recompute_interval(batch.T));
      r.loss_and_gradients(model, batch, loss, g);
      break;
    }
    case GradMethod::truncated: truncated_loss_and_gradients(model, batch, loss, m.K, g); break;
    case GradMethod::rtrl: rtrl_loss_and_gradients(model, batch, loss, g); break;
    case GradMethod::numeric:
      if constexpr (std::is_same_v<Real, double>) {
        numeric_loss_and_gradients(model, batch, loss, g);
        break;
      } else {
        throw Error(ErrorKind::usage, "--methods", "numeric differences are taken in f64 only",
                    "use --dtype f64");
      }
    case GradMethod::uoro:
    case GradMethod::kf_rtrl:
    case GradMethod::snap1:
    case GradMethod::eprop:
      online_loss_and_gradients(online_method(m.method), seed, model, batch, loss, g);
      break;
  }
  return std::vector<double>(g.params.begin(), g.params.end());
}

}  // namespace

template <class Real>
std::vector<MethodReport> compare_methods(const Model<Real>& model, const BatchArg<Real>& batch,
                                          LossKind loss, const std::vector<std::string>& methods,
                                          int samples, std::uint64_t seed) {
  if (samples < 1)
    throw Error(ErrorKind::value, "--samples", "must be at least 1", "");
  std::vector<GradMethodSpec> specs;
  for (const std::string& m : methods) specs.push_back(parse_grad_method(m, "--methods"));
  const std::vector<double> exact = gradient_of<Real>({}, seed, model, batch, loss);
  // The parts: each tensor, each layer (in order of first appearance), all.
  const auto layout = param_layout(model.cfg);
  std::vector<std::pair<std::string, std::vector<std::pair<std::size_t, std::size_t>>>> layers;
  for (const ParamInfo& p : layout) {
    const std::string part = part_of(p.name);
    if (layers.empty() || layers.back().first != part) layers.push_back({part, {}});
    layers.back().second.push_back({p.offset, p.offset + p.size});
  }
  std::vector<MethodReport> out;
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const GradMethodSpec& m = specs[k];
    const bool random = m.method == GradMethod::uoro || m.method == GradMethod::kf_rtrl;
    MethodReport r;
    r.method = methods[k];
    r.samples = random ? samples : 1;
    std::vector<std::vector<double>> got;
    for (int s = 0; s < r.samples; ++s)
      got.push_back(gradient_of<Real>(m, seed + std::uint64_t(s), model, batch, loss));
    for (const ParamInfo& p : layout)
      r.tensors.push_back(align(p.name, got, exact, {{p.offset, p.offset + p.size}}));
    for (const auto& [name, ranges] : layers) r.layers.push_back(align(name, got, exact, ranges));
    r.layers.push_back(align("all", got, exact, {{0, exact.size()}}));
    out.push_back(std::move(r));
  }
  return out;
}

template std::vector<MethodReport> compare_methods<float>(const Model<float>&,
                                                          const BatchView<float>&, LossKind,
                                                          const std::vector<std::string>&, int,
                                                          std::uint64_t);
template std::vector<MethodReport> compare_methods<double>(const Model<double>&,
                                                           const BatchView<double>&, LossKind,
                                                           const std::vector<std::string>&, int,
                                                           std::uint64_t);

}  // namespace bptt
