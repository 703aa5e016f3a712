// Streaming inference: N independent sequences advanced one time step per call, for a service
// that answers as each input arrives (a live signal, a keyboard, a sensor), or for sampling.
//
//   bptt::Stream<float> s(model, /*streams=*/4);   // packs the weights, allocates everything
//   s.step(x, y);                                  // x [4, I] -> y [4, O] = θ(head(h_t))
//   s.reset(2);                                    // stream 2 starts a new sequence
//
// step(x_1), step(x_2), ... gives, row by row, what forward() gives for the whole sequence
// x_1..x_T from the model's initial state (tested). The weights are packed for the per-step
// kernels once, at construction: a Stream is a snapshot of the model's parameters, and changing
// the model afterwards does not change the stream (construct a new one). step() allocates no
// memory (tested; with bf16 products, bptt/precision.hpp, the first step sizes each thread's
// rounding buffer once) and runs on the stream's own threads, with no process-wide setting involved:
// `threads` splits the N streams into parts (at least 8 streams per part); fewer streams (one
// stream: a latency-bound service) split every product by columns instead where the weights are
// large enough to pay for the barriers (1 MiB: L2 H256 runs 1.3-1.9× faster on 2 threads), with
// the same results bit for bit.
//
// Left-to-right models only: a bidirectional model, or a head that reads the final state, needs
// each sequence whole, and is refused with a bptt::Error.
//
// Threads: a Stream belongs to one thread at a time; any number of Streams (and Workspaces) may
// read the same const Model at once. Movable, not copyable.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "bptt/model.hpp"

namespace bptt {

template <class Real>
class Stream {
 public:
  // Throws bptt::Error for a bidirectional model, a final-state readout, streams < 1 or
  // threads < 1.
  Stream(const Model<Real>& model, int streams, int threads = 1);
  ~Stream();
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Advances every stream by one step: x [N, I] (row n: stream n's input), y [N, O] ASSIGNED
  // θ(b_o + h_top·W_oᵀ). x and y must not overlap the stream's own buffers.
  void step(const Real* x, Real* y);
  // The same with sizes checked: x.size() == N·I and y.size() == N·O, else bptt::Error.
  void step(std::span<const Real> x, std::span<Real> y);

  // Every stream (or stream n) back to the model's initial state: zero, or the learned one.
  void reset();
  void reset(int n);

  // The states after the last step: h [L, N, H_out] and, for LSTM, c [L, N, H] (empty span
  // otherwise), PyTorch's layout of h_n / c_n. Writable: setting them sets where the next step
  // starts from.
  std::span<Real> h();
  std::span<const Real> h() const;
  std::span<Real> c();
  std::span<const Real> c() const;
  // The head's logits z [N, O] of the last step (y = θ(z)).
  std::span<const Real> logits() const;

  int streams() const;
  int threads() const;
  const ModelConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bptt
