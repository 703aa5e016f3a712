#include "bptt/types.hpp"

#include "bptt/error.hpp"

namespace bptt {

namespace {
// A user-supplied value for an error message: quoted and cut short.
std::string quoted(std::string_view s) {
  return "'" + std::string(s.substr(0, 40)) + (s.size() > 40 ? "...'" : "'");
}
}  // namespace

int gate_count(CellKind cell) {
  switch (cell) {
    case CellKind::elman: return 1;
    case CellKind::lstm: return 4;
    case CellKind::gru: return 3;
  }
  return 0;
}

std::string_view to_string(CellKind v) {
  switch (v) {
    case CellKind::elman: return "elman";
    case CellKind::lstm: return "lstm";
    case CellKind::gru: return "gru";
  }
  return "?";
}

std::string_view to_string(Activation v) {
  switch (v) {
    case Activation::identity: return "identity";
    case Activation::tanh: return "tanh";
    case Activation::relu: return "relu";
    case Activation::sigmoid: return "sigmoid";
    case Activation::softmax: return "softmax";
  }
  return "?";
}

std::string_view to_string(LossKind v) {
  switch (v) {
    case LossKind::mse: return "mse";
    case LossKind::bce: return "bce";
    case LossKind::xent: return "xent";
  }
  return "?";
}

std::string_view to_string(DType v) {
  switch (v) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
  }
  return "?";
}

std::string_view to_string(InitialState v) {
  switch (v) {
    case InitialState::zero: return "zero";
    case InitialState::learned: return "learned";
  }
  return "?";
}

std::string_view to_string(Readout v) {
  switch (v) {
    case Readout::steps: return "steps";
    case Readout::final_state: return "final";
  }
  return "?";
}

CellKind parse_cell(std::string_view s, const std::string& where) {
  for (CellKind v : {CellKind::elman, CellKind::lstm, CellKind::gru})
    if (s == to_string(v)) return v;
  throw Error(ErrorKind::usage, where, "unknown cell " + quoted(s), "use one of elman, lstm, gru");
}

Activation parse_activation(std::string_view s, const std::string& where) {
  for (Activation v : {Activation::identity, Activation::tanh, Activation::relu, Activation::sigmoid,
                       Activation::softmax})
    if (s == to_string(v)) return v;
  throw Error(ErrorKind::usage, where, "unknown activation " + quoted(s),
              "use one of identity, tanh, relu, sigmoid, softmax");
}

LossKind parse_loss(std::string_view s, const std::string& where) {
  for (LossKind v : {LossKind::mse, LossKind::bce, LossKind::xent})
    if (s == to_string(v)) return v;
  throw Error(ErrorKind::usage, where, "unknown loss " + quoted(s), "use one of mse, bce, xent");
}

DType parse_dtype(std::string_view s, const std::string& where) {
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "f64" || s == "float64") return DType::f64;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  throw Error(ErrorKind::usage, where, "unknown dtype " + quoted(s), "use f32, f64 or bf16");
}

InitialState parse_initial_state(std::string_view s, const std::string& where) {
  for (InitialState v : {InitialState::zero, InitialState::learned})
    if (s == to_string(v)) return v;
  throw Error(ErrorKind::usage, where, "unknown initial state " + quoted(s), "use zero or learned");
}

Readout parse_readout(std::string_view s, const std::string& where) {
  for (Readout v : {Readout::steps, Readout::final_state})
    if (s == to_string(v)) return v;
  throw Error(ErrorKind::usage, where, "unknown readout " + quoted(s), "use steps or final");
}

}  // namespace bptt
