// The float products of the LSTM shape-b training step (bench/compare.sh's
// lstm_l1_t100_b64_i256_h512_o256) and of shape a, timed alone: bptt's gemm<float>() (at the
// x86-64-v4 level its blocked kernel, kernels/sgemm.hpp) beside oneDNN's dnnl_sgemm and OpenBLAS's
// cblas_sgemm on the same operands, one thread, medians of repeated calls, GFLOP/s. Each result
// is also checked against the others (largest difference printed). Built by bench/kernels/build.sh;
// read the figures against build/bench/fma_peak's, measured beside them.
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
}
