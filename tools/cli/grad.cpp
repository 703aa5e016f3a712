// bptt grad: the loss and its gradient for every parameter, the inputs and the initial state,
// by one exact BPTT pass (or, to check it, by central differences).
#include <fmt/core.h>

#include <memory>
#include <type_traits>

#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/methods.hpp"
#include "bptt/unroll.hpp"
#include "common.hpp"
#include "embed.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct GradOptions {
  std::string model, data, out, loss, dtype, method = "bptt";
  int threads = 1;
  std::uint64_t seed = 1;
};

template <class Real>
void run_grad(const GradOptions& o, const GradMethodSpec& method, const safetensors::File& mf,
              LossKind loss) {
  const Model<Real> model = load_model<Real>(mf);
  const Batch<Real> batch = load_batch<Real>(safetensors::File::read(o.data), model.cfg, loss);
  Gradients<Real> g(model.cfg, batch.T, batch.B);
  g.zero();
  Real L = 0;
  if (method.method == GradMethod::recompute) {
    const int K = method.K ? method.K : default_recompute_interval(batch.T);
    Recompute<Real> r(model.cfg, batch.T, batch.B, K);
    L = Real(r.loss_and_gradients(model, batch, loss, g));
  } else if (method.method == GradMethod::truncated) {
    L = Real(truncated_loss_and_gradients(model, batch, loss, method.K, g));
  } else if (method.method == GradMethod::rtrl) {
    L = Real(rtrl_loss_and_gradients(model, batch, loss, g));
  } else if (is_online(method.method)) {
    L = Real(online_loss_and_gradients(online_method(method.method), o.seed, model, batch, loss, g));
  } else if (method.method == GradMethod::numeric) {
    if constexpr (std::is_same_v<Real, double>) {
      const std::size_t n = numeric_gradient_count(model.cfg, batch.T, batch.B);
      if (n > kNumericLimit)
        throw Error(ErrorKind::resource, "--method numeric",
                    fmt::format("would perturb {} numbers (2 forward passes "
                                "each); the limit is {}",
                                n, kNumericLimit),
                    "check a smaller model or batch, or use --method bptt");
      L = numeric_loss_and_gradients(model, batch, loss, g);
    } else {
      throw Error(ErrorKind::usage, "--method numeric", "differences are taken in f64 only",
                  "use --dtype f64");
    }
  } else {
    Workspace<Real> ws(model.cfg, batch.T, batch.B);
    L = Real(loss_and_gradients(model, batch, loss, ws, g));
  }

  const ModelConfig& c = model.cfg;
  const std::int64_t T = batch.T, B = batch.B;
  safetensors::Writer w;
  w.set_metadata("format", "bptt-grad");
  w.set_metadata("loss", std::string(to_string(loss)));
  for (const ParamInfo& p : param_layout(c)) w.add(p.name, p.shape, g.params.data() + p.offset);
  if (is_online(method.method)) {  // they estimate the parameters' gradient only
    w.set_metadata("method", to_string(method));
    w.set_metadata("seed", std::to_string(o.seed));
  } else {
    w.add("x", {T, B, c.input_size}, g.x.data());
    w.add("h0", {c.units(), B, c.state_size()}, g.h0.data());
    if (c.cell == CellKind::lstm) w.add("c0", {c.units(), B, c.hidden_size}, g.c0.data());
  }
  w.add("loss", {1}, &L);
  w.write(o.out);
}

}  // namespace

void add_grad(CLI::App& app, Runner& run) {
  auto o = std::make_shared<GradOptions>();
  CLI::App* cmd = app.add_subcommand(
      "grad",
      "Compute the loss and its gradient by backpropagation through time (or another method).\n"
      "Writes a safetensors file with dL/d(parameter) under each parameter's own name\n"
      "(init.h0/init.c0 too, for a learned initial state), x (dL/dx [T, B, I]),\n"
      "h0 (dL/dh0 [L·D, B, H_out]), c0 (LSTM, [L·D, B, H]) and loss [1].");
  cmd->add_option("--model", o->model, "Model file (safetensors, see docs/file_format.md)")
      ->required();
  cmd->add_option("--data", o->data, "Data file: x [T, B, I], y, optional lengths, mask, h0, c0")
      ->required();
  cmd->add_option("--out", o->out, "Output file for the gradients")->required();
  cmd->add_option("--loss", o->loss, "Loss: mse, bce (from logits) or xent (from logits)")
      ->required()
      ->check(CLI::IsMember({"mse", "bce", "xent"}));
  cmd->add_option("--method", o->method,
                  "How to compute the gradient (every exact method writes the same tensors):\n"
                  "  bptt          full backpropagation through time (default)\n"
                  "  recompute[:K] the same gradient keeping the state only every K steps\n"
                  "                (default K = ceil(sqrt(T))), recomputing each segment\n"
                  "  truncated:K   every step's loss reaches back K steps only\n"
                  "                (K >= T is bptt)\n"
                  "  rtrl          real-time recurrent learning: the exact gradient in forward\n"
                  "                mode (sensitivities carried with the state; small models)\n"
                  "  numeric       central differences in f64, for checking small models\n"
                  "Online approximations of RTRL (docs/math.md 8e): the gradient each would\n"
                  "have summed over the sequences, for the parameters only (no x, h0, c0):\n"
                  "  uoro          unbiased rank-one estimate (Tallec & Ollivier 2018; --seed)\n"
                  "  kf-rtrl       unbiased Kronecker-factored estimate (Mujika et al. 2018;\n"
                  "                --seed)\n"
                  "  snap1         each unit's own parameters only (Menick et al. 2021; one\n"
                  "                layer)\n"
                  "  eprop         eligibility traces x instantaneous learning signal (Bellec\n"
                  "                et al. 2020; one layer)");
  cmd->add_option("--seed", o->seed,
                  "Random signs of uoro and kf-rtrl (the same seed gives the same gradient)")
      ->capture_default_str();
  add_dtype_option(cmd, o->dtype);
  add_threads_option(cmd, o->threads);
  cmd->callback([o, &run] {
    run = [o] {
      const ThreadCount on_threads(o->threads);
      const GradMethodSpec method = parse_grad_method(o->method, "--method");
      const LossKind loss = parse_loss(o->loss, "--loss");
      const auto mf = safetensors::File::read(o->model);
      DType dtype = o->dtype.empty() ? stored_dtype(mf) : parse_dtype(o->dtype, "--dtype");
      if (method.method == GradMethod::numeric) {
        if (dtype != DType::f64 && !o->dtype.empty())
          throw Error(ErrorKind::usage, "--method numeric", "differences are taken in f64 only",
                      "leave out --dtype f32 (an F32 model is read into f64)");
        dtype = DType::f64;
      }
      with_dtype(dtype, [&]<class Real>() { run_grad<Real>(*o, method, mf, loss); });
    };
  });
}

}  // namespace bptt::cli
