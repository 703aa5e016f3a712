// Other ways to compute the gradient that full BPTT (unroll.hpp) computes, for checking it.
#pragma once

#include "bptt/batch.hpp"
#include "bptt/loss.hpp"
#include "bptt/model.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

// Central differences in float64: dL/dv ≈ (L(v + ε) − L(v − ε)) / 2ε with ε = step·max(1, |v|),
// for every parameter and every number of x, h0 and c0; two forward passes per number, so only
// for small models. Returns the loss and ASSIGNS grads (sized for the batch; x, h0, c0 are
// filled whatever their size was, c0 only for LSTM).
double numeric_loss_and_gradients(const Model<double>& model, const Batch<double>& batch,
                                  LossKind loss, Gradients<double>& grads, double step = 1e-6);

// How many numbers numeric_loss_and_gradients perturbs (parameters, x, h0 and c0).
std::size_t numeric_gradient_count(const ModelConfig& cfg, int T, int B);

}  // namespace bptt
