// bptt eval: the held-out loss of a trained model and the task's own measure.
#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "common.hpp"
#include "task_options.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct EvalOptions {
  std::string model, dtype;
  DataOptions data;
  int threads = 1;
  bool json = false;
};

template <class Real>
void run_eval(const EvalOptions& o, const safetensors::File& mf) {
  const Model<Real> model = load_model<Real>(mf);
  const TaskData data(o.data, &model.metadata);
  const int B = o.data.batch ? o.data.batch : data.default_batch();
  const int T = o.data.seq_len ? o.data.seq_len : data.default_seq_len();
  if (model.cfg.input_size != data.input_size() || model.cfg.output_size != data.output_size())
    throw Error(ErrorKind::shape, o.model, "the model's input/output sizes do not fit the data",
                "evaluate with the kind of data the model was trained on");
  const auto task = data.task<Real>(B, T);
  const Metrics m = task->evaluate(model);
  if (o.json) {
    nlohmann::json j;
    j["loss"] = m.loss;
    for (const auto& [k, v] : m.values) j[k] = v;
    if (!m.classes.empty()) {
      const std::size_t K = m.classes.size();
      j["classes"] = m.classes;
      j["confusion"] = nlohmann::json::array();  // rows: true class, columns: predicted
      for (std::size_t k = 0; k < K; ++k)
        j["confusion"].push_back(std::vector<std::int64_t>(m.confusion.begin() + std::ptrdiff_t(k * K),
                                                           m.confusion.begin() + std::ptrdiff_t((k + 1) * K)));
    }
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("loss {:.6f}", m.loss);
  for (const auto& [k, v] : m.values) fmt::print("\n{} {:.6g}", k, v);
  fmt::print("\n");
  if (!m.summary.empty()) fmt::print("{}\n", m.summary);
}

}  // namespace

void add_eval(CLI::App& app, Runner& run) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluate a trained model on held-out data: the loss and the task's measure\n"
      "(bits per character for text). Give the data options the model was trained with.");
  cmd->add_option("--model", o->model, "Model file written by `bptt train --out`")->required();
  add_data_options(cmd, o->data);
  for (const char* name : {"--seq-len", "--batch"})  // 0 is not "the default" when typed
    cmd->get_option(name)->check(kPositive);
  add_dtype_option(cmd, o->dtype);
  add_threads_option(cmd, o->threads);
  cmd->add_flag("--json", o->json, "Print one JSON object with loss and the task's measures");
  cmd->callback([o, &run] {
    run = [o] {
      const ThreadCount on_threads(o->threads);
      const auto mf = safetensors::File::read(o->model);
      const DType dtype = o->dtype.empty() ? stored_dtype(mf) : parse_dtype(o->dtype, "--dtype");
      with_dtype(dtype, [&]<class Real>() { run_eval<Real>(*o, mf); });
    };
  });
}

}  // namespace bptt::cli
