// forward()'s weights packed once for many calls on the same weights (src/unroll/full.cpp).
//
// forward() packs each unit's W_hhᵀ (and W_ihᵀ, W_hrᵀ) for its per-step kernels, and the head's
// W_oᵀ, at every call: nothing to notice over a whole batch, but a caller that runs a long
// sequence a chunk of steps at a time (Inference, bptt/infer.hpp) would repack 4 MiB per chunk
// on shape b, 6% of its time. ForwardPacks holds every unit's packs and the head's, made once
// per model and batch masks (weight drop changes W_hh); forward_packed reads them instead.
#pragma once

#include <cstddef>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/model.hpp"
#include "bptt/unroll.hpp"

namespace bptt::unroll {

template <class Real>
struct ForwardPacks {
  std::vector<Real> buf;
  std::vector<std::size_t> unit;  // where unit u's packs start in buf (each at a line's start)
  std::size_t head = 0;           // where the head's W_oᵀ starts (models with a head)
  bool bf16 = false;              // packed for bf16 products (kernels/matmul.hpp)
  // ASSIGNS the packs of model's weights for products at `matmul`, W_hh under
  // batch.mask_weight_hh when it has one. Reuses buf's capacity.
  void pack(const Model<Real>& model, const BatchArg<Real>& batch, Matmul matmul);
};

// Where forward's readout writes: the caller's [T, B, O] buffers instead of the workspace's
// z() and yhat(), which then hold nothing of this pass. yhat null: the workspace's. z null with
// yhat given: ŷ's buffer, θ then applied in place (apply_output_activation allows it), so that
// an identity output is written once and never copied; both null: the workspace's.
template <class Real>
struct ReadoutTo {
  Real* yhat = nullptr;
  Real* z = nullptr;
};

// forward(model, batch, ws, dropout, head) reading the weights from `packs` (made by
// packs.pack(model, batch, ws.matmul()) since the weights or the batch's mask_weight_hh last
// changed), the readout written to `to`.
template <class Real>
void forward_packed(const Model<Real>& model, const BatchArg<Real>& batch, Workspace<Real>& ws,
                    const ForwardPacks<Real>& packs, const Dropout* dropout, bool head,
                    ReadoutTo<Real> to = {});

}  // namespace bptt::unroll
