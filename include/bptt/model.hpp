// A stacked recurrent network with a linear readout, and its parameters in one flat arena.
//
//   layer k = 0..L-1:  gates_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh   (G·H wide)
//                      Elman: h_t = φ(gates_t);  LSTM (i,f,g,o) / GRU (r,z,n): see docs/math.md
//                      x_t is the data for k = 0 and layer k-1's h_t otherwise
//   head:              z_t = h_t W_o^T + b_o (top layer),  ŷ_t = θ(z_t)
//
// Parameters live in one contiguous arena in PyTorch state_dict order; the gradient arena has the
// same layout, so the optimizer, clipping and file I/O work on one flat span. Names and shapes:
//   rnn.weight_ih_l{k} [G·H, I or H]   rnn.weight_hh_l{k} [G·H, H]
//   rnn.bias_ih_l{k}   [G·H]           rnn.bias_hh_l{k}   [G·H]     for k = 0..L-1, then
//   head.weight        [O, H]          head.bias          [O]
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bptt/types.hpp"

namespace bptt {

struct ModelConfig {
  CellKind cell = CellKind::lstm;
  Activation nonlinearity = Activation::tanh;          // φ, Elman only (tanh for LSTM/GRU)
  Activation output_activation = Activation::identity;  // θ
  int input_size = 0;   // I
  int hidden_size = 0;  // H
  int num_layers = 1;   // L
  int output_size = 0;  // O

  int gates() const { return gate_count(cell); }  // G
  int layer_input_size(int k) const { return k == 0 ? input_size : hidden_size; }
  // Throws bptt::Error (where = `where`) for sizes < 1, φ = softmax, or φ ≠ tanh for LSTM/GRU.
  void validate(const std::string& where = "model") const;
};

// One named tensor of the arena.
struct ParamInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // in elements from the arena start
  std::size_t size = 0;    // elements
};

// The arena layout in state_dict order (see the table above).
std::vector<ParamInfo> param_layout(const ModelConfig& cfg);
std::size_t param_count(const ModelConfig& cfg);

// Named views into an arena (parameters or gradients; both have the same layout).
template <class Real>
struct LayerParams {
  Real* w_ih;  // [G·H, in]  in = I for layer 0, H above
  Real* w_hh;  // [G·H, H]
  Real* b_ih;  // [G·H]
  Real* b_hh;  // [G·H]
  int in;      // input width of this layer
};

template <class Real>
struct ParamViews {
  std::vector<LayerParams<Real>> layers;  // L entries
  Real* w_o;                              // [O, H]
  Real* b_o;                              // [O]
  ParamViews(const ModelConfig& cfg, Real* arena);
};

template <class Real>
struct Model {
  ModelConfig cfg;
  std::vector<Real> params;  // param_count(cfg) elements, layout param_layout(cfg)
  // What a task stores beside the network (vocabulary, normalisation, class names), saved in
  // the file's __metadata__ next to the configuration keys and read back unchanged.
  std::map<std::string, std::string> metadata;

  Model() = default;
  explicit Model(const ModelConfig& c) : cfg(c), params(param_count(c), Real(0)) {}
  ParamViews<Real> views() { return ParamViews<Real>(cfg, params.data()); }
  ParamViews<const Real> views() const { return ParamViews<const Real>(cfg, params.data()); }

  // PyTorch's default initialisation: every parameter uniform in [-1/sqrt(H), 1/sqrt(H)]
  // (the head uses 1/sqrt(H) too, as nn.Linear with fan_in = H).
  void init_uniform(std::uint64_t seed);
};

}  // namespace bptt
