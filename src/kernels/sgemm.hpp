// The float GEMM of the x86-64-v4 level (AVX-512): the hoisted input products and the
// weight-gradient products of the time loop, C = alpha · op(A) · op(B) + beta · C with
// gemm()'s contract (kernels/gemm.hpp), blocked for the caches the way the BLIS papers describe:
//   - op(B) in blocks of kDepth rows, each packed once into column panels of 32 (two zmm): a
//     panel's block (kDepth × 32 floats) stays in L1 while every row tile of a block of op(A)
//     passes over it;
//   - op(A) in blocks of kRows rows × the same depth, in L2 while every panel passes over it:
//     A's rows read where they are (each row a stream along k), or, for op(A) = Aᵀ, packed once
//     per block into micro-panels of the tile's height (k-major: the tile's rows of one k side by
//     side), since Aᵀ's rows lie kilobytes apart in A (the [T·B, G·H] gradient of a dW);
//   - tiles of 12 rows × 32 columns of C in 24 zmm accumulators, the panel's two vectors loaded
//     and each row's value broadcast per k; C is read once per tile and depth block, at its end;
//   - for op(A) = Aᵀ whose block of panels fits 1 MB, the loop turned around (tile-major): each
//     tile crosses every panel, its packed micro-panel in L1 and the panels streaming from L2.
// On a Zen 5 core (full-width AVX-512) dnnl_sgemm ran LSTM shape b's weight-gradient products at
// 62-68% of the FMA peak; this runs them at 86-88% (tile-major) and the step's other products
// level with it (docs/benchmarks.md, issue 19 parts 5 and 7).
//
// Used where native() holds; gemm<float>() dispatches to it (kernels/gemm.cpp).
#pragma once

namespace bptt::kernels::sgemm {

// Whether this build has the kernel (GCC, x86-64) and the active CPU level (bptt/cpu.hpp) is
// x86-64-v4.
bool native();

// C = alpha · op(A) · op(B) + beta · C (gemm()'s contract: beta = 0 assigns, even over NaN) on
// product_threads() threads. Requires native().
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// gemm_tn_pair() (kernels/gemm.hpp): Aᵀ's micro-panels packed once per block for the panels of
// both B1 and B2. Requires native().
void gemm_tn_pair(int M, int N1, int N2, int K, float alpha, const float* A, int lda,
                  const float* B1, int ldb1, const float* B2, int ldb2, float beta, float* C1,
                  int ldc1, float* C2, int ldc2);

}  // namespace bptt::kernels::sgemm
