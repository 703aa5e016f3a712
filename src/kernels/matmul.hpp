// The matrix products of one pass at its precision (bptt/precision.hpp): the unroller, the
// stream and the methods call these, never the kernels below them, so that bf16 has one home.
//
// Products{.bf16 = false} are gemm(), pack_panels() and gemm_packed() as they are. With bf16
// (float only) both operands are rounded to bfloat16, nearest even, and every product of two
// bfloat16 values is exact in float, so the result is the float sum of exact products:
//   - where bf16::native() (AVX512-BF16 at the x86-64-v4 level), the kernels of kernels/bf16.hpp
//     compute it with vdpbf16ps on operands rounded as they are packed (pack() rounds the
//     weights into panels of bfloat16 pairs once per pass);
//   - elsewhere the float kernels compute it on the rounded operands (the emulation, slower than
//     float): pack() rounds the weights in float panels, the products round their other operand
//     into a per-thread buffer that grows to the largest operand once.
// A buffer packed one way is read the same way: the choice is made at every call from the CPU
// level, which changes between computations only (kernels/step_gemm.hpp).
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
  // gemm_tn_pair() (kernels/gemm.hpp): C1 = alpha·Aᵀ·B1 + beta·C1, C2 = alpha·Aᵀ·B2 + beta·C2.
  template <class Real>
  void gemm_tn_pair(int M, int N1, int N2, int K, Real alpha, const Real* A, int lda,
                    const Real* B1, int ldb1, const Real* B2, int ldb2, Real beta, Real* C1,
                    int ldc1, Real* C2, int ldc2) const;
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
