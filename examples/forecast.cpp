// forecast: one-step-ahead forecasting of a univariate series with a hand-built GRU and a
// training loop written out in full: batches, forward + loss + backward through time
// (loss_and_gradients), clipping and an optimizer step, with no Task or Trainer.
//
//   forecast [--steps N] [FILE.csv COLUMN]
//
// Without a file the series is a sum of two sine waves. The network reads and predicts the
// changes d_t = y_t − y_{t−1} (scaled), so an output of 0 is the persistence forecast and a
// trend that leaves the training range (airline passengers) still gives familiar inputs.
// The last third is held out; the test RMSE (in the series' units) is printed beside the
// persistence forecast ŷ_t = y_{t−1}.
#include <bptt/bptt.hpp>  // the whole library (docs/api.md)

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numbers>
#include <random>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  long steps = 1500;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 2 && args[0] == "--steps") {
    steps = std::strtol(args[1].c_str(), nullptr, 10);
    args.erase(args.begin(), args.begin() + 2);
  }
  if (steps < 1 || (args.size() != 0 && args.size() != 2)) {
    std::fprintf(stderr, "usage: %s [--steps N] [FILE.csv COLUMN]\n", argv[0]);
    return 2;
  }
  try {
    // 1. The series y and its scaled changes z_t = (y_t − y_{t−1}) / rms, rms taken over the
    //    training part (z_0 = 0).
    std::vector<double> y;
    if (args.empty()) {
      for (int t = 0; t < 600; ++t)
        y.push_back(std::sin(2 * std::numbers::pi * t / 25) + 0.3 * std::sin(2 * std::numbers::pi * t / 9));
    } else {
      y = bptt::data::load_csv_column(args[0], args[1]).values;
    }
    const std::size_t N = y.size(), train_end = N - N / 3;
    const int T = 24;  // steps of context the model reads before each forecast
    if (train_end < std::size_t(T) + 2 || N == train_end) {
      std::fprintf(stderr, "the series is too short: %zu values\n", N);
      return 2;
    }
    double ms = 0;
    for (std::size_t t = 1; t < train_end; ++t) ms += (y[t] - y[t - 1]) * (y[t] - y[t - 1]);
    const double rms = ms > 0 ? std::sqrt(ms / double(train_end - 1)) : 1.0;
    std::vector<double> z(N, 0.0);
    for (std::size_t t = 1; t < N; ++t) z[t] = (y[t] - y[t - 1]) / rms;

    // 2. The model, by hand: a GRU reading one value per step, a linear readout of one value.
    bptt::ModelConfig cfg;
    cfg.cell = bptt::CellKind::gru;
    cfg.input_size = 1;   // I
    cfg.hidden_size = 32; // H
    cfg.num_layers = 1;   // L
    cfg.output_size = 1;  // O, θ = identity: the loss is the mean squared error
    bptt::Model<double> model(cfg);
    model.init_uniform(/*seed=*/7);

    // 3. Everything a step needs, allocated once: batch, workspace, gradients, optimizer state.
    const int B = 32;
    bptt::Batch<double> batch;
    batch.T = T;
    batch.B = B;
    batch.x.resize(std::size_t(T) * B);  // [T, B, 1] z_s .. z_{s+T-1}
    batch.y.resize(std::size_t(T) * B);  // [T, B, 1] z_{s+1} .. z_{s+T}: the next value
    bptt::Workspace<double> ws(cfg, T, B);
    bptt::Gradients<double> grads(cfg, T, B);
    bptt::OptimizerConfig oc;
    oc.kind = bptt::OptimizerKind::adam;
    bptt::Optimizer<double> opt(oc, model.params.size());

    // 4. Training: random windows of the training part, full BPTT over each, Adam.
    std::mt19937_64 rng(1);
    std::uniform_int_distribution<std::size_t> start(1, train_end - T - 1);
    for (long s = 1; s <= steps; ++s) {
      for (int b = 0; b < B; ++b) {
        const std::size_t s0 = start(rng);
        for (int t = 0; t < T; ++t) {
          batch.x[std::size_t(t) * B + b] = z[s0 + t];
          batch.y[std::size_t(t) * B + b] = z[s0 + t + 1];
        }
      }
      grads.zero();  // backward accumulates
      const double loss = bptt::loss_and_gradients(model, batch, bptt::LossKind::mse, ws, grads);
      const double norm = bptt::clip_by_norm(grads.params.data(), grads.params.size(), 1.0);
      opt.step(model.params.data(), grads.params.data(), /*lr=*/3e-3);
      if (s == 1 || s % 250 == 0 || s == steps)
        std::printf("step %5ld  train mse %.5f  grad norm %.3f\n", s, loss, norm);
    }

    // 5. Test: forecast each y_t of the held-out part from the T values before it; all of them
    //    in one batch of N - train_end sequences, reading the output at the last step.
    const int Bt = int(N - train_end);
    bptt::Batch<double> test;
    test.T = T;
    test.B = Bt;
    test.x.resize(std::size_t(T) * Bt);
    for (int b = 0; b < Bt; ++b)
      for (int t = 0; t < T; ++t) test.x[std::size_t(t) * Bt + b] = z[train_end + b - T + t];
    bptt::Workspace<double> tws(cfg, T, Bt);
    bptt::forward(model, test, tws);
    double se = 0, se_persistence = 0;
    for (int b = 0; b < Bt; ++b) {
      const double actual = y[train_end + b], previous = y[train_end + b - 1];
      const double forecast = previous + rms * tws.yhat()[std::size_t(T - 1) * Bt + b];
      se += (forecast - actual) * (forecast - actual);
      se_persistence += (previous - actual) * (previous - actual);
    }
    std::printf("test RMSE %.4f (persistence %.4f) over the last %d values\n",
                std::sqrt(se / Bt), std::sqrt(se_persistence / Bt), Bt);
  } catch (const bptt::Error& e) {
    std::fprintf(stderr, "forecast: %s\n", e.what());
    return 2;
  }
  return 0;
}
