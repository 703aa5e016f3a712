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
      throw Error(where + ": " + field, "must be at least 1, got " + std::to_string(v));
  };
  positive(input_size, "input_size");
  positive(hidden_size, "hidden_size");
  positive(num_layers, "num_layers");
  positive(output_size, "output_size");
  if (nonlinearity == Activation::softmax)
    throw Error(where + ": nonlinearity", "softmax is not an elementwise nonlinearity",
                "use tanh, relu, sigmoid or identity");
  if (cell != CellKind::elman && nonlinearity != Activation::tanh)
    throw Error(where + ": nonlinearity",
                std::string(to_string(nonlinearity)) + " given for a " +
                    std::string(to_string(cell)) + " cell",
                "only Elman cells take a nonlinearity; LSTM and GRU use tanh");
  // Before param_count (which would overflow) and before any model is allocated.
  const double H = hidden_size, GH = double(gates()) * H;
  const double params = GH * (double(input_size) + H + 2) +
                        double(num_layers - 1) * GH * (2 * H + 2) + double(output_size) * (H + 1);
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
  const std::int64_t GH = std::int64_t(cfg.gates()) * cfg.hidden_size;
  for (int k = 0; k < cfg.num_layers; ++k) {
    const std::string s = std::to_string(k);
    add("rnn.weight_ih_l" + s, {GH, cfg.layer_input_size(k)});
    add("rnn.weight_hh_l" + s, {GH, cfg.hidden_size});
    add("rnn.bias_ih_l" + s, {GH});
    add("rnn.bias_hh_l" + s, {GH});
  }
  add("head.weight", {cfg.output_size, cfg.hidden_size});
  add("head.bias", {cfg.output_size});
  return out;
}

std::size_t param_count(const ModelConfig& cfg) {
  const std::size_t H = std::size_t(cfg.hidden_size), GH = std::size_t(cfg.gates()) * H;
  std::size_t n = 0;
  for (int k = 0; k < cfg.num_layers; ++k) n += GH * (std::size_t(cfg.layer_input_size(k)) + H + 2);
  return n + std::size_t(cfg.output_size) * (H + 1);
}

template <class Real>
ParamViews<Real>::ParamViews(const ModelConfig& cfg, Real* arena) {
  const std::size_t H = std::size_t(cfg.hidden_size), GH = std::size_t(cfg.gates()) * H;
  Real* p = arena;
  for (int k = 0; k < cfg.num_layers; ++k) {
    const int in = cfg.layer_input_size(k);
    LayerParams<Real> l{};
    l.w_ih = p, p += GH * std::size_t(in);
    l.w_hh = p, p += GH * H;
    l.b_ih = p, p += GH;
    l.b_hh = p, p += GH;
    l.in = in;
    layers.push_back(l);
  }
  w_o = p, p += std::size_t(cfg.output_size) * H;
  b_o = p;
}

template <class Real>
void Model<Real>::init_uniform(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(cfg.hidden_size));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (Real& p : params) p = Real(u(rng));
}

template struct ParamViews<float>;
template struct ParamViews<double>;
template struct ParamViews<const float>;
template struct ParamViews<const double>;
template struct Model<float>;
template struct Model<double>;

}  // namespace bptt
