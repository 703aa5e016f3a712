#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cmath>
#include <set>

#include <fmt/core.h>

#include "bptt/error.hpp"
#include "bptt/import.hpp"
#include "bptt/io.hpp"
#include "kernels/matmul.hpp"

namespace bptt {

namespace {

using safetensors::ElemType;
using safetensors::File;

// Metadata keys that describe the network itself; the rest is Model::metadata.
const std::set<std::string> kConfigKeys = {"format", "format_version", "cell", "nonlinearity",
                                           "input_size", "hidden_size", "num_layers",
                                           "output_size", "output_activation",
                                           "bidirectional", "proj_size", "bias",
                                           "initial_state", "readout", "head",
                                           "layer_norm", "zoneout_h", "zoneout_c"};

std::string field(const File& f, const std::string& key) { return f.path() + ": __metadata__." + key; }

const std::string* meta(const File& f, const std::string& key) {
  auto it = f.metadata().find(key);
  return it == f.metadata().end() ? nullptr : &it->second;
}

int meta_size(const File& f, const std::string& key) {
  const std::string* s = meta(f, key);
  if (!s)
    throw Error(ErrorKind::format, field(f, key), "missing",
                "model files carry cell, input_size, hidden_size, num_layers, output_size");
  int v = 0;
  auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || end != s->data() + s->size() || v < 1)
    throw Error(ErrorKind::format, field(f, key),
                fmt::format("'{}{}' is not a positive integer", s->substr(0, 40),
                            s->size() > 40 ? "..." : ""));
  return v;
}

// A true/false key; `fallback` when absent.
bool meta_bool(const File& f, const std::string& key, bool fallback) {
  const std::string* s = meta(f, key);
  if (!s) return fallback;
  if (*s == "true") return true;
  if (*s == "false") return false;
  throw Error(
      ErrorKind::format, field(f, key),
      fmt::format("'{}{}' is not true or false", s->substr(0, 40), s->size() > 40 ? "..." : ""),
      "write true or false");
}

}  // namespace

ModelConfig read_model_config(const File& f) {
  ModelConfig cfg;
  const std::string* cell = meta(f, "cell");
  if (!cell)
    throw Error(ErrorKind::format, field(f, "cell"), "missing", "set it to elman, lstm or gru");
  cfg.cell = parse_cell(*cell, field(f, "cell"));
  if (const std::string* s = meta(f, "nonlinearity"))
    cfg.nonlinearity = parse_activation(*s, field(f, "nonlinearity"));
  if (const std::string* s = meta(f, "output_activation"))
    cfg.output_activation = parse_activation(*s, field(f, "output_activation"));
  cfg.input_size = meta_size(f, "input_size");
  cfg.hidden_size = meta_size(f, "hidden_size");
  cfg.num_layers = meta_size(f, "num_layers");
  cfg.output_size = meta_size(f, "output_size");
  // The torch.nn options (absent in files of earlier versions: their defaults).
  cfg.bidirectional = meta_bool(f, "bidirectional", false);
  cfg.bias = meta_bool(f, "bias", true);
  cfg.head = meta_bool(f, "head", true);
  cfg.layer_norm = meta_bool(f, "layer_norm", false);
  for (const auto& [key, value] : {std::pair{"zoneout_h", &cfg.zoneout_h}, {"zoneout_c", &cfg.zoneout_c}})
    if (const std::string* s = meta(f, key)) {
      double v = 0;
      auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
      if (ec != std::errc() || end != s->data() + s->size() || !(v >= 0 && v < 1))
        throw Error(ErrorKind::format, field(f, key),
                    fmt::format("'{}{}' is not a probability in [0, 1)", s->substr(0, 40),
                                s->size() > 40 ? "..." : ""),
                    "0 means no zoneout");
      *value = v;
    }
  if (const std::string* s = meta(f, "proj_size")) {
    int v = -1;
    auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc() || end != s->data() + s->size() || v < 0)
      throw Error(ErrorKind::format, field(f, "proj_size"),
                  fmt::format("'{}{}' is not an integer >= 0", s->substr(0, 40),
                              s->size() > 40 ? "..." : ""),
                  "0 means no projection");
    cfg.proj_size = v;
  }
  if (const std::string* s = meta(f, "initial_state"))
    cfg.initial_state = parse_initial_state(*s, field(f, "initial_state"));
  if (const std::string* s = meta(f, "readout")) cfg.readout = parse_readout(*s, field(f, "readout"));
  cfg.validate(f.path() + ": __metadata__");
  return cfg;
}

DType stored_dtype(const File& f) {
  // The precision of the first weight (any module's, in a plain state_dict); F16/BF16 files
  // compute in f32.
  const std::string first = "rnn.weight_ih_l0";
  if (f.has(first)) return f.at(first).dtype == ElemType::F64 ? DType::f64 : DType::f32;
  if (is_plain_state_dict(f))
    for (const std::string& n : f.names())
      if (n == "weight_ih_l0" || (n.size() > 13 && n.compare(n.size() - 13, 13, ".weight_ih_l0") == 0))
        return f.at(n).dtype == ElemType::F64 ? DType::f64 : DType::f32;
  return DType::f64;
}

template <class Real>
Model<Real> load_model(const File& f) {
  // A PyTorch state_dict without bptt's metadata: the model inferred from names and shapes.
  if (is_plain_state_dict(f)) return import_model<Real>(f, plan_import(f));
  const ModelConfig cfg = read_model_config(f);
  // Each layer's first weight is in the file before the layout of all of them is made: the
  // metadata alone must not make us build a layout the file cannot back (num_layers = 10⁸ in a
  // 200-byte file took minutes and gigabytes in param_layout: a fuzz_model finding).
  for (int k = 0; k < cfg.num_layers; ++k) (void)f.at("rnn.weight_ih_l" + std::to_string(k));
  const std::vector<ParamInfo> layout = param_layout(cfg);
  // Every shape is checked before anything is allocated: the metadata alone must not be able to
  // make us reserve memory the file does not back.
  std::set<std::string> expected;
  for (const ParamInfo& p : layout) {
    expected.insert(p.name);
    std::string shape = "[";
    for (std::size_t i = 0; i < p.shape.size(); ++i)
      shape += (i ? ", " : "") + std::to_string(p.shape[i]);
    shape += "] from the metadata";
    f.expect_shape(p.name, p.shape, shape);  // throws "missing tensor" when absent
  }
  for (const std::string& name : f.names())
    if (!expected.count(name))
      throw Error(ErrorKind::format, f.path() + ": " + name, "unexpected tensor for this model",
                  "a model file holds exactly the tensors its metadata describes (docs/"
                  "file_format.md): rnn.weight_ih_l{k}, rnn.weight_hh_l{k}, rnn.bias_ih_l{k}, "
                  "rnn.bias_hh_l{k} (with bias), rnn.weight_hr_l{k} (with proj_size), rnn.ln_*_l{k} (with layer_norm), their "
                  "_reverse twins (bidirectional), head.weight, head.bias (with a head), init.h0 and init.c0 "
                  "(initial_state learned)");
  Model<Real> model(cfg);
  for (const auto& [key, value] : f.metadata())
    if (!kConfigKeys.count(key)) model.metadata[key] = value;
  for (const ParamInfo& p : layout) {
    const std::vector<Real> v = f.as_real<Real>(p.name);
    require_finite(f, p.name, v);
    std::copy(v.begin(), v.end(), model.params.begin() + std::ptrdiff_t(p.offset));
  }
  return model;
}

template <class Real>
void require_finite(const safetensors::File& f, const std::string& name, const std::vector<Real>& v) {
  for (std::size_t k = 0; k < v.size(); ++k) {
    if (std::isfinite(v[k])) continue;
    std::string pos;
    std::size_t rest = k;
    const auto& shape = f.at(name).shape;
    for (std::size_t j = shape.size(); j-- > 0;) {
      const auto n = std::size_t(std::max<std::int64_t>(shape[j], 1));
      pos = std::to_string(rest % n) + (pos.empty() ? "" : ", ") + pos;
      rest /= n;
    }
    throw Error(ErrorKind::value, f.path() + ": " + name,
                "element [" + pos + "] is " +
                    (std::isnan(v[k]) ? "nan"
                     : v[k] > 0       ? "inf"
                                      : "-inf"),
                "the file holds non-finite numbers (written by a run that diverged, or damaged)");
  }
}

template void require_finite<float>(const safetensors::File&, const std::string&,
                                    const std::vector<float>&);
template void require_finite<double>(const safetensors::File&, const std::string&,
                                     const std::vector<double>&);

std::vector<std::pair<std::string, std::string>> config_metadata(const ModelConfig& c) {
  return {{"cell", std::string(to_string(c.cell))},
          {"nonlinearity", std::string(to_string(c.nonlinearity))},
          {"input_size", std::to_string(c.input_size)},
          {"hidden_size", std::to_string(c.hidden_size)},
          {"num_layers", std::to_string(c.num_layers)},
          {"output_size", std::to_string(c.output_size)},
          {"output_activation", std::string(to_string(c.output_activation))},
          {"bidirectional", c.bidirectional ? "true" : "false"},
          {"proj_size", std::to_string(c.proj_size)},
          {"bias", c.bias ? "true" : "false"},
          {"initial_state", std::string(to_string(c.initial_state))},
          {"readout", std::string(to_string(c.readout))},
          {"head", c.head ? "true" : "false"},
          {"layer_norm", c.layer_norm ? "true" : "false"},
          {"zoneout_h", fmt::format("{}", c.zoneout_h)},
          {"zoneout_c", fmt::format("{}", c.zoneout_c)}};
}

namespace {

// A parameter tensor as BF16: the upper 16 bits of each value rounded to bfloat16, little-endian.
template <class Real>
safetensors::Tensor bf16_tensor(const ParamInfo& p, const Real* v) {
  safetensors::Tensor t;
  t.dtype = ElemType::BF16;
  t.shape = p.shape;
  t.bytes.resize(p.size * 2);
  for (std::size_t i = 0; i < p.size; ++i) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(kernels::round_bf16(float(v[i])));
    t.bytes[2 * i] = std::byte(u >> 16 & 0xffu);
    t.bytes[2 * i + 1] = std::byte(u >> 24 & 0xffu);
  }
  return t;
}

template <class Real>
constexpr DType own_dtype = std::is_same_v<Real, float> ? DType::f32 : DType::f64;

// The metadata and the parameters, stored as `stored` (f32, f64 or bf16).
template <class Real>
void add_model_as(const Model<Real>& model, safetensors::Writer& w, DType stored) {
  const ModelConfig& c = model.cfg;
  for (const auto& [key, value] : model.metadata) w.set_metadata(key, value);
  for (const auto& [key, value] : config_metadata(c)) w.set_metadata(key, value);
  std::vector<double> d;
  std::vector<float> f;
  for (const ParamInfo& p : param_layout(c)) {
    const Real* v = model.params.data() + p.offset;
    if (stored == own_dtype<Real>) {
      w.add(p.name, p.shape, v);
    } else if (stored == DType::bf16) {
      w.add(p.name, bf16_tensor(p, v));
    } else if (stored == DType::f64) {
      d.assign(v, v + p.size);
      w.add(p.name, p.shape, d.data());
    } else {
      f.resize(p.size);
      for (std::size_t i = 0; i < p.size; ++i) f[i] = float(v[i]);
      w.add(p.name, p.shape, f.data());
    }
  }
}

}  // namespace

template <class Real>
void add_model(const Model<Real>& model, safetensors::Writer& w) {
  add_model_as(model, w, own_dtype<Real>);
}

template <class Real>
void save_model(const Model<Real>& model, const std::string& path) {
  save_model(model, path, own_dtype<Real>);
}

template <class Real>
void save_model(const Model<Real>& model, const std::string& path, DType stored) {
  safetensors::Writer w;
  add_model_as(model, w, stored);
  w.set_metadata("format", "bptt-model");
  w.set_metadata("format_version", "1");
  w.write(path);
}

template Model<float> load_model<float>(const File&);
template Model<double> load_model<double>(const File&);
template void add_model<float>(const Model<float>&, safetensors::Writer&);
template void add_model<double>(const Model<double>&, safetensors::Writer&);
template void save_model<float>(const Model<float>&, const std::string&);
template void save_model<double>(const Model<double>&, const std::string&);
template void save_model<float>(const Model<float>&, const std::string&, DType);
template void save_model<double>(const Model<double>&, const std::string&, DType);

}  // namespace bptt
