// A stacked recurrent network with a linear readout, and its parameters in one flat arena.
//
//   layer k = 0..L-1, direction d = 0..D-1 (D = 2 when bidirectional; d = 1 reads the sequence
//   from its last valid step back to its first), one "unit" u = k·D + d each:
//                      gates_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh   (G·H wide)
//                      Elman: h_t = φ(gates_t);  LSTM (i,f,g,o) / GRU (r,z,n): see docs/math.md
//                      LSTM with a projection (proj_size P): h_t = (o ⊙ tanh c_t) W_hr^T, P wide
//                      layer norm: gates_t = LN(x_t W_ih^T) ⊙ γ_ih + b_ih + LN(h_{t-1} W_hh^T) ⊙ γ_hh
//                      + b_hh, and the LSTM's h_t = o ⊙ tanh(LN(c_t) ⊙ γ_c + β_c) (docs/math.md 8d)
//                      x_t is the data for k = 0 and [h_t of layer k-1, d = 0 ; d = 1] otherwise
//   head:              z_t = [h_t of the top layer's directions] W_o^T + b_o,  ŷ_t = θ(z_t)
//                      (readout final_state: [h_n of the top layer's directions] at every t);
//                      a head-less model (head = false, a PyTorch RNN without a Linear) has
//                      z_t = [h_t of the top layer's directions] itself, O = D·H_out
//
// H_out, the width of h (and of h0, h_n), is P with a projection and H otherwise; c stays H wide.
// Parameters live in one contiguous arena in PyTorch state_dict order; the gradient arena has the
// same layout, so the optimizer, clipping and file I/O work on one flat span. Names and shapes,
// with s = "" for d = 0 and "_reverse" for d = 1:
//   rnn.weight_ih_l{k}{s} [G·H, I or D·H_out]   rnn.weight_hh_l{k}{s} [G·H, H_out]
//   rnn.bias_ih_l{k}{s}   [G·H]   rnn.bias_hh_l{k}{s} [G·H]     (only with bias)
//   rnn.weight_hr_l{k}{s} [P, H]                                (only with a projection)
//   rnn.ln_ih_weight_l{k}{s} [G·H]  rnn.ln_hh_weight_l{k}{s} [G·H]   (only with layer norm)
//   rnn.ln_c_weight_l{k}{s} [H]     rnn.ln_c_bias_l{k}{s} [H]        (layer norm, LSTM only)
//   for k = 0..L-1, d = 0..D-1, then
//   head.weight [O, D·H_out]   head.bias [O]                    (only with a head)
//   init.h0     [L·D, H_out]   init.c0   [L·D, H] (LSTM)        (only with a learned initial state)
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
  bool bidirectional = false;  // D = 2: every layer also runs right to left
  int proj_size = 0;           // P: LSTM only, 0 < P < H; 0 = no projection
  bool bias = true;            // false: no bias_ih / bias_hh tensors (torch's bias=False)
  InitialState initial_state = InitialState::zero;  // learned: init.h0 / init.c0 are parameters
  Readout readout = Readout::steps;  // final_state: the head reads the top layer's h_n at every step
  bool layer_norm = false;  // Ba et al.'s layer-normalized cell (see above): LN over each row of
                            // the two products (G·H entries) and, for LSTM, of c (H entries);
                            // LN(v) = (v − mean v) / sqrt(var v + 1e-5), biased variance
  // Zoneout (Krueger et al. 2017): the probability that a unit of h (of c, LSTM) keeps its
  // value from the step before; in [0, 1). Training draws keep flags (Batch::zoneout_h); a
  // pass without flags uses the expectation h = z·h_prev + (1 − z)·h̄ (evaluation).
  double zoneout_h = 0, zoneout_c = 0;
  bool head = true;  // false: no linear readout, z_t is what the head would read (REQUIRES
                     // output_size = D·H_out); ŷ = θ(z) as with a head

  int gates() const { return gate_count(cell); }           // G
  int directions() const { return bidirectional ? 2 : 1; }  // D
  int units() const { return num_layers * directions(); }   // L·D
  int state_size() const { return proj_size > 0 ? proj_size : hidden_size; }  // H_out
  int output_width() const { return directions() * state_size(); }  // a layer's output, D·H_out
  int layer_input_size(int k) const { return k == 0 ? input_size : output_width(); }
  // Throws bptt::Error (where = `where`) for sizes < 1, φ = softmax, φ ≠ tanh for LSTM/GRU, a
  // projection outside 0 < P < H or on a cell other than LSTM, a head-less model whose
  // output_size is not D·H_out, or zoneout outside [0, 1) (zoneout_c on a cell other than
  // LSTM).
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
  Real* w_ih;  // [G·H, in]  in = I for layer 0, D·H_out above
  Real* w_hh;  // [G·H, H_out]
  Real* b_ih;  // [G·H]  nullptr without bias
  Real* b_hh;  // [G·H]  nullptr without bias
  Real* w_hr;  // [P, H] nullptr without a projection
  Real* ln_ih;    // [G·H] γ_ih, layer norm of x·W_ihᵀ; nullptr without layer norm
  Real* ln_hh;    // [G·H] γ_hh, layer norm of h·W_hhᵀ; nullptr without layer norm
  Real* ln_c_w;   // [H] γ_c, LSTM with layer norm; else nullptr
  Real* ln_c_b;   // [H] β_c, LSTM with layer norm; else nullptr
  int in;      // input width of this layer
};

template <class Real>
struct ParamViews {
  std::vector<LayerParams<Real>> layers;  // L·D entries, unit u = k·D + d
  Real* rnn_end;                           // one past the layers' tensors (the head's or
                                          // init's first, or the arena's end)
  Real* w_o;                              // [O, D·H_out]  nullptr without a head
  Real* b_o;                              // [O]           nullptr without a head
  Real* h0;                               // [L·D, H_out] nullptr unless the state is learned
  Real* c0;                               // [L·D, H] LSTM; nullptr unless learned
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
  // Throws bptt::Error (where = `where`) for an invalid cfg (ModelConfig::validate) or params
  // not holding param_count(cfg) values (kind shape). Every call that reads a model checks it.
  void check(const std::string& where = "model") const;
  ParamViews<Real> views() { return ParamViews<Real>(cfg, params.data()); }
  ParamViews<const Real> views() const { return ParamViews<const Real>(cfg, params.data()); }

  // PyTorch's default initialisation: every recurrent weight and bias uniform in
  // [-1/sqrt(H), 1/sqrt(H)] (W_hr too), the head in [-1/sqrt(D·H_out), 1/sqrt(D·H_out)] as
  // nn.Linear; layer norm's gains γ 1 and β_c 0 (nn.LayerNorm); a learned initial state zero.
  void init_uniform(std::uint64_t seed);
};

}  // namespace bptt
