// Full BPTT: the forward pass over all layers and steps, the loss, and the backward recursion
// from t = T down to 1 with ∂L/∂h_{T+1} = 0. Per layer the matrix products are hoisted out of the
// time loop (docs/math.md, "Hoisting"): one input GEMM before it (unless the layer is small
// enough to form x·W_ihᵀ in the step's kernel, unroll/x_product.hpp), one GEMM each for dW_ih,
// dW_hh and dX after it; only h·W_hhᵀ and dgh·W_hh remain per step.
#include <omp.h>

#include <algorithm>
#include <exception>
#include <vector>

#include <fmt/format.h>

#include "bptt/error.hpp"
#include "bptt/threads.hpp"

#include "bptt/unroll.hpp"
#include "cells/cell.hpp"
#include "cells/layer_norm.hpp"
#include "kernels/gemm.hpp"
#include "kernels/matmul.hpp"
#include "kernels/step_gemm.hpp"
#include "unroll/chunks.hpp"
#include "unroll/direction.hpp"
#include "unroll/forward_packs.hpp"
#include "unroll/head.hpp"
#include "unroll/regularize.hpp"
#include "unroll/x_product.hpp"
#include "support/aligned.hpp"

namespace bptt {

namespace {

// A contiguous range [begin, end) of the batch's rows (sequences); part: its index among the
// parts of for_row_parts.
struct Rows {
  int begin = 0, end = 0;
  int part = 0;
  int size() const { return end - begin; }
};

// The pointers of step t (0-based, in the unit's frame; it reads state t and writes state t+1)
// of unit u, for the rows r of the batch. With a projection the cell's h is m = o ⊙ tanh(c)
// and its h_prev the scratch's zeros (the LSTM cell reads h_prev only to carry it past a
// sequence's end, so m is 0 there); the unroller forms h = m·W_hrᵀ itself. p: the unit's
// parameters (a layer-normalized LSTM's γ_c, β_c).
// saved: the step of the [R, ...] buffers (gates, aux, m, layer norm's; Workspace) that holds
// step t's: t itself, or its place in a forward-only pass's ring (unit_forward).
template <class Real>
cells::CellStep<Real> step_at(Workspace<Real>& ws, const typename Workspace<Real>::Scratch& sc,
                              const LayerParams<const Real>& p, int u, int t, int H, int HO,
                              int GH, Rows r, int saved) {
  const std::size_t B = std::size_t(ws.B()), row = std::size_t(t), b0 = std::size_t(r.begin),
                    kept = std::size_t(saved);
  const std::size_t BH = B * H, BHO = B * HO;
  cells::CellStep<Real> s;
  s.B = r.size();
  s.H = H;
  s.valid = ws.valid() + row * B + b0;
  s.gates = ws.gates(u) + (kept * B + b0) * GH;
  s.gh = sc.gh_step + b0 * GH;
  if (Real* m = ws.m(u)) {
    s.h_prev = sc.zeros + b0 * H;
    s.h = m + kept * BH + b0 * H;
  } else {
    s.h_prev = ws.h(u) + row * BHO + b0 * HO;
    s.h = ws.h(u) + (row + 1) * BHO + b0 * HO;
  }
  if (Real* c = ws.c(u)) s.c_prev = c + row * BH + b0 * H, s.c = c + (row + 1) * BH + b0 * H;
  if (Real* aux = ws.aux(u)) s.aux = aux + kept * BH + b0 * H;
  if (Real* st = ws.ln_c_stats(u)) {
    s.ln_c_gamma = p.ln_c_w;
    s.ln_c_beta = p.ln_c_b;
    s.ln_c_stats = st + (kept * B + b0) * 2;
  }
  return s;
}

// Runs f(begin, end, part) on `parts` contiguous blocks of [0, rows), one per thread: for the
// pointwise passes over all T·B rows of a unit (its layer norm).
inline int block_parts(int rows, int threads) {
  constexpr int kMinRowsPerPart = 64;
  return std::max(1, std::min(threads, rows / kMinRowsPerPart));
}

template <class F>
void for_blocks(int rows, int threads, F&& f) {
  const int parts = block_parts(rows, threads);
  if (parts == 1) return f(0, rows, 0);
#pragma omp parallel num_threads(parts)
  for (int p = omp_get_thread_num(); p < parts; p += omp_get_num_threads())
    f(int(std::int64_t(rows) * p / parts), int(std::int64_t(rows) * (p + 1) / parts), p);
}

// Rows of the readout per task (of the threads' loop over blocks of rows).
constexpr int kReadoutRows = 256;

// Runs f(rows) on contiguous parts of the batch, one per thread. Each sequence's recursion
// touches only its own rows of every buffer, so the parts run the whole time loop without a
// barrier; their per-step products are our own single-threaded kernel (kernels/step_gemm.hpp),
// never a BLAS call. Small batches run as one part: a thread per handful of rows costs more
// than it saves. unroll::row_parts(B, threads): how many parts that is with `threads` threads
// (all of OpenMP's, or a direction's share when the two directions of a layer run at once).

template <class F>
void for_row_parts(int B, int threads, F&& f) {
  const int parts = unroll::row_parts(B, threads);
  if (parts == 1) return f(Rows{0, B, 0});
  // OpenMP may give the region fewer threads than asked for (called from inside another
  // parallel region, or under a thread limit): each thread then takes several parts in turn.
#pragma omp parallel num_threads(parts)
  for (int p = omp_get_thread_num(); p < parts; p += omp_get_num_threads())
    f(Rows{B * p / parts, B * (p + 1) / parts, p});
}

// Runs f(d, threads) for the D directions of a layer. The two recursions of a bidirectional
// layer are independent (each its own weights, buffers and scratch; they share only the
// layer's input, which they read): with two threads or more they run at once (the matrix
// products inside are single-threaded calls then, kernels/gemm.cpp). Each direction is handed
// half of the threads for its row parts; beyond two threads those parts run in turn unless
// OpenMP's nested parallelism is on. Errors inside are carried out of the region.
template <class F>
void for_directions(int D, F&& f) {
  const int threads = ThreadCount::current();
  if (D == 1 || threads < 2 || omp_in_parallel()) {
    for (int d = 0; d < D; ++d) f(d, threads);
    return;
  }
  std::exception_ptr error[2];
#pragma omp parallel num_threads(2)
  {
    // A region of fewer threads than asked for (a thread limit) runs both in turn.
    const int n = omp_get_num_threads();
    for (int d = omp_get_thread_num(); d < D; d += n) {
      try {
        f(d, std::max(1, threads / n));
      } catch (...) {
        error[d] = std::current_exception();
      }
    }
  }
  for (auto& e : error)
    if (e) std::rethrow_exception(e);
}

// What forward() and backward() check on every call (unroll.hpp): the sizes the buffers are
// indexed by, so that a wrong model, workspace or batch is an Error, not a wild write.
template <class Real>
void check_call(const Model<Real>& model, const BatchArg<Real>& batch, const Workspace<Real>& ws) {
  const ModelConfig& c = model.cfg;
  model.check("model");
  const ModelConfig& w = ws.config();
  if (w.cell != c.cell || w.input_size != c.input_size || w.hidden_size != c.hidden_size ||
      w.num_layers != c.num_layers || w.output_size != c.output_size ||
      w.bidirectional != c.bidirectional || w.state_size() != c.state_size() ||
      w.readout != c.readout)
    throw Error(ErrorKind::shape, "workspace",
                fmt::format("built for a {} model with I = {}, H = {}, L = {}, O = {}, D = {}, "
                            "H_out = {}, but the model is {} with I = {}, H = {}, L = {}, O = {}, "
                            "D = {}, H_out = {}",
                            to_string(w.cell), w.input_size, w.hidden_size, w.num_layers,
                            w.output_size, w.directions(), w.state_size(), to_string(c.cell),
                            c.input_size, c.hidden_size, c.num_layers, c.output_size,
                            c.directions(), c.state_size()),
                "construct the Workspace from the model's configuration");
  if (ws.T() < batch.T || ws.B() != batch.B)
    throw Error(ErrorKind::shape, "workspace",
                "sized for T = " + std::to_string(ws.T()) + ", B = " + std::to_string(ws.B()) +
                    " but the batch has T = " + std::to_string(batch.T) + ", B = " +
                    std::to_string(batch.B),
                "size the Workspace for the batch");
  batch.check_shapes(c, "batch");
}

// The products of the calls given ws, at its precision (bptt/precision.hpp, kernels/matmul.hpp).
template <class Real>
kernels::Products products(const Workspace<Real>& ws) {
  return kernels::Products::of<Real>(ws.matmul(), "workspace");
}

// Row 0 of unit u's state [B, width]: the batch's slice of h0/c0 [L·D, B, width] when given,
// else the learned init row [width] (nullptr when not learned) for every sequence, else zeros.
template <class Real>
void initial_state(std::span<const Real> given, const Real* learned, int u, int B, int width,
                   Real* state) {
  const std::size_t n = std::size_t(B) * width;
  if (!given.empty()) {
    const auto first = given.begin() + std::ptrdiff_t(std::size_t(u) * n);
    std::copy(first, first + std::ptrdiff_t(n), state);
  } else if (learned) {
    for (int b = 0; b < B; ++b)
      std::copy(learned + std::size_t(u) * width, learned + std::size_t(u + 1) * width,
                state + std::size_t(b) * width);
  } else {
    std::fill(state, state + n, Real(0));
  }
}

// state[0..n) = the slice of a [L·D, B, ·] gradient from beyond the batch, or zeros.
template <class Real>
void init_carry(const Real* given, std::size_t offset, std::size_t n, Real* state) {
  if (!given)
    std::fill(state, state + n, Real(0));
  else
    std::copy(given + offset, given + offset + n, state);
}

// d_learned[0..width) += Σ_b g[b, 0..width): a learned initial state's share of dL/dh0.
template <class Real>
void add_batch_sum(int B, int width, const Real* g, Real* d_learned) {
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < width; ++j) d_learned[j] += g[std::size_t(b) * width + j];
}

// Layer k's dropped input: drop_in = h ⊙ mask, mask ∈ {0, 1/(1-p)}; rows of `width`.
template <class Real>
const Real* apply_dropout(const Dropout& d, int k, std::size_t n, int width, const Real* h,
                          Workspace<Real>& ws) {
  Real* mask = ws.drop_mask(k);
  Real* out = ws.drop_in(k);
  dropout_mask(d, k, int(n / (std::size_t(ws.B()) * std::size_t(width))), ws.B(), width, mask);
  for (std::size_t i = 0; i < n; ++i) out[i] = h[i] * mask[i];
  return out;
}

// The elements of one unit's packs for forward's kernels (pack_unit).
template <class Real>
std::size_t unit_pack_size(const ModelConfig& cfg, int in) {
  const int GH = cfg.gates() * cfg.hidden_size, P = cfg.proj_size;
  return kernels::packed_size<Real>(GH, cfg.state_size()) + kernels::packed_size<Real>(GH, in) +
         (P ? kernels::packed_size<Real>(P, cfg.hidden_size) : 0);
}

// One unit's weights packed for forward's kernels, ASSIGNED to dst: W_hhᵀ (w_hh: the model's,
// or W̃_hh under weight drop), then W_ihᵀ (for the x-side product, hoisted or in the step:
// unroll/x_product.hpp), then W_hrᵀ with a projection.
template <class Real>
void pack_unit(const kernels::Products& mm, const ModelConfig& cfg, const LayerParams<const Real>& p,
               const Real* w_hh, Real* dst) {
  const int H = cfg.hidden_size, GH = cfg.gates() * H, HO = cfg.state_size(), P = cfg.proj_size;
  Real* packed_ih = dst + kernels::packed_size<Real>(GH, HO);
  Real* packed_hr = packed_ih + kernels::packed_size<Real>(GH, p.in);
  mm.pack(true, GH, HO, w_hh, HO, dst);
  mm.pack(true, GH, p.in, p.w_ih, p.in, packed_ih);
  if (P) mm.pack(true, P, H, p.w_hr, H, packed_hr);
}

// The hoisted x-side product gates[TB, GH] = x[TB, in]·W_ihᵀ (ASSIGNED; the biases come later),
// from W_ihᵀ's panels (pack_unit) in the per-step kernel, which runs 4-6% faster here than a
// GEMM that packs W_ih at every call (docs/benchmarks.md, issue 19 part 6). Threads take
// contiguous parts of the rows, each part in blocks of kHoistRows rows: in bf16 the kernel
// rounds a block's rows into pairs, which then stay in L2 (6400 rows at once: 319 GFLOP/s
// against 399 in blocks of 1024).
template <class Real>
void hoisted_product(const kernels::Products& mm, int TB, int GH, int in, const Real* x,
                     const Real* packed_ih, const Real* zeros, Real* gates, int threads) {
  constexpr int kHoistRows = 1024;
  for_blocks(TB, threads, [&](int r0, int r1, int) {
    for (int r = r0; r < r1; r += kHoistRows)
      mm.packed(std::min(kHoistRows, r1 - r), GH, in, x + std::size_t(r) * in, in, packed_ih, zeros,
                gates + std::size_t(r) * GH, GH);
  });
}

// One unit's forward pass over its input `in` [T, B, in] (in its frame): the hoisted input
// GEMM, then per step the packed product and the cell, then with a projection h = m·W_hrᵀ.
// packed: the unit's packs (pack_unit) made beforehand, or nullptr to make them here.
template <class Real>
void unit_forward(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws, int u,
                  const Real* in, const unroll::Regularization<Real>& R, int threads,
                  const Real* packed) {
  const kernels::Products mm = products(ws);
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, H = cfg.hidden_size, HO = cfg.state_size(),
            GH = cfg.gates() * H, P = cfg.proj_size, dir = u % cfg.directions();
  const std::size_t BHO = std::size_t(B) * HO, BH = std::size_t(B) * H;
  const bool reverse = dir == 1, zoneout = R.h_zoneout() || R.c_zoneout();
  const auto V = model.views();
  const auto& p = V.layers[std::size_t(u)];
  const auto& sc = ws.scratch(dir);
  // The weights packed first (unless made beforehand): W_hhᵀ for the per-step kernel, W_ihᵀ for
  // the x-side product, W_hrᵀ with a projection. Per step: gh = h_{t-1}·W_hhᵀ + bias; in the
  // step (unroll/x_product.hpp), the step's rows of gates = bias + x_t·W_ihᵀ + h_{t-1}·W_hhᵀ.
  if (!packed) {
    const Real* w_hh = p.w_hh;
    if (R.weight_hh) {  // weight drop: the whole pass runs on W̃_hh = W_hh ⊙ M
      Real* w = ws.w_dropped(dir);
      unroll::mask_rows(GH, HO, p.w_hh, R.weight_hh + std::size_t(u) * GH * HO, w);
      w_hh = w;
    }
    pack_unit(mm, cfg, p, w_hh, sc.packed_w);
    packed = sc.packed_w;
  }
  const Real* packed_hh = packed;
  const Real* packed_ih = packed_hh + kernels::packed_size<Real>(GH, HO);
  const Real* packed_hr = packed_ih + kernels::packed_size<Real>(GH, p.in);
  // Hoisted: x-side pre-activations of all T·B rows before the time loop, b_ih folded into the
  // per-step bias (fold_step_bias). With layer norm the biases come after the normalization:
  // gates = LN(x·W_ihᵀ) ⊙ γ_ih + b_ih here, and per step gh = LN(h·W_hhᵀ) ⊙ γ_hh + b_hh after a
  // product without bias.
  //
  // A forward-only pass (Inference), whose saved values no backward reads, runs the steps a
  // chunk at a time through a ring of saved_steps() (unroll/chunks.hpp): each chunk's hoisted
  // product goes into the ring's rows just before its steps, and stays in cache for the cells.
  // Formed for all steps at once, the product went out to L3 and came back.
  const bool in_step = unroll::x_product_in_step<Real>(cfg, p.in), ln = cfg.layer_norm;
  const bool ring = ws.forward_only();
  const int chunk = ring ? ws.saved_steps() : T;
  const auto hoist = [&](int t0, int t1) {  // steps [t0, t1), into the rows of step t0 or 0
    const std::size_t first = std::size_t(t0) * B, to = ring ? 0 : first;
    const int rows = (t1 - t0) * B;
    if (!in_step)
      hoisted_product(mm, rows, GH, p.in, in + first * p.in, packed_ih, sc.zeros,
                      ws.gates(u) + to * GH, threads);
    if (ln)
      for_blocks(rows, threads, [&](int r0, int r1, int) {
        const std::size_t at = to + std::size_t(r0);
        cells::layer_norm_forward(r1 - r0, GH, ws.gates(u) + at * GH, std::size_t(GH), p.ln_ih,
                                  p.b_ih, ws.ln_x(u) + at * GH, ws.ln_x_rstd(u) + at);
      });
  };
  Real* bias = sc.step_bias;
  const Real* bias_n = nullptr;
  if (ln)
    std::fill(bias, bias + GH, Real(0));
  else
    bias_n = unroll::fold_step_bias(cfg, p.b_ih, p.b_hh, bias);
  initial_state(batch.h0, V.h0, u, B, HO, ws.h(u));
  if (ws.c(u)) initial_state(batch.c0, V.c0, u, B, H, ws.c(u));
  for (int t0 = 0; t0 < T; t0 += chunk) {
    const int t1 = std::min(T, t0 + chunk);
    hoist(t0, t1);
    for_row_parts(B, threads, [&](Rows r) {
      const std::size_t o0 = std::size_t(r.begin) * HO;
      for (int t = t0; t < t1; ++t) {
        const int saved = ring ? t - t0 : t;
        auto s = step_at(ws, sc, p, u, t, H, HO, GH, r, saved);
        s.bias_n = bias_n;
        const std::size_t at = std::size_t(t) * B + std::size_t(r.begin),  // the step's first row
            kept = std::size_t(saved) * B + std::size_t(r.begin);         // ... in the [R, ...] buffers
        const Real* h_prev = ws.h(u) + std::size_t(t) * BHO + o0;
        const Real* h_in = h_prev;  // what enters W_hh
        if (R.recurrent) {
          Real* hm = ws.h_masked(u) + at * HO;
          unroll::mask_rows(s.B, HO, h_prev, R.recurrent + (std::size_t(u) * B + r.begin) * HO, hm);
          h_in = hm;
        }
        if (in_step) {
          s.gh = nullptr;
          const Real* x_t = in + at * p.in;
          mm.packed_pair(s.B, GH, p.in, x_t, p.in, packed_ih, HO, h_in, HO, packed_hh, bias,
                         s.gates, GH);
        } else {
          mm.packed(s.B, GH, HO, h_in, HO, packed_hh, bias, s.gh, GH);
        }
        if (ln)
          cells::layer_norm_forward(s.B, GH, s.gh, std::size_t(GH), p.ln_hh, p.b_hh,
                                    ws.ln_h(u) + kept * GH, ws.ln_h_rstd(u) + kept);
        cells::cell_forward(cfg.cell, cfg.nonlinearity, s);
        if (P) {  // h_t = m_t·W_hrᵀ (sc.zeros as a zero bias: ASSIGN), carried past a length
          Real* h = ws.h(u) + std::size_t(t + 1) * BHO + o0;
          mm.packed(s.B, P, H, s.h, H, packed_hr, sc.zeros, h, P);
          for (int b = 0; b < s.B; ++b)
            if (!s.valid[b]) std::copy(h_prev + b * P, h_prev + (b + 1) * P, h + b * P);
        }
        if (zoneout) {  // h_t = k ⊙ h_{t−1} + (1 − k) ⊙ h̄_t, c the same; the cell's own output
                        // kept where its backward reads it (Elman's h̄, the LSTM's c̄)
          Real* h_new = ws.h(u) + std::size_t(t + 1) * BHO + o0;
          if (cfg.cell == CellKind::elman && R.h_zoneout())
            std::copy(h_new, h_new + std::size_t(s.B) * H, ws.zo_bar(u) + at * H);
          if (R.h_zoneout())
            unroll::zoneout_forward(R, R.zoneout_h, R.zh, HO, u, reverse, t, r.begin, s.B,
                                    ws.lengths(), s.valid, h_prev, h_new);
          if (ws.c(u) && R.c_zoneout()) {
            Real* c_new = ws.c(u) + std::size_t(t + 1) * BH + std::size_t(r.begin) * H;
            std::copy(c_new, c_new + std::size_t(s.B) * H, ws.zo_bar(u) + at * H);
            unroll::zoneout_forward(R, R.zoneout_c, R.zc, H, u, reverse, t, r.begin, s.B,
                                    ws.lengths(), s.valid, s.c_prev, c_new);
          }
        }
      }
    });
  }
}

// forward() with the weights packed beforehand (packs) or here (nullptr).
template <class Real>
void forward_impl(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
                  const Dropout* dropout, bool head, const unroll::ForwardPacks<Real>* packs,
                  unroll::ReadoutTo<Real> to = {}) {
  const kernels::Products mm = products(ws);
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, HO = cfg.state_size(), W = cfg.output_width(),
            O = cfg.output_size, TB = T * B, D = cfg.directions();
  check_call(model, batch, ws);
  if (ws.forward_only() && !packs)
    throw Error(ErrorKind::usage, "workspace", "an inference workspace holds no packed weights",
                "run it through Inference");
  const ThreadCount on_threads(ws.threads());
  ws.begin(T, batch.lengths);

  ws.dropout_active = dropout && dropout->p > 0 && cfg.num_layers > 1;
  if (ws.dropout_active && !ws.drop_mask(1))
    throw Error(ErrorKind::usage, "workspace",
                "dropout requested but the workspace has no dropout buffers",
                "construct the Workspace with with_dropout = true");
  const unroll::Regularization<Real> R(cfg, batch);
  ws.reserve_regularization(R.input, R.recurrent, R.h_zoneout() || R.c_zoneout(), R.output,
                            R.weight_hh);
  const auto P = model.views();
  for (int k = 0; k < cfg.num_layers; ++k) {
    const int in_width = cfg.layer_input_size(k);
    const Real* in = k == 0 ? batch.x.data() : ws.out(k - 1);
    if (k == 0 && R.input) {  // x̃_t = x_t ⊙ m, the same m at every step
      for (int t = 0; t < T; ++t)
        unroll::mask_rows(B, in_width, in + std::size_t(t) * B * in_width, R.input,
                          ws.x_masked() + std::size_t(t) * B * in_width);
      in = ws.x_masked();
    }
    if (k > 0 && ws.dropout_active)
      in = apply_dropout(*dropout, k, std::size_t(TB) * W, W, in, ws);
    const auto direction = [&](int d, int threads) {
      const int u = k * D + d;
      const Real* src = in;
      if (d == 1) {  // the input in the unit's frame (unroll/direction.hpp)
        unroll::to_data_order(true, ws.lengths(), T, B, in_width, in, ws.x_rev(u));
        src = ws.x_rev(u);
      }
      unit_forward(model, batch, ws, u, src, R, threads,
                   packs ? packs->buf.data() + packs->unit[std::size_t(u)] : nullptr);
    };
    for_directions(D, direction);
    if (D == 2)  // out(k) = [h(d = 0) ; h(d = 1)] in data order
      for (int d = 0; d < D; ++d)
        unroll::permute_steps(d == 1, ws.lengths(), 0, T, B, HO,
                              ws.h(k * D + d) + std::size_t(B) * HO, std::size_t(HO),
                              ws.out(k) + std::size_t(d) * HO, std::size_t(W));
  }
  if (!head) return;
  if (cfg.readout == Readout::final_state) {  // the top layer's h_n at every step
    const int k = cfg.num_layers - 1;
    for (int d = 0; d < D; ++d) {
      const Real* hn = ws.h(k * D + d) + std::size_t(T) * B * HO;  // after the last step: h_n
      for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b)
          std::copy(hn + std::size_t(b) * HO, hn + std::size_t(b + 1) * HO,
                    ws.top() + (std::size_t(t) * B + b) * W + std::size_t(d) * HO);
    }
  }
  Real* const yhat = to.yhat ? to.yhat : ws.yhat();
  Real* const z = to.z ? to.z : to.yhat ? to.yhat : ws.z();
  const Real* top = ws.top();
  if (R.output) {  // the head reads top_t ⊙ m
    for (int t = 0; t < T; ++t)
      unroll::mask_rows(B, W, top + std::size_t(t) * B * W, R.output,
                        ws.top_masked() + std::size_t(t) * B * W);
    top = ws.top_masked();
  }
  if (!cfg.head) {  // a head-less model: z = top (O = W)
    std::copy(top, top + std::size_t(TB) * W, z);
    apply_output_activation(cfg.output_activation, TB, O, z, yhat);
    return;
  }
  // Z = top·W_oᵀ + b_o through the packed kernel, which starts from the bias row: a BLAS
  // call would write Z and then need a second pass to add b_o. Each block of rows gets θ while
  // it is in cache, on the thread that computed it.
  const Real* packed = packs ? packs->buf.data() + packs->head : ws.scratch(0).packed_w;
  if (!packs) mm.pack(true, O, W, P.w_o, W, ws.scratch(0).packed_w);
  const int blocks = (TB + kReadoutRows - 1) / kReadoutRows;
  const bool split = blocks > 1 && 2.0 * TB * O * W >= kernels::kMinFlopsPerThread * 2;
#pragma omp parallel for schedule(static) num_threads(ThreadCount::current()) \
    if (split && ThreadCount::current() > 1)
  for (int i = 0; i < blocks; ++i) {
    const int r0 = i * kReadoutRows, rows = std::min(kReadoutRows, TB - r0);
    Real* zr = z + std::size_t(r0) * O;
    mm.packed(rows, O, W, top + std::size_t(r0) * W, W, packed, P.b_o, zr, O);
    apply_output_activation(cfg.output_activation, rows, O, zr, yhat + std::size_t(r0) * O);
  }
}

}  // namespace

template <class Real>
void forward(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
             const Dropout* dropout, bool head) {
  forward_impl(model, batch, ws, dropout, head, static_cast<const unroll::ForwardPacks<Real>*>(nullptr));
}

template <class Real>
void unroll::ForwardPacks<Real>::pack(const Model<Real>& model, const BatchArg<Real>& batch,
                                      Matmul matmul) {
  const ModelConfig& cfg = model.cfg;
  const kernels::Products mm = kernels::Products::of<Real>(matmul, "forward");
  bf16 = mm.bf16;
  model.check("forward");
  batch.check_shapes(cfg, "batch");
  const int U = cfg.units(), GH = cfg.gates() * cfg.hidden_size, HO = cfg.state_size(),
            W = cfg.output_width(), O = cfg.output_size;
  const auto V = model.views();
  unit.resize(std::size_t(U));
  // Every pack from a cache line's start (support/aligned.hpp): the offsets in whole lines from
  // buf's first line.
  std::size_t n = 0;
  for (int u = 0; u < U; ++u) {
    unit[std::size_t(u)] = n;
    n += support::whole_lines<Real>(unit_pack_size<Real>(cfg, V.layers[std::size_t(u)].in));
  }
  head = n;
  if (cfg.head) n += kernels::packed_size<Real>(O, W);
  buf.resize(n + support::line_slack<Real>());
  const std::size_t origin = std::size_t(support::line_start(buf.data()) - buf.data());
  for (std::size_t& at : unit) at += origin;
  head += origin;
  std::vector<Real> dropped;
  for (int u = 0; u < U; ++u) {
    const auto& p = V.layers[std::size_t(u)];
    const Real* w_hh = p.w_hh;
    if (!batch.mask_weight_hh.empty()) {  // weight drop: W̃_hh = W_hh ⊙ M
      dropped.resize(std::size_t(GH) * HO);
      unroll::mask_rows(GH, HO, p.w_hh, batch.mask_weight_hh.data() + std::size_t(u) * GH * HO,
                        dropped.data());
      w_hh = dropped.data();
    }
    pack_unit(mm, cfg, p, w_hh, buf.data() + unit[std::size_t(u)]);
  }
  if (cfg.head) mm.pack(true, O, W, V.w_o, W, buf.data() + head);
}

template <class Real>
void unroll::forward_packed(const Model<Real>& model, const BatchArg<Real>& batch,
                            Workspace<Real>& ws, const ForwardPacks<Real>& packs,
                            const Dropout* dropout, bool head, ReadoutTo<Real> to) {
  if (packs.unit.size() != std::size_t(model.cfg.units()) ||
      packs.bf16 != (ws.matmul() == Matmul::bf16))
    throw Error(ErrorKind::usage, "forward", "packs made for another model or precision",
                "call ForwardPacks::pack(model, batch, ws.matmul()) first");
  forward_impl(model, batch, ws, dropout, head, &packs, to);
}

namespace {

// One unit's backward pass: t = T..1 in its frame with dL/dh_{T+1} from opts (zero by
// default), dL/dh_t from above formed a chunk at a time, then the weight gradients merged over
// time. `dout` is dL/d(out(k)) [T, B, D·H_out] in data order when D = 2; for D = 1 (nullptr)
// the chunk's dL/dh_t from above is formed here from the head's dz or layer k+1's dgi.
// d_hn: with Readout::final_state, dL/d(h_n) [B, H_out] of a top-layer unit from the head (which
// then sends nothing to the steps themselves); else nullptr.
template <class Real>
void unit_backward(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
                   Gradients<Real>& grads, const BackwardOptions<Real>& opts, int u,
                   const Real* dout, const Real* d_hn, int threads) {
  const kernels::Products mm = products(ws);
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, H = cfg.hidden_size, HO = cfg.state_size(),
            GH = cfg.gates() * H, O = cfg.output_size, P = cfg.proj_size, TB = T * B,
            D = cfg.directions(), W = cfg.output_width(), L = cfg.num_layers;
  const int k = u / D, dir = u % D;
  const bool reverse = dir == 1;
  const std::size_t BH = std::size_t(B) * H, BHO = std::size_t(B) * HO;
  const auto V = model.views();
  ParamViews<Real> G(cfg, grads.params.data());
  const auto& p = V.layers[std::size_t(u)];
  const auto& d = G.layers[std::size_t(u)];
  const auto& sc = ws.scratch(dir);
  const unroll::Regularization<Real> R(cfg, batch);
  const bool zo_h = R.h_zoneout(), zo_c = R.c_zoneout() && ws.c(u);
  Real* packed_hh = sc.packed_w;  // W_hh for δ^h_t·W_hh, then W_hr for dh_t·W_hr
  Real* packed_hr = packed_hh + kernels::packed_size<Real>(HO, GH);
  const Real* w_hh = p.w_hh;
  if (R.weight_hh) {  // W̃_hh again, as forward ran
    unroll::mask_rows(GH, HO, p.w_hh, R.weight_hh + std::size_t(u) * GH * HO, ws.w_dropped(dir));
    w_hh = ws.w_dropped(dir);
  }
  mm.pack(false, HO, GH, w_hh, HO, packed_hh);
  if (P) mm.pack(false, H, P, p.w_hr, H, packed_hr);
  // ∂L/∂h_{T+1} = 0, unless the final state's gradient comes from beyond the batch.
  init_carry(opts.dh_n, std::size_t(u) * BHO, BHO, sc.dh_carry);
  if (d_hn)
    for (std::size_t i = 0; i < BHO; ++i) sc.dh_carry[i] += d_hn[i];
  if (ws.c(u)) init_carry(opts.dc_n, std::size_t(u) * BH, BH, sc.dc_carry);
  // Bias gradients: Σ over steps and rows of dgh (b_hh) and dgi (b_ih), added step by step
  // while the step's rows are in cache, one pair of accumulators per row part (no pass over
  // [T·B, G·H] after the loop). Only the GRU's dgi differs from its dgh.
  const bool gru = cfg.cell == CellKind::gru, ln = cfg.layer_norm;
  const std::size_t parts = std::size_t(unroll::row_parts(B, threads));
  std::vector<Real> db(cfg.bias ? parts * 2 * GH : 0);
  // Layer norm's gains, the same way: per row part γ_hh [G·H], then for LSTM γ_c and β_c [H].
  const std::size_t n_ln = ln ? std::size_t(GH) + (p.ln_c_w ? 2 * std::size_t(H) : 0) : 0;
  std::vector<Real> dln(parts * n_ln);
  Real* trace = opts.dh_trace ? opts.dh_trace + std::size_t(u) * T * BHO : nullptr;
  const int C = ws.chunk_steps();
  for (int end = T; end > 0; end -= C) {
    const int begin = std::max(0, end - C), rows = (end - begin) * B;
    const std::size_t first = std::size_t(begin) * B;
    // dL/dh_t from above for the chunk's steps: from the head, or from layer k+1's dgi (still
    // in its gates buffer) through W_ih and the dropout mask; for D = 2 from dout.
    Real* above = sc.dh_chunk;
    if (dout) {
      unroll::permute_steps(reverse, ws.lengths(), begin, end, B, HO, dout + std::size_t(dir) * HO,
                            std::size_t(W), above, std::size_t(HO));
    } else if (k == L - 1 && d_hn) {
      std::fill(above, above + std::size_t(rows) * HO, Real(0));
    } else if (k == L - 1 && opts.dh_above) {
      std::copy(opts.dh_above + first * HO, opts.dh_above + (first + std::size_t(rows)) * HO, above);
    } else if (k == L - 1) {
      unroll::head_input_gradient(mm, rows, HO, O, ws.dz() + first * O, V.w_o, above, HO);
      if (R.output)  // dtop_t = (dz_t W_o) ⊙ m
        for (int t = begin; t < end; ++t) {
          Real* a = above + std::size_t(t - begin) * BHO;
          unroll::mask_rows(B, HO, a, R.output, a);
        }
    } else {
      const auto& q = V.layers[std::size_t(k) + 1];
      mm.gemm(false, false, rows, HO, GH, Real(1), ws.dgi(k + 1) + first * GH, GH, q.w_ih, HO,
              Real(0), above, HO);
      if (ws.dropout_active) {
        const Real* mask = ws.drop_mask(k + 1) + first * HO;
        for (std::size_t i = 0; i < std::size_t(rows) * HO; ++i) above[i] *= mask[i];
      }
    }
    for_row_parts(B, threads, [&](Rows r) {
      const std::size_t o0 = std::size_t(r.begin) * HO, h0 = std::size_t(r.begin) * H,
                        n = std::size_t(r.size()) * HO;
      Real* dh = sc.dh_step + o0;
      Real* carry = sc.dh_carry + o0;
      for (int t = end - 1; t >= begin; --t) {
        auto s = step_at(ws, sc, p, u, t, H, HO, GH, r, t);
        const std::size_t at = std::size_t(t) * B + std::size_t(r.begin);  // the step's first row
        if (zo_h && cfg.cell == CellKind::elman) s.h = ws.zo_bar(u) + at * H;  // h̄: the cell's
        if (zo_c) s.c = ws.zo_bar(u) + at * H;                                // c̄: the cell's
        const Real* a = above + std::size_t(t - begin) * BHO + o0;
        for (std::size_t i = 0; i < n; ++i) dh[i] = a[i] + carry[i];
        if (trace)
          for (int b = r.begin; b < r.end; ++b) {
            const int step = reverse ? unroll::reversed_step(t, ws.lengths()[std::size_t(b)]) : t;
            std::copy(sc.dh_step + std::size_t(b) * HO, sc.dh_step + std::size_t(b + 1) * HO,
                      trace + std::size_t(step) * BHO + std::size_t(b) * HO);
          }
        // Zoneout: the cell gets dh̄ = (1 − k) ⊙ dh (dc̄ the same), k ⊙ dh goes to h_{t−1}.
        Real* dh_keep = zo_h ? ws.dh_keep(dir) + o0 : nullptr;
        Real* dc_keep = zo_c ? ws.dc_keep(dir) + h0 : nullptr;
        if (zo_h)
          unroll::zoneout_backward(R, R.zoneout_h, R.zh, HO, u, reverse, t, r.begin, s.B,
                                   ws.lengths(), s.valid, dh, dh_keep);
        if (zo_c)
          unroll::zoneout_backward(R, R.zoneout_c, R.zc, H, u, reverse, t, r.begin, s.B,
                                   ws.lengths(), s.valid, sc.dc_carry + h0, dc_keep);
        cells::CellStepGrad<Real> g;
        g.dh = dh;
        g.dc = sc.dc_carry + h0;
        g.dgh = ws.dgh(u) + (std::size_t(t) * B + std::size_t(r.begin)) * GH;
        g.dh_prev = carry;
        if (P) {  // through h = m·W_hrᵀ: dm = dh·W_hr; dh is kept for dW_hr = Σ dhᵀ·m
          std::copy(dh, dh + n, ws.dh_proj(u) + (std::size_t(t) * B + std::size_t(r.begin)) * P);
          mm.packed(s.B, H, P, dh, P, packed_hr, sc.zeros, sc.dm_step + h0, H);
          g.dh = sc.dm_step + h0;
          g.dh_prev = sc.dm_prev + h0;
          // dL/dh_{t-1}: dh itself where the step is past the length (h_t = h_{t-1}), then
          // δ^h_t·W_hh below.
          for (int b = 0; b < s.B; ++b)
            for (int j = 0; j < P; ++j) carry[b * P + j] = s.valid[b] ? Real(0) : dh[b * P + j];
        }
        Real* acc_ln = dln.data() + std::size_t(r.part) * n_ln;
        if (s.ln_c_gamma) g.dln_c_gamma = acc_ln + GH, g.dln_c_beta = acc_ln + GH + H;
        cells::cell_backward(cfg.cell, cfg.nonlinearity, s, g);
        const Real* dprod = g.dgh;  // dL/d(h_{t-1}·W_hhᵀ)
        if (ln) {  // through the normalization, over the step's saved ĥ
          Real* hh = ws.ln_h(u) + at * GH;
          cells::layer_norm_backward(s.B, GH, g.dgh, std::size_t(GH), p.ln_hh, hh,
                                     ws.ln_h_rstd(u) + at, hh, acc_ln, (Real*)nullptr);
          dprod = hh;
        }
        if (R.recurrent) {  // dh_{t−1} += (δ^h_t W_hh) ⊙ m
          Real* tmp = ws.dh_masked(dir) + o0;
          std::fill(tmp, tmp + n, Real(0));
          mm.packed(s.B, HO, GH, dprod, GH, packed_hh, static_cast<const Real*>(nullptr), tmp, HO);
          const Real* m = R.recurrent + (std::size_t(u) * B + r.begin) * HO;
          for (std::size_t i = 0; i < n; ++i) carry[i] += tmp[i] * m[i];
        } else {
          mm.packed(s.B, HO, GH, dprod, GH, packed_hh, static_cast<const Real*>(nullptr), carry, HO);
        }
        if (zo_h)
          for (std::size_t i = 0; i < n; ++i) carry[i] += dh_keep[i];
        if (zo_c) {
          Real* dc = sc.dc_carry + h0;
          for (std::size_t i = 0; i < std::size_t(s.B) * H; ++i) dc[i] += dc_keep[i];
        }
        if (!db.empty()) {
          Real* acc = db.data() + std::size_t(r.part) * 2 * GH;
          kernels::sum_rows(s.B, GH, g.dgh, acc);
          if (gru) kernels::sum_rows(s.B, GH, s.gates, acc + GH);  // s.gates now holds dgi
        }
      }
    });
  }
  // dL/dh0, dL/dc0, and a learned initial state's share of them.
  Real* dh0 = grads.h0.data() + std::size_t(u) * BHO;
  for (std::size_t i = 0; i < BHO; ++i) dh0[i] += sc.dh_carry[i];
  if (G.h0 && batch.h0.empty()) add_batch_sum(B, HO, sc.dh_carry, G.h0 + std::size_t(u) * HO);
  if (ws.c(u)) {
    if (!grads.c0.empty()) {
      Real* dc0 = grads.c0.data() + std::size_t(u) * BH;
      for (std::size_t i = 0; i < BH; ++i) dc0[i] += sc.dc_carry[i];
    }
    if (G.c0 && batch.c0.empty()) add_batch_sum(B, H, sc.dc_carry, G.c0 + std::size_t(u) * H);
  }
  // Layer norm's x side, over all T·B rows at once: dgi (dL/d(LN(x·W_ihᵀ) ⊙ γ_ih + b_ih)) becomes
  // dL/d(x·W_ihᵀ) in place, for dW_ih, dx and the layer below; then the gains' sums.
  if (ln) {
    const std::size_t xparts = std::size_t(block_parts(TB, threads));
    std::vector<Real> dg_ih(xparts * GH, Real(0));
    for_blocks(TB, threads, [&](int r0, int r1, int part) {
      const std::size_t at = std::size_t(r0);
      Real* gi = ws.dgi(u) + at * GH;
      cells::layer_norm_backward(r1 - r0, GH, gi, std::size_t(GH), p.ln_ih, ws.ln_x(u) + at * GH,
                                 ws.ln_x_rstd(u) + at, gi, dg_ih.data() + std::size_t(part) * GH,
                                 (Real*)nullptr);
    });
    for (std::size_t part = 0; part < xparts; ++part)
      for (int j = 0; j < GH; ++j) d.ln_ih[j] += dg_ih[part * GH + std::size_t(j)];
    for (std::size_t part = 0; part < parts; ++part) {
      const Real* acc = dln.data() + part * n_ln;
      for (int j = 0; j < GH; ++j) d.ln_hh[j] += acc[j];
      if (d.ln_c_w)
        for (int j = 0; j < H; ++j) d.ln_c_w[j] += acc[GH + j], d.ln_c_b[j] += acc[GH + H + j];
    }
  }
  // Hoisted: weight gradients merged over time, one GEMM each, or one pass over their common
  // δ (kernels::gemm_tn_pair) where δ^h = δ^x and both accumulate.
  // dW_hh = Σ_t δ^hᵀ h̃_{t−1} (h̃: under the recurrent mask); with weight drop that is dW̃,
  // and dW_hh = dW̃ ⊙ M.
  Real* dw_hh = R.weight_hh ? ws.w_dropped(dir) : d.w_hh;
  const Real* dgh = ln ? ws.ln_h(u) : ws.dgh(u);
  const Real* h_in = R.recurrent ? ws.h_masked(u) : ws.h(u);
  const Real* in = reverse ? ws.x_rev(u)
                   : k == 0 ? (R.input ? ws.x_masked() : batch.x.data())
                   : ws.dropout_active ? ws.drop_in(k)
                                       : ws.out(k - 1);
  if (dgh == ws.dgi(u) && !R.weight_hh) {
    mm.gemm_tn_pair(GH, HO, p.in, TB, Real(1), dgh, GH, h_in, HO, in, p.in, Real(1), d.w_hh, HO,
                    d.w_ih, p.in);
  } else {
    mm.gemm(true, false, GH, HO, TB, Real(1), dgh, GH, h_in, HO, Real(R.weight_hh ? 0 : 1), dw_hh,
            HO);
    mm.gemm(true, false, GH, p.in, TB, Real(1), ws.dgi(u), GH, in, p.in, Real(1), d.w_ih, p.in);
  }
  if (R.weight_hh) {
    const Real* M = R.weight_hh + std::size_t(u) * GH * HO;
    for (std::size_t i = 0; i < std::size_t(GH) * HO; ++i) d.w_hh[i] += dw_hh[i] * M[i];
  }
  if (P) mm.gemm(true, false, P, H, TB, Real(1), ws.dh_proj(u), P, ws.m(u), H, Real(1), d.w_hr, H);
  for (std::size_t part = 0; part < db.size(); part += 2 * std::size_t(GH)) {
    const Real* acc = db.data() + part;
    for (int j = 0; j < GH; ++j) {
      d.b_hh[j] += acc[j];
      d.b_ih[j] += gru ? acc[GH + j] : acc[j];
    }
  }
}

}  // namespace

template <class Real>
void backward(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
              Gradients<Real>& grads, const BackwardOptions<Real>& opts) {
  const kernels::Products mm = products(ws);
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, GH = cfg.gates() * cfg.hidden_size, W = cfg.output_width(),
            O = cfg.output_size, TB = T * B, D = cfg.directions(), L = cfg.num_layers;
  const auto P = model.views();
  check_call(model, batch, ws);
  if (ws.forward_only())
    throw Error(ErrorKind::usage, "workspace", "an inference workspace keeps nothing for backward",
                "construct a Workspace for the pass that backward() reads");
  grads.check(cfg, batch.T, batch.B);
  const ThreadCount on_threads(ws.threads());
  ParamViews<Real> G(cfg, grads.params.data());

  // Head: dW_o += dZᵀ·top, db_o += Σ dZ. For D = 1 its dL/dtop = dZ·W_o is formed a chunk at a
  // time by unit_backward; for D = 2 here, over top itself (no longer needed). A head that reads
  // the final states sends Σ_t dL/dtop_t to them (d_hn) and nothing to the steps.
  const bool final_readout = cfg.readout == Readout::final_state && !opts.dh_above;
  const unroll::Regularization<Real> R(cfg, batch);
  if ((R.input && !ws.x_masked()) || (R.recurrent && !ws.h_masked(0)) ||
      ((R.h_zoneout() || R.c_zoneout()) && !ws.zo_bar(0)) || (R.output && !ws.top_masked()) ||
      (R.weight_hh && !ws.w_dropped(0)))
    throw Error(ErrorKind::usage, "workspace",
                "the batch carries masks or zoneout that no forward() on this workspace applied",
                "call forward() on this batch before backward()");
  if (!opts.dh_above)
    unroll::head_weight_gradients(mm, TB, W, O, ws.dz(), R.output ? ws.top_masked() : ws.top(),
                                  G.w_o, G.b_o);
  // dL/d(the head's input) ⊙ mask_output, over rows [T·B] of width W.
  const auto mask_dtop = [&](Real* dtop) {
    if (R.output)
      for (int t = 0; t < T; ++t)
        unroll::mask_rows(B, W, dtop + std::size_t(t) * B * W, R.output, dtop + std::size_t(t) * B * W);
  };
  if (opts.gradients_ready) opts.gradients_ready(L);
  std::vector<Real> d_hn;  // [D, B, H_out]
  if (final_readout) {
    const int HO = cfg.state_size();
    Real* dtop = ws.top();
    unroll::head_input_gradient(mm, TB, W, O, ws.dz(), P.w_o, dtop, W);
    mask_dtop(dtop);
    d_hn.assign(std::size_t(D) * B * HO, Real(0));
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int d = 0; d < D; ++d)
          for (int j = 0; j < HO; ++j)
            d_hn[(std::size_t(d) * B + b) * HO + j] +=
                dtop[(std::size_t(t) * B + b) * W + std::size_t(d) * HO + j];
    if (D == 2) std::fill(ws.out(L - 1), ws.out(L - 1) + std::size_t(TB) * W, Real(0));
  } else if (D == 2 && opts.dh_above) {
    std::copy(opts.dh_above, opts.dh_above + std::size_t(TB) * W, ws.out(L - 1));
  } else if (D == 2) {
    unroll::head_input_gradient(mm, TB, W, O, ws.dz(), P.w_o, ws.out(L - 1), W);
    mask_dtop(ws.out(L - 1));
  }

  for (int k = L - 1; k >= 0; --k) {
    if (D == 2 && k < L - 1) {
      // dL/d out(k) = Σ_d dgi(k+1, d)·W_ih(k+1, d) in data order, over out(k) (layer k+1's
      // weight gradients are done with it); the right-to-left unit's product goes through its
      // x_rev buffer, free now too.
      Real* dout = ws.out(k);
      const int u0 = (k + 1) * D, u1 = u0 + 1;
      mm.gemm(false, false, TB, W, GH, Real(1), ws.dgi(u0), GH, P.layers[std::size_t(u0)].w_ih, W,
              Real(0), dout, W);
      mm.gemm(false, false, TB, W, GH, Real(1), ws.dgi(u1), GH, P.layers[std::size_t(u1)].w_ih, W,
              Real(0), ws.x_rev(u1), W);
      unroll::permute_steps(true, ws.lengths(), 0, T, B, W, ws.x_rev(u1), std::size_t(W), dout,
                            std::size_t(W), /*accumulate=*/true);
      if (ws.dropout_active) {
        const Real* mask = ws.drop_mask(k + 1);
        for (std::size_t i = 0; i < std::size_t(TB) * W; ++i) dout[i] *= mask[i];
      }
    }
    for_directions(D, [&](int d, int threads) {
      unit_backward(model, batch, ws, grads, opts, k * D + d, D == 2 ? ws.out(k) : nullptr,
                    k == L - 1 && final_readout
                        ? d_hn.data() + std::size_t(d) * B * cfg.state_size()
                        : nullptr,
                    threads);
    });
    if (opts.gradients_ready) opts.gradients_ready(k);
  }
  if (!grads.x.empty()) {
    const int I = cfg.input_size;
    // With the input mask dL/dx̃ is formed over x_masked (free now), then dx += dx̃ ⊙ m.
    Real* dx = R.input ? ws.x_masked() : grads.x.data();
    mm.gemm(false, false, TB, I, GH, Real(1), ws.dgi(0), GH, P.layers[0].w_ih, I,
            Real(R.input ? 0 : 1), dx, I);
    if (D == 2) {  // the right-to-left unit's dL/dx in its frame (over its x_rev), then in order
      mm.gemm(false, false, TB, I, GH, Real(1), ws.dgi(1), GH, P.layers[1].w_ih, I, Real(0),
              ws.x_rev(1), I);
      unroll::permute_steps(true, ws.lengths(), 0, T, B, I, ws.x_rev(1), std::size_t(I), dx,
                            std::size_t(I), /*accumulate=*/true);
    }
    if (R.input)
      for (int t = 0; t < T; ++t) {
        const std::size_t row = std::size_t(t) * B * I;
        for (std::size_t i = 0; i < std::size_t(B) * I; ++i)
          grads.x[row + i] += dx[row + i] * R.input[i];
      }
  }
}

template <class Real>
void initial_states(const Model<Real>& model, const BatchArg<Real>& batch, std::vector<Real>& h,
                    std::vector<Real>& c) {
  const ModelConfig& cfg = model.cfg;
  const auto V = model.views();
  const int U = cfg.units(), B = batch.B, HO = cfg.state_size(), H = cfg.hidden_size;
  h.resize(std::size_t(U) * B * HO);
  for (int u = 0; u < U; ++u) initial_state(batch.h0, V.h0, u, B, HO, h.data() + std::size_t(u) * B * HO);
  if (cfg.cell != CellKind::lstm) return c.clear();
  c.resize(std::size_t(U) * B * H);
  for (int u = 0; u < U; ++u) initial_state(batch.c0, V.c0, u, B, H, c.data() + std::size_t(u) * B * H);
}

template <class Real>
void add_initial_state_gradient(const ModelConfig& cfg, const BatchArg<Real>& batch, const Real* dh0,
                                const Real* dc0, Real* dparams) {
  const ParamViews<Real> G(cfg, dparams);
  const int B = batch.B, HO = cfg.state_size(), H = cfg.hidden_size;
  for (int u = 0; u < cfg.units(); ++u) {
    if (G.h0 && dh0 && batch.h0.empty())
      add_batch_sum(B, HO, dh0 + std::size_t(u) * B * HO, G.h0 + std::size_t(u) * HO);
    if (G.c0 && dc0 && batch.c0.empty())
      add_batch_sum(B, H, dc0 + std::size_t(u) * B * H, G.c0 + std::size_t(u) * H);
  }
}

template <class Real>
double loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                          Workspace<Real>& ws, Gradients<Real>& grads, const Dropout* dropout) {
  forward(model, batch, ws, dropout);
  const double L = loss_and_dz(loss, model.cfg, batch, ws.z(), ws.yhat(), ws.dz());
  backward(model, batch, ws, grads);
  return L;
}

#define BPTT_INSTANTIATE(Real)                                                              \
  template void forward<Real>(const Model<Real>&, const BatchView<Real>&, Workspace<Real>&,     \
                             const Dropout*, bool);                                         \
  template struct unroll::ForwardPacks<Real>;                                                 \
  template void unroll::forward_packed<Real>(const Model<Real>&, const BatchView<Real>&,       \
                                             Workspace<Real>&, const unroll::ForwardPacks<Real>&, \
                                             const Dropout*, bool, unroll::ReadoutTo<Real>); \
  template void backward<Real>(const Model<Real>&, const BatchView<Real>&, Workspace<Real>&,    \
                               Gradients<Real>&, const BackwardOptions<Real>&);             \
  template double loss_and_gradients<Real>(const Model<Real>&, const BatchView<Real>&, LossKind, \
                                           Workspace<Real>&, Gradients<Real>&, const Dropout*); \
  template void initial_states<Real>(const Model<Real>&, const BatchView<Real>&,                \
                                     std::vector<Real>&, std::vector<Real>&);               \
  template void add_initial_state_gradient<Real>(const ModelConfig&, const BatchView<Real>&,    \
                                                 const Real*, const Real*, Real*);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
