#include "bptt/batch.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "bptt/error.hpp"

namespace bptt {

namespace {

template <class V>
void expect_size(const V& v, std::size_t n, const std::string& where, const std::string& name,
                 const std::string& shape) {
  if (v.size() != n)
    throw Error(ErrorKind::shape, where + ": " + name,
                "has " + std::to_string(v.size()) + " elements, expected " + shape + " = " +
                    std::to_string(n));
}

// The first non-finite element of v (laid out as `shape`), named by its position:
// "x: element [t=3, b=0, i=1] is nan (a value beyond float's range reads as inf)".
template <class V>
void check_finite(const V& v, std::initializer_list<std::size_t> shape, const char* axes,
                  const std::string& where, const std::string& name) {
  // First a pass the compiler vectorizes (no early exit; u − u is 0 exactly when u is finite:
  // inf − inf and nan − nan are nan), then, only when it finds one, the search for its position.
  // Python checks its arrays on every call: 2.4x the plain loop, at memory speed (33 us for
  // shape a's x [100, 32, 64] on the Zen 3 of docs/benchmarks.md).
  unsigned bad = 0;
  for (std::size_t k = 0; k < v.size(); ++k) bad |= unsigned(v[k] - v[k] != 0);
  if (!bad) return;
  for (std::size_t k = 0; k < v.size(); ++k) {
    if (std::isfinite(v[k])) continue;
    std::vector<std::size_t> idx(shape.size());
    std::size_t rest = k;
    for (std::size_t j = shape.size(); j-- > 0;) {
      const std::size_t n = std::max<std::size_t>(shape.begin()[j], 1);
      idx[j] = rest % n;
      rest /= n;
    }
    std::string pos;
    for (std::size_t j = 0; j < idx.size(); ++j)
      pos += (j ? ", " : "") + std::string(1, axes[j]) + "=" + std::to_string(idx[j]);
    throw Error(ErrorKind::value, where + ": " + name,
                "element [" + pos + "] is " +
                    (std::isnan(v[k]) ? "nan"
                     : v[k] > 0       ? "inf"
                                      : "-inf"),
                "input data must be finite; values beyond the precision's range read as inf");
  }
}

std::string dims(std::initializer_list<std::size_t> d) {
  std::string s = "[";
  for (auto it = d.begin(); it != d.end(); ++it) s += (it == d.begin() ? "" : ", ") + std::to_string(*it);
  return s + "]";
}

}  // namespace

template <class Real>
void BatchView<Real>::validate(const ModelConfig& cfg, const std::string& where) const {
  if (T < 1 || B < 1)
    throw Error(ErrorKind::shape, where + ": x",
                "needs at least one time step and one sequence, got T = " + std::to_string(T) +
                    ", B = " + std::to_string(B));
  const std::size_t t = std::size_t(T), b = std::size_t(B), I = std::size_t(cfg.input_size),
                    H = std::size_t(cfg.hidden_size), HO = std::size_t(cfg.state_size()),
                    L = std::size_t(cfg.units());  // L·D initial states, as torch's h0
  expect_size(x, t * b * I, where, "x", "[T, B, I] " + dims({t, b, I}));
  check_finite(x, {t, b, I}, "tbi", where, "x");
  if (!lengths.empty()) {
    expect_size(lengths, b, where, "lengths", "[B] " + dims({b}));
    for (std::size_t i = 0; i < b; ++i)
      if (lengths[i] < 0 || lengths[i] > T)
        throw Error(ErrorKind::value, where + ": lengths",
                    "lengths[" + std::to_string(i) + "] = " + std::to_string(lengths[i]) +
                        " is outside [0, T = " + std::to_string(T) + "]",
                    "a sequence cannot be longer than the time axis of x");
  }
  if (!mask.empty()) {
    expect_size(mask, t * b, where, "mask", "[T, B] " + dims({t, b}));
    for (Real v : mask)
      if (!std::isfinite(v) || v < Real(0))
        throw Error(ErrorKind::value, where + ": mask", "contains " + std::to_string(double(v)),
                    "mask values are step weights and must be finite and >= 0");
  }
  const char* layers = cfg.bidirectional ? "[L·D, B, " : "[L, B, ";
  if (!h0.empty())
    expect_size(h0, L * b * HO, where, "h0",
                layers + std::string(cfg.proj_size > 0 ? "P] " : "H] ") + dims({L, b, HO}));
  check_finite(h0, {L, b, HO}, "lbh", where, "h0");
  check_finite(c0, {L, b, H}, "lbh", where, "c0");
  if (!c0.empty()) {
    if (cfg.cell != CellKind::lstm)
      throw Error(ErrorKind::usage, where + ": c0",
                  "given, but a " + std::string(to_string(cfg.cell)) + " cell has no cell state",
                  "remove c0 or use an LSTM model");
    expect_size(c0, L * b * H, where, "c0", layers + std::string("H] ") + dims({L, b, H}));
  }
  check_shapes(cfg, where);  // the regularization tensors' sizes
  const auto multipliers = [&](std::span<const Real> m, const char* name) {
    for (std::size_t i = 0; i < m.size(); ++i)
      if (!std::isfinite(m[i]) || m[i] < Real(0))
        throw Error(ErrorKind::value, where + ": " + name,
                    fmt::format("element {} is {}", i, double(m[i])),
                    "a dropout mask holds the multipliers, 0 or 1/(1 - p): finite and >= 0");
  };
  const auto flags = [&](std::span<const Real> m, const char* name) {
    for (std::size_t i = 0; i < m.size(); ++i)
      if (m[i] != Real(0) && m[i] != Real(1))
        throw Error(ErrorKind::value, where + ": " + name,
                    fmt::format("element {} is {}", i, double(m[i])),
                    "zoneout flags are 0 (take the new value) or 1 (keep the previous one)");
  };
  multipliers(mask_input, "mask_input");
  multipliers(mask_recurrent, "mask_recurrent");
  multipliers(mask_output, "mask_output");
  multipliers(mask_weight_hh, "mask_weight_hh");
  flags(zoneout_h, "zoneout_h");
  flags(zoneout_c, "zoneout_c");
}

template <class Real>
void BatchView<Real>::validate(const ModelConfig& cfg, LossKind loss, const std::string& where) const {
  validate(cfg, where);
  const std::size_t t = std::size_t(T), b = std::size_t(B), O = std::size_t(cfg.output_size);
  switch (loss) {
    case LossKind::mse:
    case LossKind::bce:
      if (y.empty() && !classes.empty())
        throw Error(
            ErrorKind::usage, where + ": y",
            "holds class indices, but the " + std::string(to_string(loss)) + " loss needs values",
            "use --loss xent for class indices, or store y as F32/F64 [T, B, O]");
      expect_size(y, t * b * O, where, "y", "[T, B, O] " + dims({t, b, O}));
      check_finite(y, {t, b, O}, "tbo", where, "y");
      if (loss == LossKind::bce)
        for (Real v : y)
          if (v < Real(0) || v > Real(1))
            throw Error(ErrorKind::value, where + ": y",
                        "value " + std::to_string(double(v)) + " is outside [0, 1]",
                        "bce targets are probabilities");
      break;
    case LossKind::xent:
      if (classes.empty() && !y.empty())
        throw Error(ErrorKind::usage, where + ": y",
                    "holds real values, but the xent loss needs class indices",
                    "store y as I64 or I32 [T, B]");
      expect_size(classes, t * b, where, "y", "[T, B] " + dims({t, b}));
      for (std::size_t i = 0; i < classes.size(); ++i)
        if (classes[i] < 0 || classes[i] >= std::int64_t(O))
          throw Error(ErrorKind::value, where + ": y",
                      "class index " + std::to_string(classes[i]) +
                          " at [t=" + std::to_string(i / b) + ", b=" + std::to_string(i % b) +
                          "] is outside [0, O = " + std::to_string(O) + ")",
                      "class indices must be smaller than the model's output_size");
      break;
  }
  double total = 0;
  for (int ti = 0; ti < T; ++ti)
    for (int bi = 0; bi < B; ++bi) total += double(weight(ti, bi));
  if (!(total > 0))
    throw Error(ErrorKind::value, where + ": mask",
                "no step has a positive weight (mask · [t < lengths])",
                "at least one step must count towards the loss");
}

namespace {

void expect_elements(std::size_t have, std::size_t want, const std::string& where,
                     const char* name, const char* dims) {
  if (have != want)
    throw Error(ErrorKind::shape, where + ": " + name,
                fmt::format("has {} elements, expected {} = {}", have, dims, want));
}

// T, B, lengths and mask: what every pass reads.
template <class Real>
void check_steps(const BatchView<Real>& batch, const std::string& where) {
  const int T = batch.T, B = batch.B;
  if (T < 1 || B < 1)
    throw Error(ErrorKind::shape, where + ": x",
                fmt::format("needs at least one time step and one sequence, got T = {}, B = {}",
                            T, B));
  if (!batch.lengths.empty()) {
    expect_elements(batch.lengths.size(), std::size_t(B), where, "lengths", "[B]");
    for (int b = 0; b < B; ++b)
      if (batch.lengths[std::size_t(b)] < 0 || batch.lengths[std::size_t(b)] > T)
        throw Error(ErrorKind::value, where + ": lengths",
                    fmt::format("lengths[{}] = {} is outside [0, T = {}]", b,
                                batch.lengths[std::size_t(b)], T));
  }
  if (!batch.mask.empty())
    expect_elements(batch.mask.size(), std::size_t(T) * std::size_t(B), where, "mask", "[T, B]");
}

}  // namespace

template <class Real>
void BatchView<Real>::check_shapes(const ModelConfig& cfg, const std::string& where) const {
  check_steps(*this, where);
  const std::size_t t = std::size_t(T), b = std::size_t(B), I = std::size_t(cfg.input_size),
                    H = std::size_t(cfg.hidden_size), HO = std::size_t(cfg.state_size()),
                    L = std::size_t(cfg.units());
  expect_elements(x.size(), t * b * I, where, "x", "[T, B, I]");
  if (!h0.empty()) expect_elements(h0.size(), L * b * HO, where, "h0", "[L·D, B, H_out]");
  if (!c0.empty())
    expect_elements(c0.size(), cfg.cell == CellKind::lstm ? L * b * H : 0, where, "c0",
                    "[L·D, B, H] (LSTM only)");
  const std::size_t W = std::size_t(cfg.output_width()), GH = std::size_t(cfg.gates()) * H;
  const auto optional = [&](std::span<const Real> v, std::size_t n, const char* name,
                            const char* dims) {
    if (!v.empty()) expect_elements(v.size(), n, where, name, dims);
  };
  optional(mask_input, b * I, "mask_input", "[B, I]");
  optional(mask_recurrent, L * b * HO, "mask_recurrent", "[L·D, B, H_out]");
  optional(mask_output, b * W, "mask_output", "[B, D·H_out]");
  optional(mask_weight_hh, L * GH * HO, "mask_weight_hh", "[L·D, G·H, H_out]");
  optional(zoneout_h, t * L * b * HO, "zoneout_h", "[T, L·D, B, H_out]");
  optional(zoneout_c, cfg.cell == CellKind::lstm ? t * L * b * H : 0, "zoneout_c",
           "[T, L·D, B, H] (LSTM only)");
}

template <class Real>
void BatchView<Real>::check_targets(const ModelConfig& cfg, LossKind loss,
                                const std::string& where) const {
  check_steps(*this, where);
  const std::size_t n = std::size_t(T) * std::size_t(B);
  if (loss != LossKind::xent) {
    if (y.size() != n * std::size_t(cfg.output_size))
      throw Error(ErrorKind::shape, where + ": y",
                  fmt::format("has {} elements, expected [T, B, O] = {}", y.size(),
                              n * std::size_t(cfg.output_size)));
    return;
  }
  if (classes.size() != n)
    throw Error(ErrorKind::shape, where + ": y",
                fmt::format("has {} class indices, expected [T, B] = {}", classes.size(), n));
  for (std::size_t i = 0; i < n; ++i)
    if (classes[i] < 0 || classes[i] >= cfg.output_size)
      throw Error(ErrorKind::value, where + ": y",
                  fmt::format("class index {} at [t={}, b={}] is outside [0, O = {})", classes[i],
                              i / std::size_t(B), i % std::size_t(B), cfg.output_size));
}

// A Batch checks its view.
template <class Real>
void Batch<Real>::validate(const ModelConfig& cfg, const std::string& where) const {
  view().validate(cfg, where);
}
template <class Real>
void Batch<Real>::validate(const ModelConfig& cfg, LossKind loss, const std::string& where) const {
  view().validate(cfg, loss, where);
}
template <class Real>
void Batch<Real>::check_shapes(const ModelConfig& cfg, const std::string& where) const {
  view().check_shapes(cfg, where);
}
template <class Real>
void Batch<Real>::check_targets(const ModelConfig& cfg, LossKind loss,
                                const std::string& where) const {
  view().check_targets(cfg, loss, where);
}

template struct BatchView<float>;
template struct BatchView<double>;
template struct Batch<float>;
template struct Batch<double>;

}  // namespace bptt
