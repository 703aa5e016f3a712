// Recompute for a bidirectional model, layer by layer (methods.hpp, class Recompute).
//
// Pass one, layer k = 0..L−1: each unit (direction d) runs as a one-layer left-to-right model
// (recompute_unit_config) over its input in its own time frame (unroll/direction.hpp), segment
// by segment, keeping its state at every segment start; its outputs go into out(k) in data
// order, the next layer's input. Then the head, the loss and the head's gradient dL/d out(L−1).
// Pass two, top layer first: each unit walks its segments last to first, recomputes each from
// its checkpoint and runs backward with dL/d(its outputs) from the layer above
// (BackwardOptions::dh_above) and dL/d(its final state) from the segment after it; the segments'
// dL/d(input) add up to dL/d out(k−1). Kept: every layer's output and the checkpoints, where
// full BPTT keeps every unit's gates and states. Issue 18's masks: the input and output masks
// are applied here, around the layers; each unit's segments carry its slice of the recurrent
// and weight masks and its zoneout flags in its own frame (unroll/direction.hpp).
#include "methods/recompute_layers.hpp"

#include <algorithm>
#include <cstring>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "kernels/gemm.hpp"
#include "kernels/matmul.hpp"
#include "unroll/direction.hpp"
#include "unroll/head.hpp"

namespace bptt {

ModelConfig recompute_unit_config(const ModelConfig& cfg, int k) {
  ModelConfig c = cfg;
  c.num_layers = 1;
  c.bidirectional = false;
  c.input_size = cfg.layer_input_size(k);
  c.initial_state = InitialState::zero;
  c.output_size = 1;  // the unit models' head is never run (backward gets dh_above)
  c.head = true;
  c.output_activation = Activation::identity;
  return c;
}

namespace {

int segments(int T, int K) { return (T + K - 1) / K; }

// The sizes of every buffer below, in elements (and the two unit workspaces' bytes).
struct LayerSizes {
  std::size_t outs, dout, dprev, dh_above, ckpt_h, ckpt_c, head, dropout, seg;
  std::size_t elements() const {
    return outs + dout + dprev + dh_above + ckpt_h + ckpt_c + head + dropout + seg;
  }
};

LayerSizes layer_sizes(const ModelConfig& cfg, int T, int B, int K, bool with_dropout) {
  const std::size_t t = std::size_t(T), b = std::size_t(B), W = std::size_t(cfg.output_width()),
                    U = std::size_t(cfg.units()), S1 = std::size_t(segments(T, K) + 1),
                    in = std::size_t(std::max(cfg.input_size, cfg.output_width()));
  LayerSizes s{};
  s.outs = std::size_t(cfg.num_layers) * t * b * W;
  s.dout = t * b * W;
  s.dprev = cfg.num_layers > 1 ? t * b * W : 0;
  s.dh_above = std::size_t(K) * b * std::size_t(cfg.state_size());
  s.ckpt_h = U * S1 * b * std::size_t(cfg.state_size());
  s.ckpt_c = cfg.cell == CellKind::lstm ? U * S1 * b * std::size_t(cfg.hidden_size) : 0;
  s.head = 2 * t * b * std::size_t(cfg.output_size);  // z (then dz) and ŷ
  s.dropout = with_dropout && cfg.num_layers > 1 ? 2 * t * b * W : 0;
  // The segment's batch (x, h0, c0) and gradients (x, h0, c0), the carried gradients, every
  // unit's initial state, the unit's parameters and their gradient (lengths: bytes_extra).
  const std::size_t state = b * std::size_t(cfg.state_size() + cfg.hidden_size),
                    unit = std::max(param_count(recompute_unit_config(cfg, 0)),
                                    param_count(recompute_unit_config(cfg, cfg.num_layers - 1)));
  s.seg = 2 * std::size_t(K) * b * in + (3 + U) * state + 2 * unit;
  return s;
}

template <class Real>
std::size_t unit_workspaces_bytes(const ModelConfig& cfg, int K, int B) {
  std::size_t n = Workspace<Real>::bytes_for(recompute_unit_config(cfg, 0), K, B);
  if (cfg.num_layers > 1) n += Workspace<Real>::bytes_for(recompute_unit_config(cfg, 1), K, B);
  return n;
}

}  // namespace

std::size_t recompute_layers_bytes(const ModelConfig& cfg, int T, int B, int K,
                                   std::size_t real_size, bool with_dropout) {
  return layer_sizes(cfg, T, B, K, with_dropout).elements() * real_size +
         std::size_t(B) * sizeof(std::int64_t) +  // the segment's lengths
         (real_size == sizeof(float) ? unit_workspaces_bytes<float>(cfg, K, B)
                                     : unit_workspaces_bytes<double>(cfg, K, B));
}

template <class Real>
void Recompute<Real>::init_layers(bool with_dropout) {
  const LayerSizes s = layer_sizes(cfg_, T_, B_, K_, with_dropout);
  layers_ = std::make_unique<Layers>();
  Layers& l = *layers_;
  l.ws0 = std::make_unique<Workspace<Real>>(recompute_unit_config(cfg_, 0), K_, B_,
                                            /*with_dropout=*/false, threads_);
  if (cfg_.num_layers > 1)
    l.ws_up = std::make_unique<Workspace<Real>>(recompute_unit_config(cfg_, 1), K_, B_,
                                                /*with_dropout=*/false, threads_);
  l.outs.assign(s.outs, Real(0));
  l.dout.assign(s.dout, Real(0));
  l.dprev.assign(s.dprev, Real(0));
  l.dh_above.assign(s.dh_above, Real(0));
  l.z.assign(s.head / 2, Real(0));
  l.yhat.assign(s.head / 2, Real(0));
  l.mask.assign(s.dropout / 2, Real(0));
  l.drop.assign(s.dropout / 2, Real(0));
  ckpt_h_.assign(s.ckpt_h, Real(0));
  ckpt_c_.assign(s.ckpt_c, Real(0));
}

template <class Real>
std::size_t Recompute<Real>::layers_bytes() const {
  const Layers& l = *layers_;
  std::size_t n = l.ws0->bytes() + (l.ws_up ? l.ws_up->bytes() : 0);
  for (const auto* v : {&l.outs, &l.dout, &l.dprev, &l.dh_above, &l.z, &l.yhat, &l.mask,
                        &l.drop, &l.x_masked, &l.dx, &l.top_masked, &ckpt_h_, &ckpt_c_, &seg_.x, &seg_.h0, &seg_.c0, &seg_grads_.x,
                        &seg_grads_.h0, &seg_grads_.c0, &seg_grads_.params, &l.sub.params,
                        &dh_n_, &dc_n_, &scratch_h_, &scratch_c_})
    n += v->capacity() * sizeof(Real);
  return n + seg_.lengths.capacity() * sizeof(std::int64_t);
}

template <class Real>
double Recompute<Real>::by_layer(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                                 Gradients<Real>& grads, const Dropout* dropout) {
  using kernels::gemm;
  const ModelConfig& cfg = model.cfg;
  Layers& l = *layers_;
  const int T = T_, B = B_, L = cfg.num_layers, D = cfg.directions(), HO = cfg.state_size(),
            H = cfg.hidden_size, W = cfg.output_width(), O = cfg.output_size, S = segments(T, K_);
  const bool lstm = cfg.cell == CellKind::lstm;
  const bool drop = dropout && dropout->p > 0 && L > 1;
  if (drop && l.mask.empty())
    throw Error(ErrorKind::usage, "recompute",
                "dropout requested but Recompute was built without its buffers",
                "construct Recompute with with_dropout = true");
  const std::size_t TB = std::size_t(T) * B, BHO = std::size_t(B) * HO, BH = std::size_t(B) * H,
                    S1 = std::size_t(S + 1);
  l.len.resize(std::size_t(B));
  for (int b = 0; b < B; ++b) l.len[std::size_t(b)] = batch.lengths.empty() ? T : int(batch.lengths[std::size_t(b)]);
  const auto V = model.views();
  ParamViews<Real> G(cfg, grads.params.data());
  const Real* arena = model.params.data();

  // Unit u's slice of the arena: its tensors, in the order of its own model's arena.
  const auto unit_span = [&](int u) {
    const Real* first = V.layers[std::size_t(u)].w_ih;
    const Real* end = u + 1 < cfg.units() ? V.layers[std::size_t(u) + 1].w_ih : V.rnn_end;
    return std::pair{std::size_t(first - arena), std::size_t(end - first)};
  };
  const auto load_unit = [&](int u) {
    const int k = u / D;
    const ModelConfig uc = recompute_unit_config(cfg, k);
    if (l.sub.params.size() != param_count(uc) || l.sub.cfg.input_size != uc.input_size)
      l.sub = Model<Real>(uc);
    const auto [at, n] = unit_span(u);
    std::copy(model.params.begin() + std::ptrdiff_t(at), model.params.begin() + std::ptrdiff_t(at + n),
              l.sub.params.begin());
    return k == 0 ? l.ws0.get() : l.ws_up.get();
  };
  // Layer k's input in data order (dropped out above layer 0; x ⊙ mask_input below), and unit
  // u's in its frame.
  const int I = cfg.input_size;
  if (!batch.mask_input.empty()) {
    l.x_masked.resize(TB * std::size_t(I));
    for (std::size_t r = 0; r < TB; ++r)
      for (int j = 0; j < I; ++j)
        l.x_masked[r * I + j] = batch.x[r * I + j] * batch.mask_input[(r % std::size_t(B)) * I + j];
  }
  const auto layer_input = [&](int k) -> const Real* {
    if (k == 0) return batch.mask_input.empty() ? batch.x.data() : l.x_masked.data();
    const Real* below = l.outs.data() + std::size_t(k - 1) * TB * W;
    if (!drop) return below;
    dropout_mask(*dropout, k, T, B, W, l.mask.data());
    for (std::size_t i = 0; i < TB * std::size_t(W); ++i) l.drop[i] = below[i] * l.mask[i];
    return l.drop.data();
  };
  // seg_ = steps [s, e) of unit u's frame from its checkpoint i = s / K; in: the layer's input
  // in data order.
  const auto segment_of = [&](int u, const Real* in, int in_w, int s, int e) {
    const std::size_t i = std::size_t(s / K_), n = std::size_t(e - s);
    seg_.T = e - s;
    seg_.B = B;
    seg_.x.resize(n * B * std::size_t(in_w));
    unroll::permute_steps(u % D == 1, l.len, s, e, B, in_w, in, std::size_t(in_w), seg_.x.data(),
                          std::size_t(in_w));
    seg_.lengths.resize(std::size_t(B));
    for (int b = 0; b < B; ++b)
      seg_.lengths[std::size_t(b)] = std::clamp<std::int64_t>(l.len[std::size_t(b)] - s, 0, std::int64_t(n));
    // The unit's masks: its slices of the recurrent and weight masks, its zoneout flags of
    // steps [s, e) of its frame (flags are indexed by data step).
    const auto unit_slice = [&](std::span<const Real> all, std::vector<Real>& dst) {
      dst.clear();
      if (all.empty()) return;
      const std::size_t per = all.size() / std::size_t(cfg.units());
      dst.assign(all.begin() + std::ptrdiff_t(std::size_t(u) * per),
                 all.begin() + std::ptrdiff_t(std::size_t(u + 1) * per));
    };
    unit_slice(batch.mask_recurrent, seg_.mask_recurrent);
    unit_slice(batch.mask_weight_hh, seg_.mask_weight_hh);
    const auto flags = [&](std::span<const Real> all, int width, std::vector<Real>& dst) {
      dst.clear();
      if (all.empty()) return;
      const std::size_t U = std::size_t(cfg.units()), wd = std::size_t(width);
      dst.resize(n * B * wd);
      for (std::size_t t = 0; t < n; ++t)
        for (int b = 0; b < B; ++b) {
          const std::size_t step = std::size_t(
              u % D == 1 ? unroll::reversed_step(s + int(t), l.len[std::size_t(b)]) : s + int(t));
          const Real* from = all.data() + ((step * U + std::size_t(u)) * B + std::size_t(b)) * wd;
          std::copy(from, from + wd, dst.data() + (t * B + std::size_t(b)) * wd);
        }
    };
    flags(batch.zoneout_h, HO, seg_.zoneout_h);
    flags(batch.zoneout_c, H, seg_.zoneout_c);
    const Real* h = ckpt_h_.data() + (std::size_t(u) * S1 + i) * BHO;
    seg_.h0.assign(h, h + BHO);
    if (lstm) {
      const Real* c = ckpt_c_.data() + (std::size_t(u) * S1 + i) * BH;
      seg_.c0.assign(c, c + BH);
    }
  };

  // ---- pass one: every layer's output and every unit's checkpoints ----
  initial_states(model, batch, scratch_h_, scratch_c_);  // checkpoint 0 of every unit
  for (int u = 0; u < cfg.units(); ++u) {
    std::copy(scratch_h_.begin() + std::ptrdiff_t(u * BHO), scratch_h_.begin() + std::ptrdiff_t((u + 1) * BHO),
              ckpt_h_.begin() + std::ptrdiff_t(u * S1 * BHO));
    if (lstm)
      std::copy(scratch_c_.begin() + std::ptrdiff_t(u * BH), scratch_c_.begin() + std::ptrdiff_t((u + 1) * BH),
                ckpt_c_.begin() + std::ptrdiff_t(u * S1 * BH));
  }
  for (int k = 0; k < L; ++k) {
    const int in_w = cfg.layer_input_size(k);
    const Real* in = layer_input(k);
    for (int d = 0; d < D; ++d) {
      const int u = k * D + d;
      Workspace<Real>& ws = *load_unit(u);
      std::vector<Real>& hn = scratch_h_;
      std::vector<Real>& cn = scratch_c_;
      for (int i = 0; i < S; ++i) {
        const int s = i * K_, e = std::min(T, s + K_);
        segment_of(u, in, in_w, s, e);
        forward(l.sub, seg_, ws, nullptr, /*head=*/false);
        ws.state_at(e - s, hn, cn);
        std::copy(hn.begin(), hn.end(), ckpt_h_.begin() + std::ptrdiff_t((u * S1 + std::size_t(i) + 1) * BHO));
        if (lstm)
          std::copy(cn.begin(), cn.end(), ckpt_c_.begin() + std::ptrdiff_t((u * S1 + std::size_t(i) + 1) * BH));
        unroll::scatter_steps(d == 1, l.len, s, e, B, HO, ws.out(0), std::size_t(HO),
                              l.outs.data() + std::size_t(k) * TB * W + std::size_t(d) * HO,
                              std::size_t(W));
      }
    }
  }

  // ---- the head: ŷ, the loss, dL/dz, the head's gradients and dL/d out(L−1) ----
  Real* top = l.outs.data() + std::size_t(L - 1) * TB * W;
  const bool final_readout = cfg.readout == Readout::final_state;
  if (final_readout)  // the head reads the top layer's h_n (last checkpoints) at every step
    for (int d = 0; d < D; ++d) {
      const Real* hn = ckpt_h_.data() + (std::size_t(L - 1) * D + d) * S1 * BHO + std::size_t(S) * BHO;
      for (std::size_t r = 0; r < TB; ++r)
        std::copy(hn + (r % std::size_t(B)) * HO, hn + (r % std::size_t(B) + 1) * HO,
                  top + r * W + std::size_t(d) * HO);
    }
  if (!batch.mask_output.empty()) {  // the head reads top ⊙ mask_output
    l.top_masked.resize(TB * std::size_t(W));
    for (std::size_t r = 0; r < TB; ++r)
      for (int j = 0; j < W; ++j)
        l.top_masked[r * W + j] = top[r * W + j] * batch.mask_output[(r % std::size_t(B)) * W + j];
    top = l.top_masked.data();
  }
  const auto mm = kernels::Products::of<Real>(l.ws0->matmul(), "recompute");
  if (cfg.head) {
    mm.gemm(false, true, int(TB), O, W, Real(1), top, W, V.w_o, W, Real(0), l.z.data(), O);
    for (std::size_t r = 0; r < TB; ++r)
      for (int o = 0; o < O; ++o) l.z[r * O + o] += V.b_o[o];
  } else {  // a head-less model: z = top (O = W)
    std::copy(top, top + TB * std::size_t(W), l.z.data());
  }
  apply_output_activation(cfg.output_activation, int(TB), O, l.z.data(), l.yhat.data());
  const double total = loss_and_dz(loss, cfg, batch, l.z.data(), l.yhat.data(), l.z.data());
  const Real* dz = l.z.data();
  unroll::head_weight_gradients(mm, int(TB), W, O, dz, top, G.w_o, G.b_o);
  unroll::head_input_gradient(mm, int(TB), W, O, dz, V.w_o, l.dout.data(), W);
  if (!batch.mask_output.empty())
    for (std::size_t r = 0; r < TB; ++r)
      for (int j = 0; j < W; ++j) l.dout[r * W + j] *= batch.mask_output[(r % std::size_t(B)) * W + j];
  std::vector<Real> d_hn;  // final readout: Σ_t dL/dtop_t, the top units' dL/dh_n [D, B, H_out]
  if (final_readout) {
    d_hn.assign(std::size_t(D) * BHO, Real(0));
    for (std::size_t r = 0; r < TB; ++r)
      for (int d = 0; d < D; ++d)
        for (int j = 0; j < HO; ++j)
          d_hn[std::size_t(d) * BHO + (r % std::size_t(B)) * HO + j] += l.dout[r * W + std::size_t(d) * HO + j];
    std::fill(l.dout.begin(), l.dout.end(), Real(0));
  }

  // ---- pass two: top layer first, each unit's segments last first ----
  std::vector<Real>& carry_h = dh_n_;
  std::vector<Real>& carry_c = dc_n_;
  for (int k = L - 1; k >= 0; --k) {
    const int in_w = cfg.layer_input_size(k);
    const Real* in = layer_input(k);
    // dL/d(layer k's input), data order: dL/dx for layer 0 (when wanted), else dL/d out(k−1).
    // With the input mask, layer 0's dL/dx̃ gathers in l.dx first (then dx = dx̃ ⊙ mask_input).
    const bool masked_x = k == 0 && !batch.mask_input.empty() && !grads.x.empty();
    if (masked_x) l.dx.assign(TB * std::size_t(I), Real(0));
    Real* din = k > 0 ? l.dprev.data() : grads.x.empty() ? nullptr : masked_x ? l.dx.data() : grads.x.data();
    if (k > 0) std::fill(l.dprev.begin(), l.dprev.end(), Real(0));
    for (int d = 0; d < D; ++d) {
      const int u = k * D + d;
      Workspace<Real>& ws = *load_unit(u);
      seg_grads_.params.assign(l.sub.params.size(), Real(0));  // the unit's gradient, all segments
      seg_grads_.h0.resize(BHO);
      seg_grads_.c0.resize(lstm ? BH : 0);
      carry_h.assign(BHO, Real(0));
      carry_c.assign(lstm ? BH : 0, Real(0));
      if (k == L - 1 && final_readout)
        std::copy(d_hn.begin() + std::ptrdiff_t(std::size_t(d) * BHO),
                  d_hn.begin() + std::ptrdiff_t(std::size_t(d + 1) * BHO), carry_h.begin());
      for (int i = S - 1; i >= 0; --i) {
        const int s = i * K_, e = std::min(T, s + K_);
        segment_of(u, in, in_w, s, e);
        forward(l.sub, seg_, ws, nullptr, /*head=*/false);
        // dL/d(the unit's outputs) over the segment, in its frame.
        unroll::permute_steps(d == 1, l.len, s, e, B, HO, l.dout.data() + std::size_t(d) * HO,
                              std::size_t(W), l.dh_above.data(), std::size_t(HO));
        seg_grads_.x.assign(din ? std::size_t(e - s) * B * in_w : 0, Real(0));
        std::fill(seg_grads_.h0.begin(), seg_grads_.h0.end(), Real(0));
        std::fill(seg_grads_.c0.begin(), seg_grads_.c0.end(), Real(0));
        BackwardOptions<Real> opts;
        opts.dh_above = l.dh_above.data();
        opts.dh_n = carry_h.data();
        opts.dc_n = lstm ? carry_c.data() : nullptr;
        backward(l.sub, seg_, ws, seg_grads_, opts);
        if (din)  // the segment's dL/d(input), back in data order
          unroll::scatter_steps(d == 1, l.len, s, e, B, in_w, seg_grads_.x.data(),
                                std::size_t(in_w), din, std::size_t(in_w), /*accumulate=*/true);
        carry_h = seg_grads_.h0;
        carry_c = seg_grads_.c0;
      }
      const auto [at, n] = unit_span(u);
      for (std::size_t j = 0; j < n; ++j) grads.params[at + j] += seg_grads_.params[j];
      Real* dh0 = grads.h0.data() + std::size_t(u) * BHO;
      for (std::size_t j = 0; j < BHO; ++j) dh0[j] += carry_h[j];
      if (lstm && !grads.c0.empty()) {
        Real* dc0 = grads.c0.data() + std::size_t(u) * BH;
        for (std::size_t j = 0; j < BH; ++j) dc0[j] += carry_c[j];
      }
      // The learned initial state's share (the batch gives none): Σ over the batch.
      if (G.h0 && batch.h0.empty())
        for (int b = 0; b < B; ++b)
          for (int j = 0; j < HO; ++j) G.h0[std::size_t(u) * HO + j] += carry_h[std::size_t(b) * HO + j];
      if (G.c0 && batch.c0.empty())
        for (int b = 0; b < B; ++b)
          for (int j = 0; j < H; ++j) G.c0[std::size_t(u) * H + j] += carry_c[std::size_t(b) * H + j];
    }
    if (masked_x)
      for (std::size_t r = 0; r < TB; ++r)
        for (int j = 0; j < I; ++j)
          grads.x[r * I + j] += l.dx[r * I + j] * batch.mask_input[(r % std::size_t(B)) * I + j];
    if (k > 0) {
      if (drop)  // layer k read out(k−1) ⊙ mask(k); the mask is still in l.mask
        for (std::size_t i = 0; i < TB * std::size_t(W); ++i) l.dprev[i] *= l.mask[i];
      std::swap(l.dout, l.dprev);
    }
  }
  return total;
}

#define BPTT_INSTANTIATE(Real)                                                                  \
  template void Recompute<Real>::init_layers(bool);                                           \
  template std::size_t Recompute<Real>::layers_bytes() const;                                 \
  template double Recompute<Real>::by_layer(const Model<Real>&, const BatchView<Real>&, LossKind, \
                                            Gradients<Real>&, const Dropout*);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
