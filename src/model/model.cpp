#include "bptt/model.hpp"

#include <fmt/core.h>

#include <cmath>
#include <random>

#include "bptt/error.hpp"
#include "bptt/limits.hpp"

namespace bptt {

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int v, const char* field) {
    if (v < 1)
      throw Error(ErrorKind::value, where + ": " + field,
                  "must be at least 1, got " + std::to_string(v));
  };
  positive(input_size, "input_size");
  positive(hidden_size, "hidden_size");
  positive(num_layers, "num_layers");
  positive(output_size, "output_size");
  if (nonlinearity == Activation::softmax)
    throw Error(ErrorKind::usage, where + ": nonlinearity",
                "softmax is not an elementwise nonlinearity",
                "use tanh, relu, sigmoid or identity");
  if (cell != CellKind::elman && nonlinearity != Activation::tanh)
    throw Error(ErrorKind::usage, where + ": nonlinearity",
                std::string(to_string(nonlinearity)) + " given for a " +
                    std::string(to_string(cell)) + " cell",
                "only Elman cells take a nonlinearity; LSTM and GRU use tanh");
  if (proj_size != 0) {
    if (cell != CellKind::lstm)
      throw Error(ErrorKind::usage, where + ": proj_size",
                  fmt::format("{} given for a {} cell", proj_size, to_string(cell)),
                  "projections are an LSTM option (torch.nn.LSTM's proj_size); use 0");
    if (proj_size < 0 || proj_size >= hidden_size)
      throw Error(
          ErrorKind::value, where + ": proj_size",
          fmt::format("{} is outside 0 < proj_size < hidden_size = {}", proj_size, hidden_size),
          "a projection makes h narrower than the cell: pick 0 < P < H, or 0 for none");
  }
  if (!(zoneout_h >= 0 && zoneout_h < 1))
    throw Error(ErrorKind::value, where + ": zoneout_h", fmt::format("{} is outside [0, 1)", zoneout_h),
                "the probability that a unit keeps its previous value; 0 for none");
  if (!(zoneout_c >= 0 && zoneout_c < 1))
    throw Error(ErrorKind::value, where + ": zoneout_c", fmt::format("{} is outside [0, 1)", zoneout_c),
                "the probability that a cell unit keeps its previous value; 0 for none");
  if (zoneout_c != 0 && cell != CellKind::lstm)
    throw Error(ErrorKind::usage, where + ": zoneout_c",
                fmt::format("{} given for a {} cell", zoneout_c, to_string(cell)),
                "only an LSTM has a cell state; use zoneout_h");
  if (!head && output_size != output_width())
    throw Error(ErrorKind::shape, where + ": output_size",
                fmt::format("{} for a head-less model, whose output is the top layer's h of "
                            "D·H_out = {} values",
                            output_size, output_width()),
                fmt::format("set output_size to {}", output_width()));
  // Before param_count (which would overflow) and before any model is allocated.
  const double H = hidden_size, GH = double(gates()) * H, D = directions(), HO = state_size(),
               nb = bias ? 2 : 0, proj = proj_size > 0 ? double(proj_size) * H : 0,
               ln = layer_norm ? 2 * GH + (cell == CellKind::lstm ? 2 * H : 0) : 0;
  const double unit0 = GH * (double(input_size) + HO + nb) + proj + ln;
  const double unit = GH * (D * HO + HO + nb) + proj + ln;
  const double params = D * unit0 + double(num_layers - 1) * D * unit +
                        (head ? double(output_size) * (D * HO + 1) : 0) +
                        (initial_state == InitialState::learned ? double(num_layers) * D * 2 * H : 0);
  check_memory(params * sizeof(float), where,
               fmt::format("a model of {:.4g} parameters (L = {}, H = {}, I = {}, O = {})", params,
                           num_layers, hidden_size, input_size, output_size),
               "lower the hidden size or the number of layers");
}

std::vector<ParamInfo> param_layout(const ModelConfig& cfg) {
  std::vector<ParamInfo> out;
  std::size_t offset = 0;
  auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    out.push_back({std::move(name), std::move(shape), offset, n});
    offset += n;
  };
  const std::int64_t GH = std::int64_t(cfg.gates()) * cfg.hidden_size, HO = cfg.state_size();
  for (int k = 0; k < cfg.num_layers; ++k)
    for (int d = 0; d < cfg.directions(); ++d) {  // torch.nn.RNNBase's _flat_weights_names order
      const std::string s = std::to_string(k) + (d == 1 ? "_reverse" : "");
      add("rnn.weight_ih_l" + s, {GH, cfg.layer_input_size(k)});
      add("rnn.weight_hh_l" + s, {GH, HO});
      if (cfg.bias) {
        add("rnn.bias_ih_l" + s, {GH});
        add("rnn.bias_hh_l" + s, {GH});
      }
      if (cfg.proj_size > 0) add("rnn.weight_hr_l" + s, {cfg.proj_size, cfg.hidden_size});
      if (cfg.layer_norm) {
        add("rnn.ln_ih_weight_l" + s, {GH});
        add("rnn.ln_hh_weight_l" + s, {GH});
        if (cfg.cell == CellKind::lstm) {
          add("rnn.ln_c_weight_l" + s, {cfg.hidden_size});
          add("rnn.ln_c_bias_l" + s, {cfg.hidden_size});
        }
      }
    }
  if (cfg.head) {
    add("head.weight", {cfg.output_size, cfg.output_width()});
    add("head.bias", {cfg.output_size});
  }
  if (cfg.initial_state == InitialState::learned) {
    add("init.h0", {cfg.units(), HO});
    if (cfg.cell == CellKind::lstm) add("init.c0", {cfg.units(), cfg.hidden_size});
  }
  return out;
}

std::size_t param_count(const ModelConfig& cfg) {
  const std::vector<ParamInfo> layout = param_layout(cfg);
  return layout.back().offset + layout.back().size;
}

template <class Real>
ParamViews<Real>::ParamViews(const ModelConfig& cfg, Real* arena) {
  const std::size_t H = std::size_t(cfg.hidden_size), GH = std::size_t(cfg.gates()) * H,
                    HO = std::size_t(cfg.state_size()), P = std::size_t(cfg.proj_size);
  Real* p = arena;
  for (int k = 0; k < cfg.num_layers; ++k)
    for (int d = 0; d < cfg.directions(); ++d) {
      const int in = cfg.layer_input_size(k);
      LayerParams<Real> l{};
      l.w_ih = p, p += GH * std::size_t(in);
      l.w_hh = p, p += GH * HO;
      if (cfg.bias) {
        l.b_ih = p, p += GH;
        l.b_hh = p, p += GH;
      }
      if (P > 0) l.w_hr = p, p += P * H;
      if (cfg.layer_norm) {
        l.ln_ih = p, p += GH;
        l.ln_hh = p, p += GH;
        if (cfg.cell == CellKind::lstm) {
          l.ln_c_w = p, p += H;
          l.ln_c_b = p, p += H;
        }
      }
      l.in = in;
      layers.push_back(l);
    }
  rnn_end = p;
  w_o = b_o = h0 = c0 = nullptr;
  if (cfg.head) {
    w_o = p, p += std::size_t(cfg.output_size) * std::size_t(cfg.output_width());
    b_o = p, p += std::size_t(cfg.output_size);
  }
  if (cfg.initial_state == InitialState::learned) {
    h0 = p, p += std::size_t(cfg.units()) * HO;
    if (cfg.cell == CellKind::lstm) c0 = p;
  }
}

template <class Real>
void Model<Real>::init_uniform(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(cfg.hidden_size));
  std::uniform_real_distribution<double> u(-bound, bound);
  std::fill(params.begin(), params.end(), Real(0));
  const std::size_t recurrent = std::size_t(views().rnn_end - params.data());  // come first
  for (std::size_t i = 0; i < recurrent; ++i) params[i] = Real(u(rng));
  for (const auto& l : views().layers) {  // layer norm: γ = 1, β = 0 (drawn above, then set)
    if (l.ln_ih) std::fill(l.ln_ih, l.ln_ih + std::size_t(cfg.gates()) * cfg.hidden_size, Real(1));
    if (l.ln_hh) std::fill(l.ln_hh, l.ln_hh + std::size_t(cfg.gates()) * cfg.hidden_size, Real(1));
    if (l.ln_c_w) std::fill(l.ln_c_w, l.ln_c_w + cfg.hidden_size, Real(1));
    if (l.ln_c_b) std::fill(l.ln_c_b, l.ln_c_b + cfg.hidden_size, Real(0));
  }
  if (!cfg.head) return;
  // The head: nn.Linear's bound 1/sqrt(fan_in), fan_in = D·H_out (= H without the options, so
  // the draws are those of earlier versions).
  const double scale = std::sqrt(double(cfg.hidden_size) / double(cfg.output_width()));
  const std::size_t n_head = std::size_t(cfg.output_size) * (std::size_t(cfg.output_width()) + 1);
  for (std::size_t i = 0; i < n_head; ++i) params[recurrent + i] = Real(u(rng) * scale);
}

template struct ParamViews<float>;
template struct ParamViews<double>;
template struct ParamViews<const float>;
template struct ParamViews<const double>;
template <class Real>
void Model<Real>::check(const std::string& where) const {
  cfg.validate(where);
  if (params.size() != param_count(cfg))
    throw Error(ErrorKind::shape, where + ": params",
                fmt::format("holds {} values, but its configuration has {} parameters",
                            params.size(), param_count(cfg)),
                "construct the Model from its ModelConfig (Model(cfg)) or load it from a file");
}

template struct Model<float>;
template struct Model<double>;

}  // namespace bptt
