// How the unroller parts a pass among threads and steps: the row parts of the batch each thread
// runs through the time loop, and the ring of steps a forward-only pass keeps of what only a
// backward pass would read (gates, GRU's W_hn·h, the projection's input, layer norm's values).
#pragma once

#include <algorithm>
#include <cstddef>

#include "bptt/model.hpp"
#include "support/cache.hpp"

namespace bptt::unroll {

// How many contiguous parts of a batch of B sequences `threads` threads run through the time
// loop (src/unroll/full.cpp, for_row_parts): a thread per handful of rows costs more than it
// saves, so at least 8 rows a part.
inline int row_parts(int B, int threads) {
  constexpr int kMinRowsPerPart = 8;
  return std::max(1, std::min(threads, B / kMinRowsPerPart));
}

// Steps of a forward-only pass (Inference) whose values only a backward pass would read are
// kept at a time: a ring that each chunk of steps overwrites. The hoisted input product is
// formed a chunk at a time into it, just before those steps, so few enough steps that the
// product's output for them (B·G·H per step), which the cells read back, stays in the L2 of the
// cores the batch's rows are split over (`cores`); at least one, at most T. Formed for all steps
// at once, LSTM b's 52 MB went out to L3 and came back: on a Xeon with AMX (2 MiB of L2, 29 GB/s
// of L3 for one core) its inference at 1 thread ran 154-165 ms with 16 steps at a time (8 MiB
// of gates) and 144-149 with 4; its cell alone 3.6-3.9 ns per unit on gates from L3 against
// 1.6-1.9 in cache (docs/benchmarks.md, issue 19 part 10).
template <class Real>
int ring_steps(const ModelConfig& cfg, int T, int B, int cores) {
  const std::size_t l2 = support::l2_bytes() > 0 ? support::l2_bytes() : std::size_t(1) << 20;
  const std::size_t per_step = std::size_t(B) * std::size_t(cfg.gates()) *
                               std::size_t(cfg.hidden_size) * sizeof(Real);
  const std::size_t steps = l2 * std::size_t(std::max(cores, 1)) / per_step;
  return int(std::clamp<std::size_t>(steps, 1, std::size_t(std::max(T, 1))));
}

// The ring of a forward-only workspace run on `threads` threads: each direction of a
// bidirectional layer runs on its share of them (full.cpp, for_directions).
template <class Real>
int forward_ring_steps(const ModelConfig& cfg, int T, int B, int threads) {
  const int per_direction = std::max(1, threads / cfg.directions());
  return ring_steps<Real>(cfg, T, B, row_parts(B, per_direction));
}

}  // namespace bptt::unroll
