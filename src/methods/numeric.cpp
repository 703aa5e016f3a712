#include <algorithm>
#include <cmath>

#include "bptt/methods.hpp"

namespace bptt {

std::size_t numeric_gradient_count(const ModelConfig& cfg, int T, int B) {
  const std::size_t LBH = std::size_t(cfg.num_layers) * B * cfg.hidden_size;
  return param_count(cfg) + std::size_t(T) * B * cfg.input_size + LBH +
         (cfg.cell == CellKind::lstm ? LBH : 0);
}

double numeric_loss_and_gradients(const Model<double>& model, const Batch<double>& batch,
                                  LossKind loss, Gradients<double>& grads, double step) {
  const ModelConfig& cfg = model.cfg;
  const int T = batch.T, B = batch.B;
  const std::size_t LBH = std::size_t(cfg.num_layers) * B * cfg.hidden_size;
  Model<double> m = model;
  Batch<double> b = batch;
  // Absent initial states are zeros: perturb explicit ones.
  if (b.h0.empty()) b.h0.assign(LBH, 0.0);
  if (cfg.cell == CellKind::lstm && b.c0.empty()) b.c0.assign(LBH, 0.0);
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
  differentiate(m.params, grads.params);
  differentiate(b.x, grads.x);
  differentiate(b.h0, grads.h0);
  if (cfg.cell == CellKind::lstm)
    differentiate(b.c0, grads.c0);
  else
    grads.c0.clear();
  return loss0;
}

}  // namespace bptt
