// The K-truncated gradient (methods.hpp): every path from ℓ_t stops at the states K steps back.
//
// A chain per loss step t (its "origin"). At distance j the chain of origin t is at step
// s = t − j, and every chain does the same thing there: the layers from top to bottom, each
// taking dL/dh_s from its own carry and from the layer above, then the cell's pointwise
// backward and the product with W_hh for the carry one step further back. So at each distance
// all chains run as one batch of (T − j)·B rows: rows are step-indexed [0, T − j) for what the
// step reads (saved gates, states) and origin-indexed [j, T) for what the chain carries (the
// same rows shifted by j). The saved activations are copied before each pointwise backward (the
// cells overwrite them in place, and every step is visited by up to K chains). Weight
// gradients are linear in the chains' δ, so the δ of all chains are summed per step and the
// weight GEMMs run once at the end, as in full BPTT.
#include <algorithm>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "cells/cell.hpp"
#include "cells/layer_norm.hpp"
#include "kernels/gemm.hpp"
#include "kernels/matmul.hpp"
#include "unroll/head.hpp"
#include "unroll/regularize.hpp"

namespace bptt {

using kernels::gemm;

template <class Real>
double truncated_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                    LossKind loss, int K, Gradients<Real>& grads) {
  if (K < 1) throw Error(ErrorKind::value, "truncated", "the window K must be at least 1 step", "");
  const ModelConfig& cfg = model.cfg;
  model.check("model");
  require_options(cfg, {.causal = true}, "truncated", "truncated BPTT");
  grads.check(cfg, batch.T, batch.B);
  const int T = batch.T, B = batch.B, L = cfg.num_layers, H = cfg.hidden_size;
  const int GH = cfg.gates() * H, O = cfg.output_size, TB = T * B, HO = cfg.state_size(),
            P = cfg.proj_size;
  Workspace<Real> ws(cfg, T, B);
  const auto mm = kernels::Products::of<Real>(ws.matmul(), "truncated");
  if (K >= T) return loss_and_gradients(model, batch, loss, ws, grads);

  forward(model, batch, ws);
  const double total = loss_and_dz(loss, cfg, batch, ws.z(), ws.yhat(), ws.dz());
  const auto V = model.views();
  ParamViews<Real> D(cfg, grads.params.data());
  const std::size_t BH = std::size_t(B) * H, BHO = std::size_t(B) * HO,
                    TBH = std::size_t(TB) * H, TBHO = std::size_t(TB) * HO,
                    TBG = std::size_t(TB) * GH;
  const bool lstm = cfg.cell == CellKind::lstm, gru = cfg.cell == CellKind::gru,
             ln = cfg.layer_norm;
  // The masks and zoneout (unroll/regularize.hpp), as forward applied them: each chain's steps
  // meet them as full BPTT's backward does.
  const unroll::Regularization<Real> Rg(cfg, batch);
  const bool zo_h = Rg.h_zoneout(), zo_c = Rg.c_zoneout() && lstm;

  // The head is not recurrent: its gradients are full BPTT's; dL/dh_top of ℓ_t is at distance 0.
  const Real* top = Rg.output ? ws.top_masked() : ws.h(L - 1) + BHO;
  unroll::head_weight_gradients(mm, TB, HO, O, ws.dz(), top, D.w_o, D.b_o);
  std::vector<Real> head(TBHO);
  unroll::head_input_gradient(mm, TB, HO, O, ws.dz(), V.w_o, head.data(), HO);
  if (Rg.output)
    for (int t = 0; t < T; ++t)
      unroll::mask_rows(B, HO, head.data() + std::size_t(t) * BHO, Rg.output,
                        head.data() + std::size_t(t) * BHO);
  // With weight drop, W_hh as the recurrence used it (⊙ mask_weight_hh), per layer.
  std::vector<std::vector<Real>> w_dropped(static_cast<std::size_t>(Rg.weight_hh ? L : 0));
  for (std::size_t k = 0; k < w_dropped.size(); ++k) {
    w_dropped[k].resize(std::size_t(GH) * HO);
    unroll::mask_rows(GH, HO, V.layers[k].w_hh, Rg.weight_hh + k * GH * HO, w_dropped[k].data());
  }
  std::vector<Real> keep_h(zo_h ? TBHO : 0), keep_c(zo_c ? TBH : 0), rec(Rg.recurrent ? TBHO : 0);

  std::vector<std::vector<Real>> carry_h(std::size_t(L), std::vector<Real>(TBHO, Real(0)));
  std::vector<std::vector<Real>> carry_c(std::size_t(lstm ? L : 0), std::vector<Real>(TBH, Real(0)));
  std::vector<std::vector<Real>> acc_gi(std::size_t(L), std::vector<Real>(TBG, Real(0)));
  std::vector<std::vector<Real>> acc_gh(std::size_t(gru ? L : 0), std::vector<Real>(TBG, Real(0)));
  // With a projection: Σ over chains of dL/dh at each step, for dW_hr = Σ dhᵀ·m.
  std::vector<std::vector<Real>> acc_dh(std::size_t(P ? L : 0), std::vector<Real>(TBHO, Real(0)));
  // With layer norm: Σ over chains of dL/d(h_{t-1}·W_hhᵀ) per step, for dW_hh, and one chain's.
  std::vector<std::vector<Real>> acc_ah(std::size_t(ln ? L : 0), std::vector<Real>(TBG, Real(0)));
  std::vector<Real> dprod(ln ? TBG : 0);
  std::vector<Real> act(TBG), dgh(gru ? TBG : 0), dh(TBHO), bypass(TBHO), above(TBHO);
  std::vector<Real> dm(P ? TBH : 0), dm_prev(P ? TBH : 0);
  // This call's dL/dh0 and dL/dc0 (for a learned initial state's share, at the end).
  std::vector<Real> dh0_call(std::size_t(L) * BHO, Real(0)), dc0_call(lstm ? std::size_t(L) * BH : 0, Real(0));

  for (int j = 0; j < K; ++j) {
    const int n = T - j, R = n * B;  // active chains: origins [j, T), steps [0, n)
    for (int k = L - 1; k >= 0; --k) {
      const auto& p = V.layers[std::size_t(k)];
      const auto& dp = D.layers[std::size_t(k)];
      // dL/dh at the state each chain's step writes: its carry, and from above.
      const Real* carry = carry_h[std::size_t(k)].data() + std::size_t(j) * BHO;
      const Real* from_above = k == L - 1 ? (j == 0 ? head.data() : nullptr) : above.data();
      for (std::size_t i = 0; i < std::size_t(R) * HO; ++i)
        dh[i] = carry[i] + (from_above ? from_above[i] : Real(0));
      // Zoneout, step by step of the chains' steps [0, n): the cell gets (1 − k) ⊙ dh (dc the
      // same), k ⊙ dh goes straight to the state before.
      Real* dc_chain = lstm ? carry_c[std::size_t(k)].data() + std::size_t(j) * BH : nullptr;
      for (int t = 0; t < n && (zo_h || zo_c); ++t) {
        const std::uint8_t* valid = ws.valid() + std::size_t(t) * B;
        if (zo_h)
          unroll::zoneout_backward(Rg, Rg.zoneout_h, Rg.zh, HO, k, false, t, 0, B, ws.lengths(),
                                   valid, dh.data() + std::size_t(t) * BHO,
                                   keep_h.data() + std::size_t(t) * BHO);
        if (zo_c)
          unroll::zoneout_backward(Rg, Rg.zoneout_c, Rg.zc, H, k, false, t, 0, B, ws.lengths(),
                                   valid, dc_chain + std::size_t(t) * BH,
                                   keep_c.data() + std::size_t(t) * BH);
      }
      std::copy(ws.gates(k), ws.gates(k) + std::size_t(R) * GH, act.begin());
      cells::CellStep<Real> s;
      s.B = R;
      s.H = H;
      s.valid = ws.valid();
      s.gates = act.data();
      s.h_prev = ws.h(k);  // read by the GRU's backward only (no projection there)
      s.h = ws.h(k) + BHO;
      if (lstm) s.c_prev = ws.c(k), s.c = ws.c(k) + BH;
      if (gru) s.aux = ws.aux(k);
      if (zo_h && cfg.cell == CellKind::elman) s.h = ws.zo_bar(k);  // the cell's own h̄
      if (zo_c) s.c = ws.zo_bar(k);                                 // and c̄
      if (p.ln_c_w) s.ln_c_gamma = p.ln_c_w, s.ln_c_beta = p.ln_c_b, s.ln_c_stats = ws.ln_c_stats(k);
      cells::CellStepGrad<Real> g;
      g.dln_c_gamma = dp.ln_c_w;
      g.dln_c_beta = dp.ln_c_b;
      g.dh = dh.data();
      g.dc = dc_chain;
      g.dgh = gru ? dgh.data() : act.data();
      g.dh_prev = bypass.data();
      if (P) {  // through h = m·W_hrᵀ: the cell sees dm = dh·W_hr (docs/math.md, section 5)
        Real* acc = acc_dh[std::size_t(k)].data();
        for (std::size_t i = 0; i < std::size_t(R) * HO; ++i) acc[i] += dh[i];
        mm.gemm(false, false, R, H, P, Real(1), dh.data(), P, p.w_hr, H, Real(0), dm.data(), H);
        g.dh = dm.data();
        g.dh_prev = dm_prev.data();
      }
      cells::cell_backward(cfg.cell, cfg.nonlinearity, s, g);  // act := dgi
      if (P)  // past a length h_t = h_{t−1}: dh passes; elsewhere only through W_hh below
        for (int r = 0; r < R; ++r)
          for (int i = 0; i < P; ++i)
            bypass[std::size_t(r) * P + i] = s.valid[r] ? Real(0) : dh[std::size_t(r) * P + i];
      const Real* dh_side = g.dgh;  // dL/d(h_{t-1}·W_hhᵀ)
      if (ln) {
        // The biases come after the normalization: their gradients now, then both sides back
        // through it (each chain's steps are rows [0, R) of the saved x̂, ĥ): act becomes
        // dL/d(x·W_ihᵀ) in place, dprod dL/d(h·W_hhᵀ).
        if (cfg.bias) {
          kernels::sum_rows(R, GH, g.dgh, dp.b_hh);
          kernels::sum_rows(R, GH, act.data(), dp.b_ih);
        }
        cells::layer_norm_backward(R, GH, g.dgh, std::size_t(GH), p.ln_hh, ws.ln_h(k),
                                   ws.ln_h_rstd(k), dprod.data(), dp.ln_hh, (Real*)nullptr);
        cells::layer_norm_backward(R, GH, act.data(), std::size_t(GH), p.ln_ih, ws.ln_x(k),
                                   ws.ln_x_rstd(k), act.data(), dp.ln_ih, (Real*)nullptr);
        dh_side = dprod.data();
        Real* ah = acc_ah[std::size_t(k)].data();
        for (std::size_t i = 0; i < std::size_t(R) * GH; ++i) ah[i] += dprod[i];
      }
      Real* gi = acc_gi[std::size_t(k)].data();
      for (std::size_t i = 0; i < std::size_t(R) * GH; ++i) gi[i] += act[i];
      if (gru && !ln) {
        Real* gh = acc_gh[std::size_t(k)].data();
        for (std::size_t i = 0; i < std::size_t(R) * GH; ++i) gh[i] += dgh[i];
      }
      // dL/d(state s) of each chain = bypass + dgh·W_hh. The chain at step 0 (origin j) has
      // reached h0; the others carry it to distance j + 1, unless that is past the window.
      const Real* w = Rg.weight_hh ? w_dropped[std::size_t(k)].data() : p.w_hh;
      if (Rg.recurrent) {  // (δ^h W̃_hh) ⊙ mask_recurrent, the mask of each chain's sequence
        mm.gemm(false, false, R, HO, GH, Real(1), dh_side, GH, w, HO, Real(0), rec.data(), HO);
        for (int t = 0; t < n; ++t)
          for (std::size_t i = 0; i < BHO; ++i)
            bypass[std::size_t(t) * BHO + i] +=
                rec[std::size_t(t) * BHO + i] * Rg.recurrent[std::size_t(k) * BHO + i];
      } else {
        mm.gemm(false, false, R, HO, GH, Real(1), dh_side, GH, w, HO, Real(1), bypass.data(), HO);
      }
      if (zo_h)
        for (std::size_t i = 0; i < std::size_t(R) * HO; ++i) bypass[i] += keep_h[i];
      if (zo_c)
        for (std::size_t i = 0; i < std::size_t(R) * H; ++i) dc_chain[i] += keep_c[i];
      Real* dh0 = dh0_call.data() + std::size_t(k) * BHO;
      for (std::size_t i = 0; i < BHO; ++i) dh0[i] += bypass[i];
      if (lstm) {
        const Real* dc = carry_c[std::size_t(k)].data() + std::size_t(j) * BH;
        Real* dc0 = dc0_call.data() + std::size_t(k) * BH;
        for (std::size_t i = 0; i < BH; ++i) dc0[i] += dc[i];
      }
      if (j + 1 < K)
        std::copy(bypass.begin() + std::ptrdiff_t(BHO), bypass.begin() + std::ptrdiff_t(std::size_t(R) * HO),
                  carry_h[std::size_t(k)].begin() + std::ptrdiff_t(std::size_t(j + 1) * BHO));
      // dL/dh of the layer below at the same steps, through this layer's W_ih.
      if (k > 0)
        mm.gemm(false, false, R, HO, GH, Real(1), act.data(), GH, p.w_ih, HO, Real(0), above.data(), HO);
    }
  }

  // Weight gradients, merged over steps and chains.
  for (int k = 0; k < L; ++k) {
    const auto& p = V.layers[std::size_t(k)];
    const auto& d = D.layers[std::size_t(k)];
    const Real* gi = acc_gi[std::size_t(k)].data();
    const Real* gh = ln ? acc_ah[std::size_t(k)].data() : gru ? acc_gh[std::size_t(k)].data() : gi;
    // dW_hh = Σ δᵀ h̃ (under the recurrent mask); with weight drop dW̃ ⊙ M.
    std::vector<Real> dw(Rg.weight_hh ? std::size_t(GH) * HO : 0);
    mm.gemm(true, false, GH, HO, TB, Real(1), gh, GH, Rg.recurrent ? ws.h_masked(k) : ws.h(k), HO,
            Real(Rg.weight_hh ? 0 : 1), Rg.weight_hh ? dw.data() : d.w_hh, HO);
    for (std::size_t i = 0; i < dw.size(); ++i)
      d.w_hh[i] += dw[i] * Rg.weight_hh[std::size_t(k) * GH * HO + i];
    const Real* in = k == 0 ? (Rg.input ? ws.x_masked() : batch.x.data()) : ws.out(k - 1);
    mm.gemm(true, false, GH, p.in, TB, Real(1), gi, GH, in, p.in, Real(1), d.w_ih, p.in);
    if (cfg.bias && !ln) {  // (with layer norm: summed per distance above)
      kernels::sum_rows(TB, GH, gh, d.b_hh);
      kernels::sum_rows(TB, GH, gi, d.b_ih);
    }
    if (P)  // m is 0 past a sequence's length (unroll.hpp), so those rows add nothing
      mm.gemm(true, false, P, H, TB, Real(1), acc_dh[std::size_t(k)].data(), P, ws.m(k), H, Real(1),
              d.w_hr, H);
    if (k == 0 && !grads.x.empty()) {
      if (Rg.input) {  // dx = dx̃ ⊙ mask_input (x_masked is free now)
        Real* dx = ws.x_masked();
        mm.gemm(false, false, TB, p.in, GH, Real(1), gi, GH, p.w_ih, p.in, Real(0), dx, p.in);
        const std::size_t BI = std::size_t(B) * p.in;
        for (int t = 0; t < T; ++t)
          for (std::size_t i = 0; i < BI; ++i)
            grads.x[std::size_t(t) * BI + i] += dx[std::size_t(t) * BI + i] * Rg.input[i];
      } else {
        mm.gemm(false, false, TB, p.in, GH, Real(1), gi, GH, p.w_ih, p.in, Real(1), grads.x.data(),
                p.in);
      }
    }
  }
  for (std::size_t i = 0; i < dh0_call.size(); ++i) grads.h0[i] += dh0_call[i];
  for (std::size_t i = 0; i < dc0_call.size() && i < grads.c0.size(); ++i) grads.c0[i] += dc0_call[i];
  add_initial_state_gradient(cfg, batch, dh0_call.data(), lstm ? dc0_call.data() : nullptr,
                             grads.params.data());
  return total;
}

template <class Real>
double truncated_reference_loss_and_gradients(const Model<Real>& model, const BatchArg<Real>& batch,
                                              LossKind loss, int K, Gradients<Real>& grads) {
  if (K < 1) throw Error(ErrorKind::value, "truncated", "the window K must be at least 1 step", "");
  const ModelConfig& cfg = model.cfg;
  require_options(cfg, {.causal = true}, "truncated", "truncated BPTT");
  const int T = batch.T, B = batch.B, I = cfg.input_size;
  // The windows from step 0 start from the initial state itself: their dL/dh0 is this call's,
  // and a learned state gets its share of it at the end.
  Gradients<Real> first(cfg, 1, B, /*with_x=*/false);
  first.zero();
  const double W = total_weight<Real>(batch);
  // The exact states at every step, from one forward pass.
  Workspace<Real> ws(cfg, T, B);
  forward(model, batch, ws);
  double total = 0;
  Batch<Real> win;
  for (int t = 0; t < T; ++t) {
    const int s = std::max(0, t + 1 - K);  // the window is steps [s, t]; states at s constant
    slice_steps(batch, s, t + 1, win);
    ws.state_at(s, win.h0, win.c0);
    // Only ℓ_t counts: weight 0 elsewhere, and ℓ_t keeps its own weight.
    win.mask.assign(std::size_t(win.T) * B, Real(0));
    double w = 0;
    for (int b = 0; b < B; ++b) {
      const Real wt = batch.weight(t, b);
      win.mask[std::size_t(t - s) * B + b] = wt;
      w += double(wt);
    }
    if (!(w > 0)) continue;
    Gradients<Real> g(cfg, win.T, B);
    g.zero();
    total += reference_loss_and_gradients(model, win, loss, g) * (w / W);
    const Real scale = Real(w / W);
    for (std::size_t i = 0; i < g.params.size(); ++i) grads.params[i] += scale * g.params[i];
    if (!grads.x.empty())
      for (std::size_t i = 0; i < g.x.size(); ++i)
        grads.x[std::size_t(s) * B * I + i] += scale * g.x[i];
    if (s == 0) {
      for (std::size_t i = 0; i < g.h0.size(); ++i) first.h0[i] += scale * g.h0[i];
      for (std::size_t i = 0; i < g.c0.size(); ++i) first.c0[i] += scale * g.c0[i];
    }
  }
  for (std::size_t i = 0; i < first.h0.size(); ++i) grads.h0[i] += first.h0[i];
  for (std::size_t i = 0; i < first.c0.size() && i < grads.c0.size(); ++i) grads.c0[i] += first.c0[i];
  add_initial_state_gradient(cfg, batch, first.h0.data(),
                             first.c0.empty() ? nullptr : first.c0.data(), grads.params.data());
  return total;
}

#define BPTT_INSTANTIATE(Real)                                                               \
  template double truncated_loss_and_gradients<Real>(const Model<Real>&, const BatchView<Real>&, \
                                                     LossKind, int, Gradients<Real>&);       \
  template double truncated_reference_loss_and_gradients<Real>(                              \
      const Model<Real>&, const BatchView<Real>&, LossKind, int, Gradients<Real>&);
BPTT_INSTANTIATE(float)
BPTT_INSTANTIATE(double)
#undef BPTT_INSTANTIATE

}  // namespace bptt
