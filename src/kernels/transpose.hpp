// A 16 × 16 block of 32-bit values transposed in AVX-512 registers, for the packing of weight
// panels from W's rows (kernels/step_gemm.cpp, kernels/bf16.cpp): a panel's column is a row of W,
// so a scalar copy stores every value to another line of the panel; here 16 rows are loaded,
// shuffled in four rounds (32-bit pairs, 64-bit pairs, 128-bit lanes twice) and stored as 16
// panel rows. Include only where x86-64-v4 code is compiled (a target region or attribute).
#pragma once

#include <cstddef>

#include <immintrin.h>

#include "kernels/simd.hpp"

namespace bptt::kernels {

// r[i] = row i of a 16 × 16 block in; r[i] = column i of it out (lane j of r[i] = old lane i of
// r[j]). The shuffles are the maskz forms with every lane set: GCC 12 reports the plain ones,
// which start from _mm512_undefined_ps(), as maybe-uninitialized.
[[gnu::target("arch=x86-64-v4")]] BPTT_ALWAYS_INLINE void transpose16(__m512 (&r)[16]) {
  constexpr __mmask16 kAll = 0xffff;
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // 32-bit pairs of rows i, i + 1
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 64-bit pairs: four rows' values in each 128-bit lane
    r[i] = _mm512_maskz_shuffle_ps(kAll, t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_maskz_shuffle_ps(kAll, t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_maskz_shuffle_ps(kAll, t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_maskz_shuffle_ps(kAll, t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit lanes: eight rows' values in each 256-bit half
    t[i] = _mm512_maskz_shuffle_f32x4(kAll, r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_maskz_shuffle_f32x4(kAll, r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_maskz_shuffle_f32x4(kAll, r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_maskz_shuffle_f32x4(kAll, r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; ++i) {  // and all sixteen rows' values in each register
    r[i] = _mm512_maskz_shuffle_f32x4(kAll, t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_maskz_shuffle_f32x4(kAll, t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_maskz_shuffle_f32x4(kAll, t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_maskz_shuffle_f32x4(kAll, t[i + 4], t[i + 12], 0xDD);
  }
}

}  // namespace bptt::kernels
