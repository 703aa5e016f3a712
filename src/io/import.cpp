// PyTorch state_dict files without bptt metadata (include/bptt/import.hpp): the model inferred
// from tensor names and shapes.
#include "bptt/import.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "bptt/error.hpp"
#include "bptt/io.hpp"

namespace bptt {

namespace {

using safetensors::File;

// name = <prefix><kind>_l<k>[_reverse], prefix "" or ending in '.'.
struct RnnName {
  std::string prefix, kind;
  int layer = 0;
  bool reverse = false;
};

std::optional<RnnName> parse_rnn_name(const std::string& name) {
  static const std::regex re(R"(^(.*?)(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l([0-9]{1,4})(_reverse)?$)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  RnnName r{m[1].str(), m[2].str(), std::stoi(m[3].str()), m[4].matched};
  if (!r.prefix.empty() && r.prefix.back() != '.') return std::nullopt;
  return r;
}

// "encoder.lstm." -> "encoder.lstm"; "" -> "" (a bare module).
std::string path_of(const std::string& prefix) {
  return prefix.empty() ? prefix : prefix.substr(0, prefix.size() - 1);
}
std::string prefix_of(const std::string& path) { return path.empty() ? path : path + "."; }
std::string shown(const std::string& path) { return path.empty() ? "(the file's top level)" : path; }

std::string join(const std::vector<std::string>& v, std::size_t most = 6) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < most; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > most) s += fmt::format(", ... ({} in all)", v.size());
  return s;
}

const std::vector<std::int64_t>& shape2(const File& f, const std::string& name) {
  const auto& s = f.at(name).shape;
  if (s.size() != 2 || s[0] < 1 || s[1] < 1)
    throw Error(ErrorKind::shape, f.path() + ": " + name,
                fmt::format("has {} dimensions, not 2", s.size()),
                "a recurrent or linear weight is a matrix");
  return s;
}

}  // namespace

bool is_plain_state_dict(const File& f) {
  // A bptt file carries its configuration; one that lacks a key of it is a damaged bptt file
  // (and gets the error naming the key), not a state_dict. safetensors.torch.save_file writes
  // only {"format": "pt"}.
  for (const char* key : {"cell", "input_size", "hidden_size", "num_layers", "output_size"})
    if (f.metadata().count(key)) return false;
  for (const std::string& n : f.names())
    if (auto r = parse_rnn_name(n); r && r->kind == "weight_ih" && r->layer == 0 && !r->reverse)
      return true;
  return false;
}

ImportPlan plan_import(const File& f, const ImportOptions& o) {
  const std::string file = f.path();
  // 1. The recurrent module: every prefix with a weight_ih_l0.
  std::map<std::string, std::vector<std::string>> groups;  // prefix -> its tensors
  for (const std::string& n : f.names())
    if (auto r = parse_rnn_name(n)) groups[r->prefix].push_back(n);
  std::vector<std::string> candidates;
  for (const auto& [prefix, names] : groups)
    if (f.has(prefix + "weight_ih_l0")) candidates.push_back(path_of(prefix));
  if (candidates.empty())
    throw Error(ErrorKind::format, file,
                "holds no nn.RNN, nn.LSTM or nn.GRU (no tensor is named ...weight_ih_l0)",
                "a PyTorch checkpoint here is a safetensors file of a module's state_dict");
  ImportPlan plan;
  if (o.rnn) {
    if (std::find(candidates.begin(), candidates.end(), *o.rnn) == candidates.end())
      throw Error(ErrorKind::usage, file, "has no recurrent module at '" + *o.rnn + "'",
                  "its recurrent modules: " + join(candidates));
    plan.rnn = *o.rnn;
  } else if (candidates.size() > 1) {
    throw Error(ErrorKind::usage, file,
                fmt::format("holds {} recurrent modules: {}", candidates.size(), join(candidates)),
                "pick one with --rnn PATH");
  } else {
    plan.rnn = candidates.front();
  }
  const std::string rp = prefix_of(plan.rnn);
  const auto has = [&](const std::string& s) { return f.has(rp + s); };

  // 2. Its configuration from names and shapes.
  ModelConfig& cfg = plan.cfg;
  cfg.bidirectional = has("weight_ih_l0_reverse");
  cfg.bias = has("bias_ih_l0");
  int L = 0;
  while (has("weight_ih_l" + std::to_string(L))) ++L;
  cfg.num_layers = L;
  const auto& ih = shape2(f, rp + "weight_ih_l0");
  const auto& hh = shape2(f, rp + "weight_hh_l0");
  const std::int64_t rows = ih[0], HO = hh[1];
  cfg.input_size = int(ih[1]);
  std::int64_t H = HO;
  if (has("weight_hr_l0")) {
    const auto& hr = shape2(f, rp + "weight_hr_l0");
    if (hr[0] != HO)
      throw Error(ErrorKind::shape, file + ": " + rp + "weight_hr_l0",
                  fmt::format("has {} rows but weight_hh_l0 has {} columns", hr[0], HO),
                  "a projection maps the cell's H units to the P of h");
    H = hr[1];
    if (rows != 4 * H)
      throw Error(ErrorKind::shape, file + ": " + rp + "weight_ih_l0",
                  fmt::format("has {} rows; an LSTM with a projection of {} to {} needs 4·{} = {}",
                              rows, H, HO, H, 4 * H));
    cfg.cell = CellKind::lstm;
    cfg.proj_size = int(HO);
  } else {
    if (rows % H != 0 || (rows / H != 1 && rows / H != 3 && rows / H != 4))
      throw Error(ErrorKind::shape, file + ": " + rp + "weight_ih_l0",
                  fmt::format("has {} rows for a hidden size of {} (weight_hh_l0's columns): not "
                              "1, 3 or 4 gates",
                              rows, H),
                  "nn.RNN has H rows, nn.GRU 3H, nn.LSTM 4H");
    cfg.cell = rows == H ? CellKind::elman : rows == 3 * H ? CellKind::gru : CellKind::lstm;
  }
  cfg.hidden_size = int(H);
  if (o.nonlinearity) {
    if (cfg.cell != CellKind::elman)
      throw Error(ErrorKind::usage, "--nonlinearity",
                  "applies to nn.RNN only; " + shown(plan.rnn) + " is an " +
                      std::string(to_string(cfg.cell)),
                  "leave it out");
    cfg.nonlinearity = *o.nonlinearity;
  }
  if (o.output_activation) cfg.output_activation = *o.output_activation;

  // 3. The head: a Linear [O, D·H_out] outside the recurrent module.
  const std::set<std::string> rnn_names(groups[rp].begin(), groups[rp].end());
  const std::int64_t width = std::int64_t(cfg.directions()) * HO;
  std::vector<std::string> heads;
  for (const std::string& n : f.names()) {
    if (rnn_names.count(n)) continue;
    if (n != "weight" && !(n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0)) continue;
    const auto& s = f.at(n).shape;
    if (s.size() == 2 && s[1] == width && s[0] >= 1) heads.push_back(n.substr(0, n.size() - 6));
  }
  std::string hp;  // head prefix
  if (o.head && o.no_head)
    throw Error(ErrorKind::usage, "--no-head", "given with --head " + *o.head,
                "a model has a head or none: leave one of them out");
  if (o.no_head || (heads.empty() && !o.head)) {  // a head-less model: its output is h
    cfg.head = false;
    cfg.output_size = int(width);
    plan.head_bias = false;
  } else if (o.head) {
    hp = prefix_of(*o.head);
    if (!f.has(hp + "weight"))
      throw Error(ErrorKind::usage, file,
                  "has no tensor " + hp + "weight for the head '" + *o.head + "'",
                  heads.empty() ? "no Linear in the file reads the RNN's output width"
                                : "Linear layers that fit: " + join(heads));
  } else if (heads.size() > 1) {
    std::vector<std::string> paths;
    for (const std::string& h : heads) paths.push_back(shown(path_of(h)));
    throw Error(
        ErrorKind::usage, file,
        fmt::format("has {} Linear layers that could be the head: {}", heads.size(), join(paths)),
        "pick one with --head PATH");
  } else {
    hp = heads.front();
  }
  if (cfg.head) {
    plan.head = path_of(hp);
    const auto& hw = shape2(f, hp + "weight");
    if (hw[1] != width)
      throw Error(ErrorKind::shape, file + ": " + hp + "weight",
                  fmt::format("has {} columns, but the RNN's output is {} wide", hw[1], width),
                  "the head reads [h_fwd ; h_bwd] of the top layer");
    cfg.output_size = int(hw[0]);
    plan.head_bias = f.has(hp + "bias");
  }
  cfg.validate(file);

  // 4. Every parameter's source, shapes checked; nothing else in the file unless both modules
  // were named.
  std::set<std::string> used;
  for (const ParamInfo& p : param_layout(cfg)) {
    std::string src;
    if (p.name.rfind("rnn.", 0) == 0) src = rp + p.name.substr(4);
    else if (p.name == "head.weight") src = hp + "weight";
    else if (p.name == "head.bias") src = plan.head_bias ? hp + "bias" : "";
    if (!src.empty()) {
      f.expect_shape(src, p.shape, fmt::format("[{}] as inferred for a {} of {} layers",
                                               fmt::join(p.shape, ", "), to_string(cfg.cell),
                                               cfg.num_layers));
      used.insert(src);
    }
    plan.names.emplace_back(p.name, src);
  }
  std::vector<std::string> rest;
  for (const std::string& n : f.names())
    if (!used.count(n)) rest.push_back(n);
  for (const std::string& n : rest)
    if (rnn_names.count(n))
      throw Error(ErrorKind::format, file + ": " + n,
                  "does not belong to the model inferred for " + shown(plan.rnn),
                  fmt::format("a {} of {} layers{}{}", to_string(cfg.cell), cfg.num_layers,
                              cfg.bidirectional ? ", bidirectional" : "",
                              cfg.bias ? "" : ", without biases"));
  if (!rest.empty() && !(o.rnn && (o.head || o.no_head)))
    throw Error(ErrorKind::usage, file,
                "also holds tensors of neither the RNN nor the head: " + join(rest),
                "name the modules with --rnn PATH and --head PATH (or --no-head) to use them and "
                "ignore the rest");
  return plan;
}

template <class Real>
Model<Real> import_model(const File& f, const ImportPlan& plan) {
  Model<Real> model(plan.cfg);
  const std::vector<ParamInfo> layout = param_layout(plan.cfg);
  std::map<std::string, std::string> source(plan.names.begin(), plan.names.end());
  for (const ParamInfo& p : layout) {
    const std::string& src = source.at(p.name);
    if (src.empty()) continue;  // a Linear without bias: head.bias stays 0
    const std::vector<Real> v = f.as_real<Real>(src);
    require_finite(f, src, v);
    std::copy(v.begin(), v.end(), model.params.begin() + std::ptrdiff_t(p.offset));
  }
  model.metadata["imported_rnn"] = plan.rnn.empty() ? "(top level)" : plan.rnn;
  model.metadata["imported_head"] = !plan.cfg.head       ? "(none)"
                                   : plan.head.empty() ? "(top level)"
                                                       : plan.head;
  return model;
}

template Model<float> import_model<float>(const File&, const ImportPlan&);
template Model<double> import_model<double>(const File&, const ImportPlan&);

}  // namespace bptt
