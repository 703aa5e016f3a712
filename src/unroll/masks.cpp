// Drawing the dropout masks and zoneout flags of a training step (include/bptt/unroll.hpp:
// Dropout between layers, Regularizer for issue 18's masks). Every mask element is a pure
// function of (seed, stream, kind, element), so a run is reproducible and resumable without any
// random-number state, and a process that holds some rows of a batch (data parallelism) draws
// exactly those rows of the whole batch's masks.
#include <cstddef>
#include <cstdint>

#include <omp.h>

#include <cmath>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bptt/error.hpp"
#include "bptt/threads.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

namespace {

// 64 random bits from a counter (splitmix64 finalizer): masks depend only on (seed, stream,
// kind, element), never on the order they are drawn in.
inline std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t stream, std::uint64_t k,
                                  std::uint64_t i) {
  std::uint64_t z = seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ (k * 0xD1B54A32D192ED03ull) ^
                    (i * 0xBF58476D1CE4E5B9ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z;
}

// A uniform number in [0, 1) from the counter (Dropout's masks).
inline double counter_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t k,
                              std::uint64_t i) {
  return double(counter_hash(seed, stream, k, i) >> 11) * 0x1.0p-53;
}

// The kinds of Regularizer's masks, apart from Dropout's layer indices (k < L).
enum : std::uint64_t {
  kInput = 1u << 20,
  kRecurrent,
  kOutput,
  kWeight,
  kZoneoutH,
  kZoneoutC
};

// The resolution of Regularizer's probabilities: each mask element takes 16 bits of a 64-bit
// counter hash, four elements per hash (one hash per element cost 33 ms of a 680 ms LSTM
// training step on shape b for zoneout's [T, L·D, B, H] flags of h and c, on a Zen 3 core).
constexpr double kMaskResolution = 65536.0;

// ASSIGNS m [X, B, width] (X blocks of B rows): 0 with probability p, else `keep`, for block x,
// row b, column j drawn as element e = ((x·rows + row0 + b)·width + j) of the whole batch's
// mask: bits 16·(e mod 4) .. +16 of the hash of e / 4, compared with p·2^16.
template <class Real>
void draw(const Regularizer& r, std::uint64_t kind, double p, Real keep, int X, int B, int width,
          std::vector<Real>& m) {
  const std::uint64_t rows = std::uint64_t(r.rows > 0 ? r.rows : B), row0 = std::uint64_t(r.row0);
  const std::uint64_t threshold = std::uint64_t(std::llround(p * kMaskResolution));
  m.resize(std::size_t(X) * std::size_t(B) * std::size_t(width));
  const std::int64_t n_rows = std::int64_t(X) * B;
#pragma omp parallel for schedule(static) num_threads(ThreadCount::current()) \
    if (ThreadCount::current() > 1 && m.size() >= (std::size_t(1) << 16))
  for (std::int64_t row = 0; row < n_rows; ++row) {
    const std::uint64_t x = std::uint64_t(row / B), b = std::uint64_t(row % B);
    const std::uint64_t first = (x * rows + row0 + b) * std::uint64_t(width);
    Real* out = m.data() + std::size_t(row) * std::size_t(width);
    std::uint64_t cached = ~std::uint64_t(0), bits = 0;
    for (int j = 0; j < width; ++j) {
      const std::uint64_t e = first + std::uint64_t(j);
      if ((e >> 2) != cached) {
        cached = e >> 2;
        bits = counter_hash(r.seed, r.stream, kind, cached);
      }
      const std::uint64_t u = (bits >> (16 * (e & 3))) & 0xFFFF;
      out[j] = u < threshold ? Real(0) : keep;
    }
  }
}

}  // namespace

template <class Real>
void dropout_mask(const Dropout& d, int k, int T, int B, int width, Real* mask) {
  const Real keep = Real(1 / (1 - d.p));
  // Element i = (t, b, j) of this batch is element (t, row0 + b, j) of the whole one.
  const std::uint64_t W = std::uint64_t(width), BH = std::uint64_t(B) * W,
                      whole = d.rows > 0 ? std::uint64_t(d.rows) * W : BH,
                      shift = std::uint64_t(d.row0) * W;
  const std::size_t n = std::size_t(T) * std::size_t(B) * std::size_t(width);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t e = d.first + (i / BH) * whole + shift + i % BH;
    mask[i] = counter_uniform(d.seed, d.stream, std::uint64_t(k), e) < d.p ? Real(0) : keep;
  }
}

bool Regularizer::any(const ModelConfig& cfg) const {
  return input > 0 || recurrent > 0 || output > 0 || weight > 0 || cfg.zoneout_h > 0 ||
         cfg.zoneout_c > 0;
}

void Regularizer::validate() const {
  const std::pair<double, const char*> probabilities[] = {{input, "--input-dropout"},
                                                          {recurrent, "--recurrent-dropout"},
                                                          {output, "--output-dropout"},
                                                          {weight, "--weight-drop"}};
  for (const auto& [p, name] : probabilities) {
    if (!(p >= 0 && p < 1))
      throw Error(ErrorKind::value, name, "must lie in [0, 1)", "0 disables it");
    if (p > 0 && p < 1 / kMaskResolution)
      throw Error(ErrorKind::value, name,
                  fmt::format("{} is below the masks' resolution of 2^-16", p),
                  "give 0 or at least 1.6e-5");
  }
}

template <class Real>
void draw_masks(const ModelConfig& cfg, const Regularizer& r, Batch<Real>& batch) {
  r.validate();
  const int B = batch.B, U = cfg.units(), HO = cfg.state_size(), H = cfg.hidden_size;
  const auto keep = [](double p) { return Real(1 / (1 - p)); };
  const auto maybe = [&](double p, std::uint64_t kind, int X, int rows, int width,
                         std::vector<Real>& m) {
    if (p > 0)
      draw(r, kind, p, keep(p), X, rows, width, m);
    else
      m.clear();
  };
  maybe(r.input, kInput, 1, B, cfg.input_size, batch.mask_input);
  maybe(r.recurrent, kRecurrent, U, B, HO, batch.mask_recurrent);
  maybe(r.output, kOutput, 1, B, cfg.output_width(), batch.mask_output);
  // One weight mask for the whole batch (every process the same): one "row".
  if (r.weight > 0) {
    Regularizer whole = r;
    whole.rows = 1, whole.row0 = 0;
    draw(whole, kWeight, r.weight, keep(r.weight), U, 1, cfg.gates() * H * HO,
         batch.mask_weight_hh);
  } else {
    batch.mask_weight_hh.clear();
  }
  // Zoneout: flag 1 (keep) with probability z, i.e. "dropped" (value 0 below) with 1 − z.
  const auto flags = [&](double z, std::uint64_t kind, int width, std::vector<Real>& m) {
    if (z > 0)
      draw(r, kind, 1 - z, Real(1), batch.T * U, B, width, m);
    else
      m.clear();
  };
  flags(cfg.zoneout_h, kZoneoutH, HO, batch.zoneout_h);
  flags(cfg.cell == CellKind::lstm ? cfg.zoneout_c : 0.0, kZoneoutC, H, batch.zoneout_c);
}

#define BPTT_INSTANTIATE(Real)                                                       \
  template void dropout_mask<Real>(const Dropout&, int, int, int, int, Real*);       \
  template void draw_masks<Real>(const ModelConfig&, const Regularizer&, Batch<Real>&);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
