#include "kernels/matmul.hpp"

#include <bit>
#include <cstdint>
#include <vector>

#include "bptt/error.hpp"
#include "kernels/bf16.hpp"
#include "kernels/gemm.hpp"
#include "kernels/step_gemm.hpp"

namespace bptt::kernels {

float round_bf16(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::bit_cast<float>((u | 0x00400000u) & 0xffff0000u);
  u += 0x7fffu + ((u >> 16) & 1u);  // ties to even; the carry may reach the exponent (or inf)
  return std::bit_cast<float>(u & 0xffff0000u);
}

void round_bf16(std::size_t n, const float* in, float* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = round_bf16(in[i]);
}

namespace {

// The rows × cols matrix at `m` (row stride ld) rounded into a buffer of this thread's, with
// row stride cols. Two buffers, so that both operands of one product can be held.
const float* rounded(int slot, int rows, int cols, const float* m, int ld) {
  thread_local std::vector<float> buf[2];
  std::vector<float>& b = buf[slot];
  const std::size_t n = std::size_t(rows) * std::size_t(cols);
  if (b.size() < n) b.resize(n);
  for (int r = 0; r < rows; ++r)
    round_bf16(std::size_t(cols), m + std::size_t(r) * std::size_t(ld), b.data() + std::size_t(r) * cols);
  return b.data();
}

template <class Real>
void refuse_double(bool bf16) {
  Products::of<Real>(bf16 ? Matmul::bf16 : Matmul::real, "bf16");
}

}  // namespace

template <class Real>
Products Products::of(Matmul m, const std::string& where) {
  if (m == Matmul::bf16 && !std::is_same_v<Real, float>)
    throw Error(ErrorKind::usage, where, "bf16 products take a float model",
                "use --dtype f32 or bf16 with a float model, or f64 without bf16");
  // A bad BPTT_AMX is refused here, where a computation starts, not inside a product's threads.
  if (m == Matmul::bf16) bf16::amx();
  return Products{.bf16 = m == Matmul::bf16};
}

template <class Real>
void Products::gemm(bool ta, bool tb, int M, int N, int K, Real alpha, const Real* A, int lda,
                    const Real* B, int ldb, Real beta, Real* C, int ldc) const {
  refuse_double<Real>(bf16);
  if constexpr (std::is_same_v<Real, float>) {
    if (bf16 && bf16::native())
      return bf16::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (bf16 && M > 0 && N > 0 && K > 0) {
      // op(A) is [M, K]: stored [M, K] or, transposed, [K, M]; op(B) likewise.
      const float* a = rounded(0, ta ? K : M, ta ? M : K, A, lda);
      const float* b = rounded(1, tb ? N : K, tb ? K : N, B, ldb);
      kernels::gemm<float>(ta, tb, M, N, K, alpha, a, ta ? M : K, b, tb ? K : N, beta, C, ldc);
      return;
    }
  }
  kernels::gemm<Real>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class Real>
void Products::gemm_tn_pair(int M, int N1, int N2, int K, Real alpha, const Real* A, int lda,
                            const Real* B1, int ldb1, const Real* B2, int ldb2, Real beta,
                            Real* C1, int ldc1, Real* C2, int ldc2) const {
  refuse_double<Real>(bf16);
  if constexpr (std::is_same_v<Real, float>) {
    if (bf16 && bf16::native() && N1 > 0 && N2 > 0)
      return bf16::gemm_tn_pair(M, N1, N2, K, alpha, A, lda, B1, ldb1, B2, ldb2, beta, C1, ldc1,
                                C2, ldc2);
    if (bf16) {  // emulated: each product rounds its own operands
      gemm<Real>(true, false, M, N1, K, alpha, A, lda, B1, ldb1, beta, C1, ldc1);
      gemm<Real>(true, false, M, N2, K, alpha, A, lda, B2, ldb2, beta, C2, ldc2);
      return;
    }
  }
  kernels::gemm_tn_pair<Real>(M, N1, N2, K, alpha, A, lda, B1, ldb1, B2, ldb2, beta, C1, ldc1, C2,
                              ldc2);
}

template <class Real>
void Products::pack(bool trans, int N, int K, const Real* W, int ldw, Real* P) const {
  refuse_double<Real>(bf16);
  if constexpr (std::is_same_v<Real, float>)
    if (bf16 && bf16::native()) return bf16::pack(trans, N, K, W, ldw, P);
  pack_panels<Real>(trans, N, K, W, ldw, P);
  if constexpr (std::is_same_v<Real, float>)
    if (bf16) round_bf16(packed_size<float>(N, K), P, P);
}

template <class Real>
void Products::packed(int M, int N, int K, const Real* A, int lda, const Real* P, const Real* bias,
                      Real* C, int ldc) const {
  refuse_double<Real>(bf16);
  if constexpr (std::is_same_v<Real, float>) {
    if (bf16 && bf16::native()) return bf16::packed(M, N, K, A, lda, P, bias, C, ldc);
    if (bf16 && M > 0 && K > 0) {
      gemm_packed(M, N, K, rounded(0, M, K, A, lda), K, P, bias, C, ldc);
      return;
    }
  }
  gemm_packed(M, N, K, A, lda, P, bias, C, ldc);
}

template <class Real>
void Products::packed_pair(int M, int N, int K1, const Real* A1, int lda1, const Real* P1, int K2,
                           const Real* A2, int lda2, const Real* P2, const Real* bias, Real* C,
                           int ldc) const {
  refuse_double<Real>(bf16);
  if constexpr (std::is_same_v<Real, float>) {
    if (bf16 && bf16::native())
      return bf16::packed_pair(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);
    if (bf16 && M > 0) {
      const float* a1 = rounded(0, M, K1, A1, lda1);
      const float* a2 = rounded(1, M, K2, A2, lda2);
      gemm_packed_pair(M, N, K1, a1, K1, P1, K2, a2, K2, P2, bias, C, ldc);
      return;
    }
  }
  gemm_packed_pair(M, N, K1, A1, lda1, P1, K2, A2, lda2, P2, bias, C, ldc);
}

#define BPTT_INSTANTIATE(Real)                                                                  \
  template Products Products::of<Real>(Matmul, const std::string&);                              \
  template void Products::gemm<Real>(bool, bool, int, int, int, Real, const Real*, int,          \
                                     const Real*, int, Real, Real*, int) const;                  \
  template void Products::gemm_tn_pair<Real>(int, int, int, int, Real, const Real*, int,         \
                                             const Real*, int, const Real*, int, Real, Real*,    \
                                             int, Real*, int) const;                             \
  template void Products::pack<Real>(bool, int, int, const Real*, int, Real*) const;             \
  template void Products::packed<Real>(int, int, int, const Real*, int, const Real*,             \
                                       const Real*, Real*, int) const;                          \
  template void Products::packed_pair<Real>(int, int, int, const Real*, int, const Real*, int,   \
                                            const Real*, int, const Real*, const Real*, Real*,   \
                                            int) const;
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt::kernels
