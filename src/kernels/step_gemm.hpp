// The per-step products of the time loop, C[M, N] = init + A[M, K] · op(W), with the weight
// matrix packed once per pass into panels and reused by every step: forward
// b_hh + h_{t-1} · W_hhᵀ ([B, H] × [H, G·H]) and backward δ^h_t · W_hh ([B, G·H] × [G·H, H]). A
// BLAS call packs its operands again on every call; here the T steps share one packing. The
// readout, b_o + H_top · W_oᵀ over all T·B rows, uses it too: starting from the bias saves the
// pass a BLAS call would need to add it.
//
// Panel layout: op(W) [K, N] is cut into column panels of panel_width<Real>() columns, a tile's
// width in the kernel of the active CPU level (bptt/cpu.hpp); panel p holds
// P[p][k][j] = op(W)[k][p·NR + j], zero beyond N. The kernel keeps an MR-row × NR tile of C in
// registers over the whole K loop:
//   x86-64-v4: NR = 2 zmm (32 floats, 16 doubles), MR = 8: 16 accumulators of 32 registers;
//   x86-64-v3: NR = 3 ymm (24 floats, 12 doubles), MR = 4: 12 accumulators, 3 panel vectors and
//              a broadcast fill the 16 registers. The 3 × 4-ymm tile this replaced left no
//              register for the broadcast: 71-77 GFLOP/s on the step's shapes (B 64, H 512, LSTM)
//              against 86-89 for this one on a Zen 3 core (peak 101);
//   baseline:  NR = 3 xmm (12 floats, 6 doubles), MR = 4, the same shape in SSE2's 16 registers.
// A buffer is packed and used at one level: change the level (set_cpu_level) between
// computations, not between a pack_panels and the gemm_packed calls that read its panels.
#pragma once

#include <cstddef>

namespace bptt::kernels {

// Columns per panel at the active CPU level.
template <class Real>
int panel_width();

// Elements a packed op(W) [K, N] takes at any level (the largest of the levels' paddings), so a
// buffer sized once serves whichever level runs.
template <class Real>
std::size_t packed_size(int N, int K);

// ASSIGNS P (packed_size(N, K) elements) from W: W is [N, K] with row stride ldw when trans
// (op(W) = Wᵀ), else [K, N].
template <class Real>
void pack_panels(bool trans, int N, int K, const Real* W, int ldw, Real* P);

// C[M, N] = init + A[M, K] · op(W), A row-major with row stride lda, P from pack_panels:
// init is the row `bias` [N] broadcast to every row when bias is given (C is ASSIGNED and never
// read), else C itself (ACCUMULATES). Single-threaded; rows go in blocks of 64, so M may be
// large (the hoisted products over all T·B rows). Compiled per x86-64 level
// (step_gemm_kernel.inc).
void gemm_packed(int M, int N, int K, const float* A, int lda, const float* P, const float* bias,
                 float* C, int ldc);
void gemm_packed(int M, int N, int K, const double* A, int lda, const double* P,
                 const double* bias, double* C, int ldc);

// C[M, N] = bias + A1[M, K1] · op(W1) + A2[M, K2] · op(W2), with P1 and P2 packed from W1 and
// W2 by pack_panels (same N): the per-step product of a layer whose x-side product is formed in
// the time loop, [x_t | h_{t-1}] · [W_ih | W_hh]ᵀ without concatenating either. ASSIGNS C
// (never read); bias is required. Single-threaded; for the M = B rows of one step (each 8-row
// tile crosses all panels before the next). Compiled per x86-64 level.
// The order is tile-major (each tile of rows across every panel: its rows of A1 and A2 stay in
// L1) or panel-major (as gemm_packed: each panel read once per 64 rows), chosen from the size of
// the packed weights and the CPU (pair_by_panels in step_gemm.cpp); the sums are the same bits
// either way.
void gemm_packed_pair(int M, int N, int K1, const float* A1, int lda1, const float* P1, int K2,
                      const float* A2, int lda2, const float* P2, const float* bias, float* C,
                      int ldc);
void gemm_packed_pair(int M, int N, int K1, const double* A1, int lda1, const double* P1, int K2,
                      const double* A2, int lda2, const double* P2, const double* bias, double* C,
                      int ldc);

// The order gemm_packed_pair takes: the measured rule, or either one forced, process-wide (the
// tests run both). Returns the previous setting.
enum class PairOrder { by_rule, tiles, panels };
PairOrder set_pair_order(PairOrder order);

}  // namespace bptt::kernels
