#include "kernels/step_gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>

#include "kernels/simd.hpp"
#include "support/cache.hpp"
#if BPTT_HAVE_CPU_LEVELS
#include "kernels/transpose.hpp"
#endif

namespace bptt::kernels {

namespace {

// The kernels once per x86-64 level (step_gemm_kernel.inc says why this way), each with the tile
// that fits the level's registers (step_gemm.hpp): MR·kNV accumulators, kNV panel vectors and a
// broadcast of A must fit, or GCC spills the accumulators to the stack in the K loop.
#if BPTT_HAVE_CPU_LEVELS
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace v4 {
#define BPTT_TILE_ROWS 8
#define BPTT_VEC_BYTES 64
#define BPTT_PANEL_VECS 2
#include "kernels/step_gemm_kernel.inc"
#undef BPTT_PANEL_VECS
#undef BPTT_VEC_BYTES
#undef BPTT_TILE_ROWS
}  // namespace v4
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace v3 {
#define BPTT_TILE_ROWS 4
#define BPTT_VEC_BYTES 32
#define BPTT_PANEL_VECS 3
#include "kernels/step_gemm_kernel.inc"
#undef BPTT_PANEL_VECS
#undef BPTT_VEC_BYTES
#undef BPTT_TILE_ROWS
}  // namespace v3
#pragma GCC pop_options
#endif
namespace base {
#define BPTT_TILE_ROWS 4
#define BPTT_VEC_BYTES 16
#define BPTT_PANEL_VECS 3
#include "kernels/step_gemm_kernel.inc"
#undef BPTT_PANEL_VECS
#undef BPTT_VEC_BYTES
#undef BPTT_TILE_ROWS
}  // namespace base

#if BPTT_HAVE_CPU_LEVELS
// Rows [0, K / 16 · 16) of one full panel of the x86-64-v4 float layout (32 columns) from its
// 32 rows of W (op(W) = Wᵀ, row stride ldw), as 16 × 16 blocks transposed in registers; returns
// the k where the rest begins. The scalar copy it replaces stored every value to another line
// of the panel: LSTM shape b's W_hhᵀ (2048 × 512) packed in 0.51-0.97 ms, this in 0.17-0.38
// (docs/benchmarks.md, issue 19 part 8).
[[gnu::target("arch=x86-64-v4")]] int pack_columns_v4(int K, const float* W, int ldw,
                                                      float* panel) {
  constexpr int NR = 32;
  int k0 = 0;
  for (; k0 + 16 <= K; k0 += 16)
    for (int h = 0; h < NR; h += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(W + std::size_t(h + i) * ldw + k0);
      transpose16(r);
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(panel + std::size_t(k0 + i) * NR + h, r[i]);
    }
  return k0;
}
#endif

}  // namespace

// Each call runs the kernels of the level bptt::cpu_level() names (bptt/cpu.hpp).
#if BPTT_HAVE_CPU_LEVELS
#define BPTT_STEP_DISPATCH(CALL)                                  \
  switch (::bptt::cpu_level()) {                                  \
    case ::bptt::CpuLevel::x86_64_v4: return v4::CALL;             \
    case ::bptt::CpuLevel::x86_64_v3: return v3::CALL;             \
    case ::bptt::CpuLevel::baseline: break;                        \
  }                                                               \
  return base::CALL;
#else
#define BPTT_STEP_DISPATCH(CALL) return base::CALL;
#endif

template <class Real>
int panel_width() {
  BPTT_STEP_DISPATCH(kLevelPanel<Real>)
}

template <class Real>
std::size_t packed_size(int N, int K) {
  std::size_t most = 0;
  for (const int NR : {
#if BPTT_HAVE_CPU_LEVELS
           v4::kLevelPanel<Real>, v3::kLevelPanel<Real>,
#endif
           base::kLevelPanel<Real>})
    most = std::max(most, std::size_t((N + NR - 1) / NR) * std::size_t(NR) * std::size_t(K));
  return most;
}

template <class Real>
void pack_panels(bool trans, int N, int K, const Real* W, int ldw, Real* P) {
  const int NR = panel_width<Real>();
  for (int n0 = 0; n0 < N; n0 += NR) {
    Real* panel = P + std::size_t(n0) * K;
    const int cols = std::min(NR, N - n0);
    if (trans) {  // column j of the panel is row n0 + j of W, read contiguously; in blocks of
                  // kKBlock rows of the panel, which stay in L1 while its columns are filled
      int done = 0;  // rows of the panel already filled (transposed in registers)
#if BPTT_HAVE_CPU_LEVELS
      if constexpr (std::is_same_v<Real, float>)
        if (cols == 32 && NR == 32 && cpu_level() == CpuLevel::x86_64_v4)
          done = pack_columns_v4(K, W + std::size_t(n0) * ldw, ldw, panel);
#endif
      constexpr int kKBlock = 128;
      for (int k0 = done; k0 < K; k0 += kKBlock) {
        const int k1 = std::min(K, k0 + kKBlock);
        for (int j = 0; j < cols; ++j) {
          const Real* w = W + std::size_t(n0 + j) * ldw;
          for (int k = k0; k < k1; ++k) panel[std::size_t(k) * NR + j] = w[k];
        }
      }
    } else {  // row k of the panel is part of row k of W
      for (int k = 0; k < K; ++k)
        std::copy(W + std::size_t(k) * ldw + n0, W + std::size_t(k) * ldw + n0 + cols,
                  panel + std::size_t(k) * NR);
    }
    if (cols < NR)
      for (int k = 0; k < K; ++k)
        std::fill(panel + std::size_t(k) * NR + cols, panel + std::size_t(k + 1) * NR, Real(0));
  }
}

void gemm_packed(int M, int N, int K, const float* A, int lda, const float* P, const float* bias,
                 float* C, int ldc) {
  BPTT_STEP_DISPATCH(run_packed(M, N, K, A, lda, P, bias, C, ldc))
}
void gemm_packed(int M, int N, int K, const double* A, int lda, const double* P,
                 const double* bias, double* C, int ldc) {
  BPTT_STEP_DISPATCH(run_packed(M, N, K, A, lda, P, bias, C, ldc))
}
// Whether gemm_packed_pair goes panel-major (packed() with a second source) rather than tile-major
// (packed_pair) over `bytes` of packed weights. Tile-major reads every panel once per tile of
// rows, panel-major once per block of rows. On a Zen, with the weights in L2, tile-major ran the
// step 2-5% faster; beyond L2 it reads the weights from L3 once per tile. On a Xeon with AMX
// (2 MiB of L2, 29 GB/s of L3 for one core) panel-major was ahead at every size (M = 64, 1 thread,
// GFLOP/s): 512 KiB 183 -> 191, 1.5 MiB 160-171 -> 178-180, 2 MiB 143-145 -> 173-175, 6 MiB (LSTM
// shape b's [W_ih | W_hh]) 110-116 -> 163-168; M = 16 and 8 at 2 MiB: 141-146 -> 150-159.
namespace {

std::atomic<PairOrder> g_pair_order{PairOrder::by_rule};

bool pair_by_panels(std::size_t bytes) {
  switch (g_pair_order.load(std::memory_order_relaxed)) {
    case PairOrder::tiles: return false;
    case PairOrder::panels: return true;
    case PairOrder::by_rule: break;
  }
  const std::size_t l2 = support::l2_bytes();
  return support::intel_cpu() || bytes > (l2 > 0 ? l2 : std::size_t(1) << 20);
}

template <class Real>
std::size_t pair_bytes(int N, int K1, int K2) {
  return (packed_size<Real>(N, K1) + packed_size<Real>(N, K2)) * sizeof(Real);
}

}  // namespace

PairOrder set_pair_order(PairOrder order) { return g_pair_order.exchange(order); }

void gemm_packed_pair(int M, int N, int K1, const float* A1, int lda1, const float* P1, int K2,
                      const float* A2, int lda2, const float* P2, const float* bias, float* C,
                      int ldc) {
  const bool by_panels = pair_by_panels(pair_bytes<float>(N, K1, K2));
  BPTT_STEP_DISPATCH(
      run_packed_pair(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc, by_panels))
}
void gemm_packed_pair(int M, int N, int K1, const double* A1, int lda1, const double* P1, int K2,
                      const double* A2, int lda2, const double* P2, const double* bias,
                      double* C, int ldc) {
  const bool by_panels = pair_by_panels(pair_bytes<double>(N, K1, K2));
  BPTT_STEP_DISPATCH(
      run_packed_pair(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc, by_panels))
}
#undef BPTT_STEP_DISPATCH

#define BPTT_INSTANTIATE(Real)                                      \
  template int panel_width<Real>();                                 \
  template std::size_t packed_size<Real>(int, int);                 \
  template void pack_panels<Real>(bool, int, int, const Real*, int, Real*);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt::kernels
