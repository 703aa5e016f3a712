#include "bptt/batch.hpp"

#include <cmath>

#include "bptt/error.hpp"

namespace bptt {

namespace {

template <class V>
void expect_size(const V& v, std::size_t n, const std::string& where, const std::string& name,
                 const std::string& shape) {
  if (v.size() != n)
    throw Error(where + ": " + name,
                "has " + std::to_string(v.size()) + " elements, expected " + shape + " = " +
                    std::to_string(n));
}

std::string dims(std::initializer_list<std::size_t> d) {
  std::string s = "[";
  for (auto it = d.begin(); it != d.end(); ++it) s += (it == d.begin() ? "" : ", ") + std::to_string(*it);
  return s + "]";
}

}  // namespace

template <class Real>
void Batch<Real>::validate(const ModelConfig& cfg, const std::string& where) const {
  if (T < 1 || B < 1)
    throw Error(where + ": x", "needs at least one time step and one sequence, got T = " +
                                   std::to_string(T) + ", B = " + std::to_string(B));
  const std::size_t t = std::size_t(T), b = std::size_t(B), I = std::size_t(cfg.input_size),
                    H = std::size_t(cfg.hidden_size), L = std::size_t(cfg.num_layers);
  expect_size(x, t * b * I, where, "x", "[T, B, I] " + dims({t, b, I}));
  for (Real v : x)
    if (!std::isfinite(v)) throw Error(where + ": x", "contains a non-finite value");
  if (!lengths.empty()) {
    expect_size(lengths, b, where, "lengths", "[B] " + dims({b}));
    for (std::size_t i = 0; i < b; ++i)
      if (lengths[i] < 0 || lengths[i] > T)
        throw Error(where + ": lengths",
                    "lengths[" + std::to_string(i) + "] = " + std::to_string(lengths[i]) +
                        " is outside [0, T = " + std::to_string(T) + "]",
                    "a sequence cannot be longer than the time axis of x");
  }
  if (!mask.empty()) {
    expect_size(mask, t * b, where, "mask", "[T, B] " + dims({t, b}));
    for (Real v : mask)
      if (!std::isfinite(v) || v < Real(0))
        throw Error(where + ": mask", "contains " + std::to_string(double(v)),
                    "mask values are step weights and must be finite and >= 0");
  }
  auto finite = [&](const std::vector<Real>& v, const char* name) {
    for (Real e : v)
      if (!std::isfinite(e)) throw Error(where + ": " + name, "contains a non-finite value");
  };
  if (!h0.empty()) expect_size(h0, L * b * H, where, "h0", "[L, B, H] " + dims({L, b, H}));
  finite(h0, "h0");
  finite(c0, "c0");
  if (!c0.empty()) {
    if (cfg.cell != CellKind::lstm)
      throw Error(where + ": c0", "given, but a " + std::string(to_string(cfg.cell)) +
                                      " cell has no cell state", "remove c0 or use an LSTM model");
    expect_size(c0, L * b * H, where, "c0", "[L, B, H] " + dims({L, b, H}));
  }
}

template <class Real>
void Batch<Real>::validate(const ModelConfig& cfg, LossKind loss, const std::string& where) const {
  validate(cfg, where);
  const std::size_t t = std::size_t(T), b = std::size_t(B), O = std::size_t(cfg.output_size);
  switch (loss) {
    case LossKind::mse:
    case LossKind::bce:
      if (y.empty() && !classes.empty())
        throw Error(where + ": y", "holds class indices, but the " +
                                       std::string(to_string(loss)) + " loss needs values",
                    "use --loss xent for class indices, or store y as F32/F64 [T, B, O]");
      expect_size(y, t * b * O, where, "y", "[T, B, O] " + dims({t, b, O}));
      for (Real v : y)
        if (!std::isfinite(v)) throw Error(where + ": y", "contains a non-finite value");
      if (loss == LossKind::bce)
        for (Real v : y)
          if (v < Real(0) || v > Real(1))
            throw Error(where + ": y", "value " + std::to_string(double(v)) + " is outside [0, 1]",
                        "bce targets are probabilities");
      break;
    case LossKind::xent:
      if (classes.empty() && !y.empty())
        throw Error(where + ": y", "holds real values, but the xent loss needs class indices",
                    "store y as I64 or I32 [T, B]");
      expect_size(classes, t * b, where, "y", "[T, B] " + dims({t, b}));
      for (std::size_t i = 0; i < classes.size(); ++i)
        if (classes[i] < 0 || classes[i] >= std::int64_t(O))
          throw Error(where + ": y",
                      "class index " + std::to_string(classes[i]) + " at [t=" +
                          std::to_string(i / b) + ", b=" + std::to_string(i % b) +
                          "] is outside [0, O = " + std::to_string(O) + ")",
                      "class indices must be smaller than the model's output_size");
      break;
  }
  double total = 0;
  for (int ti = 0; ti < T; ++ti)
    for (int bi = 0; bi < B; ++bi) total += double(weight(ti, bi));
  if (!(total > 0))
    throw Error(where + ": mask", "no step has a positive weight (mask · [t < lengths])",
                "at least one step must count towards the loss");
}

template struct Batch<float>;
template struct Batch<double>;

}  // namespace bptt
