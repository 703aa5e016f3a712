// Streaming inference (include/bptt/stream.hpp): one time step of N sequences per call. The same
// cells and packed kernels as the unroller (src/unroll/full.cpp), without a time axis: per layer
// the step's pre-activations b + x_t·W_ihᵀ + h_{t-1}·W_hhᵀ in one pass of the packed pair kernel
// (the GRU, whose n gate needs W_in·x and W_hn·h apart, in two), the cell, the projection, then
// the head. A layer-normalized cell forms its two products apart (as the GRU) and normalizes
// each row before the cell (cells/layer_norm.hpp). The weights are packed once, at
// construction, into buffers sized for every CPU level's panels, so a change of level repacks
// them in place without allocating.
#include "bptt/stream.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "bptt/loss.hpp"
#include "bptt/methods.hpp"
#include "cells/cell.hpp"
#include "cells/layer_norm.hpp"
#include "kernels/matmul.hpp"
#include "kernels/step_gemm.hpp"
#include "support/aligned.hpp"
#include "unroll/x_product.hpp"

namespace bptt {

namespace {

// Streams per part of the step's rows below which one more thread costs more than it saves
// (as the unroller's row parts).
constexpr int kMinStreamsPerPart = 8;

// Fewer streams than two parts' worth are split by columns instead: each thread forms whole
// panels of every product, and the cell runs on one thread between two barriers. Worth it only
// where reading the weights takes longer than the barriers: from this many bytes of weights per
// step. Measured on Zen 3 (one stream, 1 → 2 threads): L2 H256 (4.4 MB LSTM, 3.3 MB GRU) ran
// 95 → 55 µs and 64 → 33 µs; L1 H128 (0.5 MB) 9.8 → 8.2 µs for the LSTM but 6.9 → 8.9 µs for
// the GRU (two products and two more barriers' worth of waiting).
constexpr std::size_t kMinSplitWeightBytes = std::size_t(1) << 20;

// Columns [c0, c1) of part t of nt of a product N wide, on panel boundaries.
template <class Real>
std::pair<int, int> column_part(int N, int t, int nt) {
  const int nr = kernels::panel_width<Real>(), panels = (N + nr - 1) / nr;
  return {std::min(N, panels * t / nt * nr), std::min(N, panels * (t + 1) / nt * nr)};
}

template <class Real>
struct PackedLayer {
  int in = 0;                         // input width
  // Every buffer here starts at a cache line (support::LineVector).
  support::LineVector<Real> ih, hh, hr;  // packed W_ihᵀ [in, G·H], W_hhᵀ [H_out, G·H], W_hrᵀ [H, P]
  support::LineVector<Real> bias;        // [G·H] the bias added at every step (fold_step_bias)
  const Real* bias_n = nullptr;       // [H] GRU: b_in in the snapshot, kept outside r ⊙ (·)
  LayerParams<const Real> p{};        // the layer's tensors in the snapshot (layer norm's)
};

}  // namespace

template <class Real>
struct Stream<Real>::Impl {
  Model<Real> model;  // the snapshot the packed weights come from
  int N = 0, threads = 1;
  std::size_t weight_bytes = 0;         // the weights one step reads (packed layers and head)
  CpuLevel packed_level{};
  kernels::Products mm;                   // the products' precision (bptt/precision.hpp)
  std::vector<PackedLayer<Real>> layers;
  support::LineVector<Real> head;         // packed W_oᵀ [H_out, O] (empty without a head)
  const Real* b_o = nullptr;              // the head's bias, in model.params
  // Each buffer from a cache line (support::LineVector): the kernels' rows and panels.
  support::LineVector<Real> init_h, init_c;        // [L, H_out], [L, H]: zero or the learned state
  support::LineVector<Real> h, c, h_next, c_next;  // [L, N, H_out], [L, N, H] (c: LSTM only)
  support::LineVector<Real> gates, gh, aux, m, zeros, z;
  support::LineVector<Real> ln_hat, ln_rstd, ln_c_stats;  // layer norm's scratch: [N, G·H], [N], [N, 2]
  std::vector<std::uint8_t> valid;        // [N] all 1: every stream is inside its sequence

  const ModelConfig& cfg() const { return model.cfg; }

  // Packs every weight for the kernels of the active CPU level (no allocation after the first).
  void pack() {
    const ModelConfig& mc = cfg();
    const int H = mc.hidden_size, HO = mc.state_size(), GH = mc.gates() * H, P = mc.proj_size;
    const auto V = model.views();
    for (int k = 0; k < mc.num_layers; ++k) {
      PackedLayer<Real>& q = layers[std::size_t(k)];
      const auto& p = V.layers[std::size_t(k)];
      mm.pack(true, GH, q.in, p.w_ih, q.in, q.ih.data());
      mm.pack(true, GH, HO, p.w_hh, HO, q.hh.data());
      if (P) mm.pack(true, P, H, p.w_hr, H, q.hr.data());
    }
    if (mc.head) mm.pack(true, mc.output_size, HO, V.w_o, HO, head.data());
    packed_level = cpu_level();
  }

  // Rows [r0, r1) of the step: every layer, then the head.
  void rows(int r0, int r1, const Real* x, Real* y) {
    const ModelConfig& mc = cfg();
    for (int k = 0; k < mc.num_layers; ++k) {
      layer_product(k, r0, r1, 0, mc.gates() * mc.hidden_size, x);
      layer_cell(k, r0, r1);
    }
    head_product(r0, r1, 0, mc.output_size);
    readout(r0, r1, y);
  }

  // Columns [c0, c1) of layer k's pre-activations for rows [r0, r1): c0 on a panel boundary.
  void layer_product(int k, int r0, int r1, int c0, int c1, const Real* x) {
    const ModelConfig& mc = cfg();
    const int HO = mc.state_size(), GH = mc.gates() * mc.hidden_size, n = r1 - r0, w = c1 - c0;
    if (w <= 0) return;
    const PackedLayer<Real>& q = layers[std::size_t(k)];
    const std::size_t b0 = std::size_t(r0), lo = std::size_t(k) * N;  // layer k's first row
    const Real* in = k == 0 ? x : h_next.data() + (lo - std::size_t(N)) * HO;
    const Real* a = in + b0 * q.in;
    const Real* h_prev = h.data() + (lo + b0) * HO;
    Real* g = gates.data() + b0 * GH + c0;
    if (mc.cell == CellKind::gru || mc.layer_norm) {
      // gates = x·W_ihᵀ (b_in to the cell; with layer norm both biases come in layer_cell);
      // gh = b + h·W_hhᵀ
      mm.packed(n, w, q.in, a, q.in, q.ih.data() + std::size_t(c0) * q.in,
                zeros.data(), g, GH);
      mm.packed(n, w, HO, h_prev, HO, q.hh.data() + std::size_t(c0) * HO,
                q.bias.data() + c0, gh.data() + b0 * GH + c0, GH);
    } else {  // gates = b + x·W_ihᵀ + h·W_hhᵀ in one pass
      mm.packed_pair(n, w, q.in, a, q.in, q.ih.data() + std::size_t(c0) * q.in, HO,
                     h_prev, HO, q.hh.data() + std::size_t(c0) * HO,
                     q.bias.data() + c0, g, GH);
    }
  }

  // Layer k's cell (and projection) for rows [r0, r1), from its pre-activations.
  void layer_cell(int k, int r0, int r1) {
    const ModelConfig& mc = cfg();
    const int H = mc.hidden_size, HO = mc.state_size(), GH = mc.gates() * H, P = mc.proj_size;
    const std::size_t b0 = std::size_t(r0), lo = std::size_t(k) * N;
    const PackedLayer<Real>& q = layers[std::size_t(k)];
    cells::CellStep<Real> s;
    s.B = r1 - r0;
    s.H = H;
    s.valid = valid.data() + b0;
    s.gates = gates.data() + b0 * GH;
    s.gh = nullptr;
    if (mc.cell == CellKind::gru || mc.layer_norm) s.gh = gh.data() + b0 * GH;
    if (mc.cell == CellKind::gru) {
      s.bias_n = q.bias_n;
      s.aux = aux.data() + b0 * H;
    }
    if (mc.layer_norm) {  // both products normalized, then their biases (q.bias is zero)
      const auto& p = q.p;
      Real* hat = ln_hat.data() + b0 * GH;
      Real* rstd = ln_rstd.data() + b0;
      cells::layer_norm_forward(s.B, GH, s.gates, std::size_t(GH), p.ln_ih, p.b_ih, hat, rstd);
      cells::layer_norm_forward(s.B, GH, s.gh, std::size_t(GH), p.ln_hh, p.b_hh, hat, rstd);
      if (p.ln_c_w)
        s.ln_c_gamma = p.ln_c_w, s.ln_c_beta = p.ln_c_b, s.ln_c_stats = ln_c_stats.data() + 2 * b0;
    }
    const Real* h_prev = h.data() + (lo + b0) * HO;
    Real* h_out = h_next.data() + (lo + b0) * HO;
    if (P) {  // the cell's h is m = o ⊙ tanh(c); h = m·W_hrᵀ below
      s.h_prev = zeros.data();
      s.h = m.data() + b0 * H;
    } else {
      s.h_prev = h_prev;
      s.h = h_out;
    }
    if (mc.cell == CellKind::lstm) {
      s.c_prev = c.data() + (lo + b0) * H;
      s.c = c_next.data() + (lo + b0) * H;
    }
    cells::cell_forward(mc.cell, mc.nonlinearity, s);
    if (P) mm.packed(s.B, P, H, s.h, H, q.hr.data(), zeros.data(), h_out, P);
    // Zoneout in evaluation mode: the expectation z·prev + (1 − z)·new (regularize.hpp).
    const auto expect = [&](Real keep, int width, const Real* prev, Real* state) {
      for (std::size_t i = 0; i < std::size_t(s.B) * std::size_t(width); ++i)
        state[i] = keep * prev[i] + (Real(1) - keep) * state[i];
    };
    if (mc.zoneout_h > 0) expect(Real(mc.zoneout_h), HO, h_prev, h_out);
    if (mc.zoneout_c > 0) expect(Real(mc.zoneout_c), H, s.c_prev, s.c);
  }

  // Columns [c0, c1) of the logits z for rows [r0, r1): c0 on a panel boundary. A head-less
  // model's z is the top layer's h (O = H_out).
  void head_product(int r0, int r1, int c0, int c1) {
    const ModelConfig& mc = cfg();
    const int HO = mc.state_size(), O = mc.output_size, n = r1 - r0, w = c1 - c0;
    if (w <= 0) return;
    const std::size_t b0 = std::size_t(r0);
    const Real* top = h_next.data() + (std::size_t(mc.num_layers - 1) * N + b0) * HO;
    Real* zr = z.data() + b0 * O + c0;
    if (mc.head)
      mm.packed(n, w, HO, top, HO, head.data() + std::size_t(c0) * HO, b_o + c0, zr, O);
    else
      for (int r = 0; r < n; ++r)
        std::copy(top + std::size_t(r) * HO + c0, top + std::size_t(r) * HO + c1,
                  zr + std::size_t(r) * O);
  }

  void readout(int r0, int r1, Real* y) {
    const ModelConfig& mc = cfg();
    const std::size_t O = std::size_t(mc.output_size), b0 = std::size_t(r0);
    apply_output_activation(mc.output_activation, r1 - r0, int(O), z.data() + b0 * O,
                            y + b0 * O);
  }

  void reset_rows(int n0, int n1) {
    const ModelConfig& mc = cfg();
    const int HO = mc.state_size(), H = mc.hidden_size;
    for (int k = 0; k < mc.num_layers; ++k)
      for (int n = n0; n < n1; ++n) {
        const std::size_t row = std::size_t(k) * N + std::size_t(n);
        std::copy(init_h.begin() + std::ptrdiff_t(k) * HO, init_h.begin() + std::ptrdiff_t(k + 1) * HO,
                  h.begin() + std::ptrdiff_t(row) * HO);
        if (!c.empty())
          std::copy(init_c.begin() + std::ptrdiff_t(k) * H, init_c.begin() + std::ptrdiff_t(k + 1) * H,
                    c.begin() + std::ptrdiff_t(row) * H);
      }
  }
};

template <class Real>
Stream<Real>::Stream(const Model<Real>& model, int streams, int threads) : impl_(new Impl) {
  const ModelConfig& cfg = model.cfg;
  require_options(cfg, {.causal = true}, "stream", "streaming (one step at a time)");
  if (streams < 1)
    throw Error(ErrorKind::value, "stream", "streams = " + std::to_string(streams),
                "at least one stream");
  if (threads < 1)
    throw Error(ErrorKind::value, "stream", "threads = " + std::to_string(threads),
                "at least one thread");
  if (model.params.size() != param_count(cfg))
    throw Error(ErrorKind::shape, "stream",
                "the model has " + std::to_string(model.params.size()) +
                    " parameters but its configuration needs " + std::to_string(param_count(cfg)),
                "construct the Model from its ModelConfig (or load_model)");
  Impl& s = *impl_;
  s.model = model;
  s.mm = kernels::Products::of<Real>(MatmulScope::current(), "stream");
  s.N = streams;
  s.threads = threads;
  const int L = cfg.num_layers, H = cfg.hidden_size, HO = cfg.state_size(),
            GH = cfg.gates() * H, P = cfg.proj_size, O = cfg.output_size;
  const bool gru = cfg.cell == CellKind::gru, lstm = cfg.cell == CellKind::lstm;
  const auto V = s.model.views();
  s.layers.resize(std::size_t(L));
  for (int k = 0; k < L; ++k) {
    PackedLayer<Real>& q = s.layers[std::size_t(k)];
    const auto& p = V.layers[std::size_t(k)];
    q.in = cfg.layer_input_size(k);
    q.p = {p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.w_hr, p.ln_ih, p.ln_hh, p.ln_c_w, p.ln_c_b, p.in};
    q.ih.resize(kernels::packed_size<Real>(GH, q.in));
    q.hh.resize(kernels::packed_size<Real>(GH, HO));
    if (P) q.hr.resize(kernels::packed_size<Real>(P, H));
    q.bias.assign(std::size_t(GH), Real(0));  // with layer norm the biases come after it
    if (!cfg.layer_norm) q.bias_n = unroll::fold_step_bias(cfg, p.b_ih, p.b_hh, q.bias.data());
  }
  if (cfg.head) s.head.resize(kernels::packed_size<Real>(O, HO));
  s.b_o = V.b_o;
  s.weight_bytes = s.head.size() * sizeof(Real);
  for (const PackedLayer<Real>& q : s.layers)
    s.weight_bytes += (q.ih.size() + q.hh.size() + q.hr.size()) * sizeof(Real);
  s.pack();
  s.init_h.assign(std::size_t(L) * HO, Real(0));
  if (V.h0) std::copy(V.h0, V.h0 + std::size_t(L) * HO, s.init_h.begin());
  if (lstm) {
    s.init_c.assign(std::size_t(L) * H, Real(0));
    if (V.c0) std::copy(V.c0, V.c0 + std::size_t(L) * H, s.init_c.begin());
  }
  const std::size_t N = std::size_t(streams);
  s.h.assign(std::size_t(L) * N * HO, Real(0));
  s.h_next.assign(s.h.size(), Real(0));
  if (lstm) {
    s.c.assign(std::size_t(L) * N * H, Real(0));
    s.c_next.assign(s.c.size(), Real(0));
  }
  s.gates.assign(N * GH, Real(0));
  if (gru || cfg.layer_norm) s.gh.assign(N * GH, Real(0));
  if (gru) s.aux.assign(N * H, Real(0));
  if (cfg.layer_norm) {
    s.ln_hat.assign(N * GH, Real(0));
    s.ln_rstd.assign(N, Real(0));
    if (lstm) s.ln_c_stats.assign(2 * N, Real(0));
  }
  if (P) s.m.assign(N * H, Real(0));
  // Zeros: the zero bias of the assigning products (G·H or P wide) and a projected LSTM's h_prev.
  s.zeros.assign(std::max(std::size_t(GH), N * H), Real(0));
  s.z.assign(N * O, Real(0));
  s.valid.assign(N, std::uint8_t(1));
  s.reset_rows(0, streams);
}

template <class Real>
Stream<Real>::~Stream() = default;
template <class Real>
Stream<Real>::Stream(Stream&&) noexcept = default;
template <class Real>
Stream<Real>& Stream<Real>::operator=(Stream&&) noexcept = default;

template <class Real>
void Stream<Real>::step(const Real* x, Real* y) {
  Impl& s = *impl_;
  if (s.packed_level != cpu_level()) s.pack();  // the buffers fit every level's panels
  const int parts = std::max(1, std::min(s.threads, s.N / kMinStreamsPerPart));
  if (parts == 1 && s.threads > 1 && s.weight_bytes >= kMinSplitWeightBytes) {
    const ModelConfig& mc = s.cfg();
    const int GH = mc.gates() * mc.hidden_size;
#pragma omp parallel num_threads(s.threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int k = 0; k < mc.num_layers; ++k) {
        const auto [c0, c1] = column_part<Real>(GH, t, nt);
        s.layer_product(k, 0, s.N, c0, c1, x);
#pragma omp barrier
#pragma omp single
        s.layer_cell(k, 0, s.N);  // the single's end is a barrier: h is whole for what follows
      }
      const auto [c0, c1] = column_part<Real>(mc.output_size, t, nt);
      s.head_product(0, s.N, c0, c1);
#pragma omp barrier
#pragma omp single
      s.readout(0, s.N, y);
    }
  } else if (parts == 1) {
    s.rows(0, s.N, x, y);
  } else {
#pragma omp parallel num_threads(parts)
    for (int p = omp_get_thread_num(); p < parts; p += omp_get_num_threads())
      s.rows(s.N * p / parts, s.N * (p + 1) / parts, x, y);
  }
  std::swap(s.h, s.h_next);
  std::swap(s.c, s.c_next);
}

template <class Real>
void Stream<Real>::step(std::span<const Real> x, std::span<Real> y) {
  const ModelConfig& c = impl_->cfg();
  const std::size_t N = std::size_t(impl_->N);
  if (x.size() != N * std::size_t(c.input_size))
    throw Error(ErrorKind::shape, "stream: x",
                "has " + std::to_string(x.size()) + " values, not N·I = " + std::to_string(N) +
                    "·" + std::to_string(c.input_size));
  if (y.size() != N * std::size_t(c.output_size))
    throw Error(ErrorKind::shape, "stream: y",
                "has room for " + std::to_string(y.size()) + " values, not N·O = " +
                    std::to_string(N) + "·" + std::to_string(c.output_size));
  step(x.data(), y.data());
}

template <class Real>
void Stream<Real>::reset() {
  impl_->reset_rows(0, impl_->N);
}

template <class Real>
void Stream<Real>::reset(int n) {
  if (n < 0 || n >= impl_->N)
    throw Error(ErrorKind::value, "stream: reset",
                "stream " + std::to_string(n) + " of " + std::to_string(impl_->N),
                "streams are numbered 0..N-1");
  impl_->reset_rows(n, n + 1);
}

template <class Real>
std::span<Real> Stream<Real>::h() {
  return impl_->h;
}
template <class Real>
std::span<const Real> Stream<Real>::h() const {
  return impl_->h;
}
template <class Real>
std::span<Real> Stream<Real>::c() {
  return impl_->c;
}
template <class Real>
std::span<const Real> Stream<Real>::c() const {
  return impl_->c;
}
template <class Real>
std::span<const Real> Stream<Real>::logits() const {
  return impl_->z;
}
template <class Real>
int Stream<Real>::streams() const {
  return impl_->N;
}
template <class Real>
int Stream<Real>::threads() const {
  return impl_->threads;
}
template <class Real>
const ModelConfig& Stream<Real>::config() const {
  return impl_->cfg();
}

template class Stream<float>;
template class Stream<double>;

}  // namespace bptt
