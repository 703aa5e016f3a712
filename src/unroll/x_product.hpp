// Where forward forms a layer's x-side pre-activations x·W_ihᵀ (src/unroll/full.cpp), from
// W_ihᵀ packed beside W_hhᵀ either way:
//  - hoisted (the default): one product over all T·B rows before the time loop writes them into
//    gates(k), and each step's kernel forms h_{t-1}·W_hhᵀ + b separately for the cell to add;
//  - in the step: each step's kernel forms b + x_t·W_ihᵀ + h_{t-1}·W_hhᵀ straight into the
//    step's rows of gates(k) (kernels::gemm_packed_pair).
// The second wins where both packed matrices are small enough to stay near the core: the
// step's pre-activations never leave the cache (LSTM inference 2% faster on docs/benchmarks.md's
// shapes a and d on a Xeon, when the hoisted product was a BLAS GEMM; equal on b, which is past
// the size limit below, and on a Zen 5 past it too: 120-136 against 123-125 ms; on a Xeon with
// AMX and 2 MiB of L2 it never won, below). Not for the
// GRU, whose n gate needs W_in·x and W_hn·h apart (r multiplies only the second), nor for a
// layer-normalized cell, which normalizes the two products apart.
// Backward is the same either way: it reads the activations the cell leaves in gates(k).
#pragma once

#include <cstddef>

#include "bptt/model.hpp"
#include "support/cache.hpp"

namespace bptt::unroll {

// The packed [W_ih | W_hh]ᵀ of a layer, in bytes, above which the product stays hoisted: twice
// the core's L2 cache on AMD (the packed weights are reread at every step and must stay near the
// core), a quarter of it on Intel, 1 MiB where the size is not known. Measured: on a Zen 3 core
// (512 KiB of L2) twice the L2 ran the projected bidirectional LSTM on shape b 18% faster (1306 ->
// 1106 ms per training step: its 3.1 MiB layer hoisted) and shape d's inference 5% faster (98.5 ->
// 93.4 ms) than the 4 MiB chosen on an older Xeon with 1 MiB of L2. On a Xeon with AMX (2 MiB of
// L2, whose L3 gives one core 29 GB/s) twice the L2 put the projected bidirectional LSTM b's
// 3 MiB layers in the step: inference 229 ms against 184 hoisted; shape d's 1.3 and 2 MiB layers
// in the step were 6-17% slower in inference and 3-6% in training, shape a's 384 KiB level
// (docs/benchmarks.md, issue 19 part 9).
inline std::size_t in_step_max_bytes() {
  const std::size_t l2 = support::l2_bytes();
  if (l2 == 0) return std::size_t(1) << 20;
  return support::intel_cpu() ? l2 / 4 : 2 * l2;
}

// Whether forward forms layer input size `in`'s x-side product inside the time loop.
template <class Real>
bool x_product_in_step(const ModelConfig& cfg, int in) {
  const std::size_t H = std::size_t(cfg.hidden_size), GH = std::size_t(cfg.gates()) * H;
  return cfg.cell != CellKind::gru && !cfg.layer_norm && in <= cfg.hidden_size &&
         GH * (std::size_t(in) + std::size_t(cfg.state_size())) * sizeof(Real) <= in_step_max_bytes();
}

// The bias a unit adds at every step, ASSIGNED to bias [G·H]: where a cell adds the two
// pre-activations (Elman, LSTM, the GRU's r and z) b_ih joins b_hh there, so no pass over the
// hoisted [T·B, G·H] product adds it; zeros without biases. Returns the GRU's b_in [H], which
// must stay outside r ⊙ (W_hn h + b_hn) and goes to the cell (CellStep::bias_n); else nullptr.
template <class Real>
const Real* fold_step_bias(const ModelConfig& cfg, const Real* b_ih, const Real* b_hh, Real* bias) {
  const int H = cfg.hidden_size, GH = cfg.gates() * H;
  const bool gru = cfg.cell == CellKind::gru;
  const int folded = gru ? 2 * H : GH;
  for (int j = 0; j < GH; ++j) bias[j] = cfg.bias ? b_hh[j] + (j < folded ? b_ih[j] : Real(0)) : Real(0);
  return gru && cfg.bias ? b_ih + 2 * H : nullptr;
}

}  // namespace bptt::unroll
