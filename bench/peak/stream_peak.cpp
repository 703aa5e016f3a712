// The machine's single-thread memory-stream rate, for docs/benchmarks.md: the ceiling of the
// online gradient methods (bptt grad/train --method uoro|snap1|eprop), which read and write a
// per-sequence array as large as B times the recurrent parameters at every time step. Each pass
// reads every float of a buffer larger than the caches, scales it and writes it back (the
// methods' update, w ← a·w + b), from 1, 2, 4 or 8 places at once (the methods stream one array
// per sequence, several sequences at a time).
//
//   g++ -O3 -march=native bench/peak/stream_peak.cpp -o build/bench/stream_peak
//   build/bench/stream_peak [MB]        (default 42.2: UORO's θ̃ at H = 256, I = 64, B = 32)
//
// Prints GB/s counting the bytes read and the bytes written, best of 15 passes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const double mb = argc > 1 ? std::atof(argv[1]) : 42.2;
  if (!(mb > 0)) {
    std::fprintf(stderr, "usage: stream_peak [MB > 0]\n");
    return 2;
  }
  const std::size_t n = std::size_t(mb * 1e6 / sizeof(float)) / 128 * 128;
  std::vector<float> buf(n, 1.0f);
  std::printf("memory streams, one thread, %.1f MB read and written per pass:", double(n) * 4 / 1e6);
  for (int streams : {1, 2, 4, 8}) {
    const std::size_t len = n / std::size_t(streams);
    double best = 1e30;
    for (int rep = 0; rep < 15; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      // The streams advance together, 16 floats (a cache line) at a time.
      for (std::size_t i = 0; i < len; i += 16)
        for (int s = 0; s < streams; ++s) {
          float* p = buf.data() + std::size_t(s) * len + i;
          for (int l = 0; l < 16; ++l) p[l] = p[l] * 0.999f + 0.001f;
        }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf(" %d: %.1f GB/s%s", streams, 2.0 * double(n) * 4 / best / 1e9, streams < 8 ? "," : "\n");
  }
  return buf[n / 2] > 0 ? 0 : 1;  // keeps the passes
}
