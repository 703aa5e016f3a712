#include "kernels/sgemm.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "kernels/gemm.hpp"
#include "kernels/simd.hpp"
#include "support/aligned.hpp"

#if BPTT_HAVE_CPU_LEVELS
#include <immintrin.h>
#endif

namespace bptt::kernels::sgemm {

#if BPTT_HAVE_CPU_LEVELS

bool native() { return cpu_level() == CpuLevel::x86_64_v4; }

namespace {

constexpr int NR = 32;       // columns per panel: two zmm
constexpr int MR = 12;       // rows per tile: 24 accumulators, 2 panel vectors, a broadcast
constexpr int kDepth = 256;  // k per block: a panel's block is 32 KB, in L1 (48 KB on Zen 5)
constexpr int kRows = 96;    // rows of op(A) per block: 96 KB, in L2 while every panel passes

// The per-thread buffers the packed operands go to, grown to the largest use and kept, aligned to
// a cache line: a panel row's two vectors then never straddle two lines.
float* buffer(int slot, std::size_t n) {
  thread_local std::vector<float> buf[2];
  if (buf[slot].size() < n + support::line_slack<float>())
    buf[slot].resize(n + support::line_slack<float>());
  return support::line_start(buf[slot].data());
}

// How a tile's C starts and ends (as bf16.cpp's): C += sums (c), C += alpha · sums (zero), or
// C = alpha · sums with C never read (assign: beta = 0 in the first block of k).
enum class Init { c, zero, assign };

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")

BPTT_ALWAYS_INLINE __mmask16 lanes(int n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// C[R rows, cols ≤ NR] (row stride ldc) from init and Σ_k op(A)[r][k] · b[k][·] over kc k: a is
// a micro-panel (Packed: R values per k) or R rows of A itself (row stride lda), b a panel (NR
// per k). The sums start from zero and C is read
// only at the end, its rows asked for at the start: C is often far larger than the caches (the
// hoisted product's [T·B, G·H], a weight gradient's [G·H, H] read once per block of k), and a
// tile that loaded its C first waited for it (dW_hh of LSTM shape b: 7-10% of the time).
// Partial columns go under masks.
template <int R, bool Packed>
BPTT_ALWAYS_INLINE void tile(int kc, const float* __restrict a, int lda, const float* __restrict b,
                             Init init, float alpha, float* C, int ldc, int cols) {
  const __mmask16 k0 = lanes(cols), k1 = lanes(cols - 16);
#pragma GCC unroll 16
  for (int m = 0; m < R; ++m) {
    _mm_prefetch(reinterpret_cast<const char*>(C + std::size_t(m) * ldc), _MM_HINT_ET0);
    _mm_prefetch(reinterpret_cast<const char*>(C + std::size_t(m) * ldc + 16), _MM_HINT_ET0);
  }
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int m = 0; m < R; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b + std::size_t(k) * NR);
    const __m512 b1 = _mm512_loadu_ps(b + std::size_t(k) * NR + 16);
#pragma GCC unroll 16
    for (int m = 0; m < R; ++m) {
      const __m512 x =
          _mm512_set1_ps(Packed ? a[std::size_t(k) * R + m] : a[std::size_t(m) * lda + k]);
      acc[m][0] = _mm512_fmadd_ps(x, b0, acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(x, b1, acc[m][1]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 16
  for (int m = 0; m < R; ++m) {
    float* c = C + std::size_t(m) * ldc;
    if (init == Init::c) {
      acc[m][0] = _mm512_add_ps(acc[m][0], _mm512_maskz_loadu_ps(k0, c));
      acc[m][1] = _mm512_add_ps(acc[m][1], _mm512_maskz_loadu_ps(k1, c + 16));
    } else if (init == Init::zero) {
      acc[m][0] = _mm512_fmadd_ps(scale, acc[m][0], _mm512_maskz_loadu_ps(k0, c));
      acc[m][1] = _mm512_fmadd_ps(scale, acc[m][1], _mm512_maskz_loadu_ps(k1, c + 16));
    } else if (alpha != 1.0f) {
      acc[m][0] = _mm512_mul_ps(scale, acc[m][0]);
      acc[m][1] = _mm512_mul_ps(scale, acc[m][1]);
    }
    _mm512_mask_storeu_ps(c, k0, acc[m][0]);
    _mm512_mask_storeu_ps(c + 16, k1, acc[m][1]);
  }
}

// The tile of h rows (a for_tiles height) at a: tile<h, Packed>.
template <bool Packed>
BPTT_ALWAYS_INLINE void tile_of(int h, int kc, const float* a, int lda, const float* panel,
                                Init init, float alpha, float* C, int ldc, int cols) {
  switch (h) {
    case MR: return tile<MR, Packed>(kc, a, lda, panel, init, alpha, C, ldc, cols);
    case 8: return tile<8, Packed>(kc, a, lda, panel, init, alpha, C, ldc, cols);
    case 4: return tile<4, Packed>(kc, a, lda, panel, init, alpha, C, ldc, cols);
    case 2: return tile<2, Packed>(kc, a, lda, panel, init, alpha, C, ldc, cols);
    default: return tile<1, Packed>(kc, a, lda, panel, init, alpha, C, ldc, cols);
  }
}

// The heights of the micro-panels of a block of `rows` rows, in order: MR while they last,
// then one smaller tile per bit of the rest (8, 4, 2, 1).
template <class F>
BPTT_ALWAYS_INLINE void for_tiles(int rows, F&& f) {
  int m = 0;
  for (; m + MR <= rows; m += MR) f(m, MR);
  for (const int h : {8, 4, 2, 1})
    if (m + h <= rows) f(m, h), m += h;
}

// Rows m0 .. m0 + rows of op(A) = Aᵀ (A is [K, M] with row stride lda), k0 .. k0 + kc, as
// for_tiles' micro-panels one after the other: the panel of height h at row m holds
// [k][i] = A[k0 + k][m0 + m + i], a copy of h consecutive values per k. (Where op(A) = A, the
// tiles read A's rows where they are: each row is a stream along k.)
void pack_a(const float* A, int lda, int m0, int rows, int k0, int kc, float* out) {
  // Row by row of A: each row's part is read once, front to back, while rows further down are
  // asked for (A is usually a [T·B, G·H] gradient in memory, its rows kilobytes apart).
  constexpr int kAhead = 8;
  for (int k = 0; k < kc; ++k) {
    const float* r = A + std::size_t(k0 + k) * lda + m0;
    if (k + kAhead < kc)
      for (int j = 0; j < rows; j += 16)
        _mm_prefetch(reinterpret_cast<const char*>(r + std::size_t(kAhead) * lda + j), _MM_HINT_T0);
    for_tiles(rows, [&](int m, int h) {
      const __mmask16 lo = lanes(h), hi = lanes(h - 16);
      float* o = out + std::size_t(m) * kc + std::size_t(k) * h;
      _mm512_mask_storeu_ps(o, lo, _mm512_maskz_loadu_ps(lo, r + m));
      if (h > 16) _mm512_mask_storeu_ps(o + 16, hi, _mm512_maskz_loadu_ps(hi, r + m + 16));
    });
  }
}

// Rows k0 .. k0 + kc of op(B)'s columns n0 .. n0 + cols (B is [N, K] with row stride ldb when
// trans, else [K, N]) as a panel [kc][NR], zero past cols.
void pack_b(bool trans, const float* B, int ldb, int n0, int cols, int k0, int kc, float* out) {
  if (trans) {
    if (cols < NR) std::memset(out, 0, sizeof(float) * std::size_t(kc) * NR);
    for (int j = 0; j < cols; ++j) {
      const float* r = B + std::size_t(n0 + j) * ldb + k0;
      for (int k = 0; k < kc; ++k) out[std::size_t(k) * NR + j] = r[k];
    }
  } else {
    for (int k = 0; k < kc; ++k) {
      const float* r = B + std::size_t(k0 + k) * ldb + n0;
      float* o = out + std::size_t(k) * NR;
      _mm512_storeu_ps(o, _mm512_maskz_loadu_ps(lanes(cols), r));
      _mm512_storeu_ps(o + 16, _mm512_maskz_loadu_ps(lanes(cols - 16), r + 16));
    }
  }
}

// The most bytes of panels (a block of k of every op(B)) that go tile-major (gemm_part).
constexpr std::size_t kTileMajorBytes = std::size_t(1) << 20;

// C[M, N] = alpha · op(A) · op(B) + (assign ? 0 : C) on this thread for each of outs[0..count)
// (BlockedOut, kernels/gemm.hpp): op(A)'s block is packed once for all their panels.
//
// Per block of k, every panel is packed, then each block of op(A)'s rows goes over them in one of
// two orders. Tile-major (op(A) = Aᵀ, packed, and the panels take at most kTileMajorBytes): each
// tile's rows cross every panel before the next tile starts, so its micro-panel stays in L1, the
// panels come from L2 and C is written a row segment after the next. Panel-major (the rest): each
// panel stays in L1 while every tile of the block passes over it. On Zen 5 the weight gradients
// (Aᵀ·B) ran 3-11% faster tile-major (dW_hh of LSTM shape b, [2048, 512] over K = 6400: 177 ->
// 196 GFLOP/s), products of A's rows in place 25% slower (docs/benchmarks.md, issue 19 part 7).
void gemm_part(bool ta, bool tb, int M, int K, float alpha, const float* A, int lda, bool assign,
               const BlockedOut<float>* outs, int count) {
  const int panels = panel_count(NR, outs, count);
  for (int k0 = 0; k0 < K; k0 += kDepth) {
    const Init init = k0 == 0 && assign ? Init::assign : alpha == 1.0f ? Init::c : Init::zero;
    const int kc = std::min(kDepth, K - k0);
    const std::size_t panel_size = std::size_t(NR) * kc;
    float* b = buffer(1, std::size_t(panels) * panel_size);
    for (int p = 0; p < panels; ++p) {
      const PanelOf<float> at = panel_of(p, NR, outs, count);
      pack_b(tb, at.out->B, at.out->ldb, at.n0, at.cols, k0, kc, b + std::size_t(p) * panel_size);
    }
    const bool tile_major =
        ta && std::size_t(panels) * panel_size * sizeof(float) <= kTileMajorBytes;
    for (int m0 = 0; m0 < M; m0 += kRows) {
      const int rows = std::min(kRows, M - m0);
      // op(A)'s block: packed micro-panels (Aᵀ) or A's rows in place.
      const float* a = A + std::size_t(m0) * lda + k0;
      if (ta) {
        float* packed = buffer(0, std::size_t(rows) * kc);
        pack_a(A, lda, m0, rows, k0, kc, packed);
        a = packed;
      }
      if (tile_major) {
        for_tiles(rows, [&](int m, int h) {
          const float* micro = a + std::size_t(m) * kc;
          for (int p = 0; p < panels; ++p) {
            const PanelOf<float> at = panel_of(p, NR, outs, count);
            float* cm = at.out->C + std::size_t(m0 + m) * at.out->ldc + at.n0;
            tile_of<true>(h, kc, micro, 0, b + std::size_t(p) * panel_size, init, alpha, cm,
                          at.out->ldc, at.cols);
          }
        });
        continue;
      }
      for (int p = 0; p < panels; ++p) {
        const float* panel = b + std::size_t(p) * panel_size;
        const PanelOf<float> at = panel_of(p, NR, outs, count);
        const int ldc_p = at.out->ldc, cols = at.cols;
        float* c = at.out->C + std::size_t(m0) * ldc_p + at.n0;
        for_tiles(rows, [&](int m, int h) {
          float* cm = c + std::size_t(m) * ldc_p;
          if (ta)
            return tile_of<true>(h, kc, a + std::size_t(m) * kc, 0, panel, init, alpha, cm, ldc_p,
                                 cols);
          tile_of<false>(h, kc, a + std::size_t(m) * lda, lda, panel, init, alpha, cm, ldc_p,
                         cols);
        });
      }
    }
  }
}

#pragma GCC pop_options

}  // namespace

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  blocked_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_part);
}

void gemm_tn_pair(int M, int N1, int N2, int K, float alpha, const float* A, int lda,
                  const float* B1, int ldb1, const float* B2, int ldb2, float beta, float* C1,
                  int ldc1, float* C2, int ldc2) {
  blocked_gemm_tn_pair(M, N1, N2, K, alpha, A, lda, B1, ldb1, B2, ldb2, beta, C1, ldc1, C2, ldc2,
                       gemm_part);
}

#else  // no AVX-512 kernel in this build: native() is false and gemm() is never called

bool native() { return false; }

void gemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
          int) {
  throw Error(ErrorKind::usage, "sgemm", "this build has no AVX-512 float kernel",
              "gemm<float>() calls it only where sgemm::native() holds");
}
void gemm_tn_pair(int, int, int, int, float, const float*, int, const float*, int, const float*,
                  int, float, float*, int, float*, int) {
  throw Error(ErrorKind::usage, "sgemm", "this build has no AVX-512 float kernel",
              "gemm_tn_pair<float>() calls it only where sgemm::native() holds");
}

#endif

}  // namespace bptt::kernels::sgemm
