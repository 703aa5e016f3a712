// Full backpropagation through time over a batch, and the workspace it runs in.
//
// forward() runs every layer over all T steps (layer by layer: one input GEMM for all T·B rows,
// then only h·W_hh^T per step) and the head; backward() walks t = T..1 with ∂L/∂h_{T+1} = 0,
// keeping only δ·W_hh per step, and merges the weight gradients over time into one GEMM each.
// See docs/math.md for the equations.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/loss.hpp"
#include "bptt/model.hpp"

namespace bptt {

// Everything forward saves for backward, sized once for (model, T, B): nothing is allocated
// inside the time loop. Reusable for any batch with the same T and B.
template <class Real>
class Workspace {
 public:
  // with_dropout reserves the buffers for dropout between layers (see Dropout below).
  // A workspace sized for T steps also serves batches of fewer steps (batch.T <= T()).
  Workspace(const ModelConfig& cfg, int T, int B, bool with_dropout = false);
  // The bytes a Workspace(cfg, T, B, with_dropout) holds, without allocating them.
  static std::size_t bytes_for(const ModelConfig& cfg, int T, int B, bool with_dropout = false);
  int T() const { return T_; }
  int B() const { return B_; }
  int hidden() const { return H_; }
  std::size_t bytes() const { return buf_.size() * sizeof(Real) + valid_.size(); }

  // Per layer k (pointers into one buffer):
  Real* gates(int k);   // [T, B, G·H] x-side pre-activations (or all of them, see packed_w()),
                        // then saved activations
  Real* h(int k);       // [T+1, B, H] h(k)[0] = h0, h(k)[t] = state after step t
  Real* c(int k);       // [T+1, B, H] LSTM cell states (nullptr for other cells)
  Real* aux(int k);     // [T, B, H] GRU W_hn h_{t-1} + b_hn (nullptr for Elman and LSTM)
  Real* dgi(int k);     // [T, B, G·H] dL/d(x-side pre-activations): the SAME memory as gates(k),
                        // which backward overwrites step by step once it has read them
  Real* dgh(int k);     // [T, B, G·H] dL/d(h-side pre-activations) (== dgi(k) except for GRU)
  // Shared:
  Real* z() { return z_; }        // [T, B, O] head logits
  Real* yhat() { return yhat_; }  // [T, B, O] θ(z)
  Real* dz() { return dz_; }      // [T, B, O] dL/dz, set by the loss: the SAME memory as z()
                                  // (backward needs only dz), so the logits are gone after it
  const std::uint8_t* valid() const { return valid_.data(); }  // [T, B] t < lengths[b]
  // ASSIGNS every layer's state after step t (t = batch.T: h_n, c_n): h [L, B, H], and c
  // [L, B, H] for LSTM (cleared otherwise). Reuses the vectors' capacity.
  void state_at(int t, std::vector<Real>& h, std::vector<Real>& c);
  // Scratch for the unroller:
  std::uint8_t* valid() { return valid_.data(); }
  Real* gh_step() { return gh_step_; }      // [B, G·H] h-side pre-activations of one step
  // [C, B, H] dL/dh_t from above (the head or the next layer) for C = chunk_steps() steps:
  // backward forms it a chunk at a time instead of holding [T, B, H].
  Real* dh_chunk() { return dh_chunk_; }
  int chunk_steps() const { return chunk_; }
  Real* dh_step() { return dh_step_; }      // [B, H] total dL/dh_t at the current step
  Real* dh_carry() { return dh_carry_; }    // [B, H] dL/dh_{t-1} being built
  Real* dc_carry() { return dc_carry_; }    // [B, H] LSTM dL/dc carried backwards in time
  Real* step_bias() { return step_bias_; }  // [G·H] the bias added at every step of one layer
  Real* packed_w() { return packed_w_; }    // one layer's W_hh packed for the per-step products
                                            // (kernels/step_gemm.hpp), forward or backward; in
                                            // forward W_ihᵀ follows W_hhᵀ's panels for a layer
                                            // whose x-side product is formed in the step
                                            // (src/unroll/x_product.hpp)
  // Dropout between layers (k >= 1; nullptr without dropout buffers):
  Real* drop_mask(int k);  // [T, B, H] 0 or 1/(1-p) applied to layer k-1's h
  Real* drop_in(int k);    // [T, B, H] layer k's input: h(k-1) ⊙ drop_mask(k)
  bool dropout_active = false;  // set by forward(): whether the last pass used dropout

 private:
  int T_, B_, H_, G_, L_, chunk_;
  CellKind cell_;
  std::size_t layer_stride_ = 0;
  std::size_t off_h_ = 0, off_c_ = 0, off_aux_ = 0, off_dgh_ = 0, off_drop_ = 0;
  bool with_dropout_ = false;
  std::vector<Real> buf_;
  Real *z_, *yhat_, *dz_, *gh_step_, *dh_chunk_, *dh_step_, *dh_carry_, *dc_carry_, *step_bias_,
      *packed_w_;
  std::vector<std::uint8_t> valid_;
};

// Gradients of the loss; every buffer is ACCUMULATED into by backward(). Call zero() first.
// A caller that does not need dL/dx (training) may clear() x: backward then skips that GEMM.
template <class Real>
struct Gradients {
  std::vector<Real> params;  // same layout as Model::params
  std::vector<Real> x;       // [T, B, I]
  std::vector<Real> h0;      // [L, B, H]
  std::vector<Real> c0;      // [L, B, H] (LSTM; empty otherwise)
  // with_x = false leaves x empty (training: no dL/dx, and none of its memory).
  Gradients(const ModelConfig& cfg, int T, int B, bool with_x = true);
  void zero();
};

// Dropout between stacked layers, as torch.nn.LSTM(dropout=p): layer k >= 1 reads
// h(k-1) ⊙ m with m = 0 (probability p) or 1/(1-p). The masks are a pure function of
// (seed, stream, layer, element), so a run is reproducible and resumable without RNG state;
// pass a new `stream` (e.g. the optimizer step) for every training step.
struct Dropout {
  double p = 0;
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  // The index of the batch's first element in the masks: a segment of a longer sequence that
  // starts at step s passes s·B·H, so it draws the same masks as the whole sequence would.
  std::uint64_t first = 0;
  // A process that holds rows [row0, row0 + B) of a batch of `rows` sequences (data
  // parallelism) draws, for its element (t, b, j), the mask of (t, row0 + b, j) of the whole
  // batch; rows = 0: the batch is whole. `first` then counts elements of the whole batch.
  int rows = 0;
  int row0 = 0;
};

// What backward() takes from outside the batch, and what it can report beyond the gradients.
template <class Real>
struct BackwardOptions {
  // dL/dh_n and dL/dc_n [L, B, H]: the gradient reaching the final state from beyond the batch
  // (a later segment of the same sequences, or a probe direction); nullptr means zero, i.e.
  // ∂L/∂h_{T+1} = 0. dc_n only for LSTM.
  const Real* dh_n = nullptr;
  const Real* dc_n = nullptr;
  // If not nullptr: [L, T, B, H], ASSIGNED the total dL/dh_t of every layer and step (from the
  // layer above or the head plus from step t+1), for gradient diagnostics.
  Real* dh_trace = nullptr;
  // If set: called with k as soon as layer k's parameter gradients are final, top layer first,
  // and with k = L once the head's are (before any layer's), so that a caller can start
  // reducing them across processes while the layers below are still running.
  std::function<void(int)> gradients_ready;
};

// REQUIRES batch.validate(model.cfg, ...) passed and ws sized for (model.cfg, batch.T, batch.B)
// (with_dropout when dropout is given with p > 0).
// ENSURES ws.z(), ws.yhat() and the saved states hold this batch's forward pass; ws.h(k)[T] is
// h_n (the state after each sequence's last valid step).
// head = false skips the readout (z, ŷ are left as they were): for a pass that only needs the
// states, as recompute's first pass.
template <class Real>
void forward(const Model<Real>& model, const Batch<Real>& batch, Workspace<Real>& ws,
             const Dropout* dropout = nullptr, bool head = true);

// REQUIRES forward() on this batch and ws.dz() set (by loss_and_dz).
// ENSURES grads += dL/d(params, x, h0, c0). Overwrites the workspace's gradient buffers.
template <class Real>
void backward(const Model<Real>& model, const Batch<Real>& batch, Workspace<Real>& ws,
              Gradients<Real>& grads, const BackwardOptions<Real>& opts = {});

// forward + loss + backward. Returns the loss; grads += its gradient.
template <class Real>
double loss_and_gradients(const Model<Real>& model, const Batch<Real>& batch, LossKind loss,
                          Workspace<Real>& ws, Gradients<Real>& grads,
                          const Dropout* dropout = nullptr);

// The slow, obvious reference: the same quantities computed step by step with scalar loops, no
// BLAS, no hoisting, weight gradients accumulated per step. Used only to check the fast path.
template <class Real>
double reference_loss_and_gradients(const Model<Real>& model, const Batch<Real>& batch,
                                    LossKind loss, Gradients<Real>& grads,
                                    std::vector<Real>* yhat = nullptr);

}  // namespace bptt
