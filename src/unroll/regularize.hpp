// Time-consistent dropout masks and zoneout (issue 18; docs/math.md, section 8d), as the
// unroller (full.cpp) applies them: each forward step beside its backward.
//
// The masks come with the batch (BatchView::mask_input, ...: a data file's tensors, or what
// the trainer draws for a step) and hold the multipliers themselves (0 or 1/(1 − p)); zoneout
// flags hold 1 where a unit keeps its previous value. Without flags, a model with zoneout
// probabilities (ModelConfig::zoneout_h, zoneout_c) runs in evaluation mode: every unit keeps
// the fraction z of its previous value, the expectation of the training-mode step.
//   input      x̃_t = x_t ⊙ m                       dx_t = dx̃_t ⊙ m
//   recurrent  h̃_{t−1} = h_{t−1} ⊙ m enters W_hh   dh_{t−1} += (δ^h_t W_hh) ⊙ m
//   output     the head reads top_t ⊙ m             dtop_t = (dz_t W_o) ⊙ m
//   weight     W̃_hh = W_hh ⊙ M in every step       dW_hh = dW̃_hh ⊙ M
//   zoneout    h_t = k ⊙ h_{t−1} + (1 − k) ⊙ h̄_t   dh̄_t = (1 − k) ⊙ dh_t, dh_{t−1} += k ⊙ dh_t
// (c the same with its own flags; h̄, c̄ are what the cell computes from h_{t−1}, c_{t−1}, the
// LSTM's h̄ from c̄). Steps past a sequence's length keep the state as always: no flag applies.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "bptt/batch.hpp"
#include "unroll/direction.hpp"

namespace bptt::unroll {

template <class Real>
struct Regularization {
  const Real* input = nullptr;      // [B, I]
  const Real* recurrent = nullptr;  // [L·D, B, H_out]
  const Real* output = nullptr;     // [B, D·H_out]
  const Real* weight_hh = nullptr;  // [L·D, G·H, H_out]
  const Real* zoneout_h = nullptr;  // [T, L·D, B, H_out] keep flags
  const Real* zoneout_c = nullptr;  // [T, L·D, B, H] keep flags (LSTM)
  Real zh = 0, zc = 0;              // without flags: the model's probabilities
  int U = 0, B = 0;

  Regularization(const ModelConfig& cfg, const BatchView<Real>& batch)
      : U(cfg.units()), B(batch.B) {
    const auto ptr = [](std::span<const Real> s) { return s.empty() ? nullptr : s.data(); };
    input = ptr(batch.mask_input);
    recurrent = ptr(batch.mask_recurrent);
    output = ptr(batch.mask_output);
    weight_hh = ptr(batch.mask_weight_hh);
    zoneout_h = ptr(batch.zoneout_h);
    zoneout_c = ptr(batch.zoneout_c);
    if (!zoneout_h) zh = Real(cfg.zoneout_h);
    if (!zoneout_c && cfg.cell == CellKind::lstm) zc = Real(cfg.zoneout_c);
  }
  bool h_zoneout() const { return zoneout_h || zh > 0; }
  bool c_zoneout() const { return zoneout_c || zc > 0; }

  // The keep factors of row b (a sequence of length len) of unit u at step t of the unit's
  // frame: its flags row (`width` wide), or nullptr, and then every factor is z.
  const Real* keep_row(const Real* flags, int width, int u, bool reverse, int t, int b,
                       int len) const {
    if (!flags) return nullptr;
    const std::size_t step = std::size_t(reverse ? reversed_step(t, len) : t);
    return flags + ((step * std::size_t(U) + std::size_t(u)) * std::size_t(B) + std::size_t(b)) *
                       std::size_t(width);
  }
};

// out[r, j] = in[r, j] · mask[r, j] for n rows of `width` (a per-sequence mask's rows of the
// step's sequences).
template <class Real>
void mask_rows(int n, int width, const Real* in, const Real* mask, Real* out) {
  for (std::size_t i = 0; i < std::size_t(n) * std::size_t(width); ++i) out[i] = in[i] * mask[i];
}

// Zoneout of rows [b0, b0 + n) of unit u at frame step t: state (`width` wide) holds h̄ on
// entry and, for valid rows, k ⊙ prev + (1 − k) ⊙ h̄ on exit.
template <class Real>
void zoneout_forward(const Regularization<Real>& R, const Real* flags, Real z, int width, int u,
                     bool reverse, int t, int b0, int n, const std::vector<int>& len,
                     const std::uint8_t* valid, const Real* prev, Real* state) {
  for (int i = 0; i < n; ++i) {
    if (!valid[i]) continue;
    const int b = b0 + i;
    const Real* k = R.keep_row(flags, width, u, reverse, t, b, len[std::size_t(b)]);
    const Real* p = prev + std::size_t(i) * width;
    Real* s = state + std::size_t(i) * width;
    for (int j = 0; j < width; ++j) {
      const Real kj = k ? k[j] : z;
      s[j] = kj * p[j] + (Real(1) - kj) * s[j];
    }
  }
}

// Its backward: d holds dL/d(state) on entry and dL/dh̄ = (1 − k) ⊙ d on exit; keep is ASSIGNED
// k ⊙ d, the share that goes straight to the previous state (0 for invalid rows, whose d passes
// through the cell unchanged).
template <class Real>
void zoneout_backward(const Regularization<Real>& R, const Real* flags, Real z, int width, int u,
                      bool reverse, int t, int b0, int n, const std::vector<int>& len,
                      const std::uint8_t* valid, Real* d, Real* keep) {
  for (int i = 0; i < n; ++i) {
    Real* di = d + std::size_t(i) * width;
    Real* ki = keep + std::size_t(i) * width;
    if (!valid[i]) {
      std::fill(ki, ki + width, Real(0));
      continue;
    }
    const int b = b0 + i;
    const Real* k = R.keep_row(flags, width, u, reverse, t, b, len[std::size_t(b)]);
    for (int j = 0; j < width; ++j) {
      const Real kj = k ? k[j] : z;
      ki[j] = kj * di[j];
      di[j] = (Real(1) - kj) * di[j];
    }
  }
}

}  // namespace bptt::unroll
