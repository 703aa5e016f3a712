#include <algorithm>
#include <cmath>

#include "bptt/methods.hpp"

namespace bptt {

std::size_t numeric_gradient_count(const ModelConfig& cfg, int T, int B) {
  const std::size_t UB = std::size_t(cfg.units()) * B;
  return param_count(cfg) + std::size_t(T) * B * cfg.input_size + UB * cfg.state_size() +
         (cfg.cell == CellKind::lstm ? UB * cfg.hidden_size : 0);
}

double numeric_loss_and_gradients(const Model<double>& model, const BatchView<double>& batch,
                                  LossKind loss, Gradients<double>& grads, double step) {
  const ModelConfig& cfg = model.cfg;
  model.check("model");
  batch.check_shapes(cfg, "batch");
  batch.check_targets(cfg, loss, "batch");
  const int T = batch.T, B = batch.B;
  Model<double> m = model;
  Batch<double> b(batch);  // a copy: its x, h0 and c0 are perturbed
  Workspace<double> ws(cfg, T, B);
  auto L = [&] {
    forward(m, b, ws);
    return loss_and_dz(loss, cfg, b, ws.z(), ws.yhat(), ws.dz());
  };
  auto differentiate = [&](std::vector<double>& values, std::vector<double>& out) {
    out.assign(values.size(), 0.0);
    for (std::size_t i = 0; i < values.size(); ++i) {
      const double v = values[i], eps = step * std::max(1.0, std::abs(v));
      values[i] = v + eps;
      const double plus = L();
      values[i] = v - eps;
      const double minus = L();
      values[i] = v;
      out[i] = (plus - minus) / (2 * eps);
    }
  };
  const double loss0 = L();
  differentiate(m.params, grads.params);  // a learned initial state with the batch's own
  differentiate(b.x, grads.x);            // states as given, so init.h0/c0 get what they do
  // The initial states as forward uses them (zeros, learned or given), made explicit to perturb.
  initial_states(model, batch, b.h0, b.c0);
  differentiate(b.h0, grads.h0);
  if (cfg.cell == CellKind::lstm)
    differentiate(b.c0, grads.c0);
  else
    grads.c0.clear();
  return loss0;
}

}  // namespace bptt
