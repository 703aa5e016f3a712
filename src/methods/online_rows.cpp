// The streaming loops of the per-sequence online methods (online.hpp, "the row kernels"): each
// pass reads and writes a method's per-sequence arrays once per step, so these loops, not the
// step's GEMMs, set the methods' cost at H = 256. Compiled for each CPU level (kernels/simd.hpp):
// the portable build would otherwise run them with SSE2.
//
// A block is `rows` rows of n values (row r at r·n) of a method's array and of the gradient; the
// rows' coefficients are arrays over r. src is the rows' common input (n values), or nullptr for
// bias rows (n = 1, input 1), which are then one vector over r.
#include <cstddef>
#include <cstring>

#include "kernels/simd.hpp"
#include "methods/online.hpp"

namespace bptt::online {
namespace {

// One zmm as a GCC vector: 16 floats or 8 doubles (split in two or four where the CPU level is
// narrower); sums of squares go to vectors of 8 doubles.
template <class T>
struct Lanes;
template <>
struct Lanes<float> {
  static constexpr int V = 16;
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Lanes<double> {
  static constexpr int V = 8;
  typedef double type __attribute__((vector_size(64)));
};
using D8 = Lanes<double>::type;

// acc[0] (and acc[1] for floats) += v² in double.
template <class VR>
BPTT_ALWAYS_INLINE void add_squares(D8* acc, const VR& v) {  // by reference: -Wpsabi
  if constexpr (sizeof(v[0]) == sizeof(float)) {
    typedef float F8 __attribute__((vector_size(32)));
    const F8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    const F8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    const D8 a = __builtin_convertvector(lo, D8), b = __builtin_convertvector(hi, D8);
    acc[0] += a * a;
    acc[1] += b * b;
  } else {
    acc[0] += v * v;
  }
}

// UORO's θ̃ for NS sequences at once (their blocks share the gradient's, which is then read and
// written once for NS of them): per sequence g += cr·w (the old w), w ← inv0·w + inv1·d[r]·src,
// and Σ w² of the new w into n2. The sums run in vector lanes (GCC's vector extension): a scalar
// sum, all the compiler may form without -ffast-math, would add one value at a time.
template <int NS, class Real>
BPTT_ALWAYS_INLINE void uoro_impl(UoroSeq<Real>* q, Real* g, int rows, int n) {
  constexpr int V = Lanes<Real>::V;
  using VR = typename Lanes<Real>::type;
  D8 acc[NS][2] = {};
  double tail[NS] = {};
  // bias rows (no src) are one run of `rows` values with coefficients inv1·d[c]
  const int runs = q[0].src ? rows : 1, len = q[0].src ? n : rows;
  for (int r = 0; r < runs; ++r) {
    const std::size_t o = std::size_t(r) * std::size_t(len);
    Real dr[NS];
    for (int s = 0; s < NS; ++s) dr[s] = q[s].src ? q[s].inv1 * q[s].d[r] : Real(0);
    Real* gr = g + o;
    int c = 0;
    for (; c + V <= len; c += V) {
      VR gv;
      std::memcpy(&gv, gr + c, sizeof gv);
#pragma GCC unroll 4
      for (int s = 0; s < NS; ++s) {
        Real* wr = q[s].w + o;
        VR old, x;
        std::memcpy(&old, wr + c, sizeof old);
        gv += q[s].cr * old;
        VR now;
        if (q[s].src) {
          std::memcpy(&x, q[s].src + c, sizeof x);
          now = old * q[s].inv0 + dr[s] * x;
        } else {
          std::memcpy(&x, q[s].d + c, sizeof x);
          now = old * q[s].inv0 + q[s].inv1 * x;
        }
        std::memcpy(wr + c, &now, sizeof now);
        add_squares(acc[s], now);
      }
      std::memcpy(gr + c, &gv, sizeof gv);
    }
    for (; c < len; ++c)
      for (int s = 0; s < NS; ++s) {
        Real* wr = q[s].w + o;
        const Real old = wr[c];
        gr[c] += q[s].cr * old;
        const Real now =
            old * q[s].inv0 + (q[s].src ? dr[s] * q[s].src[c] : q[s].inv1 * q[s].d[c]);
        wr[c] = now;
        tail[s] += double(now) * double(now);
      }
  }
  for (int s = 0; s < NS; ++s) {
    for (int l = 0; l < 8; ++l) tail[s] += acc[s][0][l] + acc[s][1][l];
    q[s].n2 += tail[s];
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void uoro_group(UoroSeq<Real>* q, int count, Real* g, int rows, int n) {
  switch (count) {
    case 1: return uoro_impl<1>(q, g, rows, n);
    case 2: return uoro_impl<2>(q, g, rows, n);
    case 3: return uoro_impl<3>(q, g, rows, n);
    default: return uoro_impl<4>(q, g, rows, n);
  }
}

// A trace of Q components (1, or 2 for an LSTM unit's h and c) for NS sequences at once (their
// blocks share the gradient's): per sequence [m0; m1] ← A[r]·[m0; m1] + [k0; k1][r]·src and
// g += e[r]·m0 + x[r]·src.
template <int Q, int NS, class Real>
BPTT_ALWAYS_INLINE void trace_impl(const TraceSeq<Real>* q, Real* g, int rows, int n) {
  if (!q[0].src) {  // bias rows: input 1, coefficients per value
    for (int s = 0; s < NS; ++s) {
      const TraceSeq<Real>& t = q[s];
      for (int r = 0; r < rows; ++r) {
        const Real v0 = t.a00[r] * t.m0[r] + (Q == 2 ? t.a01[r] * t.m1[r] : Real(0)) + t.k0[r];
        if constexpr (Q == 2) t.m1[r] = t.a10[r] * t.m0[r] + t.a11[r] * t.m1[r] + t.k1[r];
        t.m0[r] = v0;
        g[r] += t.e[r] * v0 + (t.x ? t.x[r] : Real(0));
      }
    }
    return;
  }
  constexpr int V = Lanes<Real>::V;
  using VR = typename Lanes<Real>::type;
  for (int r = 0; r < rows; ++r) {
    const std::size_t o = std::size_t(r) * std::size_t(n);
    Real a00[NS], a01[NS], a10[NS], a11[NS], k0[NS], k1[NS], e[NS], x[NS];
    for (int s = 0; s < NS; ++s) {
      const TraceSeq<Real>& t = q[s];
      a00[s] = t.a00[r], k0[s] = t.k0[r], e[s] = t.e[r], x[s] = t.x ? t.x[r] : Real(0);
      if constexpr (Q == 2)
        a01[s] = t.a01[r], a10[s] = t.a10[r], a11[s] = t.a11[r], k1[s] = t.k1[r];
    }
    Real* gr = g + o;
    int c = 0;
    for (; c + V <= n; c += V) {
      VR gv;
      std::memcpy(&gv, gr + c, sizeof gv);
#pragma GCC unroll 4
      for (int s = 0; s < NS; ++s) {
        const TraceSeq<Real>& t = q[s];
        VR m0, in;
        std::memcpy(&m0, t.m0 + o + c, sizeof m0);
        std::memcpy(&in, t.src + c, sizeof in);
        VR v0 = a00[s] * m0 + k0[s] * in;
        if constexpr (Q == 2) {
          VR m1;
          std::memcpy(&m1, t.m1 + o + c, sizeof m1);
          v0 += a01[s] * m1;
          const VR v1 = a10[s] * m0 + a11[s] * m1 + k1[s] * in;
          std::memcpy(t.m1 + o + c, &v1, sizeof v1);
        }
        std::memcpy(t.m0 + o + c, &v0, sizeof v0);
        gv += e[s] * v0 + x[s] * in;
      }
      std::memcpy(gr + c, &gv, sizeof gv);
    }
    for (; c < n; ++c)
      for (int s = 0; s < NS; ++s) {
        const TraceSeq<Real>& t = q[s];
        const Real in = t.src[c], m0 = t.m0[o + c];
        Real v0 = a00[s] * m0 + k0[s] * in;
        if constexpr (Q == 2) {
          const Real m1 = t.m1[o + c];
          v0 += a01[s] * m1;
          t.m1[o + c] = a10[s] * m0 + a11[s] * m1 + k1[s] * in;
        }
        t.m0[o + c] = v0;
        gr[c] += e[s] * v0 + x[s] * in;
      }
  }
}

template <class Real>
BPTT_ALWAYS_INLINE void trace_group(const TraceSeq<Real>* q, int count, Real* g, int rows, int n) {
  const bool two = q[0].m1 != nullptr;
  switch (count) {
    case 1: return two ? trace_impl<2, 1>(q, g, rows, n) : trace_impl<1, 1>(q, g, rows, n);
    case 2: return two ? trace_impl<2, 2>(q, g, rows, n) : trace_impl<1, 2>(q, g, rows, n);
    case 3: return two ? trace_impl<2, 3>(q, g, rows, n) : trace_impl<1, 3>(q, g, rows, n);
    default: return two ? trace_impl<2, 4>(q, g, rows, n) : trace_impl<1, 4>(q, g, rows, n);
  }
}

#define BPTT_ONLINE_ROWS(R, S)                                                                  \
  BPTT_PER_CPU_LEVEL(void, uoro_rows_##S, (UoroSeq<R> * q, int count, R* g, int rows, int n),   \
                     (q, count, g, rows, n), uoro_group(q, count, g, rows, n);)                 \
  BPTT_PER_CPU_LEVEL(void, trace_rows_##S,                                                      \
                     (const TraceSeq<R>* q, int count, R* g, int rows, int n),                  \
                     (q, count, g, rows, n), trace_group(q, count, g, rows, n);)

BPTT_ONLINE_ROWS(float, f32)
BPTT_ONLINE_ROWS(double, f64)
#undef BPTT_ONLINE_ROWS

}  // namespace

void uoro_rows(UoroSeq<float>* q, int count, float* g, int rows, int n) {
  uoro_rows_f32(q, count, g, rows, n);
}
void uoro_rows(UoroSeq<double>* q, int count, double* g, int rows, int n) {
  uoro_rows_f64(q, count, g, rows, n);
}
void trace_rows(const TraceSeq<float>* q, int count, float* g, int rows, int n) {
  trace_rows_f32(q, count, g, rows, n);
}
void trace_rows(const TraceSeq<double>* q, int count, double* g, int rows, int n) {
  trace_rows_f64(q, count, g, rows, n);
}

}  // namespace bptt::online
