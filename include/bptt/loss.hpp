// Losses over a batch. Each step (t, b) has weight w_tb = mask[t,b]·[t < lengths[b]] and step loss
//   mse:  ℓ = (1/O) Σ_o (ŷ_o − y_o)²                        (any θ)
//   bce:  ℓ = (1/O) Σ_o max(z,0) − z·y + log(1 + e^{−|z|})   (from the logits z, stable)
//   xent: ℓ = logsumexp(z) − z_y                             (from the logits z, stable)
// and the loss is L = Σ w_tb ℓ_tb / Σ w_tb (PyTorch's reduction='mean' when every step counts).
#pragma once

#include "bptt/batch.hpp"
#include "bptt/model.hpp"

namespace bptt {

// ŷ = θ(z) row by row: z, yhat are [N, O]; softmax is taken over each row. yhat may alias z.
template <class Real>
void apply_output_activation(Activation theta, int N, int O, const Real* z, Real* yhat);

// Returns L and ASSIGNS dz = dL/dz [T, B, O] (zero at steps of weight 0). z and yhat are the
// head's logits and outputs [T, B, O]; dz may alias z (the workspace overwrites the logits).
// Throws bptt::Error when the batch's targets do not fit (Batch::check_shapes with the loss) or
// Σ w_tb = 0 (nothing to learn from).
template <class Real>
double loss_and_dz(LossKind loss, const ModelConfig& cfg, const BatchArg<Real>& batch, const Real* z,
                   const Real* yhat, Real* dz);

}  // namespace bptt
