// Choosing a gradient method by name, and the batch slicing the segmented methods share.
#include <algorithm>
#include <charconv>
#include <cmath>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"

namespace bptt {

void require_options(const ModelConfig& cfg, const OptionSupport& support,
                     const std::string& where, const std::string& what) {
  if (cfg.bidirectional && support.causal)
    throw Error(ErrorKind::usage, where, "a bidirectional model cannot use " + what,
                "its right-to-left pass reads each sequence from its last step, and " + what +
                    " runs left to right only; use full BPTT (--method bptt) or recompute");
  if (cfg.readout == Readout::final_state && support.causal)
    throw Error(ErrorKind::usage, where,
                "a model whose head reads the final state (readout final) cannot use " + what,
                "every step's output depends on the sequence's end, and " + what +
                    " runs left to right only; use full BPTT (--method bptt) or recompute");
  if ((cfg.zoneout_h > 0 || cfg.zoneout_c > 0) && !support.zoneout)
    throw Error(ErrorKind::usage, where, "a model with zoneout cannot use " + what,
                what + "'s Jacobians are written for the cells without zoneout; use full "
                       "BPTT (--method bptt), recompute or truncated:K");
  if (cfg.layer_norm && !support.layer_norm)
    throw Error(ErrorKind::usage, where, "a layer-normalized model cannot use " + what,
                what + "'s Jacobians are written for the cells without layer norm; use full "
                       "BPTT (--method bptt), recompute or truncated:K");
}

GradMethodSpec parse_grad_method(std::string_view text, const std::string& where) {
  const auto colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  GradMethodSpec m;
  if (name == "bptt") m.method = GradMethod::bptt;
  else if (name == "recompute") m.method = GradMethod::recompute;
  else if (name == "truncated") m.method = GradMethod::truncated;
  else if (name == "rtrl") m.method = GradMethod::rtrl;
  else if (name == "numeric") m.method = GradMethod::numeric;
  else if (name == "uoro") m.method = GradMethod::uoro;
  else if (name == "kf-rtrl") m.method = GradMethod::kf_rtrl;
  else if (name == "snap1") m.method = GradMethod::snap1;
  else if (name == "eprop") m.method = GradMethod::eprop;
  else
    throw Error(ErrorKind::usage, where, "unknown method '" + std::string(text) + "'",
                "use bptt, recompute[:K], truncated:K, rtrl, uoro, kf-rtrl, snap1, eprop or "
                "numeric");
  const bool takes_k = m.method == GradMethod::recompute || m.method == GradMethod::truncated;
  if (colon == std::string_view::npos) {
    if (m.method == GradMethod::truncated)
      throw Error(ErrorKind::usage, where, "truncated needs its window K",
                  "write truncated:K, e.g. truncated:10");
    return m;
  }
  if (!takes_k)
    throw Error(ErrorKind::usage, where, "'" + std::string(name) + "' takes no ':K'",
                "write just " + std::string(name));
  const std::string_view k = text.substr(colon + 1);
  int v = 0;
  const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), v);
  if (ec != std::errc() || end != k.data() + k.size() || v < 1)
    throw Error(ErrorKind::value, where,
                "'" + std::string(k) + "' is not a window of at least 1 step",
                "write " + std::string(name) + ":K with a whole number K >= 1");
  m.K = v;
  return m;
}

std::string to_string(const GradMethodSpec& m) {
  switch (m.method) {
    case GradMethod::bptt: return "bptt";
    case GradMethod::recompute: return m.K ? "recompute:" + std::to_string(m.K) : "recompute";
    case GradMethod::truncated: return "truncated:" + std::to_string(m.K);
    case GradMethod::rtrl: return "rtrl";
    case GradMethod::numeric: return "numeric";
    case GradMethod::uoro: return "uoro";
    case GradMethod::kf_rtrl: return "kf-rtrl";
    case GradMethod::snap1: return "snap1";
    case GradMethod::eprop: return "eprop";
  }
  return "?";
}

template <class Real>
void slice_steps(const BatchArg<Real>& batch, int s, int e, Batch<Real>& out) {
  const std::size_t B = std::size_t(batch.B), n = std::size_t(e - s);
  const auto rows = [&](const auto& v, std::size_t width, auto& dst) {
    if (v.empty()) return dst.clear();
    const std::size_t first = std::size_t(s) * B * width;
    dst.assign(v.begin() + std::ptrdiff_t(first), v.begin() + std::ptrdiff_t(first + n * B * width));
  };
  out.T = e - s;
  out.B = batch.B;
  const std::size_t I = batch.T ? batch.x.size() / (std::size_t(batch.T) * B) : 0;
  const std::size_t O = batch.T && !batch.y.empty() ? batch.y.size() / (std::size_t(batch.T) * B) : 0;
  rows(batch.x, I, out.x);
  rows(batch.y, O, out.y);
  rows(batch.classes, 1, out.classes);
  rows(batch.mask, 1, out.mask);
  out.lengths.clear();
  if (!batch.lengths.empty())
    for (std::int64_t l : batch.lengths)
      out.lengths.push_back(std::clamp<std::int64_t>(l - s, 0, e - s));
  // The dropout masks are the sequences' own, the same at every step; zoneout flags are per
  // step ([T, L·D, B, ·]: B·width per step with width L·D·H_out).
  const auto whole = [](const auto& v, auto& dst) { dst.assign(v.begin(), v.end()); };
  whole(batch.mask_input, out.mask_input);
  whole(batch.mask_recurrent, out.mask_recurrent);
  whole(batch.mask_output, out.mask_output);
  whole(batch.mask_weight_hh, out.mask_weight_hh);
  const std::size_t T = std::size_t(batch.T);
  rows(batch.zoneout_h, batch.zoneout_h.size() / std::max<std::size_t>(1, T * B), out.zoneout_h);
  rows(batch.zoneout_c, batch.zoneout_c.size() / std::max<std::size_t>(1, T * B), out.zoneout_c);
}

template <class Real>
void slice_rows(const BatchArg<Real>& batch, int b0, int b1, int layers, Batch<Real>& out) {
  const std::size_t B = std::size_t(batch.B), n = std::size_t(b1 - b0);
  // v is [X, B, width]: keep rows [b0, b1) of every X.
  const auto cut = [&](const auto& v, std::size_t X, auto& dst) {
    dst.clear();
    if (v.empty()) return;
    const std::size_t width = v.size() / (X * B);
    for (std::size_t x = 0; x < X; ++x) {
      const auto first = v.begin() + std::ptrdiff_t((x * B + std::size_t(b0)) * width);
      dst.insert(dst.end(), first, first + std::ptrdiff_t(n * width));
    }
  };
  const std::size_t T = std::size_t(batch.T), L = std::size_t(layers);
  out.T = batch.T;
  out.B = int(n);
  cut(batch.x, T, out.x);
  cut(batch.y, T, out.y);
  cut(batch.classes, T, out.classes);
  cut(batch.mask, T, out.mask);
  out.lengths.clear();
  if (!batch.lengths.empty())
    out.lengths.assign(batch.lengths.begin() + b0, batch.lengths.begin() + b1);
  cut(batch.h0, L, out.h0);
  cut(batch.c0, L, out.c0);
  cut(batch.mask_input, 1, out.mask_input);
  cut(batch.mask_recurrent, L, out.mask_recurrent);
  cut(batch.mask_output, 1, out.mask_output);
  out.mask_weight_hh.assign(batch.mask_weight_hh.begin(), batch.mask_weight_hh.end());
  cut(batch.zoneout_h, T * L, out.zoneout_h);
  cut(batch.zoneout_c, T * L, out.zoneout_c);
}

template <class Real>
void require_no_masks(const BatchArg<Real>& batch, const std::string& where,
                      const std::string& what) {
  const char* name = !batch.mask_input.empty()       ? "mask_input"
                     : !batch.mask_recurrent.empty() ? "mask_recurrent"
                     : !batch.mask_output.empty()    ? "mask_output"
                     : !batch.mask_weight_hh.empty() ? "mask_weight_hh"
                     : !batch.zoneout_h.empty()      ? "zoneout_h"
                     : !batch.zoneout_c.empty()      ? "zoneout_c"
                                                     : nullptr;
  if (name)
    throw Error(ErrorKind::usage, where + ": " + name, what + " does not take dropout masks or zoneout flags",
                "use full BPTT (--method bptt) or recompute, or leave the masks out");
}

template <class Real>
double total_weight(const BatchArg<Real>& batch) {
  double W = 0;
  for (int t = 0; t < batch.T; ++t)
    for (int b = 0; b < batch.B; ++b) W += double(batch.weight(t, b));
  return W;
}

template void slice_steps<float>(const BatchView<float>&, int, int, Batch<float>&);
template void slice_steps<double>(const BatchView<double>&, int, int, Batch<double>&);
template void slice_rows<float>(const BatchView<float>&, int, int, int, Batch<float>&);
template void slice_rows<double>(const BatchView<double>&, int, int, int, Batch<double>&);
template void require_no_masks<float>(const BatchView<float>&, const std::string&,
                                      const std::string&);
template void require_no_masks<double>(const BatchView<double>&, const std::string&,
                                       const std::string&);
template double total_weight<float>(const BatchView<float>&);
template double total_weight<double>(const BatchView<double>&);

}  // namespace bptt
