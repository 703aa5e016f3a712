#include "kernels/bf16.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "bptt/precision.hpp"
#include "kernels/gemm.hpp"
#include "kernels/simd.hpp"
#include "support/aligned.hpp"

#if BPTT_HAVE_CPU_LEVELS
#include <immintrin.h>

#include "kernels/transpose.hpp"
#endif
#if BPTT_HAVE_CPU_LEVELS && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace bptt::kernels::bf16 {

namespace {
// −1 until the first amx() reads BPTT_AMX; then 1 (on) or 0.
std::atomic<int> g_amx{-1};

// BPTT_AMX: unset, empty, 1 or on use the tiles; 0 or off do not; anything else is an error
// (as BPTT_CPU_LEVEL's unknown names), not a silent default.
int from_environment() {
  const char* env = std::getenv("BPTT_AMX");
  const std::string_view v = env ? env : "";
  if (v.empty() || v == "1" || v == "on") return 1;
  if (v == "0" || v == "off") return 0;
  throw Error(ErrorKind::usage, "BPTT_AMX", "unknown value '" + std::string(v.substr(0, 40)) + "'",
              "0 or off keeps the bf16 products off the AMX tiles; 1 or on (the default) uses them");
}

bool wanted() {
  int on = g_amx.load(std::memory_order_relaxed);
  if (on < 0) {
    int unresolved = -1;
    g_amx.compare_exchange_strong(unresolved, from_environment(), std::memory_order_relaxed);
    on = g_amx.load(std::memory_order_relaxed);
  }
  return on == 1;
}
}  // namespace

bool set_amx(bool on) {
  const bool was = wanted();
  g_amx.store(on ? 1 : 0, std::memory_order_relaxed);
  return was;
}

#if BPTT_HAVE_CPU_LEVELS

bool native() {
  static const bool cpu = cpu_has_bf16();
  return cpu && cpu_level() == CpuLevel::x86_64_v4;
}

bool amx_available() {
  static const bool ok = [] {
    if (!cpu_has_bf16()) return false;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16")) return false;
#if defined(__linux__)
    // Linux hands out the 8 KB tile data state only on request (once per process, for every
    // thread); without it the first tile instruction is an illegal one.
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return ok;
}

bool amx() { return wanted() && native() && amx_available(); }

namespace {

using Word = std::uint32_t;  // a pair of bfloat16 values, the even k in the lower half
constexpr int NR = 32;       // columns per panel: two zmm of float sums
// Rows of A rounded at a time: a block (at most 64 KB of pairs for K = 512) stays in L2 while
// every panel passes over it, each 8-row tile of it in L1.
constexpr int kRowBlock = 64;
// k per block of gemm()'s operands: a panel's block is 32 KB, in L1 while the row tiles pass.
constexpr int kDepthBlock = 512;

// The per-thread buffers the rounded operands go to, grown to the largest use and kept, from a
// cache line's start: a tile's row or a vector load that crosses two lines costs two.
Word* buffer(int slot, std::size_t words) {
  thread_local std::vector<Word> buf[3];
  if (buf[slot].size() < words + support::line_slack<Word>())
    buf[slot].resize(words + support::line_slack<Word>());
  return support::line_start(buf[slot].data());
}

// How a tile's C starts and ends: from the bias row, or from C itself (C = init + sums); or the
// sums alone, added to C (zero: C += alpha · sums) or written over it (assign: C = alpha · sums,
// C never read: a product with beta = 0, whose C may hold anything, is not read from memory).
enum class Init { bias, c, zero, assign };

// One source of a tile's sums: the word of row m and pair kp of A's rounded pairs at
// A[m·rs + kp·ks], the panel's words [kp][NR] at P, Kp pairs.
struct Source {
  const Word* A = nullptr;
  std::ptrdiff_t rs = 0, ks = 0;
  const void* P = nullptr;
  int Kp = 0;
};

// Pairs per tile row (32 k): the tiles' depth. Counts of pairs padded to it with zeros.
constexpr int kTilePairs = 16;
int padded(int pairs) { return (pairs + kTilePairs - 1) / kTilePairs * kTilePairs; }

#pragma GCC push_options
// AMX too: only the tile functions below use it, and only where amx() holds.
#pragma GCC target("arch=x86-64-v4,avx512bf16,amx-tile,amx-bf16")

// The lanes below n of a 16-lane register.
BPTT_ALWAYS_INLINE __mmask16 lanes(int n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// 16 floats rounded to bfloat16 (nearest even; NaN stays NaN), as 16-bit halves.
BPTT_ALWAYS_INLINE __m256i round16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

// n floats of x rounded to bfloat16 in order, stored as halves at out: (n + 1) / 2 words, the
// odd n's last word's upper half zero.
BPTT_ALWAYS_INLINE void round_row(int n, const float* x, void* out) {
  auto* h = static_cast<std::uint16_t*>(out);
  int k = 0;
  for (; k + 16 <= n; k += 16) _mm256_storeu_si256((__m256i*)(h + k), round16(_mm512_loadu_ps(x + k)));
  if (k < n)
    _mm256_mask_storeu_epi16(h + k, lanes(n + (n & 1) - k),
                             round16(_mm512_maskz_loadu_ps(lanes(n - k), x + k)));
}

// 16 halves zero-extended to words. The maskz forms with every lane set, here and for the shift
// below: the plain _mm512_cvtepu16_epi32 and _mm512_slli_epi32 start from
// _mm512_undefined_epi32(), which GCC 12 reports as maybe-uninitialized.
BPTT_ALWAYS_INLINE __m512i widen(__m256i h) {
  return _mm512_maskz_cvtepu16_epi32(__mmask16(0xffff), h);
}

// total words at out, word j = (r0[j], r1[j]) rounded for j < valid, zero beyond; r1 = nullptr
// reads as zeros (the pair past an odd K).
BPTT_ALWAYS_INLINE void round_pairs(int valid, int total, const float* r0, const float* r1,
                                    void* out) {
  auto* w = static_cast<Word*>(out);
  for (int j = 0; j < total; j += 16) {
    const __mmask16 in = lanes(valid - j);
    const __m512i lo = widen(round16(_mm512_maskz_loadu_ps(in, r0 + j)));
    const __m512i hi = r1 ? widen(round16(_mm512_maskz_loadu_ps(in, r1 + j))) : _mm512_setzero_si512();
    _mm512_mask_storeu_epi32(
        w + j, lanes(total - j),
        _mm512_or_si512(lo, _mm512_maskz_slli_epi32(__mmask16(0xffff), hi, 16)));
  }
}

// The panel's pairs kp for its columns 16v .. 16v + 15. (Functions, not lambdas: GCC compiles a
// lambda returning a vector for the default target, not this region's.)
BPTT_ALWAYS_INLINE __m512bh panel(const Source& s, int kp, int v) {
  return (__m512bh)_mm512_loadu_si512(static_cast<const char*>(s.P) +
                                      (std::size_t(kp) * NR + std::size_t(v) * 16) * sizeof(Word));
}
// Row m's pair kp of A, in every lane.
BPTT_ALWAYS_INLINE __m512bh a(const Source& s, int m, int kp) {
  return (__m512bh)_mm512_set1_epi32(int(s.A[m * s.rs + kp * s.ks]));
}

// acc[m] += Σ_kp A's pair (m, kp) · the panel's pairs at kp, over MR rows and the panel's two
// vectors. Chained (one row, a matrix-vector product): two accumulator chains over even and
// odd kp, summed at the end, so that consecutive pairs do not wait on each other's latency.
template <int MR, bool Chained>
BPTT_ALWAYS_INLINE void accumulate(__m512 (&acc)[MR][2], const Source& s) {
  if constexpr (Chained) {
    static_assert(MR == 1, "chained accumulation is for one row");
    __m512 odd0 = _mm512_setzero_ps(), odd1 = _mm512_setzero_ps();
    int kp = 0;
    for (; kp + 2 <= s.Kp; kp += 2) {
      const __m512bh x0 = a(s, 0, kp), x1 = a(s, 0, kp + 1);
      acc[0][0] = _mm512_dpbf16_ps(acc[0][0], x0, panel(s, kp, 0));
      acc[0][1] = _mm512_dpbf16_ps(acc[0][1], x0, panel(s, kp, 1));
      odd0 = _mm512_dpbf16_ps(odd0, x1, panel(s, kp + 1, 0));
      odd1 = _mm512_dpbf16_ps(odd1, x1, panel(s, kp + 1, 1));
    }
    if (kp < s.Kp) {
      const __m512bh x = a(s, 0, kp);
      acc[0][0] = _mm512_dpbf16_ps(acc[0][0], x, panel(s, kp, 0));
      acc[0][1] = _mm512_dpbf16_ps(acc[0][1], x, panel(s, kp, 1));
    }
    acc[0][0] = _mm512_add_ps(acc[0][0], odd0);
    acc[0][1] = _mm512_add_ps(acc[0][1], odd1);
  } else {
    for (int kp = 0; kp < s.Kp; ++kp) {
      const __m512bh b0 = panel(s, kp, 0), b1 = panel(s, kp, 1);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const __m512bh x = a(s, m, kp);
        acc[m][0] = _mm512_dpbf16_ps(acc[m][0], x, b0);
        acc[m][1] = _mm512_dpbf16_ps(acc[m][1], x, b1);
      }
    }
  }
}

// C[MR rows, cols ≤ NR] from init and the sums of s1 (and s2 when given, K2 > 0). Partial
// columns (the last panel) load and store under masks: the same instructions as full ones.
template <int MR, bool Chained = false>
BPTT_ALWAYS_INLINE void tile(Init init, float alpha, const float* bias, float* C, int ldc,
                             int cols, const Source& s1, const Source* s2) {
  const __mmask16 k0 = lanes(cols), k1 = lanes(cols - 16);
  __m512 acc[MR][2];
  if (init == Init::bias) {
    const __m512 b0 = _mm512_maskz_loadu_ps(k0, bias), b1 = _mm512_maskz_loadu_ps(k1, bias + 16);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) acc[m][0] = b0, acc[m][1] = b1;
  } else if (init == Init::c) {
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      acc[m][0] = _mm512_maskz_loadu_ps(k0, C + std::size_t(m) * ldc);
      acc[m][1] = _mm512_maskz_loadu_ps(k1, C + std::size_t(m) * ldc + 16);
    }
  } else {
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
  }
  accumulate<MR, Chained>(acc, s1);
  if (s2 && s2->Kp > 0) accumulate<MR, Chained>(acc, *s2);
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    float* c = C + std::size_t(m) * ldc;
    if (init == Init::zero) {
      acc[m][0] = _mm512_fmadd_ps(scale, acc[m][0], _mm512_maskz_loadu_ps(k0, c));
      acc[m][1] = _mm512_fmadd_ps(scale, acc[m][1], _mm512_maskz_loadu_ps(k1, c + 16));
    } else if (init == Init::assign && alpha != 1.0f) {
      acc[m][0] = _mm512_mul_ps(scale, acc[m][0]);
      acc[m][1] = _mm512_mul_ps(scale, acc[m][1]);
    }
    _mm512_mask_storeu_ps(c, k0, acc[m][0]);
    _mm512_mask_storeu_ps(c + 16, k1, acc[m][1]);
  }
}

// The AMX tiles, all eight as 16 rows of 64 bytes: 0-3 sums (16 × 16 floats each), 4-5 rows of
// A (16 rows × 16 pairs), 6-7 panels (16 pair rows × 16 columns' words). Configured for a
// thread's whole call (loading a configuration zeroes the tiles), released at its end so that
// the thread does not carry 8 KB of tile state through every context switch after.
// The configuration is a constant: built on the stack, GCC 12 was seen (in a test program) to
// drop the stores of its rows and columns, which ldtilecfg reads without GCC knowing.
struct alignas(64) TileConfig {
  std::uint8_t palette, start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};
constexpr TileConfig kTileConfig{
    1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};
class Tiles {
 public:
  explicit Tiles(bool on) : on_(on) {
    if (on_) _tile_loadconfig(&kTileConfig);
  }
  ~Tiles() {
    if (on_) _tile_release();
  }
  Tiles(const Tiles&) = delete;
  Tiles& operator=(const Tiles&) = delete;
  explicit operator bool() const { return on_; }

 private:
  bool on_;
};

// tdpbf16ps over one source: sums += A's rows [0, 16·MT) · the panel, both in whole tiles (s.Kp
// a multiple of 16, A's rows and the panel zero past the real pairs). Tile 4 (and 5) holds 16 rows
// of A, tiles 6 and 7 the panel's two 16-column halves; sums 0, 1 (and 2, 3) by row then column
// tile. The tile numbers are immediates, hence MT as a template.
template <int MT>
BPTT_ALWAYS_INLINE void tile_sums(const Source& s) {
  const auto* a = reinterpret_cast<const char*>(s.A);
  const auto* p = static_cast<const char*>(s.P);
  const long as = long(s.rs) * long(sizeof(Word)), ps = long(NR) * long(sizeof(Word));
  for (int kp = 0; kp < s.Kp; kp += kTilePairs) {
    const char* ak = a + std::size_t(kp) * sizeof(Word);
    const char* pk = p + std::size_t(kp) * std::size_t(ps);
    _tile_loadd(4, ak, as);
    _tile_loadd(6, pk, ps);
    _tile_loadd(7, pk + 64, ps);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if constexpr (MT == 2) {
      _tile_loadd(5, ak + 16 * as, as);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
}

// tile()'s contract on the AMX tiles: C[16·MT rows, cols ≤ NR] from init and the sums of s1 (and
// s2 when its Kp > 0), each source in whole tiles (tile_sums). Full panels whose C ends as
// init + sums load and store the tiles from and to C (and the bias row, read 16 times over);
// the rest go through a block of this thread's (4 KB, in L1) and masked stores.
template <int MT>
BPTT_ALWAYS_INLINE void amx_tile(Init init, float alpha, const float* bias, float* C, int ldc,
                                 int cols, const Source& s1, const Source* s2) {
  constexpr int R = 16 * MT;
  if (init == Init::zero && alpha == 1.0f && cols == NR) init = Init::c;  // C += sums
  alignas(64) float block[R * NR];
  const long cs = long(ldc) * long(sizeof(float)), bs = long(NR) * long(sizeof(float));
  const bool direct = cols == NR && init != Init::zero && (init != Init::assign || alpha == 1.0f);
  if (init == Init::c || init == Init::bias) {
    const float* from = init == Init::c ? C : bias;
    long stride = init == Init::c ? cs : 0;
    if (cols < NR) {  // the partial panel's init, zero beyond its columns
      const __mmask16 k0 = lanes(cols), k1 = lanes(cols - 16);
      for (int m = 0; m < (init == Init::c ? R : 1); ++m) {
        const float* src = init == Init::c ? C + std::size_t(m) * ldc : bias;
        _mm512_store_ps(block + m * NR, _mm512_maskz_loadu_ps(k0, src));
        _mm512_store_ps(block + m * NR + 16, _mm512_maskz_loadu_ps(k1, src + 16));
      }
      from = block;
      stride = init == Init::c ? bs : 0;
    }
    _tile_loadd(0, from, stride);
    _tile_loadd(1, from + 16, stride);
    if constexpr (MT == 2) {
      _tile_loadd(2, reinterpret_cast<const char*>(from) + 16 * stride, stride);
      _tile_loadd(3, reinterpret_cast<const char*>(from + 16) + 16 * stride, stride);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (MT == 2) {
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  tile_sums<MT>(s1);
  if (s2 && s2->Kp > 0) tile_sums<MT>(*s2);
  float* to = direct ? C : block;
  const long ts = direct ? cs : bs;
  _tile_stored(0, to, ts);
  _tile_stored(1, to + 16, ts);
  if constexpr (MT == 2) {
    _tile_stored(2, reinterpret_cast<char*>(to) + 16 * ts, ts);
    _tile_stored(3, reinterpret_cast<char*>(to + 16) + 16 * ts, ts);
  }
  if (direct) return;
  const __mmask16 k0 = lanes(cols), k1 = lanes(cols - 16);
  const __m512 scale = _mm512_set1_ps(alpha);
  for (int m = 0; m < R; ++m) {
    float* c = C + std::size_t(m) * ldc;
    __m512 x0 = _mm512_load_ps(block + m * NR), x1 = _mm512_load_ps(block + m * NR + 16);
    if (init == Init::zero) {
      x0 = _mm512_fmadd_ps(scale, x0, _mm512_maskz_loadu_ps(k0, c));
      x1 = _mm512_fmadd_ps(scale, x1, _mm512_maskz_loadu_ps(k1, c + 16));
    } else if (init == Init::assign) {
      x0 = _mm512_mul_ps(scale, x0);
      x1 = _mm512_mul_ps(scale, x1);
    }
    _mm512_mask_storeu_ps(c, k0, x0);
    _mm512_mask_storeu_ps(c + 16, k1, x1);
  }
}

// Rows [0, rows) of one panel's columns, in tiles of MR (8 or 12), then 8, 4, 2 and 1 rows; on
// the AMX tiles (when `tiles`, the sources in whole tiles) 32 and 16 rows first. The sources' A
// pointers are those of row 0; each tile's are moved to its own rows.
template <int MR = 8>
BPTT_ALWAYS_INLINE void rows_of_panel(int rows, Init init, float alpha, const float* bias,
                                      float* C, int ldc, int cols, Source s1, Source s2,
                                      bool tiles = false) {
  const Word* a1 = s1.A;
  const Word* a2 = s2.A;
  int m = 0;
  const auto at = [&](int r) {
    s1.A = a1 + r * s1.rs;
    s2.A = a2 ? a2 + r * s2.rs : nullptr;
    return C + std::size_t(r) * ldc;
  };
  if (tiles) {
    for (; m + 32 <= rows; m += 32) amx_tile<2>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
    if (m + 16 <= rows) {
      amx_tile<1>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
      m += 16;
    }
  }
  for (; m + MR <= rows; m += MR) {
    // The next tile's rows of C, asked for now (for writing): a product's C is often far larger
    // than the caches (the hoisted product's [T·B, G·H]), and without this each tile waited for
    // its rows at its end (the hoisted product of LSTM shape b, M 6400, N 2048, K 256: 304 -> 357
    // GFLOP/s on a Zen 5 core; dW_ih, M 2048, N 512, K 6400: 297 -> 314).
    if (init != Init::bias)
      for (int r = m + MR; r < std::min(rows, m + 2 * MR); ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(C + std::size_t(r) * ldc), _MM_HINT_ET0);
        _mm_prefetch(reinterpret_cast<const char*>(C + std::size_t(r) * ldc + 16), _MM_HINT_ET0);
      }
    tile<MR>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
  }
  if constexpr (MR > 8)
    for (; m + 8 <= rows; m += 8) tile<8>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
  for (; m + 4 <= rows; m += 4) tile<4>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
  for (; m + 2 <= rows; m += 2) tile<2>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
  for (; m < rows; ++m) tile<1>(init, alpha, bias, at(m), ldc, cols, s1, &s2);
}

// The panel of columns [n0, n0 + NR) of a packed buffer: where the float panel starts.
const void* panel_at(const float* P, int n0, int K) { return P + std::size_t(n0) * K; }

// Rows k0 .. k0 + kc of one panel of op(W): its `cols` columns from column n0 (W is [N, K] with
// row stride ldw when trans, else [K, N]) as (kc + 1) / 2 pair rows of NR words, ASSIGNED to dst,
// zero past cols (and past kc). Written through memcpy and vector stores: dst may be a float
// buffer's storage.
void pack_block(bool trans, int n0, int cols, int k0, int kc, const float* W, int ldw, void* dst) {
  auto* out = static_cast<char*>(dst);
  const int kcp = (kc + 1) / 2;
  if (trans) {  // column j: row n0 + j of W rounded along k, its pairs down the panel
    int done = 0;  // pair rows filled: in a full panel, 16 at a time, 16 rows of W rounded
                   // into 16 words each and transposed in registers (kernels/transpose.hpp)
    if (cols == NR)
      for (; done + 16 <= kc / 2; done += 16)
        for (int h = 0; h < NR; h += 16) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) {
            const float* w = W + std::size_t(n0 + h + i) * ldw + k0 + 2 * done;
            // k 0..15 to the lower half, 16..31 to the upper: 16 pairs in order
            r[i] = (__m512)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(w + 16), _mm512_loadu_ps(w));
          }
          transpose16(r);
          for (int i = 0; i < 16; ++i) {
            char* row = out + (std::size_t(done + i) * NR + h) * sizeof(Word);
            _mm512_storeu_ps(reinterpret_cast<float*>(row), r[i]);
          }
        }
    if (cols < NR) std::memset(out, 0, std::size_t(kcp) * NR * sizeof(Word));
    Word col[kDepthBlock / 2];
    for (int j = 0; j < cols && done < kcp; ++j) {
      round_row(kc - 2 * done, W + std::size_t(n0 + j) * ldw + k0 + 2 * done, col);
      for (int kp = done; kp < kcp; ++kp)
        std::memcpy(out + (std::size_t(kp) * NR + j) * sizeof(Word), &col[kp - done], sizeof(Word));
    }
  } else {  // pair row kp: rows k0 + 2kp and k0 + 2kp + 1 of W, columns n0 .. n0 + cols
    for (int kp = 0; kp < kcp; ++kp) {
      const float* r0 = W + std::size_t(k0 + 2 * kp) * ldw + n0;
      round_pairs(cols, NR, r0, 2 * kp + 1 < kc ? r0 + ldw : nullptr,
                  out + std::size_t(kp) * NR * sizeof(Word));
    }
  }
}

// The pair rows [pairs, padded(pairs)) of each panel zeroed where they fit in its float panel
// (K ≥ 30), so that the tiles read whole tiles of zeros past K: see bf16.hpp.
bool fits_tiles(int K) { return padded((K + 1) / 2) <= K; }

void pack_impl(bool trans, int N, int K, const float* W, int ldw, float* P) {
  const int Kp = (K + 1) / 2;
  for (int n0 = 0; n0 < N; n0 += NR) {
    char* panel = reinterpret_cast<char*>(P + std::size_t(n0) * K);
    for (int k0 = 0; k0 < K; k0 += kDepthBlock)  // blocks of even depth: their pair rows follow on
      pack_block(trans, n0, std::min(NR, N - n0), k0, std::min(kDepthBlock, K - k0), W, ldw,
                 panel + std::size_t(k0 / 2) * NR * sizeof(Word));
    if (fits_tiles(K))
      std::memset(panel + std::size_t(Kp) * NR * sizeof(Word), 0,
                  std::size_t(padded(Kp) - Kp) * NR * sizeof(Word));
  }
}

// Rows of A rounded into pairs along k, `stride` words apart, zero from the row's last pair to
// the stride (stride ≥ (K + 1) / 2).
void round_rows(int rows, int K, const float* A, int lda, Word* out, int stride) {
  const int Kp = (K + 1) / 2;
  for (int r = 0; r < rows; ++r) {
    Word* row = out + std::size_t(r) * stride;
    round_row(K, A + std::size_t(r) * lda, row);
    std::fill(row + Kp, row + stride, Word{0});
  }
}

void packed_impl(int M, int N, int K, const float* A, int lda, const float* P, const float* bias,
                 float* C, int ldc) {
  const int Kp = (K + 1) / 2;
  const Init init = bias ? Init::bias : Init::c;
  if (M == 1) {  // a matrix-vector product: chained accumulation
    Word* a = buffer(0, std::size_t(Kp));
    round_row(K, A, a);
    for (int n0 = 0; n0 < N; n0 += NR)
      tile<1, true>(init, 1.0f, bias ? bias + n0 : nullptr, C + n0, ldc, std::min(NR, N - n0),
                    Source{a, 0, 1, panel_at(P, n0, K), Kp}, nullptr);
    return;
  }
  const Tiles tiles(M >= 16 && K >= 32 && amx());  // K ≥ 32: fits_tiles(K)
  const int stride = tiles ? padded(Kp) : Kp;  // the rows' pairs and the sources' depth
  for (int m0 = 0; m0 < M; m0 += kRowBlock) {
    const int mc = std::min(kRowBlock, M - m0);
    Word* a = buffer(0, std::size_t(mc) * stride);
    round_rows(mc, K, A + std::size_t(m0) * lda, lda, a, stride);
    for (int n0 = 0; n0 < N; n0 += NR)
      rows_of_panel(mc, init, 1.0f, bias ? bias + n0 : nullptr, C + std::size_t(m0) * ldc + n0, ldc,
                    std::min(NR, N - n0), Source{a, stride, 1, panel_at(P, n0, K), stride},
                    Source{}, bool(tiles));
  }
}

// Rows [m, m + MR) of C = bias + A1·P1 + A2·P2 across every panel, from the rounded rows a1 and
// a2 (S1 and S2 pairs apart, each source that deep: K's pairs, or padded for the tiles).
template <int MR, bool Chained = false>
BPTT_ALWAYS_INLINE void pair_rows(int m, int N, int K1, int S1, const Word* a1, const float* P1,
                                  int K2, int S2, const Word* a2, const float* P2,
                                  const float* bias, float* C, int ldc) {
  for (int n0 = 0; n0 < N; n0 += NR) {
    const Source s1{a1 + std::size_t(m) * S1, S1, 1, panel_at(P1, n0, K1), S1};
    const Source s2{a2 + std::size_t(m) * S2, S2, 1, panel_at(P2, n0, K2), S2};
    float* c = C + std::size_t(m) * ldc + n0;
    const int cols = std::min(NR, N - n0);
    if constexpr (MR >= 16)
      amx_tile<MR / 16>(Init::bias, 1.0f, bias + n0, c, ldc, cols, s1, &s2);
    else
      tile<MR, Chained>(Init::bias, 1.0f, bias + n0, c, ldc, cols, s1, &s2);
  }
}

// Tile-major, as gemm_packed_pair: each tile of rows crosses every panel while its rows of both
// sources stay in L1.
void packed_pair_impl(int M, int N, int K1, const float* A1, int lda1, const float* P1, int K2,
                      const float* A2, int lda2, const float* P2, const float* bias, float* C,
                      int ldc) {
  const Tiles tiles(M >= 16 && K1 >= 32 && K2 >= 32 && amx());
  const int S1 = tiles ? padded((K1 + 1) / 2) : (K1 + 1) / 2;
  const int S2 = tiles ? padded((K2 + 1) / 2) : (K2 + 1) / 2;
  Word* a1 = buffer(0, std::size_t(M) * S1);
  Word* a2 = buffer(1, std::size_t(M) * S2);
  round_rows(M, K1, A1, lda1, a1, S1);
  round_rows(M, K2, A2, lda2, a2, S2);
  // (no lambda for the calls below: GCC compiles a lambda for the default target, not this
  // region's, and would refuse to inline the kernels into it)
#define BPTT_PAIR_ROWS(MR, CHAINED, M0) \
  pair_rows<MR, CHAINED>(M0, N, K1, S1, a1, P1, K2, S2, a2, P2, bias, C, ldc)
  if (M == 1) return BPTT_PAIR_ROWS(1, true, 0);
  int m = 0;
  if (tiles) {
    for (; m + 32 <= M; m += 32) BPTT_PAIR_ROWS(32, false, m);
    for (; m + 16 <= M; m += 16) BPTT_PAIR_ROWS(16, false, m);
  }
  for (; m + 8 <= M; m += 8) BPTT_PAIR_ROWS(8, false, m);
  for (; m + 4 <= M; m += 4) BPTT_PAIR_ROWS(4, false, m);
  for (; m + 2 <= M; m += 2) BPTT_PAIR_ROWS(2, false, m);
  for (; m < M; ++m) BPTT_PAIR_ROWS(1, false, m);
#undef BPTT_PAIR_ROWS
}

// C = alpha · op(A) · op(B) + (assign ? 0 : C) on this thread for each of outs[0..count)
// (BlockedOut, kernels/gemm.hpp), in blocks of kDepthBlock k: each block of every op(B) packed
// into panels once, each kGemmRows rows of op(A) rounded once, then every 12-row tile across
// every panel. beta = 0 assigns in the first block (C is not read);
// later blocks add their sums to C at each tile's end (Init::zero), not from its start: a tile
// that loaded C first waited for it (as kernels/sgemm.cpp found). Measured on a Zen 5 core
// (LSTM shape b's dW_hh, TN 2048 × 512 × 6400): 8-row tiles from C 314 GFLOP/s; 12-row tiles,
// C at the end and Aᵀ's rows asked for ahead: see docs/benchmarks.md, issue 19 part 6.
void gemm_part(bool ta, bool tb, int M, int K, float alpha, const float* A, int lda, bool assign,
               const BlockedOut<float>* outs, int count) {
  constexpr int kGemmRows = 96;  // 96 rows of 256 pairs: 96 KB, in L2 while every panel passes
  const int panels = panel_count(NR, outs, count);
  // On the tiles: every block's depth padded to whole tiles, zero in the panels and rows of A
  // alike, which are rows of pairs along k (Aᵀ's pairs transposed into them).
  const Tiles tiles(M >= 16 && amx());
  for (int k0 = 0; k0 < K; k0 += kDepthBlock) {
    const Init init = k0 == 0 && assign ? Init::assign : Init::zero;
    const int kc = std::min(kDepthBlock, K - k0), kcp = (kc + 1) / 2;
    const int depth = tiles ? padded(kcp) : kcp;
    const std::size_t panel_words = std::size_t(NR) * depth;
    Word* b = buffer(1, std::size_t(panels) * panel_words);
    for (int p = 0; p < panels; ++p) {
      const PanelOf<float> at = panel_of(p, NR, outs, count);
      Word* panel = b + std::size_t(p) * panel_words;
      pack_block(tb, at.n0, at.cols, k0, kc, at.out->B, at.out->ldb, panel);
      std::fill(panel + std::size_t(NR) * kcp, panel + panel_words, Word{0});
    }
    for (int m0 = 0; m0 < M; m0 += kGemmRows) {
      const int mc = std::min(kGemmRows, M - m0);
      const int width = tiles ? padded(mc) : mc;  // Aᵀ's pair rows: mc words, or whole tiles
      Word* a = buffer(0, std::size_t(width) * depth);
      Source s{a, 0, 0, nullptr, depth};
      if (ta) {  // op(A) = Aᵀ, A [K, M]: pair kp of rows m0.. from rows 2kp and 2kp + 1 of A
        // (A is usually a [T·B, G·H] gradient, its rows kilobytes apart: the rows kAhead pairs
        // down are asked for while these are rounded)
        constexpr int kAhead = 4;
        Word* pairs = tiles ? buffer(2, std::size_t(width) * depth) : a;
        s.rs = 1, s.ks = width;
        for (int kp = 0; kp < kcp; ++kp) {
          const float* r0 = A + std::size_t(k0 + 2 * kp) * lda + m0;
          if (2 * (kp + kAhead) + 1 < kc)  // both rows of the pair kAhead down lie in A
            for (int j = 0; j < mc; j += 16) {
              _mm_prefetch(reinterpret_cast<const char*>(r0 + std::size_t(2 * kAhead) * lda + j),
                           _MM_HINT_T0);
              _mm_prefetch(
                  reinterpret_cast<const char*>(r0 + std::size_t(2 * kAhead + 1) * lda + j),
                  _MM_HINT_T0);
            }
          round_pairs(mc, width, r0, 2 * kp + 1 < kc ? r0 + lda : nullptr,
                      pairs + std::size_t(kp) * width);
        }
        if (tiles) {  // [depth][width] -> [width][depth], 16 × 16 words at a time
          std::fill(pairs + std::size_t(kcp) * width, pairs + std::size_t(depth) * width, Word{0});
          for (int k = 0; k < depth; k += 16)
            for (int j = 0; j < width; j += 16) {
              __m512 r[16];
              for (int i = 0; i < 16; ++i)
                r[i] = _mm512_loadu_ps(reinterpret_cast<const float*>(pairs + std::size_t(k + i) * width + j));
              transpose16(r);
              for (int i = 0; i < 16; ++i)
                _mm512_storeu_ps(reinterpret_cast<float*>(a + std::size_t(j + i) * depth + k), r[i]);
            }
          s.rs = depth, s.ks = 1;
        }
      } else {  // op(A) = A [M, K]: each row's pairs along k
        s.rs = depth, s.ks = 1;
        round_rows(mc, kc, A + std::size_t(m0) * lda + k0, lda, a, depth);
      }
      for (int p = 0; p < panels; ++p) {
        s.P = b + std::size_t(p) * panel_words;
        const PanelOf<float> at = panel_of(p, NR, outs, count);
        float* c = at.out->C + std::size_t(m0) * at.out->ldc + at.n0;
        if (ta && !tiles)
          rows_of_panel<12>(mc, init, alpha, nullptr, c, at.out->ldc, at.cols, s, Source{});
        else
          rows_of_panel<8>(mc, init, alpha, nullptr, c, at.out->ldc, at.cols, s, Source{},
                           bool(tiles));
      }
    }
  }
}

#pragma GCC pop_options

}  // namespace

void pack(bool trans, int N, int K, const float* W, int ldw, float* P) {
  pack_impl(trans, N, K, W, ldw, P);
}

void packed(int M, int N, int K, const float* A, int lda, const float* P, const float* bias,
            float* C, int ldc) {
  packed_impl(M, N, K, A, lda, P, bias, C, ldc);
}

void packed_pair(int M, int N, int K1, const float* A1, int lda1, const float* P1, int K2,
                 const float* A2, int lda2, const float* P2, const float* bias, float* C, int ldc) {
  packed_pair_impl(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);
}

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

#else  // no AVX512-BF16 kernels in this build: native() is false and nothing else is called

bool native() { return false; }
bool amx() {
  (void)wanted();  // a bad BPTT_AMX is refused in every build
  return false;
}
bool amx_available() { return false; }

namespace {
[[noreturn]] void absent() {
  throw Error(ErrorKind::usage, "bf16 kernels", "this build has no AVX512-BF16 kernels",
              "the products emulate bf16 where kernels::bf16::native() is false");
}
}  // namespace

void pack(bool, int, int, const float*, int, float*) { absent(); }
void packed(int, int, int, const float*, int, const float*, const float*, float*, int) { absent(); }
void packed_pair(int, int, int, const float*, int, const float*, int, const float*, int,
                 const float*, const float*, float*, int) {
  absent();
}
void gemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
          int) {
  absent();
}
void gemm_tn_pair(int, int, int, int, float, const float*, int, const float*, int, const float*,
                  int, float, float*, int, float*, int) {
  absent();
}

#endif

}  // namespace bptt::kernels::bf16
