// Why gradients vanish or explode over time: the numbers behind `bptt diagnose`
// (docs/diagnostics.md gives the formulas and an example).
//
//   grad_norm_by_step          ‖dL/dh_t‖ per unit and step: how much of the loss's gradient
//                              reaches each step's state (full BPTT with a dL/dh_t trace)
//   jacobian_norm_by_distance  ‖∂h_n/∂h_t‖_F per unit against the distance from the unit's own
//                              final state: a probe sent back from that state with nothing from
//                              the head
//   w_hh sigma_max             the largest singular value of each unit's W_hh (and of each gate
//                              block), beside Pascanu, Mikolov & Bengio (2013)'s bound 1/γ
//   truncation                 the truncated gradient (K = 1, 2, 4, …, T) against the full one
//                              (not for bidirectional models or a final-state readout: truncated
//                              BPTT runs left to right only)
//
// Rows are per unit u = k·D + d (layer k, direction d; PyTorch's order, model.hpp): for a
// unidirectional model (D = 1) one per layer. Steps are always in data order (t = 1..T as the
// data's time axis), for the right-to-left direction (d = 1) too.
//
// Everything is computed in the model's precision Real and reported in double.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/loss.hpp"
#include "bptt/model.hpp"

namespace bptt {

struct DiagnoseOptions {
  // Probe directions per unit for the Jacobian norms. When H <= probes the H unit vectors
  // e_1..e_H are used (the Frobenius norm exactly); otherwise `probes` random unit vectors per
  // sequence, drawn from `seed` (an unbiased estimate of ‖J‖_F²).
  int probes = 16;
  std::uint64_t seed = 1;
  // Power iteration on WᵀW: stops when ‖WᵀW v − λ v‖ <= tolerance · λ (then λ is within
  // tolerance · λ of an eigenvalue of WᵀW, so σ = √λ within tolerance / 2), or after
  // max_iterations (then `converged` is false and σ is a lower bound).
  double power_tolerance = 1e-6;
  int power_max_iterations = 20000;
  // Truncation windows K = 1, 2, 4, … while K < T and K <= max_truncation (0: no limit), then
  // K = T (the full gradient, as a check). false: no truncation rows (they cost about 2T
  // backward passes in all). Bidirectional models and a final-state readout get none either
  // (Diagnosis::truncation_skipped says why).
  bool truncation = true;
  int max_truncation = 0;
};

// σ_max of a matrix by power iteration on AᵀA.
struct SingularValue {
  double sigma_max = 0;
  int iterations = 0;
  bool converged = false;
};

// One truncation window: the truncated gradient g_K of every parameter against the full g.
struct TruncationBias {
  int K = 0;
  double cosine = 0;          // g_K·g / (‖g_K‖ ‖g‖); 1 when both are zero
  double relative_error = 0;  // ‖g_K − g‖ / ‖g‖ (‖g_K − g‖ when g = 0)
  double grad_norm = 0;       // ‖g_K‖
};

struct Diagnosis {
  int T = 0, B = 0, L = 0, H = 0;  // H: the state's width, H_out (a projection's P, else H)
  int D = 1;                       // directions: 2 for a bidirectional model, else 1
  // [L·D]: the name of each row u = k·D + d, PyTorch's suffix: "l0", "l0_reverse", "l1", …
  std::vector<std::string> unit_names;
  double loss = 0;
  double full_grad_norm = 0;  // ‖g‖ over every parameter

  // [L·D][T]: ‖dL/dh_t‖₂ over the batch's B·H numbers of unit u's state after step t (index
  // t − 1, t = 1..T, 1-based as in docs/math.md), L being the batch loss (the weighted mean over
  // steps and sequences). The gradient reaching h_t from the head (top layer) or the layer above
  // plus from the unit's next step (t + 1 left to right; t − 1 for the right-to-left unit, whose
  // state h_t is the one after it has read x_t). t is the data's step for both directions.
  std::vector<std::vector<double>> grad_norm_by_step;
  // [L·D]: ‖dL/dh_0‖₂ of each unit's initial state ("step 0"; for a right-to-left unit the state
  // before its first step, which it takes at each sequence's last valid step).
  std::vector<double> grad_norm_h0;

  // [L·D][T + 1]: ‖∂h_n/∂h_t‖_F of unit u within unit u, h_n its final state, at the distance d
  // (d = 0..T) from that state: d = (sequence length) − t left to right (d = length: h_0); for
  // the right-to-left unit, whose final state is h_1 (after it has read x_1), d = t − 1 (d =
  // length: its initial state). The root mean square over the sequences that have that
  // distance (NaN where none has). For LSTM h_t's partial derivative with c_t held fixed (the
  // cell state is a second path). d = 0 is ‖I‖_F = √H.
  std::vector<std::vector<double>> jacobian_norm_by_distance;
  std::vector<int> sequences_by_distance;  // [T + 1] how many sequences reach each distance
  bool jacobian_exact = false;             // H unit probes (exact) or random ones (estimate)
  int jacobian_probes = 0;                 // probe directions per unit and sequence

  // [L·D]: σ_max(W_hh of unit u) ([G·H, H]); [L·D][G]: σ_max of each gate block [H, H]
  // (PyTorch's gate order, names in gate_names; for Elman the one block is W_hh itself).
  std::vector<SingularValue> w_hh_sigma;
  std::vector<std::vector<SingularValue>> w_hh_gate_sigma;
  std::vector<std::string> gate_names;

  // Pascanu et al. 2013: with |φ'| <= γ, ‖∂h_t/∂h_{t-1}‖ <= σ_max(W_hh)·γ, so σ_max < 1/γ is
  // sufficient for long-term gradients to vanish (and σ_max > 1/γ necessary for them to
  // explode). Derived for the Elman recursion; for LSTM/GRU γ = 1 (tanh) is reported but the
  // gates change the recursion (bound_applies = false).
  std::string activation;  // φ: tanh, relu, sigmoid, identity
  double gamma = 1;        // sup |φ'|: tanh 1, sigmoid 1/4, relu 1, identity 1
  double threshold = 1;    // 1/γ
  bool bound_applies = true;

  std::vector<TruncationBias> truncation;
  // Why there are no truncation rows although DiagnoseOptions::truncation asked for them:
  // truncated BPTT runs left to right only, so a bidirectional model and a head that reads the
  // final state (readout final) get none (never an error). Empty otherwise.
  std::string truncation_skipped;
};

// REQUIRES batch.validate(model.cfg, loss, ...) passed (io's load_batch does it).
// Runs full BPTT with a trace of dL/dh_t, L·probes backward passes with probes at the final
// states (both directions of a layer probed in one pass: they do not interact within it), power
// iteration on every W_hh, and truncated_loss_and_gradients for each K (causal models only).
// Throws bptt::Error when the batch has no weight (loss_and_dz's error).
template <class Real>
Diagnosis diagnose(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                   const DiagnoseOptions& opts = {});

// σ_max of the rows × cols matrix a (row-major, leading dimension ld >= cols) by power
// iteration on AᵀA from a fixed pseudo-random start, computed in double.
template <class Real>
SingularValue largest_singular_value(const Real* a, int rows, int cols, int ld,
                                     double tolerance = 1e-6, int max_iterations = 20000);

// γ = sup |φ'(s)| of an Elman nonlinearity (tanh 1, sigmoid 1/4, relu 1, identity 1).
double activation_derivative_bound(Activation phi);

// The truncation windows diagnose() tries for T steps: 1, 2, 4, … (< T, <= max_k when
// max_k > 0), then T.
std::vector<int> truncation_windows(int T, int max_k = 0);

// ---------------------------------------------------------------------------------------------
// How an approximate gradient lines up with exact BPTT (`bptt diagnose --methods`, issue 20)
// ---------------------------------------------------------------------------------------------

// A method's gradients g_s (s = 1..N samples) against BPTT's g, over one part of the parameters.
struct Alignment {
  std::string name;        // a tensor ("rnn.weight_hh_l0"), a layer ("l0", "head", "init") or "all"
  double cosine = 0;       // mean over s of g_s·g / (‖g_s‖ ‖g‖) (1 when both are 0, 0 when one is)
  double norm_ratio = 0;   // mean over s of ‖g_s‖ / ‖g‖ (NaN when ‖g‖ = 0)
  double bias = 0;         // ‖ḡ − g‖ / ‖g‖ with ḡ the samples' mean (‖ḡ − g‖ when ‖g‖ = 0)
  double variance = 0;     // Σ_s ‖g_s − ḡ‖² / ((N − 1) ‖g‖²): 0 with one sample
};

struct MethodReport {
  std::string method;               // the method as written ("uoro", "truncated:4", …)
  int samples = 1;                  // seeds drawn (uoro, kf-rtrl), else 1
  std::vector<Alignment> tensors;   // every parameter tensor, in the arena's order
  std::vector<Alignment> layers;    // "l0", "l1", … (and "_reverse"), "head", "init", then "all"
};

// For each method (GradMethodSpec names: "uoro", "kf-rtrl", "snap1", "eprop", "truncated:K",
// "rtrl", "recompute", …), its gradient against full BPTT's on this batch; the stochastic ones
// (uoro, kf-rtrl) with `samples` seeds seed, seed + 1, … Throws bptt::Error (where "--methods")
// for an unknown method, one that does not take the model (its own refusal), or samples < 1.
template <class Real>
std::vector<MethodReport> compare_methods(const Model<Real>& model, const BatchArg<Real>& batch,
                                          LossKind loss, const std::vector<std::string>& methods,
                                          int samples = 8, std::uint64_t seed = 1);

}  // namespace bptt
