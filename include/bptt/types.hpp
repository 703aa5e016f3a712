// The project's vocabulary, written down once (see docs/conventions.md):
//   B batch size, T time steps, I input size, H hidden size, G gates per cell (Elman 1, LSTM 4,
//   GRU 3), L layers, O outputs. Tensors are time-major [T, B, ·] and row-major (C order).
//   Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bptt {

enum class CellKind { elman, lstm, gru };
// Elementwise (or, for softmax, row-wise) functions: Elman's φ and the readout's θ.
enum class Activation { identity, tanh, relu, sigmoid, softmax };
enum class LossKind { mse, bce, xent };
// f32, f64: the model's precision. bf16: a float model whose matrix products take bfloat16
// operands (bptt/precision.hpp); files and everything else stay float.
enum class DType { f32, f64, bf16 };
// Where each layer's initial state comes from when a batch gives none: zeros, or the trained
// tensors init.h0 / init.c0 (model.hpp).
enum class InitialState { zero, learned };
// What the head reads at step t: the top layer's output at t (steps), or at every step the
// top layer's final states [h_n(d = 0) ; h_n(d = 1)] (final: a sequence classifier, what
// PyTorch users write as head(cat(h_n[-2], h_n[-1]))).
enum class Readout { steps, final_state };

// Number of gate blocks G in the fused weight matrices [G·H, ·].
int gate_count(CellKind cell);

// Names as they appear in files and on the command line. parse_* throw bptt::Error naming
// `where` and listing the accepted values.
std::string_view to_string(CellKind v);
std::string_view to_string(Activation v);
std::string_view to_string(LossKind v);
std::string_view to_string(DType v);
std::string_view to_string(InitialState v);
std::string_view to_string(Readout v);
CellKind parse_cell(std::string_view s, const std::string& where);
Activation parse_activation(std::string_view s, const std::string& where);
LossKind parse_loss(std::string_view s, const std::string& where);
DType parse_dtype(std::string_view s, const std::string& where);
InitialState parse_initial_state(std::string_view s, const std::string& where);
Readout parse_readout(std::string_view s, const std::string& where);

}  // namespace bptt
