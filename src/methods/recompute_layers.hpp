// Recompute for bidirectional models, layer by layer (methods.hpp, class Recompute): what
// recompute.cpp and recompute_layers.cpp share.
#pragma once

#include <cstddef>

#include <memory>
#include <vector>

#include "bptt/methods.hpp"
#include "bptt/model.hpp"

namespace bptt {

// Whether Recompute goes layer by layer: a bidirectional model, or a head that reads the final
// states (which the segments of the other path, cut across all layers, do not know in time).
inline bool recompute_by_layer(const ModelConfig& cfg) {
  return cfg.bidirectional || cfg.readout == Readout::final_state;
}

// One direction of layer k as a model of its own: one layer, left to right, input width
// cfg.layer_input_size(k), the same cell and options, a zero initial state (the caller passes
// every segment's) and a head of one output that is never used. Its parameter arena starts
// with the unit's tensors in the same order as the unit's slice of the whole model's arena.
ModelConfig recompute_unit_config(const ModelConfig& cfg, int k);

// The bytes Recompute holds for a bidirectional model (the buffers recompute_layers.cpp
// allocates), for recompute_bytes.
std::size_t recompute_layers_bytes(const ModelConfig& cfg, int T, int B, int K,
                                   std::size_t real_size, bool with_dropout);

// What Recompute keeps for a bidirectional model.
template <class Real>
struct Recompute<Real>::Layers {
  std::unique_ptr<Workspace<Real>> ws0, ws_up;  // one unit's segment: layer 0, layers above
  Model<Real> sub;                              // the current unit as a model of its own
  std::vector<Real> outs;          // [L, T, B, W] every layer's output, data order
  std::vector<Real> dout, dprev;   // [T, B, W] dL/d out(k), dL/d out(k−1)
  std::vector<Real> dh_above;      // [K, B, H_out] dL/d(a unit's outputs) in a segment
  std::vector<Real> z, yhat;       // [T, B, O]
  std::vector<Real> mask, drop;    // [T, B, W] dropout: layer k's mask and dropped input
  std::vector<int> len;            // [B]
  // Issue 18's masks, when the batch has them (sized on first use, outside the time loop):
  std::vector<Real> x_masked, dx;  // [T, B, I] x ⊙ mask_input and dL/dx̃
  std::vector<Real> top_masked;    // [T, B, W] the head's input ⊙ mask_output
};

}  // namespace bptt
