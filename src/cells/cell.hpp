// The pointwise ("post-GEMM") part of one time step of one layer, for B rows at once.
// The unroller does the matrix products: before the time loop gates = X·W_ihᵀ + b_ih for all
// T·B rows; per step gh = h_{t-1}·W_hhᵀ + b_hh; after the pointwise backward it forms
// dL/dh_{t-1} = dgh·W_hh + dh_prev, and after the reverse loop the weight gradients. Where a
// cell only uses gates + gh (Elman, LSTM, the GRU's r and z) the unroller adds b_ih to gh
// instead of gates, and hands the GRU's b_in to the cell (bias_n), which saves a pass over
// [T·B, G·H].
//
// Contracts shared by every cell (see each cell's file for its equations and what it saves):
//  - forward ASSIGNS h (and c for LSTM, aux for GRU) and overwrites `gates` with what backward
//    needs.
//  - rows with valid[b] == 0 (t >= lengths[b]) copy the state: h = h_prev, c = c_prev.
//  - backward OVERWRITES `gates` with dgi = dL/d(x-side pre-activations) (in place: what forward
//    saved there is read once, so the workspace needs no second [T, B, G·H] buffer), ASSIGNS
//    dgh and dh_prev and updates dc in place; for invalid rows it writes dgi = dgh = 0,
//    dh_prev = dh and leaves dc unchanged (the gradient passes straight through).
//  - dgh may alias `gates` for cells whose x-side and h-side pre-activation gradients are equal
//    (Elman, LSTM); GRU needs it separate.
#pragma once

#include <cstdint>

#include "bptt/types.hpp"

namespace bptt::cells {

template <class Real>
struct CellStep {
  int B = 0, H = 0;
  const std::uint8_t* valid = nullptr;  // [B]
  Real* gates = nullptr;         // [B, G·H] in: x·W_ihᵀ + b_ih; forward out: saved activations;
                                 // backward out: dgi
  Real* gh = nullptr;            // [B, G·H] h_{t-1}·W_hhᵀ + b_hh (forward only; scratch);
                                 // Elman and LSTM forward: nullptr when `gates` already holds
                                 // the whole pre-activation (the x-side product formed in the
                                 // step, src/unroll/x_product.hpp)
  const Real* h_prev = nullptr;  // [B, H]
  Real* h = nullptr;             // [B, H]
  const Real* c_prev = nullptr;  // [B, H] LSTM
  Real* c = nullptr;             // [B, H] LSTM
  Real* aux = nullptr;           // [B, H] GRU: W_hn·h_{t-1} + b_hn (unused otherwise)
  const Real* bias_n = nullptr;  // [H] GRU forward: b_in when `gates` holds x·W_inᵀ without it
                                 // (the unroller's case); nullptr when it is already there
  // LSTM with layer norm, h = o ⊙ tanh(LN(c) ⊙ γ_c + β_c) (cells/layer_norm.hpp); nullptr
  // without. (The layer norm of the two products is the unroller's: it hands the cell `gates`
  // and `gh` already normalized, with their biases.)
  const Real* ln_c_gamma = nullptr;  // [H] γ_c
  const Real* ln_c_beta = nullptr;   // [H] β_c
  Real* ln_c_stats = nullptr;        // [B, 2] forward ASSIGNS, backward reads: μ and r of c's row
};

template <class Real>
struct CellStepGrad {
  const Real* dh = nullptr;  // [B, H] total dL/dh_t (from above and from step t+1)
  Real* dc = nullptr;        // [B, H] LSTM: in dL/dc_t (from t+1), out dL/dc_{t-1}
  Real* dgh = nullptr;       // [B, G·H] out: dL/d(h-side pre-activations) (dgi: see above)
  Real* dh_prev = nullptr;   // [B, H] out: the part of dL/dh_{t-1} that bypasses W_hh
  Real* dln_c_gamma = nullptr;  // [H] LSTM with layer norm: ACCUMULATES Σ_rows dL/dγ_c
  Real* dln_c_beta = nullptr;   // [H] LSTM with layer norm: ACCUMULATES Σ_rows dL/dβ_c
};

template <class Real> void elman_forward(Activation phi, const CellStep<Real>& s);
template <class Real> void elman_backward(Activation phi, const CellStep<Real>& s,
                                          const CellStepGrad<Real>& d);
template <class Real> void lstm_forward(const CellStep<Real>& s);
template <class Real> void lstm_backward(const CellStep<Real>& s, const CellStepGrad<Real>& d);
template <class Real> void gru_forward(const CellStep<Real>& s);
template <class Real> void gru_backward(const CellStep<Real>& s, const CellStepGrad<Real>& d);

// Dispatch on the cell kind; no default case, so a new kind without a backward fails to compile
// (with -Werror=switch).
template <class Real>
inline void cell_forward(CellKind cell, Activation phi, const CellStep<Real>& s) {
  switch (cell) {
    case CellKind::elman: return elman_forward(phi, s);
    case CellKind::lstm: return lstm_forward(s);
    case CellKind::gru: return gru_forward(s);
  }
}

template <class Real>
inline void cell_backward(CellKind cell, Activation phi, const CellStep<Real>& s,
                          const CellStepGrad<Real>& d) {
  switch (cell) {
    case CellKind::elman: return elman_backward(phi, s, d);
    case CellKind::lstm: return lstm_backward(s, d);
    case CellKind::gru: return gru_backward(s, d);
  }
}

}  // namespace bptt::cells
