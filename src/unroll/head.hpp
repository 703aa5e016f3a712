// The head's backward products, shared by the unroller and the methods that run their own
// backward passes (truncated, recompute's layer path): a linear head z = top·W_oᵀ + b_o, or
// none (a head-less model, ModelConfig::head = false: z = top, O = D·H_out), whose
// "products" are copies and which has no parameters. The forward products stay at their sites
// (the unroller's runs through the packed kernel); each has its one-line head-less branch.
// mm: the pass's products (kernels/matmul.hpp).
#pragma once

#include <algorithm>
#include <cstddef>

#include "kernels/gemm.hpp"
#include "kernels/matmul.hpp"

namespace bptt::unroll {

// ASSIGNS dL/d(top) [rows, W] = dZ·W_o, or dZ itself without a head (w_o = nullptr, W = O).
template <class Real>
void head_input_gradient(const kernels::Products& mm, int rows, int W, int O, const Real* dz, const Real* w_o, Real* out,
                         int ld_out) {
  if (!w_o) {
    for (int r = 0; r < rows; ++r)
      std::copy(dz + std::size_t(r) * O, dz + std::size_t(r + 1) * O,
                out + std::size_t(r) * ld_out);
    return;
  }
  mm.gemm(false, false, rows, W, O, Real(1), dz, O, w_o, W, Real(0), out, ld_out);
}

// dW_o += dZᵀ·top, db_o += Σ_rows dZ; nothing without a head (dw_o = nullptr).
template <class Real>
void head_weight_gradients(const kernels::Products& mm, int rows, int W, int O, const Real* dz, const Real* top, Real* dw_o,
                           Real* db_o) {
  if (!dw_o) return;
  mm.gemm(true, false, O, W, rows, Real(1), dz, O, top, W, Real(1), dw_o, W);
  kernels::sum_rows(rows, O, dz, db_o);
}

}  // namespace bptt::unroll
