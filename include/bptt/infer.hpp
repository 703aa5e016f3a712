// Lean inference: forward()'s results for a pass that no backward() will read (prediction,
// evaluation, benchmarks), in memory that does not grow with the number of steps.
//
//   bptt::Inference<float> inf(model.cfg, /*B=*/1);
//   inf.run(model, batch, {.yhat = y});        // any T: y [T, 1, O]; inf.h_n() the final state
//
// A Workspace keeps every step of every layer (gates, states, layer-norm statistics) because
// backward() reads them; inference needs only each layer's current state. A left-to-right model
// runs here a chunk of steps at a time through all its layers (the chunk's input products still
// hoisted into one GEMM, the per-step kernels those of forward()), carrying each unit's state
// from chunk to chunk, so that what it holds besides the caller's input and outputs is at most
// about 16 MiB plus the weights packed for its kernels, for any T (chunk_steps(); fewer steps
// where a chunk's hoisted input products would not stay in the cores' L2). A bidirectional model, whose
// reverse direction starts at each sequence's end, runs over the whole sequence at once: it
// holds every step's states (h, and c for the LSTM), but what only backward would read (the
// gates, the GRU's W_hn·h, the projection's input, layer norm's values) for a ring of steps
// only (Workspace::saved_steps()), as every pass here does.
//
// Results equal forward()'s up to the rounding of the input GEMM over fewer rows (tested to
// 1e-13 in float64), for every cell and option, under a batch's masks too.
//
// Threads: an Inference belongs to one thread at a time; any number of them (and Workspaces,
// Streams) may read the same const Model at once. Movable, not copyable.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/model.hpp"
#include "bptt/precision.hpp"

namespace bptt {

template <class Real>
class Workspace;
namespace unroll {
template <class Real>
struct ForwardPacks;
}

template <class Real>
class Inference {
 public:
  // Sized for batches of B sequences of any length. threads: how many threads run() uses; 0
  // takes the calling thread's ThreadCount::current() at construction. chunk_steps: the steps
  // per pass of a left-to-right model; 0 chooses as many as 16 MiB hold, and no more than keep
  // a layer's hoisted input product for the chunk (B·G·H floats per step) within the L2 caches
  // of the cores its rows are split over (at least one step). Allocates nothing
  // yet: the first run() sizes the buffers (for min(T, chunk_steps()) steps, or T).
  // Throws bptt::Error for an invalid cfg (ModelConfig::validate), B < 1, threads < 0 or
  // chunk_steps < 0.
  Inference(const ModelConfig& cfg, int B, int threads = 0, int chunk_steps = 0);
  ~Inference();
  Inference(Inference&&) noexcept;
  Inference& operator=(Inference&&) noexcept;
  Inference(const Inference&) = delete;
  Inference& operator=(const Inference&) = delete;

  // What run() writes. yhat is required; the others are written when not empty.
  struct Outputs {
    std::span<Real> yhat = {};  // [T, B, O] ASSIGNED θ(z), as Workspace::yhat() after forward()
    std::span<Real> z = {};     // [T, B, O] ASSIGNED the head's logits
    std::span<Real> h = {};     // [L·D, T, B, H_out] ASSIGNED every unit's state after every step,
                           // in data order, as Workspace::step_states
    std::span<Real> c = {};     // [L·D, T, B, H] the same for the LSTM's cell (LSTM only)
  };

  // The forward pass of forward(model, batch, ws) (no dropout between layers: evaluation mode,
  // or training mode under the batch's own masks and zoneout flags). After it h_n(), c_n()
  // hold each unit's final state. Checked, with a bptt::Error: model and batch as forward()
  // checks them, batch.B == B(), and each given output's size.
  void run(const Model<Real>& model, const BatchArg<Real>& batch, const Outputs& out);

  // The same into buffers of its own, sized for the batch (and reused): yhat() and z() below.
  void run(const Model<Real>& model, const BatchArg<Real>& batch);
  // After run(model, batch): ŷ and the logits z [T, B, O].
  std::span<const Real> yhat() const { return yhat_; }
  std::span<const Real> z() const { return z_; }

  // After run(): every unit's state after its last step, h_n [L·D, B, H_out] and for LSTM c_n
  // [L·D, B, H] (empty otherwise), as Workspace::state_at(T).
  std::span<const Real> h_n() const { return h_n_; }
  std::span<const Real> c_n() const { return c_n_; }

  // Steps per pass of a left-to-right model (0 for a bidirectional one: the whole sequence).
  int chunk_steps() const { return chunk_; }
  int B() const { return B_; }
  int threads() const { return threads_; }
  void set_threads(int threads);  // REQUIRES 1 <= threads (else bptt::Error)
  // The bytes held now: the chunk's workspace, the packed weights, the carried states, and the
  // outputs of run(model, batch).
  std::size_t bytes() const;

 private:
  ModelConfig cfg_;
  int B_, threads_, chunk_;
  Matmul matmul_;  // the products' precision: the calling thread's at construction
  std::unique_ptr<Workspace<Real>> ws_;
  std::unique_ptr<unroll::ForwardPacks<Real>> packs_;  // the weights packed once per run()
  std::vector<Real> h_n_, c_n_, steps_h_, steps_c_, yhat_, z_;
  std::vector<std::int64_t> lengths_;
};

}  // namespace bptt
