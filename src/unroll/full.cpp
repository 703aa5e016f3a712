// Full BPTT: the forward pass over all layers and steps, the loss, and the backward recursion
// from t = T down to 1 with ∂L/∂h_{T+1} = 0. Per layer the matrix products are hoisted out of the
// time loop (docs/math.md, "Hoisting"): one input GEMM before it (unless the layer is small
// enough to form x·W_ihᵀ in the step's kernel, unroll/x_product.hpp), one GEMM each for dW_ih,
// dW_hh and dX after it; only h·W_hhᵀ and dgh·W_hh remain per step.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "bptt/error.hpp"

#include "bptt/unroll.hpp"
#include "cells/cell.hpp"
#include "kernels/gemm.hpp"
#include "kernels/step_gemm.hpp"
#include "unroll/x_product.hpp"

namespace bptt {

using kernels::gemm;

namespace {

// A contiguous range [begin, end) of the batch's rows (sequences); part: its index among the
// parts of for_row_parts.
struct Rows {
  int begin = 0, end = 0;
  int part = 0;
  int size() const { return end - begin; }
};

// The pointers of step t (0-based; it reads state t and writes state t+1) of layer k, for the
// rows r of the batch.
template <class Real>
cells::CellStep<Real> step_at(Workspace<Real>& ws, int k, int t, int H, int GH, Rows r) {
  const std::size_t B = std::size_t(ws.B()), row = std::size_t(t), b0 = std::size_t(r.begin);
  const std::size_t BH = B * H, h0 = b0 * H;
  cells::CellStep<Real> s;
  s.B = r.size();
  s.H = H;
  s.valid = ws.valid() + row * B + b0;
  s.gates = ws.gates(k) + (row * B + b0) * GH;
  s.gh = ws.gh_step() + b0 * GH;
  s.h_prev = ws.h(k) + row * BH + h0;
  s.h = ws.h(k) + (row + 1) * BH + h0;
  if (Real* c = ws.c(k)) s.c_prev = c + row * BH + h0, s.c = c + (row + 1) * BH + h0;
  if (Real* aux = ws.aux(k)) s.aux = aux + row * BH + h0;
  return s;
}

// Rows of the readout per task (of the threads' loop over blocks of rows).
constexpr int kReadoutRows = 256;

// Runs f(rows) on contiguous parts of the batch, one per thread. Each sequence's recursion
// touches only its own rows of every buffer, so the parts run the whole time loop without a
// barrier; their per-step products are our own single-threaded kernel (kernels/step_gemm.hpp),
// never a BLAS call. Small batches run as one part: a thread per handful of rows costs more
// than it saves. row_parts(B): how many parts that is.
inline int row_parts(int B) {
  constexpr int kMinRowsPerPart = 8;
  return std::max(1, std::min(omp_get_max_threads(), B / kMinRowsPerPart));
}

template <class F>
void for_row_parts(int B, F&& f) {
  const int parts = row_parts(B);
  if (parts == 1) return f(Rows{0, B, 0});
  // OpenMP may give the region fewer threads than asked for (called from inside another
  // parallel region, or under a thread limit): each thread then takes several parts in turn.
#pragma omp parallel num_threads(parts)
  for (int p = omp_get_thread_num(); p < parts; p += omp_get_num_threads())
    f(Rows{B * p / parts, B * (p + 1) / parts, p});
}

template <class Real>
void check_workspace(const Workspace<Real>& ws, const Batch<Real>& batch) {
  if (ws.T() < batch.T || ws.B() != batch.B)
    throw Error("workspace", "sized for T = " + std::to_string(ws.T()) + ", B = " +
                                 std::to_string(ws.B()) + " but the batch has T = " +
                                 std::to_string(batch.T) + ", B = " + std::to_string(batch.B),
                "size the Workspace for the batch");
}

// state[0..n) = init (a slice of h0/c0 [L, B, H]) or zeros when not given.
template <class Real>
void init_state(const std::vector<Real>& given, std::size_t offset, std::size_t n, Real* state) {
  if (given.empty())
    std::fill(state, state + n, Real(0));
  else
    std::copy(given.begin() + std::ptrdiff_t(offset), given.begin() + std::ptrdiff_t(offset + n),
              state);
}

template <class Real>
void init_state(const Real* given, std::size_t offset, std::size_t n, Real* state) {
  if (!given)
    std::fill(state, state + n, Real(0));
  else
    std::copy(given + offset, given + offset + n, state);
}

// A uniform number in [0, 1) from a counter (splitmix64 finalizer): dropout masks depend only on
// (seed, stream, layer, element), never on the order they are drawn in.
inline double counter_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t k,
                              std::uint64_t i) {
  std::uint64_t z = seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ (k * 0xD1B54A32D192ED03ull) ^
                    (i * 0xBF58476D1CE4E5B9ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53;
}

// Layer k's dropped input: drop_in = h ⊙ mask, mask ∈ {0, 1/(1-p)}.
template <class Real>
const Real* apply_dropout(const Dropout& d, int k, std::size_t n, const Real* h, Workspace<Real>& ws) {
  Real* mask = ws.drop_mask(k);
  Real* out = ws.drop_in(k);
  const Real keep = Real(1 / (1 - d.p));
  // Element i = (t, b, j) of this batch is element (t, row0 + b, j) of the whole one.
  const std::uint64_t BH = std::uint64_t(ws.B()) * std::uint64_t(ws.hidden()),
                      whole = d.rows > 0 ? std::uint64_t(d.rows) * std::uint64_t(ws.hidden()) : BH,
                      shift = std::uint64_t(d.row0) * std::uint64_t(ws.hidden());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t e = d.first + (i / BH) * whole + shift + i % BH;
    mask[i] = counter_uniform(d.seed, d.stream, std::uint64_t(k), e) < d.p ? Real(0) : keep;
    out[i] = h[i] * mask[i];
  }
  return out;
}

}  // namespace

template <class Real>
void forward(const Model<Real>& model, const Batch<Real>& batch, Workspace<Real>& ws,
             const Dropout* dropout, bool head) {
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, H = cfg.hidden_size, GH = cfg.gates() * H,
            O = cfg.output_size, TB = T * B;
  const std::size_t BH = std::size_t(B) * H;
  check_workspace(ws, batch);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) ws.valid()[std::size_t(t) * B + b] = batch.valid(t, b);

  ws.dropout_active = dropout && dropout->p > 0 && cfg.num_layers > 1;
  if (ws.dropout_active && !ws.drop_mask(1))
    throw Error("workspace", "dropout requested but the workspace has no dropout buffers",
                "construct the Workspace with with_dropout = true");
  const auto P = model.views();
  for (int k = 0; k < cfg.num_layers; ++k) {
    const auto& p = P.layers[std::size_t(k)];
    const Real* in = k == 0 ? batch.x.data() : ws.h(k - 1) + BH;
    if (k > 0 && ws.dropout_active) in = apply_dropout(*dropout, k, std::size_t(TB) * H, in, ws);
    // Hoisted (unroll/x_product.hpp): x-side pre-activations of all T·B rows in one GEMM. No
    // pass over [T·B, G·H] adds b_ih: where a cell uses gates + gh (Elman, LSTM, the GRU's r
    // and z) b_ih joins b_hh in the per-step bias; the GRU's b_in, which must stay outside
    // r ⊙ (W_hn h + b_hn), goes to the cell (CellStep::bias_n).
    const bool in_step = unroll::x_product_in_step<Real>(cfg, p.in);
    if (!in_step)
      gemm(false, true, TB, GH, p.in, Real(1), in, p.in, p.w_ih, p.in, Real(0), ws.gates(k), GH);
    Real* bias = ws.step_bias();
    const int folded = cfg.cell == CellKind::gru ? 2 * H : GH;
    for (int j = 0; j < GH; ++j) bias[j] = p.b_hh[j] + (j < folded ? p.b_ih[j] : Real(0));
    const Real* bias_n = cfg.cell == CellKind::gru ? p.b_ih + 2 * H : nullptr;
    init_state(batch.h0, std::size_t(k) * BH, BH, ws.h(k));
    if (ws.c(k)) init_state(batch.c0, std::size_t(k) * BH, BH, ws.c(k));
    // Per step: gh = h_{t-1}·W_hhᵀ + bias, with W_hhᵀ packed once for all T steps; in the step,
    // the step's rows of gates = bias + x_t·W_ihᵀ + h_{t-1}·W_hhᵀ, W_ihᵀ packed after W_hhᵀ.
    Real* packed_hh = ws.packed_w();
    Real* packed_ih = packed_hh + kernels::packed_size<Real>(GH, H);
    kernels::pack_panels(true, GH, H, p.w_hh, H, packed_hh);
    if (in_step) kernels::pack_panels(true, GH, p.in, p.w_ih, p.in, packed_ih);
    for_row_parts(B, [&](Rows r) {
      for (int t = 0; t < T; ++t) {
        auto s = step_at(ws, k, t, H, GH, r);
        s.bias_n = bias_n;
        if (in_step) {
          s.gh = nullptr;
          const Real* x_t = in + (std::size_t(t) * B + std::size_t(r.begin)) * p.in;
          kernels::gemm_packed_pair(s.B, GH, p.in, x_t, p.in, packed_ih, H, s.h_prev, H,
                                    packed_hh, bias, s.gates, GH);
        } else {
          kernels::gemm_packed(s.B, GH, H, s.h_prev, H, packed_hh, bias, s.gh, GH);
        }
        cells::cell_forward(cfg.cell, cfg.nonlinearity, s);
      }
    });
  }
  if (!head) return;
  const Real* top = ws.h(cfg.num_layers - 1) + BH;
  // Z = H_top·W_oᵀ + b_o through the packed kernel, which starts from the bias row: a BLAS
  // call would write Z and then need a second pass to add b_o. Each block of rows gets θ while
  // it is in cache, on the thread that computed it.
  kernels::pack_panels(true, O, H, P.w_o, H, ws.packed_w());
  const int blocks = (TB + kReadoutRows - 1) / kReadoutRows;
  const bool split = blocks > 1 && 2.0 * TB * O * H >= kernels::kMinFlopsPerThread * 2;
#pragma omp parallel for schedule(static) if (split && omp_get_max_threads() > 1)
  for (int i = 0; i < blocks; ++i) {
    const int r0 = i * kReadoutRows, rows = std::min(kReadoutRows, TB - r0);
    Real* z = ws.z() + std::size_t(r0) * O;
    kernels::gemm_packed(rows, O, H, top + std::size_t(r0) * H, H, ws.packed_w(), P.b_o, z, O);
    apply_output_activation(cfg.output_activation, rows, O, z, ws.yhat() + std::size_t(r0) * O);
  }
}

template <class Real>
void backward(const Model<Real>& model, const Batch<Real>& batch, Workspace<Real>& ws,
              Gradients<Real>& grads, const BackwardOptions<Real>& opts) {
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B, H = cfg.hidden_size, GH = cfg.gates() * H,
            O = cfg.output_size, TB = T * B;
  const std::size_t BH = std::size_t(B) * H;
  const auto P = model.views();
  ParamViews<Real> D(cfg, grads.params.data());
  check_workspace(ws, batch);

  // Head: dW_o += dZᵀ·H_top, db_o += Σ dZ. Its dL/dH_top = dZ·W_o is formed a chunk at a time.
  const Real* top = ws.h(cfg.num_layers - 1) + BH;
  gemm(true, false, O, H, TB, Real(1), ws.dz(), O, top, H, Real(1), D.w_o, H);
  kernels::sum_rows(TB, O, ws.dz(), D.b_o);
  if (opts.gradients_ready) opts.gradients_ready(cfg.num_layers);

  const int C = ws.chunk_steps();
  // Bias gradients: Σ over steps and rows of dgh (b_hh) and dgi (b_ih), added step by step
  // while the step's rows are in cache, one pair of accumulators per row part (no pass over
  // [T·B, G·H] after the loop). Only the GRU's dgi differs from its dgh.
  const bool gru = cfg.cell == CellKind::gru;
  std::vector<Real> db(std::size_t(row_parts(B)) * 2 * GH);
  for (int k = cfg.num_layers - 1; k >= 0; --k) {
    const auto& p = P.layers[std::size_t(k)];
    const auto& d = D.layers[std::size_t(k)];
    kernels::pack_panels(false, H, GH, p.w_hh, H, ws.packed_w());  // W_hh for δ^h_t·W_hh
    // ∂L/∂h_{T+1} = 0, unless the final state's gradient comes from beyond the batch.
    init_state(opts.dh_n, std::size_t(k) * BH, BH, ws.dh_carry());
    init_state(opts.dc_n, std::size_t(k) * BH, BH, ws.dc_carry());
    std::fill(db.begin(), db.end(), Real(0));
    Real* trace = opts.dh_trace ? opts.dh_trace + std::size_t(k) * T * BH : nullptr;
    for (int end = T; end > 0; end -= C) {
      const int begin = std::max(0, end - C), rows = (end - begin) * B;
      const std::size_t first = std::size_t(begin) * B;
      // dL/dh_t from above for the chunk's steps: from the head, or from layer k+1's dgi
      // (still in its gates buffer) through W_ih and the dropout mask.
      Real* above = ws.dh_chunk();
      if (k == cfg.num_layers - 1) {
        gemm(false, false, rows, H, O, Real(1), ws.dz() + first * O, O, P.w_o, H, Real(0), above, H);
      } else {
        const auto& q = P.layers[std::size_t(k) + 1];
        gemm(false, false, rows, H, GH, Real(1), ws.dgi(k + 1) + first * GH, GH, q.w_ih, H,
             Real(0), above, H);
        if (ws.dropout_active) {
          const Real* mask = ws.drop_mask(k + 1) + first * H;
          for (std::size_t i = 0; i < std::size_t(rows) * H; ++i) above[i] *= mask[i];
        }
      }
      for_row_parts(B, [&](Rows r) {
        const std::size_t h0 = std::size_t(r.begin) * H, n = std::size_t(r.size()) * H;
        Real* dh = ws.dh_step() + h0;
        Real* carry = ws.dh_carry() + h0;
        for (int t = end - 1; t >= begin; --t) {
          const auto s = step_at(ws, k, t, H, GH, r);
          const Real* a = above + std::size_t(t - begin) * BH + h0;
          for (std::size_t i = 0; i < n; ++i) dh[i] = a[i] + carry[i];
          if (trace) std::copy(dh, dh + n, trace + std::size_t(t) * BH + h0);
          cells::CellStepGrad<Real> g;
          g.dh = dh;
          g.dc = ws.dc_carry() + h0;
          g.dgh = ws.dgh(k) + (std::size_t(t) * B + std::size_t(r.begin)) * GH;
          g.dh_prev = carry;
          cells::cell_backward(cfg.cell, cfg.nonlinearity, s, g);
          kernels::gemm_packed(s.B, H, GH, g.dgh, GH, ws.packed_w(), nullptr, carry, H);
          Real* acc = db.data() + std::size_t(r.part) * 2 * GH;
          kernels::sum_rows(s.B, GH, g.dgh, acc);
          if (gru) kernels::sum_rows(s.B, GH, s.gates, acc + GH);  // s.gates now holds dgi
        }
      });
    }
    Real* dh0 = grads.h0.data() + std::size_t(k) * BH;
    for (std::size_t i = 0; i < BH; ++i) dh0[i] += ws.dh_carry()[i];
    if (!grads.c0.empty()) {
      Real* dc0 = grads.c0.data() + std::size_t(k) * BH;
      for (std::size_t i = 0; i < BH; ++i) dc0[i] += ws.dc_carry()[i];
    }
    // Hoisted: weight gradients merged over time, one GEMM each.
    gemm(true, false, GH, H, TB, Real(1), ws.dgh(k), GH, ws.h(k), H, Real(1), d.w_hh, H);
    const Real* in = k == 0 ? batch.x.data() : ws.h(k - 1) + BH;
    if (k > 0 && ws.dropout_active) in = ws.drop_in(k);
    gemm(true, false, GH, p.in, TB, Real(1), ws.dgi(k), GH, in, p.in, Real(1), d.w_ih, p.in);
    for (std::size_t part = 0; part < db.size(); part += 2 * std::size_t(GH)) {
      const Real* acc = db.data() + part;
      for (int j = 0; j < GH; ++j) {
        d.b_hh[j] += acc[j];
        d.b_ih[j] += gru ? acc[GH + j] : acc[j];
      }
    }
    if (opts.gradients_ready) opts.gradients_ready(k);
    if (k == 0 && !grads.x.empty()) {
      gemm(false, false, TB, p.in, GH, Real(1), ws.dgi(k), GH, p.w_ih, p.in, Real(1),
           grads.x.data(), p.in);
    }
  }
}

template <class Real>
double loss_and_gradients(const Model<Real>& model, const Batch<Real>& batch, LossKind loss,
                          Workspace<Real>& ws, Gradients<Real>& grads, const Dropout* dropout) {
  forward(model, batch, ws, dropout);
  const double L = loss_and_dz(loss, model.cfg, batch, ws.z(), ws.yhat(), ws.dz());
  backward(model, batch, ws, grads);
  return L;
}

#define BPTT_INSTANTIATE(Real)                                                              \
  template void forward<Real>(const Model<Real>&, const Batch<Real>&, Workspace<Real>&,     \
                             const Dropout*, bool);                                         \
  template void backward<Real>(const Model<Real>&, const Batch<Real>&, Workspace<Real>&,    \
                               Gradients<Real>&, const BackwardOptions<Real>&);             \
  template double loss_and_gradients<Real>(const Model<Real>&, const Batch<Real>&, LossKind, \
                                           Workspace<Real>&, Gradients<Real>&, const Dropout*);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
