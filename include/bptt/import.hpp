// PyTorch checkpoints as they are: a safetensors file holding a module's state_dict, written by
// `safetensors.torch.save_file(model.state_dict(), path)`, with no bptt metadata.
//
// The file must hold one nn.RNN / nn.LSTM / nn.GRU under any attribute path (its tensors end in
// weight_ih_l{k}[_reverse], weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k}: e.g.
// `encoder.lstm.weight_ih_l0`, or a bare module's `weight_ih_l0`) and one nn.Linear whose input
// width is the RNN's output width (`<path>.weight` [O, D·H_out], `<path>.bias` [O] optional) as
// the head. From names and shapes: the cell (gate rows 1, 4 or 3 times the hidden size), sizes,
// layers, directions, projection and bias. What they cannot say has defaults, or options: the
// Elman nonlinearity (tanh) and the readout's output activation (identity). F16 and BF16 tensors
// are converted.
//
// An ambiguous file (two RNNs, two possible heads, tensors that belong to neither) is refused with
// one line listing the candidates and the option that picks one (ImportOptions::rnn, ::head).
// A file without a Linear that fits (or with ImportOptions::no_head) gives a head-less model: its
// output is the top layer's h, D·H_out wide (ModelConfig::head = false).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bptt/model.hpp"
#include "bptt/safetensors.hpp"

namespace bptt {

struct ImportOptions {
  std::optional<Activation> nonlinearity;       // Elman's φ (default tanh); an error for LSTM/GRU
  std::optional<Activation> output_activation;  // θ of the head (default identity)
  std::optional<std::string> rnn;   // the RNN's attribute path ("encoder.lstm", "" for a bare
                                    // module); default: the only one in the file
  std::optional<std::string> head;  // the head's attribute path; default: the only Linear that fits
  bool no_head = false;  // a head-less model even where a Linear fits (excludes `head`)
};

// What a plain state_dict file holds, as bptt reads it.
struct ImportPlan {
  ModelConfig cfg;
  std::string rnn;   // attribute path of the RNN ("" for a bare module)
  std::string head;  // attribute path of the Linear head ("" for a bare one or none: cfg.head)
  bool head_bias = true;  // whether the Linear has a bias (bptt's head.bias is 0 otherwise)
  // bptt's parameter name -> the file's tensor name (empty: zeros, the missing Linear bias)
  std::vector<std::pair<std::string, std::string>> names;
};

// Whether the file looks like a plain state_dict: none of bptt's configuration keys (cell,
// input_size, hidden_size, num_layers, output_size) and a tensor named ...weight_ih_l0.
bool is_plain_state_dict(const safetensors::File& file);

// Infers the model from names and shapes. Throws bptt::Error naming the file (and tensor) for an
// ambiguous or unusable file.
ImportPlan plan_import(const safetensors::File& file, const ImportOptions& options = {});

// The model a plan describes, its parameters converted to Real (finite, checked).
template <class Real>
Model<Real> import_model(const safetensors::File& file, const ImportPlan& plan);

}  // namespace bptt
