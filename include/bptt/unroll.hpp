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
#include "bptt/precision.hpp"

namespace bptt {

// Everything forward saves for backward, sized once for (model, T, B): nothing is allocated
// inside the time loop. Reusable for any batch with the same T and B.
//
// Buffers are per unit u = k·D + d (layer k, direction d; model.hpp). A right-to-left unit
// (d = 1) keeps its buffers in its own time frame: its row τ holds, for sequence b, step
// π_b(τ) = lengths[b] − 1 − τ (τ < lengths[b]; rows past the length stay in place), so the
// recursion runs forward over τ with the same cells and kernels, and a sequence's padding is
// at the end in both frames (valid() serves both). out(k) is a layer's output in data order.
template <class Real>
class Inference;

template <class Real>
class Workspace {
 public:
  // with_dropout reserves the buffers for dropout between layers (see Dropout below).
  // A workspace sized for T steps also serves batches of fewer steps (batch.T <= T()).
  // threads: how many threads the calls given this workspace use (bptt/threads.hpp); 0 takes
  // the calling thread's ThreadCount::current() at construction.
  // Throws bptt::Error for an invalid cfg (ModelConfig::validate), T < 1, B < 1, threads < 0,
  // or a size beyond the memory available (bptt/limits.hpp).
  Workspace(const ModelConfig& cfg, int T, int B, bool with_dropout = false, int threads = 0);
  // Movable, not copyable: the pointers below point into one buffer of its own, which a move
  // hands over and a copy would share.
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&&) noexcept = default;
  Workspace& operator=(Workspace&&) noexcept = default;
  ~Workspace() = default;
  // The bytes a Workspace(cfg, T, B, with_dropout) holds, without allocating them.
  static std::size_t bytes_for(const ModelConfig& cfg, int T, int B, bool with_dropout = false);
  int T() const { return T_; }
  int B() const { return B_; }
  int hidden() const { return H_; }
  const ModelConfig& config() const { return cfg_; }
  int threads() const { return threads_; }
  void set_threads(int threads);  // REQUIRES 1 <= threads (else bptt::Error)
  // The precision of the products of the calls given this workspace (bptt/precision.hpp): the
  // calling thread's MatmulScope::current() at construction. Matmul::bf16 with Real = double
  // throws bptt::Error (kind usage), here and at construction.
  Matmul matmul() const { return matmul_; }
  void set_matmul(Matmul m);
  std::size_t bytes() const {
    return (buf_.size() + reg_x_.size() + reg_h_.size() + reg_bar_.size() + reg_top_.size() +
            reg_w_.size() + reg_keep_.size()) * sizeof(Real) + valid_.size();
  }

  // Per unit u (pointers into one buffer), in the unit's time frame. [R, ...]: R = T steps, or in
  // a forward-only workspace saved_steps(): a ring of steps that each chunk of steps overwrites
  // (what only backward would read):
  int saved_steps() const { return forward_only_ ? ring_ : T_; }
  Real* gates(int u);   // [R, B, G·H] x-side pre-activations (or all of them, see packed_w()),
                        // then saved activations
  Real* h(int u);       // [T+1, B, H_out] h(u)[0] = h0, h(u)[t] = state after step t
  Real* c(int u);       // [T+1, B, H] LSTM cell states (nullptr for other cells)
  Real* aux(int u);     // [R, B, H] GRU W_hn h_{t-1} + b_hn (nullptr for Elman and LSTM)
  Real* m(int u);       // [R, B, H] LSTM with a projection: o ⊙ tanh(c), the projection's input
                        // (0 past a sequence's length); nullptr without a projection
  Real* dh_proj(int u); // [T, B, P] with a projection: the total dL/dh_t, for dW_hr; else nullptr
  Real* x_rev(int u);   // [T, B, in] d = 1: the layer's input in the unit's frame; else nullptr
  // Layer norm (model.hpp; nullptr without):
  Real* ln_x(int u);       // [R, B, G·H] x̂ = LN(x·W_ihᵀ) of every step
  Real* ln_x_rstd(int u);  // [R, B] its rows' 1/sqrt(var + ε)
  Real* ln_h(int u);       // [R, B, G·H] ĥ = LN(h_{t-1}·W_hhᵀ) of every step; backward
                           // overwrites each step's rows with dL/d(h_{t-1}·W_hhᵀ)
  Real* ln_h_rstd(int u);  // [R, B] its rows' 1/sqrt(var + ε)
  Real* ln_c_stats(int u); // [R, B, 2] LSTM: μ and 1/sqrt(var + ε) of each c_t row
  Real* dgi(int u);     // [T, B, G·H] dL/d(x-side pre-activations): the SAME memory as gates(u),
                        // which backward overwrites step by step once it has read them; with
                        // layer norm it ends as dL/d(x·W_ihᵀ), before the normalization
  Real* dgh(int u);     // [T, B, G·H] dL/d(h-side pre-activations) (== dgi(u) except for GRU)
  // Per layer k, in data order:
  Real* out(int k);     // [T, B, D·H_out] the layer's output [h_t(d = 0) ; h_t(d = 1)]: for D = 1
                        // h(k) + B·H_out itself; for D = 2 a buffer of its own, which backward
                        // overwrites with dL/d(out) once layer k+1 no longer needs it
  // Dropout between layers (k >= 1; nullptr without dropout buffers):
  Real* drop_mask(int k);  // [T, B, D·H_out] 0 or 1/(1-p) applied to layer k-1's output
  Real* drop_in(int k);    // [T, B, D·H_out] layer k's input: out(k-1) ⊙ drop_mask(k)
  bool dropout_active = false;  // set by forward(): whether the last pass used dropout
  // Shared:
  Real* top() { return top_ ? top_ : out(L_ - 1); }  // [T, B, D·H_out] the head's input:
                                  // out(L−1), or for Readout::final_state a buffer of its own
                                  // holding the top layer's [h_n(d = 0) ; h_n(d = 1)] at every
                                  // step (backward overwrites it with dL/d(it))
  Real* z() { return z_; }        // [T, B, O] head logits
  Real* yhat() { return yhat_; }  // [T, B, O] θ(z)
  Real* dz() { return dz_; }      // [T, B, O] dL/dz, set by the loss: the SAME memory as z()
                                  // (backward needs only dz), so the logits are gone after it
  const std::uint8_t* valid() const { return valid_.data(); }  // [T, B] t < lengths[b]
  std::uint8_t* valid() { return valid_.data(); }
  // Set by forward() through begin(): the batch's T and every sequence's length (T when the
  // batch gives none), and valid() from them. REQUIRES T <= T(), lengths empty or B long.
  void begin(int T, std::span<const std::int64_t> lengths);
  int steps() const { return steps_; }
  const std::vector<int>& lengths() const { return len_; }

  // ASSIGNS every unit's state after step t of its own frame: h [L·D, B, H_out], and c
  // [L·D, B, H] for LSTM (cleared otherwise). t = steps() gives h_n, c_n (also for a right-to-
  // left unit, whose last step is the sequence's first). Reuses the vectors' capacity.
  void state_at(int t, std::vector<Real>& h, std::vector<Real>& c);
  // ASSIGNS the states after every step, in data order: h [L·D, T, B, H_out] and c
  // [L·D, T, B, H] (LSTM; cleared otherwise), T = steps(). Past a sequence's length each unit
  // repeats its last state (h_n, c_n).
  void step_states(std::vector<Real>& h, std::vector<Real>& c);

  // Scratch for the unroller, one set per direction (the two directions may run at once):
  struct Scratch {
    Real* gh_step;   // [B, G·H] h-side pre-activations of one step
    Real* dh_chunk;  // [C, B, H_out] dL/dh_t from above for C = chunk_steps() steps: backward
                     // forms it a chunk at a time instead of holding [T, B, H_out]
    Real* dh_step;   // [B, H_out] total dL/dh_t at the current step
    Real* dh_carry;  // [B, H_out] dL/dh_{t-1} being built
    Real* dc_carry;  // [B, H] LSTM dL/dc carried backwards in time
    Real* dm_step;   // [B, H] with a projection: dL/d(o ⊙ tanh c) of the current step
    Real* dm_prev;   // [B, H] with a projection: the cell's dh_prev output (unused)
    Real* zeros;     // [max(B·H, G·H)] zeros: the cell's h_prev with a projection (so m = 0
                     // past a length), and the zero bias of products that assign
    Real* step_bias; // [G·H] the bias added at every step of one unit
    Real* packed_w;  // one unit's W_hh (and W_hr) packed for the per-step products
                     // (kernels/step_gemm.hpp), forward or backward; in forward W_ihᵀ follows
                     // W_hhᵀ's panels (the x-side product, hoisted or in the step:
                     // src/unroll/x_product.hpp), then W_hrᵀ
  };
  const Scratch& scratch(int d) const { return scratch_[std::size_t(d)]; }
  int chunk_steps() const { return chunk_; }

  // Buffers of the masks and zoneout (Batch::mask_input, ...; src/unroll/regularize.hpp),
  // sized by forward() the first time a batch or the model's zoneout needs them, outside the
  // time loop; nullptr until then. Per unit u, in the unit's frame, or per direction d:
  Real* x_masked();        // [T, B, I] x ⊙ mask_input, the first layer's input
  Real* h_masked(int u);   // [T, B, H_out] h_{t-1} ⊙ mask_recurrent: what enters W_hh at step t
  Real* zo_bar(int u);     // [T, B, H] zoneout: the cell's own output (Elman h̄, LSTM c̄)
  Real* top_masked();      // [T, B, D·H_out] the head's input ⊙ mask_output
  Real* w_dropped(int d);  // [G·H, H_out] W_hh ⊙ mask_weight_hh of the unit running, then dW̃_hh
  Real* dh_keep(int d);    // [B, H_out] zoneout's share of dL/dh_t that skips the cell
  Real* dc_keep(int d);    // [B, H] the same for c
  Real* dh_masked(int d);  // [B, H_out] δ^h_t·W_hh before the recurrent mask
  // Sizes the buffers of the given kinds (keeps those sized before). REQUIRES nothing; may
  // allocate (bptt::Error kind resource beyond the memory available).
  void reserve_regularization(bool input, bool recurrent, bool zoneout, bool output, bool weight);

  // Built by Inference (bptt/infer.hpp) for its forward passes alone: backward() refuses it.
  bool forward_only() const { return forward_only_; }

 private:
  friend struct WorkspacePlan;
  friend class Inference<Real>;
  struct ForwardOnly {};
  Workspace(const ModelConfig& cfg, int T, int B, int threads, ForwardOnly);
  static std::size_t bytes_for_forward(const ModelConfig& cfg, int T, int B, int threads);
  // Sizes and places the buffers (WorkspacePlan) at the calling thread's precision.
  void allocate(bool with_dropout, bool backward);
  bool forward_only_ = false;
  Matmul matmul_ = Matmul::real;
  ModelConfig cfg_;
  int threads_;
  int T_, B_, H_, D_, L_, chunk_;
  int ring_ = 0;  // saved_steps() of a forward-only workspace
  int steps_ = 0;
  std::vector<int> len_;
  CellKind cell_;
  int HO_;
  std::vector<Real*> unit_[13];  // per unit: gates h c aux m dh_proj x_rev dgh ln_x ln_x_rstd
                                 // ln_h ln_h_rstd ln_c_stats
  std::vector<Real*> layer_[3];  // per layer: out drop_mask drop_in
  std::vector<Scratch> scratch_;
  std::vector<Real> buf_;
  std::vector<Real> reg_x_, reg_h_, reg_bar_, reg_top_, reg_w_, reg_keep_;  // regularization's
  Real *z_, *yhat_, *dz_, *top_ = nullptr;
  std::vector<std::uint8_t> valid_;
};

// Gradients of the loss; every buffer is ACCUMULATED into by backward(). Call zero() first.
// A caller that does not need dL/dx (training) may clear() x: backward then skips that GEMM.
template <class Real>
struct Gradients {
  std::vector<Real> params;  // same layout as Model::params
  std::vector<Real> x;       // [T, B, I]
  std::vector<Real> h0;      // [L·D, B, H_out] dL/d(the initial state each sequence started from)
  std::vector<Real> c0;      // [L·D, B, H] (LSTM; empty otherwise)
  // with_x = false leaves x empty (training: no dL/dx, and none of its memory).
  Gradients(const ModelConfig& cfg, int T, int B, bool with_x = true);
  void zero();
  // Throws bptt::Error (kind shape) unless these gradients fit (cfg, T, B): params
  // param_count(cfg), x empty or at least [T, B, I], h0 [L·D, B, H_out], c0 [L·D, B, H] (LSTM)
  // or empty. Every call that accumulates into them checks it.
  void check(const ModelConfig& cfg, int T, int B) const;
};

// Dropout between stacked layers, as torch.nn.LSTM(dropout=p): layer k >= 1 reads
// out(k-1) ⊙ m with m = 0 (probability p) or 1/(1-p) (elements of width D·H_out per row). The masks are a pure function of
// (seed, stream, layer, element), so a run is reproducible and resumable without RNG state;
// pass a new `stream` (e.g. the optimizer step) for every training step.
struct Dropout {
  double p = 0;
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  // The index of the batch's first element in the masks: a segment of a longer sequence that
  // starts at step s passes s·B·D·H_out, so it draws the same masks as the whole sequence would.
  std::uint64_t first = 0;
  // A process that holds rows [row0, row0 + B) of a batch of `rows` sequences (data
  // parallelism) draws, for its element (t, b, j), the mask of (t, row0 + b, j) of the whole
  // batch; rows = 0: the batch is whole. `first` then counts elements of the whole batch.
  int rows = 0;
  int row0 = 0;
};

// ASSIGNS mask [T, B, width] the dropout mask forward() applies to layer k's input (k >= 1):
// 0 with probability d.p, else 1/(1 − d.p), a pure function of (d, k, element).
template <class Real>
void dropout_mask(const Dropout& d, int k, int T, int B, int width, Real* mask);

// Issue 18's training-mode regularization (docs/math.md, section 8d), drawn per training step
// into a batch's masks (Batch::mask_input, ...) by draw_masks: dropout probabilities for the
// network's input, the h entering W_hh (Gal & Ghahramani: one mask per sequence and layer, the
// same at every step), the top layer's output entering the head, and W_hh itself (DropConnect,
// one mask per step for the whole batch); zoneout flags come from the model's zoneout_h,
// zoneout_c. As Dropout, every mask is a pure function of (seed, stream, element): pass the
// training step as the stream; rows/row0 as Dropout's.
struct Regularizer {
  // Each 0 or in [2^-16, 1): the masks compare 16-bit random numbers with p·2^16 (zoneout's
  // probabilities act to the same resolution in training).
  double input = 0, recurrent = 0, output = 0, weight = 0;
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  int rows = 0;
  int row0 = 0;
  // Whether anything is drawn for a model (a probability above, or the model's zoneout).
  bool any(const ModelConfig& cfg) const;
  // Throws bptt::Error (kind value, naming the train option) for a probability outside [0, 1)
  // or in (0, 2^-16).
  void validate() const;
};

// ASSIGNS batch's mask_input [B, I], mask_recurrent [L·D, B, H_out], mask_output [B, D·H_out]
// (0 with probability p, else 1/(1 − p)), mask_weight_hh [L·D, G·H, H_out], and the zoneout
// flags zoneout_h [T, L·D, B, H_out], zoneout_c [T, L·D, B, H] (1 with probability z) for the
// batch's T and B; clears those whose probability is 0. Throws what validate() throws.
template <class Real>
void draw_masks(const ModelConfig& cfg, const Regularizer& r, Batch<Real>& batch);

// What backward() takes from outside the batch, and what it can report beyond the gradients.
template <class Real>
struct BackwardOptions {
  // dL/dh_n [L·D, B, H_out] and dL/dc_n [L·D, B, H]: the gradient reaching the final state from beyond the batch
  // (a later segment of the same sequences, or a probe direction); nullptr means zero, i.e.
  // ∂L/∂h_{T+1} = 0. dc_n only for LSTM.
  const Real* dh_n = nullptr;
  const Real* dc_n = nullptr;
  // If not nullptr: dL/d(the top layer's output) [T, B, D·H_out] from outside the model, in place
  // of the head's: backward then skips the head (ws.dz() is not read, the head's gradients are
  // left as they are). For a model whose output feeds something else, as recompute's layers.
  const Real* dh_above = nullptr;
  // If not nullptr: [L·D, T, B, H_out], ASSIGNED the total dL/dh_t of every unit and step (from
  // the layer above or the head plus from the unit's next step), in data order, for gradient
  // diagnostics.
  Real* dh_trace = nullptr;
  // If set: called with k as soon as layer k's parameter gradients are final, top layer first,
  // and with k = L once the head's are (before any layer's), so that a caller can start
  // reducing them across processes while the layers below are still running.
  std::function<void(int)> gradients_ready;
};

// Every call below runs on ws.threads() threads. A const Model may be shared by calls on
// several threads at once, each with its own Workspace and Gradients (docs/api.md, "Threads").
//
// REQUIRES batch.validate(model.cfg, ...) passed (the values: finite data); checked on every
// call, with a bptt::Error: model.params holds param_count(model.cfg) values, ws was built for a
// model of the same sizes, T >= batch.T and B == batch.B (with_dropout when dropout is given with
// p > 0), and batch.check_shapes(model.cfg).
// ENSURES ws.z(), ws.yhat() and the saved states hold this batch's forward pass; ws.h(k)[T] is
// h_n (the state after each sequence's last valid step).
// head = false skips the readout (z, ŷ are left as they were): for a pass that only needs the
// states, as recompute's first pass.
template <class Real>
void forward(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
             const Dropout* dropout = nullptr, bool head = true);

// REQUIRES forward() on this batch and ws.dz() set (by loss_and_dz). Checked, with a
// bptt::Error: what forward() checks, and grads sized for (model.cfg, batch.T, batch.B) (its x
// may be empty, or sized for more steps).
// ENSURES grads += dL/d(params, x, h0, c0). Overwrites the workspace's gradient buffers. With a
// learned initial state, grads.params' init.h0 (init.c0) gains Σ_b dL/dh0 of this call when the
// batch gives no h0 (c0); a batch's own h0 overrides init.h0, whose gradient is then zero.
template <class Real>
void backward(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
              Gradients<Real>& grads, const BackwardOptions<Real>& opts = {});

// The initial state forward starts each unit from: batch.h0 when given, else the learned
// init.h0 broadcast over the batch, else zeros; h [L·D, B, H_out], c [L·D, B, H] (LSTM; cleared
// for other cells). For the methods that carry states themselves (recompute, truncated, rtrl).
template <class Real>
void initial_states(const Model<Real>& model, const BatchArg<Real>& batch, std::vector<Real>& h,
                    std::vector<Real>& c);

// What a learned initial state receives: init.h0 += Σ_b dh0[·, b] when the batch gives no h0,
// init.c0 += Σ_b dc0[·, b] when it gives no c0 (dh0 [L·D, B, H_out], dc0 [L·D, B, H] or nullptr:
// the gradient of one call, not an accumulated one). Nothing without a learned initial state.
template <class Real>
void add_initial_state_gradient(const ModelConfig& cfg, const BatchArg<Real>& batch, const Real* dh0,
                                const Real* dc0, Real* dparams);

// forward + loss + backward. Returns the loss; grads += its gradient.
template <class Real>
double loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                          Workspace<Real>& ws, Gradients<Real>& grads,
                          const Dropout* dropout = nullptr);

// The slow, obvious reference: the same quantities computed step by step with scalar loops, no
// BLAS, no hoisting, weight gradients accumulated per step. Used only to check the fast path.
template <class Real>
double reference_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                    LossKind loss, Gradients<Real>& grads,
                                    std::vector<Real>* yhat = nullptr);

}  // namespace bptt
