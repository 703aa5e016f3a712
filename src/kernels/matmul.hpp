// The matrix products of one pass at its precision (bptt/precision.hpp): the unroller, the
// stream and the methods call these, never the kernels below them, so that bf16 has one home.
//
// Products{.bf16 = false} are gemm(), pack_panels() and gemm_packed() as they are. With bf16
// (float only) both operands are rounded to bfloat16, nearest even: pack() rounds the weights as
// it packs them (once per pass), the products round their other operand as they read it, and
// every product of two bfloat16 values is exact in float, so the result is the float sum of
// exact products: what vdpbf16ps computes, up to the order of the sums. This build computes it
// with the float kernels on the rounded operands (the emulation; AVX512-BF16 kernels are still
// to come), rounding A into a per-thread buffer that grows to the largest operand once.
#pragma once

#include <cstddef>
#include <string>

#include "bptt/precision.hpp"

namespace bptt::kernels {

// x rounded to the nearest bfloat16 (ties to even), as a float; NaN stays NaN, ±inf stays, and
// values past the largest bfloat16 round to ±inf.
float round_bf16(float x);
// out[i] = round_bf16(in[i]), i < n; out may be in.
void round_bf16(std::size_t n, const float* in, float* out);

struct Products {
  bool bf16 = false;

  // The products at precision m for a model of Real: the one check that bf16 takes a float
  // model (bptt::Error, kind usage, naming `where`, for Matmul::bf16 with Real = double).
  template <class Real>
  static Products of(Matmul m, const std::string& where);

  // gemm() (kernels/gemm.hpp): C = alpha·op(A)·op(B) + beta·C.
  template <class Real>
  void gemm(bool trans_a, bool trans_b, int M, int N, int K, Real alpha, const Real* A, int lda,
            const Real* B, int ldb, Real beta, Real* C, int ldc) const;
  // pack_panels() (kernels/step_gemm.hpp), the panels rounded with bf16.
  template <class Real>
  void pack(bool trans, int N, int K, const Real* W, int ldw, Real* P) const;
  // gemm_packed(): C[M, N] = init + A·op(W), P from pack() of the same Products.
  template <class Real>
  void packed(int M, int N, int K, const Real* A, int lda, const Real* P, const Real* bias,
              Real* C, int ldc) const;
  // gemm_packed_pair(): C = bias + A1·op(W1) + A2·op(W2).
  template <class Real>
  void packed_pair(int M, int N, int K1, const Real* A1, int lda1, const Real* P1, int K2,
                   const Real* A2, int lda2, const Real* P2, const Real* bias, Real* C,
                   int ldc) const;
};

}  // namespace bptt::kernels
