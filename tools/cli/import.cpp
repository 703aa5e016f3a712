// bptt import: a PyTorch state_dict file as a bptt model file; bptt inspect: what a file holds
// and what bptt reads in it (include/bptt/import.hpp).
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "bptt/error.hpp"
#include "bptt/import.hpp"
#include "bptt/io.hpp"
#include "common.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct ImportCliOptions {
  std::string in, out, nonlinearity, output_activation, dtype;
  std::optional<std::string> rnn, head;
  bool no_head = false;
};

ImportOptions import_options(const ImportCliOptions& o) {
  ImportOptions io;
  if (!o.nonlinearity.empty()) io.nonlinearity = parse_activation(o.nonlinearity, "--nonlinearity");
  if (!o.output_activation.empty())
    io.output_activation = parse_activation(o.output_activation, "--output-activation");
  io.rnn = o.rnn;
  io.head = o.head;
  io.no_head = o.no_head;
  return io;
}

struct InspectOptions {
  std::string model;
  bool json = false;
};

// An attribute path as the output shows it ("" is the file's top level).
std::string shown(const std::string& path) { return path.empty() ? "(top level)" : path; }
// The head's: "(none)" for a head-less model.
std::string shown_head(const ModelConfig& cfg, const std::string& path) {
  return cfg.head ? shown(path) : "(none)";
}

void run_inspect(const InspectOptions& o) {
  const auto f = safetensors::File::read(o.model);
  const bool plain = is_plain_state_dict(f);
  ModelConfig cfg;
  std::map<std::string, std::string> role;  // tensor -> the bptt parameter it is
  std::string rnn = "rnn", head = "head";
  if (plain) {
    const ImportPlan plan = plan_import(f);
    cfg = plan.cfg;
    rnn = plan.rnn;
    head = plan.head;
    for (const auto& [dst, src] : plan.names)
      if (!src.empty()) role[src] = dst;
  } else {
    cfg = load_model<double>(f).cfg;  // every check of a bptt model file
    for (const ParamInfo& p : param_layout(cfg)) role[p.name] = p.name;
  }
  const auto meta = config_metadata(cfg);
  if (o.json) {
    nlohmann::json j;
    j["file"] = o.model;
    j["format"] = plain ? "pytorch_state_dict" : "bptt";
    j["dtype"] = std::string(to_string(stored_dtype(f)));
    nlohmann::json c;
    for (const auto& [k, v] : meta) {
      if (v == "true" || v == "false") c[k] = v == "true";
      else if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos) c[k] = std::stoll(v);
      else c[k] = v;
    }
    j["config"] = c;
    if (plain) {
      j["rnn"] = rnn;
      j["head"] = cfg.head ? nlohmann::json(head) : nlohmann::json(nullptr);
    }
    nlohmann::json ts = nlohmann::json::array();
    for (const std::string& n : f.names()) {
      const auto& t = f.at(n);
      ts.push_back({{"name", n}, {"dtype", safetensors::elem_name(t.dtype)}, {"shape", t.shape},
                    {"parameter", role.count(n) ? role[n] : ""}});
    }
    j["tensors"] = ts;
    nlohmann::json md = nlohmann::json::object();
    for (const auto& [k, v] : f.metadata()) md[k] = v;
    j["metadata"] = md;
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("{}: {}\n", o.model,
             plain ? "a PyTorch state_dict (no bptt metadata): the model below is inferred"
                   : "a bptt model file");
  if (plain)
    fmt::print("  recurrent module: {}\n  head (nn.Linear): {}\n", shown(rnn),
               cfg.head ? shown(head) : "(none: the output is the top layer's h)");
  fmt::print("  model:");
  for (const auto& [k, v] : meta) fmt::print(" {}={}", k, v);
  fmt::print("\n  parameters: {} ({})\n", param_count(cfg), to_string(stored_dtype(f)));
  fmt::print("  tensors:\n");
  for (const std::string& n : f.names()) {
    const auto& t = f.at(n);
    fmt::print("    {:<36} {:<5} {:<16} {}\n", n, safetensors::elem_name(t.dtype),
               fmt::format("[{}]", fmt::join(t.shape, ", ")),
               role.count(n) ? (plain ? "-> " + role[n] : "") : "(not used)");
  }
}

}  // namespace

void add_import(CLI::App& app, Runner& run) {
  auto o = std::make_shared<ImportCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "import",
      "Write a bptt model file from a PyTorch checkpoint: a safetensors file of a state_dict\n"
      "(safetensors.torch.save_file(model.state_dict(), path)) holding one nn.RNN/LSTM/GRU and\n"
      "optionally one nn.Linear head, under any attribute names. Cell, sizes, layers,\n"
      "directions, projection and bias come from names and shapes (docs/file_format.md).\n"
      "Without a Linear that reads the RNN's output the model is head-less: its output is the\n"
      "top layer's h. Every verb also reads such a file directly, with the defaults below.");
  cmd->add_option("in", o->in, "The PyTorch safetensors file")->required();
  cmd->add_option("--out", o->out, "The bptt model file to write")->required();
  cmd->add_option("--nonlinearity", o->nonlinearity,
                  "nn.RNN's nonlinearity (tanh, the default, or relu; not in a state_dict)")
      ->check(CLI::IsMember({"tanh", "relu"}));
  cmd->add_option("--output-activation", o->output_activation,
                  "The head's output activation θ (identity, the default; sigmoid, softmax, tanh)")
      ->check(CLI::IsMember({"identity", "sigmoid", "softmax", "tanh", "relu"}));
  cmd->add_option("--rnn", o->rnn, "The recurrent module's attribute path (e.g. encoder.lstm; \"\" for\n"
                                   "a bare module), when the file holds several");
  CLI::Option* head =
      cmd->add_option("--head", o->head, "The head's attribute path (e.g. decoder.fc), when several fit");
  cmd->add_flag("--no-head", o->no_head,
                "No head even where a Linear fits: the model's output is the top layer's h")
      ->excludes(head);
  add_dtype_option(cmd, o->dtype);
  cmd->callback([o, &run] {
    run = [o] {
      const auto f = safetensors::File::read(o->in);
      if (!is_plain_state_dict(f))
        throw Error(ErrorKind::usage, o->in,
                    "is already a bptt model file (it has __metadata__.cell)", "use it as it is");
      const ImportPlan plan = plan_import(f, import_options(*o));
      const DType dtype = o->dtype.empty() ? stored_dtype(f) : parse_dtype(o->dtype, "--dtype");
      with_dtype(dtype, [&]<class Real>() { save_model(import_model<Real>(f, plan), o->out); });
      std::vector<std::string> keys;
      for (const auto& [k, v] : config_metadata(plan.cfg)) keys.push_back(k + "=" + v);
      fmt::print("{} -> {}: {} (recurrent module {}, head {})\n", o->in, o->out,
                 fmt::join(keys, " "), shown(plan.rnn), shown_head(plan.cfg, plan.head));
    };
  });
}

void add_inspect(CLI::App& app, Runner& run) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Print what a model file holds (tensors, dtypes, shapes, metadata) and the model bptt reads\n"
      "in it: a bptt model file's configuration, or what it infers from a PyTorch state_dict.");
  cmd->add_option("model", o->model, "The model file (bptt or a PyTorch state_dict)")->required();
  cmd->add_flag("--json", o->json, "One JSON object");
  cmd->callback([o, &run] { run = [o] { run_inspect(*o); }; });
}

}  // namespace bptt::cli
