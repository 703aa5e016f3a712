// The AVX512-BF16 kernels of kernels::Products (matmul.hpp): bfloat16 operands, float sums, each
// instruction (vdpbf16ps) two products per float lane, twice the FMA rate of float.
//
// Operands in pairs. vdpbf16ps adds a[2i]·b[2i] + a[2i+1]·b[2i+1] to float lane i, so both
// operands hold consecutive k in pairs, one pair per 32-bit word (the lower half the even k):
//   panels (pack): op(W) [K, N] in column panels of 32 (the x86-64-v4 panel_width<float>()), panel
//     p holding word [kp][j] = (op(W)[2kp][32p + j], op(W)[2kp + 1][32p + j]), zero past K and N.
//     Panel p starts where the float panel p starts (P + 32p·K floats) and fills half of it, so
//     every offset a caller takes into a packed buffer (a column part, the next matrix) is the
//     float layout's, and packed_size<float>() sizes it;
//   the other operand is rounded per call into a buffer of this thread's, the rows of A (or a
//     block of them) as pairs along k, then broadcast one word per row and k pair.
// Each product is exact in float (8-bit significands), so a result is the float sum of the exact
// products of the rounded operands, as the emulation in matmul.cpp computes it, in another order.
// vdpbf16ps flushes subnormal inputs and results to zero (the emulation keeps them): a difference
// below 2⁻¹²⁶ per term.
//
// Used when native() holds; the products take their operands as floats, as everywhere else.
//
// AMX. Where the CPU also has AMX-BF16 (Intel Xeon from Sapphire Rapids on) and Linux grants the
// process the tile state, the same products run on the tiles: tdpbf16ps adds a 16 × 32 bf16
// block times a 32 × 16 one to a 16 × 16 float tile, 16 times the rate of vdpbf16ps (measured on
// one core: 2.8-3.1 TFLOP/s against 112-115 GFLOP/s for vdpbf16ps and 224-232 for float FMA).
// The panels above are already the tiles' B layout (16 pair rows of 16 columns' words, 128 bytes
// apart); the rounded rows of A are padded with zero pairs to a multiple of 16, and every panel's
// pair rows from ⌈K/2⌉ to the next multiple of 16 are zero wherever they fit in the float panel
// (K ≥ 30), so that whole tiles read zeros past K on both sides. Rows past the last 16 and
// products with K < 32 run on vdpbf16ps. A tile's sums are in another order than vdpbf16ps's
// (the same bound holds); like vdpbf16ps, the tiles flush subnormals to zero.
#pragma once

namespace bptt::kernels::bf16 {

// Whether the bf16 products run here: this build has the kernels (GCC, x86-64), the CPU has
// AVX512-BF16, and the active CPU level (bptt/cpu.hpp) is x86-64-v4. Like the level, it may change
// between computations, not between a pack() and the products that read its panels.
bool native();

// Whether the products run on AMX tiles: native(), the CPU has AMX-BF16, Linux granted the tile
// state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once), and neither the environment (BPTT_AMX=0)
// nor set_amx(false) turned them off. Changes like native().
bool amx();
// Turns the tiles on (where amx_available()) or off, process-wide: the tests run both paths.
// Returns the previous setting.
bool set_amx(bool on);
// Whether this CPU, build and kernel can run the tiles at all (whatever BPTT_AMX says).
bool amx_available();

// ASSIGNS the panels of op(W) [K, N] (W is [N, K] with row stride ldw when trans, else [K, N])
// to P, which has packed_size<float>(N, K) floats. Requires native().
void pack(bool trans, int N, int K, const float* W, int ldw, float* P);

// C[M, N] = init + A[M, K] · op(W) with P from pack(): gemm_packed's contract
// (kernels/step_gemm.hpp): init is the row `bias` when given (C ASSIGNED), else C (ACCUMULATES).
void packed(int M, int N, int K, const float* A, int lda, const float* P, const float* bias,
            float* C, int ldc);
// C[M, N] = bias + A1 · op(W1) + A2 · op(W2): gemm_packed_pair's contract.
void packed_pair(int M, int N, int K1, const float* A1, int lda1, const float* P1, int K2,
                 const float* A2, int lda2, const float* P2, const float* bias, float* C, int ldc);

// C = alpha · op(A) · op(B) + beta · C, gemm()'s contract (kernels/gemm.hpp): both operands
// rounded as they are packed, on product_threads() threads.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// gemm_tn_pair() (kernels/gemm.hpp) with bf16 operands: Aᵀ rounded into pairs once per block for
// the panels of both B1 and B2.
void gemm_tn_pair(int M, int N1, int N2, int K, float alpha, const float* A, int lda,
                  const float* B1, int ldb1, const float* B2, int ldb2, float beta, float* C1,
                  int ldc1, float* C2, int ldc2);

}  // namespace bptt::kernels::bf16
