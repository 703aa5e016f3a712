// The float products of the LSTM shape-b training step (bench/compare.sh's
// lstm_l1_t100_b64_i256_h512_o256) and of shape a, timed alone: bptt's gemm<float>() (at the
// x86-64-v4 level its blocked kernel, kernels/sgemm.hpp) beside oneDNN's dnnl_sgemm and OpenBLAS's
// cblas_sgemm on the same operands, one thread, medians of repeated calls, GFLOP/s. Each result
// is also checked against the others (largest difference printed). Built by bench/kernels/build.sh;
// read the figures against build/bench/fma_peak's, measured beside them. A second table times the
// per-step products on packed panels (kernels/step_gemm.hpp): gemm_packed at the step's shapes
// and gemm_packed_pair in both of its orders (tile-major, panel-major; which one the library
// takes is pair_by_panels' rule), with the weights from 0.5 to 6 MiB.
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bptt/cpu.hpp"
#include "kernels/gemm.hpp"
#include "kernels/step_gemm.hpp"
#include "support/aligned.hpp"

namespace {

struct Shape {
  const char* name;
  bool ta, tb;
  int M, N, K;
  float beta;
};

template <class F>
double median_seconds(double seconds, F f) {
  f();  // warm-up
  std::vector<double> t;
  const auto start = std::chrono::steady_clock::now();
  const auto since = [](auto t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  while (t.size() < 3 || since(start) < seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(since(t0));
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

}  // namespace

// C[M, N] = bias + A1[M, K1]·W1ᵀ + A2[M, K2]·W2ᵀ on packed panels, repeated: the step's
// product with the weights reread at every step. K1 = 0: gemm_packed alone (one source).
void step_products(double seconds) {
  namespace k = bptt::kernels;
  struct Step {
    int M, N, K1, K2;
  };
  const Step steps[] = {{64, 2048, 0, 512}, {64, 1024, 0, 512}, {32, 2048, 0, 512},
                        {64, 512, 128, 128}, {64, 1024, 256, 256}, {16, 1024, 256, 256},
                        {64, 2048, 128, 256}, {64, 2048, 256, 512}};
  std::printf("\nper-step products on packed panels (1 thread, GFLOP/s; K1 = 0: gemm_packed)\n");
  std::printf("%5s %5s %4s %4s %9s %11s %11s\n", "M", "N", "K1", "K2", "MiB", "tile-major",
              "panel-major");
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Step& s : steps) {
    // Every buffer at a cache line, as the library's (support::LineVector).
    using Buffer = bptt::support::LineVector<float>;
    const auto filled = [&](std::size_t n) {
      Buffer v(n);
      for (float& x : v) x = u(rng);
      return v;
    };
    const int k1 = std::max(s.K1, 1);
    const Buffer W1v = filled(std::size_t(s.N) * k1), W2v = filled(std::size_t(s.N) * s.K2),
                 A1v = filled(std::size_t(s.M) * k1), A2v = filled(std::size_t(s.M) * s.K2),
                 biasv = filled(std::size_t(s.N));
    const std::size_t n1 = k::packed_size<float>(s.N, s.K1), n2 = k::packed_size<float>(s.N, s.K2);
    Buffer P1v(n1 + 1), P2v(n2), Cv(std::size_t(s.M) * s.N);
    const float *W1 = W1v.data(), *W2 = W2v.data(), *A1 = A1v.data(), *A2 = A2v.data(),
                *bias = biasv.data();
    float *P1 = P1v.data(), *P2 = P2v.data(), *C = Cv.data();
    k::pack_panels<float>(true, s.N, s.K1, W1, k1, P1);
    k::pack_panels<float>(true, s.N, s.K2, W2, s.K2, P2);
    const double flop = 2.0 * s.M * s.N * (s.K1 + s.K2),
                 mib = double(n1 + n2) * sizeof(float) / (1 << 20);
    double rate[2] = {0, 0};
    for (int order = s.K1 == 0 ? 1 : 0; order < 2; ++order) {  // gemm_packed: panel-major
      const auto saved = k::set_pair_order(order == 0 ? k::PairOrder::tiles : k::PairOrder::panels);
      const double t = median_seconds(seconds, [&] {
        if (s.K1 == 0)
          k::gemm_packed(s.M, s.N, s.K2, A2, s.K2, P2, bias, C, s.N);
        else
          k::gemm_packed_pair(s.M, s.N, s.K1, A1, s.K1, P1, s.K2, A2, s.K2, P2, bias, C, s.N);
      });
      k::set_pair_order(saved);
      rate[order] = flop / t / 1e9;
    }
    if (s.K1 == 0)
      std::printf("%5d %5d %4d %4d %9.2f %11s %11.1f\n", s.M, s.N, s.K1, s.K2, mib, "-", rate[1]);
    else
      std::printf("%5d %5d %4d %4d %9.2f %11.1f %11.1f\n", s.M, s.N, s.K1, s.K2, mib, rate[0],
                  rate[1]);
  }
}

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
  const Shape shapes[] = {
      {"b hoisted x*W_ih^T  NT", false, true, 6400, 2048, 256, 0},
      {"b dW_hh  dG^T*h     TN", true, false, 2048, 512, 6400, 1},
      {"b dW_ih  dG^T*x     TN", true, false, 2048, 256, 6400, 1},
      {"b dh from readout   NN", false, false, 6400, 512, 256, 0},
      {"b dW_o   dz^T*h     TN", true, false, 256, 512, 6400, 1},
      {"a hoisted x*W_ih^T  NT", false, true, 3200, 512, 64, 0},
      {"a dW_hh  dG^T*h     TN", true, false, 512, 128, 3200, 1},
  };
  std::printf("bptt gemm<float> at level %s; 1 thread; GFLOP/s (median of calls over %.1f s)\n",
              std::string(bptt::to_string(bptt::cpu_level())).c_str(), seconds);
  std::printf("%-26s %8s %8s %8s %9s %9s\n", "product", "bptt", "oneDNN", "OpenBLAS",
              "oneDNN/", "max diff");
  std::printf("%-26s %8s %8s %8s %9s\n", "", "", "", "", "bptt time");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Shape& s : shapes) {
    const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<float> A(std::size_t(s.ta ? s.K : s.M) * lda), B(std::size_t(s.tb ? s.N : s.K) * ldb),
        C0(std::size_t(s.M) * s.N);
    for (auto* v : {&A, &B, &C0})
      for (float& x : *v) x = u(rng);
    std::vector<float> C[3] = {C0, C0, C0};
    const auto ours = [&] {
      bptt::kernels::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb,
                                 s.beta, C[0].data(), s.N);
    };
    const auto dnnl = [&] {
      dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(),
                 ldb, s.beta, C[1].data(), s.N);
    };
    const auto blas = [&] {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                  s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, s.beta, C[2].data(), s.N);
    };
    // One call each from the same C, compared, before the timed calls.
    ours(), dnnl(), blas();
    double diff = 0;
    for (std::size_t i = 0; i < C0.size(); ++i)
      diff = std::max({diff, double(std::abs(C[0][i] - C[1][i])), double(std::abs(C[0][i] - C[2][i]))});
    const double flop = 2.0 * s.M * s.N * s.K;
    const double t0 = median_seconds(seconds, ours), t1 = median_seconds(seconds, dnnl),
                 t2 = median_seconds(seconds, blas);
    std::printf("%-26s %8.1f %8.1f %8.1f %9.2f %9.2g\n", s.name, flop / t0 / 1e9, flop / t1 / 1e9,
                flop / t2 / 1e9, t1 / t0, diff);
  }
  step_products(seconds);
}
