// bptt predict: the forward pass; writes ŷ and the final states.
#include <memory>

#include "bptt/infer.hpp"
#include "bptt/io.hpp"
#include "common.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct PredictOptions {
  std::string model, data, out, dtype;
  int threads = 1;
  bool states = false;
};

// A tensor of `shape` for Real values, and where to write them (its own bytes: the values are
// computed in place, never held twice).
template <class Real>
std::span<Real> new_tensor(safetensors::Tensor& t, std::vector<std::int64_t> shape) {
  std::size_t n = 1;
  for (std::int64_t d : shape) n *= std::size_t(d);
  t.dtype = sizeof(Real) == 8 ? safetensors::ElemType::F64 : safetensors::ElemType::F32;
  t.shape = std::move(shape);
  t.bytes.resize(n * sizeof(Real));
  return {reinterpret_cast<Real*>(t.bytes.data()), n};
}

template <class Real>
void run_predict(const PredictOptions& o, const safetensors::File& mf) {
  const Model<Real> model = load_model<Real>(mf);
  const Batch<Real> batch =
      load_batch<Real>(safetensors::File::read(o.data), model.cfg, std::nullopt);
  const ModelConfig& c = model.cfg;
  const std::int64_t T = batch.T, B = batch.B, U = c.units(), HO = c.state_size(),
                     H = c.hidden_size;
  const bool lstm = c.cell == CellKind::lstm;
  // Lean inference (bptt/infer.hpp): a chunk of steps at a time, so that a long sequence costs
  // its input and output and little more.
  Inference<Real> inf(c, batch.B);
  safetensors::Tensor y_hat, h, cs;
  typename Inference<Real>::Outputs out{.yhat = new_tensor<Real>(y_hat, {T, B, c.output_size})};
  if (o.states) {  // the states after every step, in data order
    out.h = new_tensor<Real>(h, {U, T, B, HO});
    if (lstm) out.c = new_tensor<Real>(cs, {U, T, B, H});
  }
  inf.run(model, batch, out);
  safetensors::Writer w;
  w.set_metadata("format", "bptt-predict");
  w.add("y_hat", std::move(y_hat));
  // h_n/c_n: every unit's state after its last step, which is the state at each sequence's last
  // valid step (first, right to left; steps past a sequence's length leave the state unchanged).
  w.add("h_n", {U, B, HO}, inf.h_n().data());
  if (lstm) w.add("c_n", {U, B, H}, inf.c_n().data());
  if (o.states) {
    w.add("h", std::move(h));
    if (lstm) w.add("c", std::move(cs));
  }
  w.write(o.out);
}

}  // namespace

void add_predict(CLI::App& app, Runner& run) {
  auto o = std::make_shared<PredictOptions>();
  CLI::App* cmd = app.add_subcommand(
      "predict",
      "Run the model forward. Writes y_hat [T, B, O], h_n [L·D, B, H_out] (the state at each\n"
      "sequence's last valid step, as PyTorch's packed sequences) and c_n [L·D, B, H] for LSTM;\n"
      "with --states also every step's states h [L·D, T, B, H_out] and c [L·D, T, B, H].");
  cmd->add_option("--model", o->model, "Model file (safetensors, see docs/file_format.md)")
      ->required();
  cmd->add_option("--data", o->data, "Data file: x [T, B, I], optional lengths, h0, c0 (y ignored)")
      ->required();
  cmd->add_option("--out", o->out, "Output file for the predictions")->required();
  cmd->add_flag("--states", o->states,
                "Also write h [L·D, T, B, H_out] and, for LSTM, c [L·D, T, B, H]: every unit's\n"
                "state after every step, in data order (past a sequence's length each unit\n"
                "repeats its last state, h_n and c_n)");
  add_dtype_option(cmd, o->dtype);
  add_threads_option(cmd, o->threads);
  cmd->callback([o, &run] {
    run = [o] {
      const ThreadCount on_threads(o->threads);
      const auto mf = safetensors::File::read(o->model);
      const DType dtype = o->dtype.empty() ? stored_dtype(mf) : parse_dtype(o->dtype, "--dtype");
      with_dtype(dtype, [&]<class Real>() { run_predict<Real>(*o, mf); });
    };
  });
}

}  // namespace bptt::cli
