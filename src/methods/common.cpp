// Choosing a gradient method by name, and the batch slicing the segmented methods share.
#include <algorithm>
#include <charconv>
#include <cmath>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"

namespace bptt {

GradMethodSpec parse_grad_method(std::string_view text, const std::string& where) {
  const auto colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  GradMethodSpec m;
  if (name == "bptt") m.method = GradMethod::bptt;
  else if (name == "recompute") m.method = GradMethod::recompute;
  else if (name == "truncated") m.method = GradMethod::truncated;
  else if (name == "rtrl") m.method = GradMethod::rtrl;
  else if (name == "numeric") m.method = GradMethod::numeric;
  else
    throw Error(where, "unknown method '" + std::string(text) + "'",
                "use bptt, recompute[:K], truncated:K, rtrl or numeric");
  const bool takes_k = m.method == GradMethod::recompute || m.method == GradMethod::truncated;
  if (colon == std::string_view::npos) {
    if (m.method == GradMethod::truncated)
      throw Error(where, "truncated needs its window K", "write truncated:K, e.g. truncated:10");
    return m;
  }
  if (!takes_k)
    throw Error(where, "'" + std::string(name) + "' takes no ':K'", "write just " + std::string(name));
  const std::string_view k = text.substr(colon + 1);
  int v = 0;
  const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), v);
  if (ec != std::errc() || end != k.data() + k.size() || v < 1)
    throw Error(where, "'" + std::string(k) + "' is not a window of at least 1 step",
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
  }
  return "?";
}

template <class Real>
void slice_steps(const Batch<Real>& batch, int s, int e, Batch<Real>& out) {
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
}

template <class Real>
double total_weight(const Batch<Real>& batch) {
  double W = 0;
  for (int t = 0; t < batch.T; ++t)
    for (int b = 0; b < batch.B; ++b) W += double(batch.weight(t, b));
  return W;
}

template void slice_steps<float>(const Batch<float>&, int, int, Batch<float>&);
template void slice_steps<double>(const Batch<double>&, int, int, Batch<double>&);
template double total_weight<float>(const Batch<float>&);
template double total_weight<double>(const Batch<double>&);

}  // namespace bptt
