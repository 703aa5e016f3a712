// Other ways to compute the gradient that full BPTT (unroll.hpp) computes, and the truncated
// gradient it approximates in training. Every function here ACCUMULATES into grads (call
// grads.zero() first) unless it says otherwise, and returns the loss, like loss_and_gradients.
//
//   recompute:K   full BPTT's gradient with the states kept only every K steps; each segment's
//                 forward pass is recomputed during the backward pass (docs/math.md, "Recompute")
//   truncated:K   every path from a step's loss stops at the state K steps earlier
//   rtrl          forward mode: the sensitivities ∂state/∂θ carried forward with the state
//   uoro, kf-rtrl, snap1, eprop
//                 online approximations of RTRL that carry less than the sensitivities
//                 (parameters only; docs/math.md, section 8e)
//   numeric       central differences in f64, to check the others
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/loss.hpp"
#include "bptt/model.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

// ---------------------------------------------------------------------------------------------
// Choosing a method by name (the grad verb's --method)
// ---------------------------------------------------------------------------------------------

enum class GradMethod { bptt, recompute, truncated, rtrl, numeric, uoro, kf_rtrl, snap1, eprop };

struct GradMethodSpec {
  GradMethod method = GradMethod::bptt;
  int K = 0;  // recompute: the interval (0: the default ⌈√T⌉); truncated: the window (>= 1)
};

// Parses "bptt", "recompute", "recompute:K", "truncated:K", "rtrl", "numeric", "uoro", "kf-rtrl",
// "snap1" or "eprop". Throws
// bptt::Error (where = `where`) for anything else, or K < 1.
GradMethodSpec parse_grad_method(std::string_view text, const std::string& where = "--method");
std::string to_string(const GradMethodSpec& m);

// ---------------------------------------------------------------------------------------------
// Recompute (checkpointed BPTT, Chen et al. 2016; Gruslys et al. 2016)
// ---------------------------------------------------------------------------------------------

// ⌈√T⌉: with that interval the checkpoints and one segment's workspace take about the same room.
int default_recompute_interval(int T);

// The bytes the backward pass holds, by the same layout the code allocates (sizes of the
// Workspace and the checkpoints; the batch itself and the parameters are not counted):
// full BPTT keeps every step's workspace, recompute:K one segment's plus ⌈T/K⌉ + 1 states.
std::size_t full_bptt_bytes(const ModelConfig& cfg, int T, int B, std::size_t real_size,
                            bool with_dropout = false);
std::size_t recompute_bytes(const ModelConfig& cfg, int T, int B, int K, std::size_t real_size,
                            bool with_dropout = false);

// The interval for a memory budget, from the cost model above: K = T (plain BPTT, no extra
// work) when it fits; otherwise every K < T costs the same one extra forward pass, so the
// largest K whose recompute_bytes fit (fewest, largest GEMMs). Throws bptt::Error naming the
// least memory any K needs when none fits.
int recompute_interval_for_budget(const ModelConfig& cfg, int T, int B, std::size_t real_size,
                                  std::size_t budget_bytes, bool with_dropout = false);

// Full BPTT in segments of K steps. Pass one runs forward segment by segment over all layers and
// keeps only the states at segment starts (checkpoints); pass two walks the segments from the
// last to the first, recomputes each one's forward pass from its checkpoint, takes its loss
// and runs the backward pass with dL/d(final state) handed over from the segment after it.
// The gradient equals full BPTT's (to rounding); the work is one more forward pass.
//
// A bidirectional model goes layer by layer instead (a right-to-left pass needs the layer below
// for the whole sequence): pass one keeps every layer's output [T, B, D·H_out] and, per unit,
// its state at every K-th step of its own time frame; pass two takes the head's gradient and
// then, top layer first, runs each unit as a one-layer model over its segments, last first,
// recomputing each from its checkpoint, with dL/d(its outputs) from the layer above. What is
// kept is the layers' outputs instead of every unit's gates and states.
template <class Real>
class Recompute {
 public:
  // REQUIRES 1 <= K (K >= T is plain BPTT in one segment). threads: as Workspace's (0: the
  // calling thread's ThreadCount::current() at construction); loss_and_gradients runs on them.
  Recompute(const ModelConfig& cfg, int T, int B, int K, bool with_dropout = false,
            int threads = 0);
  ~Recompute();
  int K() const { return K_; }
  int threads() const { return threads_; }
  std::size_t bytes() const;

  // As bptt::loss_and_gradients (grads += dL/d(params, x, h0, c0); x skipped when empty).
  double loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                            Gradients<Real>& grads, const Dropout* dropout = nullptr);
  // The state after the last step of the last call (h_n [L·D, B, H_out]; c_n [L·D, B, H] for
  // LSTM, else cleared).
  void final_state(std::vector<Real>& h, std::vector<Real>& c) const;

 private:
  struct Layers;  // the bidirectional path's buffers (recompute_layers.cpp)
  void segment(const BatchArg<Real>& batch, int s, int e);
  void init_layers(bool with_dropout);
  std::size_t layers_bytes() const;
  double by_layer(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                  Gradients<Real>& grads, const Dropout* dropout);
  ModelConfig cfg_;
  int T_, B_, K_, threads_;
  std::unique_ptr<Workspace<Real>> ws_;  // one segment (K steps); bidirectional: of one unit
  std::vector<Real> ckpt_h_;     // [S + 1, L, B, H_out] the state at every segment start, and
                                 // h_n (bidirectional: [L·D, S + 1, B, H_out], per unit)
  std::vector<Real> ckpt_c_;     // the same for the LSTM cell state (H wide)
  Batch<Real> seg_;              // the current segment's part of the batch
  Gradients<Real> seg_grads_;    // its dL/dx, dL/dh0 (= dL/dh at its start), dL/dc0
  std::vector<Real> dh_n_, dc_n_;  // dL/d(state at the segment's end), from the one after
  std::vector<Real> scratch_h_, scratch_c_;
  std::unique_ptr<Layers> layers_;
};

// ---------------------------------------------------------------------------------------------
// Truncated gradient
// ---------------------------------------------------------------------------------------------

// The K-truncated gradient: for each step t (1-based), the loss ℓ_t reaches back through steps
// t, t−1, …, t−K+1 in every layer, and the states at t−K (every layer) are constants. K = 1:
// only the current step's recurrent input counts; K >= T equals full BPTT. dL/dh0 (and dc0)
// collects the losses ℓ_t with t <= K, whose paths reach the initial state.
// Computed with all T chains (one per loss step) advanced together: at distance j = 0..K−1
// every chain is at step t − j, so each distance is one pass of large matrix products over all
// (T − j)·B rows, and the weight gradients are summed over chains before one GEMM each. Cost:
// min(K, T) times a backward pass, no per-step products.
template <class Real>
double truncated_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                    LossKind loss, int K, Gradients<Real>& grads);

// The slow, obvious version for checking: for every step t separately, the reference BPTT
// (reference_loss_and_gradients) on the window of steps (t−K, t] starting from the exact states
// at t−K, with only ℓ_t weighted. T backward passes.
template <class Real>
double truncated_reference_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                              LossKind loss, int K, Gradients<Real>& grads);

// ---------------------------------------------------------------------------------------------
// Real-time recurrent learning (Williams & Zipser 1989)
// ---------------------------------------------------------------------------------------------

// The exact gradient in forward mode. Each sequence carries, beside its state s_t (h, and c for
// LSTM, of every layer: S = L·H or 2·L·H numbers), the sensitivities M_t = ∂s_t/∂v for every
// number v it depends on: the N = P parameters, its own T·I inputs and its S initial values.
// Per step M_t = (∂s_t/∂s_{t−1}) M_{t−1} + ∂s_t/∂v|direct, and dL/dv += (∂ℓ_t/∂s_t) M_t. No
// history is kept; the cost is O(B·T·G·H·(I + H)·N) time (against BPTT's O(B·T·G·H·(I + H)))
// and O(S·N) memory per sequence. Any L; dropout is not supported.
template <class Real>
double rtrl_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                               Gradients<Real>& grads);

// Online RTRL over a stream: the sensitivities of the B sequences with respect to the
// parameters only (not x or the initial state), carried from call to call. step() consumes one
// time step of every sequence and returns the gradient of that step's loss, so the caller can
// update the parameters after every step (Williams & Zipser's online learning: the carried
// sensitivities then mix old and new parameters, as in the paper).
template <class Real>
class RtrlStream {
 public:
  RtrlStream(const ModelConfig& cfg, int B);
  // Starts every sequence from the state h0 [L, B, H_out] / c0 [L, B, H] (empty: the model's
  // initial state, zeros or its learned init.h0/init.c0, whose parameters then get the
  // sensitivity of the state they set; given states have none).
  void reset(const Model<Real>& model, const std::vector<Real>& h0, const std::vector<Real>& c0);
  // The same for a model with a zero initial state (refuses a learned one without h0 and c0).
  void reset(const std::vector<Real>& h0, const std::vector<Real>& c0);
  // One step: x [B, I]; the loss of this step is Σ_b w_b ℓ_b / norm (targets as in Batch: y
  // [B, O] or classes [B]; w [B] weights, empty = 1). ASSIGNS grad (param_count) and returns the
  // loss; a sequence with w_b = 0 still advances.
  double step(const Model<Real>& model, LossKind loss, const Real* x, const Real* y,
              const std::int64_t* classes, const Real* w, double norm, std::vector<Real>& grad);
  // The current state (h [L, B, H_out]; c [L, B, H] for LSTM, else cleared).
  void state(std::vector<Real>& h, std::vector<Real>& c) const;
  std::size_t bytes() const;

 private:
  ModelConfig cfg_;
  int B_;
  std::vector<Real> h_, c_;   // [L, B, H_out], [L, B, H]
  std::vector<Real> Mh_, Mc_; // [B, L, H_out, P], [B, L, H, P] sensitivities
};

// ---------------------------------------------------------------------------------------------
// Online approximations of RTRL (issue 20; docs/math.md, section 8e)
// ---------------------------------------------------------------------------------------------

// What each carries per sequence instead of RTRL's S·P sensitivities, and its cost per step:
//   uoro     Tallec & Ollivier 2018: an unbiased rank-one estimate s̃ θ̃ᵀ of the influence
//            matrix, from random signs; S + P numbers, O(P) per step
//   kf_rtrl  Mujika, Meier & Steger 2018: an unbiased Kronecker-factored estimate u ⊗ A per
//            parameter group, from random signs; S·G·H + m numbers per group, O(H³) per step
//   snap1    Menick et al. 2021: only each unit's state against its own parameters (one
//            layer); Q·P numbers, O(Q²·P) per step
//   eprop    Bellec et al. 2020: eligibility traces times the instantaneous learning signal,
//            with symmetric feedback (one layer); P numbers, O(P) per step
// (S: the state's size L·Q·H, Q = 2 for LSTM and 1 otherwise; P: the recurrent parameters.)
// The head's gradient is exact in all of them; x, h0 and c0 get no gradient.
enum class OnlineMethod { uoro, kf_rtrl, snap1, eprop };
std::string to_string(OnlineMethod m);  // "uoro", "kf-rtrl", "snap1", "eprop"

// The online method of a GradMethod (REQUIRES it is one: is_online).
inline bool is_online(GradMethod m) {
  return m == GradMethod::uoro || m == GradMethod::kf_rtrl || m == GradMethod::snap1 ||
         m == GradMethod::eprop;
}
inline OnlineMethod online_method(GradMethod m) {
  return m == GradMethod::uoro      ? OnlineMethod::uoro
         : m == GradMethod::kf_rtrl ? OnlineMethod::kf_rtrl
         : m == GradMethod::snap1   ? OnlineMethod::snap1
                                    : OnlineMethod::eprop;
}

// Throws bptt::Error (kind usage, where = `where`) naming the first thing of cfg that method m
// does not handle. All four take Elman (any φ), LSTM and GRU cells, with or without biases, with
// or without a head, in f32 and f64; uoro and kf_rtrl any number of layers, snap1 and eprop one.
// None takes a bidirectional layer, a final-state readout, projections, layer norm, zoneout, a
// learned initial state or bf16 products.
void require_online_support(OnlineMethod m, const ModelConfig& cfg, const std::string& where);

// The bytes OnlineGradient(m, cfg, B) carries (the state and the method's estimate), before
// constructing it.
std::size_t online_bytes(OnlineMethod m, const ModelConfig& cfg, int B, std::size_t real_size);

// One method over B sequences, one step at a time, as RtrlStream: step() advances every
// sequence one time step and returns the gradient of that step's loss, so the caller can update
// the parameters after every step. The random signs (uoro, kf_rtrl) are drawn from (seed, the
// step counter, the sequence), docs/math.md 8e, so a run resumed with the same counter and
// carried arrays continues exactly. Single-threaded apart from the products.
template <class Real>
class OnlineGradient {
 public:
  // Throws bptt::Error as require_online_support, or for B < 1. The state starts at zero.
  OnlineGradient(OnlineMethod m, const ModelConfig& cfg, int B, std::uint64_t seed);
  ~OnlineGradient();
  OnlineGradient(const OnlineGradient&) = delete;
  OnlineGradient& operator=(const OnlineGradient&) = delete;
  OnlineMethod method() const;
  // Every sequence starts from h0 [L, B, H] / c0 [L, B, H] (LSTM; empty: zeros) with a zero
  // estimate. The step counter is kept.
  void reset(const std::vector<Real>& h0, const std::vector<Real>& c0);
  // One step: x [B, I]; the loss is Σ_b w_b ℓ_b / norm (targets as in Batch: y [B, O] or
  // classes [B]; w [B], nullptr = 1). valid [B] (nullptr: all 1): a sequence with valid[b] = 0
  // does not advance (its state and estimate stay, it has no loss). ASSIGNS grad
  // (param_count) and returns the loss; then the step counter advances.
  double step(const Model<Real>& model, LossKind loss, const Real* x, const Real* y,
              const std::int64_t* classes, const Real* w, double norm, std::vector<Real>& grad,
              const unsigned char* valid = nullptr);
  // The current state (h [L, B, H]; c [L, B, H] for LSTM, else cleared).
  void state(std::vector<Real>& h, std::vector<Real>& c) const;
  // The counter the signs of the next step are drawn with (0 at construction).
  std::int64_t step_count() const;
  void set_step_count(std::int64_t t);
  // What the method carries besides the state, by name (sizes fixed at construction), for
  // snapshots: write them as they are and read them back into the same vectors to resume.
  std::vector<std::pair<std::string, std::vector<Real>*>> carried();
  std::size_t bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The method's gradient summed over the batch's steps with fixed parameters (what the method
// would have added up over the sequence), starting from the batch's h0/c0 (or zeros) with zero
// estimates and step counter 0. ACCUMULATES into grads.params (x, h0, c0 untouched) and returns
// the loss, like rtrl_loss_and_gradients. Refuses dropout masks and zoneout flags.
template <class Real>
double online_loss_and_gradients(OnlineMethod m, std::uint64_t seed, const Model<Real>& model,
                                 const BatchArg<Real>& batch, LossKind loss,
                                 Gradients<Real>& grads);

// ---------------------------------------------------------------------------------------------
// Central differences
// ---------------------------------------------------------------------------------------------

// Central differences in float64: dL/dv ≈ (L(v + ε) − L(v − ε)) / 2ε with ε = step·max(1, |v|),
// for every parameter and every number of x, h0 and c0; two forward passes per number, so only
// for small models. Returns the loss and ASSIGNS grads (sized for the batch; x, h0, c0 are
// filled whatever their size was, c0 only for LSTM).
double numeric_loss_and_gradients(const Model<double>& model, const BatchView<double>& batch,
                                  LossKind loss, Gradients<double>& grads, double step = 1e-6);

// How many numbers numeric_loss_and_gradients perturbs (parameters, x, h0 and c0).
std::size_t numeric_gradient_count(const ModelConfig& cfg, int T, int B);

// ---------------------------------------------------------------------------------------------
// Shared by the methods
// ---------------------------------------------------------------------------------------------

// Steps [s, e) of a batch as a batch of its own (x, targets, mask, lengths and zoneout flags
// shifted; the dropout masks whole; h0/c0 not set). Reuses out's capacity.
template <class Real>
void slice_steps(const BatchArg<Real>& batch, int s, int e, Batch<Real>& out);

// Sequences [b0, b1) of a batch as a batch of its own (every tensor's B axis cut; h0/c0 and
// mask_recurrent are [layers, B, ·], zoneout flags [T, layers, B, ·]; mask_weight_hh whole).
// Reuses out's capacity.
template <class Real>
void slice_rows(const BatchArg<Real>& batch, int b0, int b1, int layers, Batch<Real>& out);

// The model options (model.hpp) a method or verb handles. require_options throws bptt::Error
// (where = `where`) naming `what` and the first option cfg uses that it does not: for
// `causal` code (truncation, RTRL, online training, streams, sampling) a bidirectional model and
// a head that reads the final state (Readout::final_state) are refused for good, since both
// need each sequence whole; layer-normalized cells where layer_norm is false. Every other path
// supports every option.
struct OptionSupport {
  bool causal = false;  // runs left to right only
  bool layer_norm = true;  // false: the code knows the cells without layer norm only (RTRL)
  bool zoneout = true;     // false: the code knows the cells without zoneout only (RTRL)
};
void require_options(const ModelConfig& cfg, const OptionSupport& support,
                     const std::string& where, const std::string& what);

// Throws bptt::Error (kind usage, where = `where`) when the batch carries dropout masks or
// zoneout flags (Batch::mask_input, ...), for code that does not apply them (`what`).
template <class Real>
void require_no_masks(const BatchArg<Real>& batch, const std::string& where,
                      const std::string& what);

// Σ_{t, b} batch.weight(t, b): the loss normalizer of the whole batch.
template <class Real>
double total_weight(const BatchArg<Real>& batch);

}  // namespace bptt
