// A batch of sequences, time-major. Optional tensors are empty when not given.
//
// Batch owns its arrays; BatchView is the same batch in memory someone else owns (a program's own
// buffers, NumPy arrays in the Python module), used without copying. Every computation reads a
// BatchView, and a Batch converts to one implicitly, so either can be passed: the parameters
// that take a batch are BatchArg<Real>. A view does not own what it points to: the arrays must
// outlive the call.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "bptt/model.hpp"

namespace bptt {

template <class Real>
struct BatchView {
  int T = 0;                               // time steps
  int B = 0;                               // sequences
  std::span<const Real> x;                 // [T, B, I]
  std::span<const Real> y;                 // [T, B, O] targets for mse and bce
  std::span<const std::int64_t> classes;   // [T, B] class indices for xent
  std::span<const std::int64_t> lengths;   // [B], 0 <= lengths[b] <= T; empty = all T
  std::span<const Real> mask;              // [T, B] step weights >= 0; empty = all 1
  std::span<const Real> h0;                // [L·D, B, H_out]; empty = the model's
  std::span<const Real> c0;                // [L·D, B, H] (LSTM); empty = the model's
  // Training-mode regularization (Batch's, below):
  std::span<const Real> mask_input;        // [B, I]
  std::span<const Real> mask_recurrent;    // [L·D, B, H_out]
  std::span<const Real> mask_output;       // [B, D·H_out]
  std::span<const Real> mask_weight_hh;    // [L·D, G·H, H_out]
  std::span<const Real> zoneout_h;         // [T, L·D, B, H_out]
  std::span<const Real> zoneout_c;         // [T, L·D, B, H] (LSTM)

  // As Batch's, below.
  bool valid(int t, int b) const { return lengths.empty() || t < lengths[b]; }
  Real weight(int t, int b) const {
    if (!valid(t, b)) return Real(0);
    return mask.empty() ? Real(1) : mask[std::size_t(t) * B + b];
  }
  void validate(const ModelConfig& cfg, const std::string& where) const;
  void validate(const ModelConfig& cfg, LossKind loss, const std::string& where) const;
  void check_shapes(const ModelConfig& cfg, const std::string& where) const;
  void check_targets(const ModelConfig& cfg, LossKind loss, const std::string& where) const;
};

template <class Real>
struct Batch {
  Batch() = default;
  // A copy of a view's arrays.
  explicit Batch(const BatchView<Real>& v)
      : T(v.T), B(v.B), x(v.x.begin(), v.x.end()), y(v.y.begin(), v.y.end()),
        classes(v.classes.begin(), v.classes.end()), lengths(v.lengths.begin(), v.lengths.end()),
        mask(v.mask.begin(), v.mask.end()), h0(v.h0.begin(), v.h0.end()),
        c0(v.c0.begin(), v.c0.end()), mask_input(v.mask_input.begin(), v.mask_input.end()),
        mask_recurrent(v.mask_recurrent.begin(), v.mask_recurrent.end()),
        mask_output(v.mask_output.begin(), v.mask_output.end()),
        mask_weight_hh(v.mask_weight_hh.begin(), v.mask_weight_hh.end()),
        zoneout_h(v.zoneout_h.begin(), v.zoneout_h.end()),
        zoneout_c(v.zoneout_c.begin(), v.zoneout_c.end()) {}

  int T = 0;                      // time steps
  int B = 0;                      // sequences
  std::vector<Real> x;            // [T, B, I]
  std::vector<Real> y;            // [T, B, O] targets for mse and bce (empty for xent or predict)
  std::vector<std::int64_t> classes;  // [T, B] class indices for xent (empty otherwise)
  std::vector<std::int64_t> lengths;  // [B], 0 <= lengths[b] <= T; empty = all T
  std::vector<Real> mask;         // [T, B] step weights >= 0; empty = all 1
  std::vector<Real> h0;           // [L·D, B, H_out] initial hidden state; empty = the model's
                                  // (zeros, or its learned init.h0)
  std::vector<Real> c0;           // [L·D, B, H] initial cell state (LSTM); empty = the model's
  // Training-mode regularization (issue 18; docs/math.md, section 8d), the data file's tensors
  // of the same names; each empty = not applied. Dropout masks hold the multipliers themselves
  // (0 or 1/(1 − p)), the same at every step of a sequence; zoneout holds keep flags (1: the
  // unit keeps its value from the step before), indexed by the data step the state belongs to.
  // Without zoneout flags a model with zoneout probabilities runs in evaluation mode (their
  // expectation).
  std::vector<Real> mask_input;      // [B, I] on the network's input at every step
  std::vector<Real> mask_recurrent;  // [L·D, B, H_out] on the h that enters W_hh
  std::vector<Real> mask_output;     // [B, D·H_out] on the top layer's output entering the head
  std::vector<Real> mask_weight_hh;  // [L·D, G·H, H_out] on every W_hh (DropConnect), unit by
                                     // unit (the file's mask_weight_hh_l{k}[_reverse])
  std::vector<Real> zoneout_h;       // [T, L·D, B, H_out] keep flags of h
  std::vector<Real> zoneout_c;       // [T, L·D, B, H] keep flags of c (LSTM)

  // True when step t of sequence b is inside the sequence (t < lengths[b]).
  bool valid(int t, int b) const { return lengths.empty() || t < lengths[b]; }
  // Loss weight of step (t, b): mask[t, b] · [t < lengths[b]].
  Real weight(int t, int b) const {
    if (!valid(t, b)) return Real(0);
    return mask.empty() ? Real(1) : mask[std::size_t(t) * B + b];
  }

  // Throws bptt::Error (where = `where` + ": " + tensor name) when a tensor's size does not match
  // (T, B) and the model, lengths are outside [0, T], mask has a negative or non-finite value, a
  // class index is outside [0, O), c0 is given for a cell other than LSTM, a dropout mask has
  // a negative or non-finite value, a zoneout flag is not 0 or 1, or zoneout_c is given for a
  // cell other than LSTM. `loss` selects
  // which targets are required; pass no loss for prediction (targets are then not checked).
  void validate(const ModelConfig& cfg, const std::string& where) const;
  void validate(const ModelConfig& cfg, LossKind loss, const std::string& where) const;
  // The parts of validate() that memory safety needs, without reading the data otherwise:
  // check_shapes, what forward() and backward() read: T, B >= 1 and the sizes of x, lengths,
  // mask, h0, c0 and the regularization tensors (kind shape), lengths inside [0, T] (kind value); check_targets, what
  // loss_and_dz() reads: T, B, lengths and mask as above and the loss's targets' size (kind
  // shape), class indices inside [0, O) (kind value). Both are checked on every call.
  void check_shapes(const ModelConfig& cfg, const std::string& where) const;
  void check_targets(const ModelConfig& cfg, LossKind loss, const std::string& where) const;

  // This batch's arrays as a view (valid while the batch lives and is not resized).
  BatchView<Real> view() const {
    return BatchView<Real>{T, B, x, y, classes, lengths, mask, h0, c0,
                           mask_input, mask_recurrent, mask_output, mask_weight_hh, zoneout_h,
                           zoneout_c};
  }
  operator BatchView<Real>() const { return view(); }
};

// The type of a parameter that takes a batch: a BatchView<Real>, to which a Batch<Real> converts.
// (Real is deduced from the call's other arguments.)
template <class Real>
using BatchArg = std::type_identity_t<BatchView<Real>>;

}  // namespace bptt
