// The machine's single-thread float FMA peak, for docs/benchmarks.md: the ceiling that any step
// time (bptt's, PyTorch's, oneDNN's) is measured against. Twelve independent accumulators of
// vfmadd231ps (more than latency x throughput on any x86-64 core), in inline assembly so that the
// compiler can neither fold nor reorder them; 512-bit (zmm) and 256-bit (ymm) forms, since some
// cores (AMD Zen 4) execute AVX-512 on 256-bit units and reach the same peak with either.
//
//   g++ -O2 -mavx512f bench/peak/fma_peak.cpp -o build/bench/fma_peak && build/bench/fma_peak
//
// Prints GFLOP/s (2 FLOPs per lane per FMA) for each form the CPU has, best of 5 runs of about
// 0.3 s; then the bf16 peak, where the CPU has AVX512-BF16: vdpbf16ps, 2 bf16 products per
// float lane (4 FLOPs per lane per instruction), the ceiling of bptt's bf16 products
// (--dtype bf16), twice the float rate on cores that issue it at the FMA's rate; then, where the
// CPU has AMX-BF16 (Intel Xeon from Sapphire Rapids on), the AMX peak: tdpbf16ps, a 16 × 16
// float tile += a 16 × 32 bf16 tile times a 32 × 16 one (16·16·32 products, 2 FLOPs each), four
// independent sums, the ceiling of the products bptt runs on the tiles.
#include <chrono>
#include <cstdint>
#include <cstdio>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace {

#define BPTT_R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define BPTT_CLOBBER                                                                      \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
      "xmm11"

constexpr long kIterations = 100'000'000;

// GFLOP/s of kIterations runs of `twelve_fmas` (12 FMAs of `lanes` floats each).
template <class Body>
double rate(Body twelve_fmas, int lanes) {
  const auto t0 = std::chrono::steady_clock::now();
  for (long n = 0; n < kIterations; ++n) twelve_fmas();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(kIterations) * 12 * lanes * 2 / s / 1e9;
}

#define BPTT_Z(i) "vfmadd231ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define BPTT_Y(i) "vfmadd231ps %%ymm12, %%ymm13, %%ymm" #i "\n\t"
double zmm() {
  return rate([] { asm volatile(BPTT_R12(BPTT_Z)::: BPTT_CLOBBER); }, 16);
}
double ymm() {
  return rate([] { asm volatile(BPTT_R12(BPTT_Y)::: BPTT_CLOBBER); }, 8);
}
// vdpbf16ps: each of 16 float lanes += 2 bf16 products; rate() counts 2 FLOPs per lane, so
// lanes = 32 gives the 4 per float lane.
#define BPTT_B(i) "vdpbf16ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
double bf16() {
  return rate([] { asm volatile(BPTT_R12(BPTT_B)::: BPTT_CLOBBER); }, 32);
}

// The tiles' configuration: palette 1, tiles 0-7 of 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette, start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};
constexpr TileConfig kTiles{
    1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

// Linux hands a process the tile state only when asked (else tdpbf16ps is illegal).
bool amx_permitted() {
#if defined(__linux__)
  return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
  return false;
#endif
}

// GFLOP/s of tdpbf16ps: sums 0-3 += tiles 4, 5 times tiles 6, 7 (zero: ldtilecfg clears them).
double amx() {
  constexpr long kRounds = 5'000'000;  // four instructions each: about 0.1 s
  asm volatile("ldtilecfg %0" ::"m"(kTiles));
  const auto t0 = std::chrono::steady_clock::now();
  for (long n = 0; n < kRounds; ++n)
    asm volatile(
        "tdpbf16ps %%tmm6, %%tmm4, %%tmm0\n\t"
        "tdpbf16ps %%tmm7, %%tmm4, %%tmm1\n\t"
        "tdpbf16ps %%tmm6, %%tmm5, %%tmm2\n\t"
        "tdpbf16ps %%tmm7, %%tmm5, %%tmm3\n\t" ::
            : "memory");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  asm volatile("tilerelease" ::: "memory");
  return double(kRounds) * 4 * 16 * 16 * 32 * 2 / s / 1e9;
}

// The best rate of 5 runs.
double best_of_5(double (*rate)()) {
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    const double r = rate();
    best = r > best ? r : best;
  }
  return best;
}

}  // namespace

int main() {
  // The 512-bit form only where the CPU has AVX-512 (on an AVX2-only core it is an illegal
  // instruction); the 256-bit form needs FMA.
  __builtin_cpu_init();
  const bool has_zmm = __builtin_cpu_supports("avx512f");
  const bool has_bf16 = __builtin_cpu_supports("avx512bf16");
  double best_z = 0, best_y = 0;
  for (int run = 0; run < 5; ++run) {
    const double z = has_zmm ? zmm() : 0, y = ymm();
    best_z = z > best_z ? z : best_z;
    best_y = y > best_y ? y : best_y;
  }
  if (has_zmm)
    std::printf("float FMA peak, one thread: 512-bit %.1f GFLOP/s, 256-bit %.1f GFLOP/s\n",
                best_z, best_y);
  else
    std::printf("float FMA peak, one thread: 256-bit %.1f GFLOP/s (no AVX-512)\n", best_y);
  if (!has_bf16) {
    std::printf("bf16 peak, one thread: n/a (no AVX512-BF16: bptt emulates bf16 products)\n");
    return 0;
  }
  const double best_b = best_of_5(bf16);
  std::printf("bf16 peak, one thread: vdpbf16ps %.1f GFLOP/s (%.2fx the 512-bit float FMA)\n",
              best_b, best_b / best_z);
  if (!__builtin_cpu_supports("amx-bf16") || !__builtin_cpu_supports("amx-tile") ||
      !amx_permitted())
    return 0;
  const double best_t = best_of_5(amx);
  std::printf("bf16 peak, one thread: AMX tdpbf16ps %.1f GFLOP/s (%.2fx the 512-bit float FMA)\n",
              best_t, best_t / best_z);
}
