// The `bptt` command's verbs. Each verb file defines one add_<verb> that registers a CLI11
// subcommand with its options and --help text; when the subcommand is chosen it stores the work
// to do in `run`, which main() calls after parsing. Verbs report user errors by throwing
// bptt::Error; main() prints them as one line and exits 2.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace bptt::cli {

using Runner = std::function<void()>;

void add_grad(CLI::App& app, Runner& run);
void add_predict(CLI::App& app, Runner& run);
void add_explain(CLI::App& app, Runner& run);
void add_train(CLI::App& app, Runner& run);
void add_eval(CLI::App& app, Runner& run);
void add_sample(CLI::App& app, Runner& run);
void add_plot(CLI::App& app, Runner& run);
void add_bench(CLI::App& app, Runner& run);
void add_diagnose(CLI::App& app, Runner& run);
void add_stream(CLI::App& app, Runner& run);
void add_import(CLI::App& app, Runner& run);
void add_inspect(CLI::App& app, Runner& run);

// Every verb, in the order --help lists them; main() and the CLI fuzzer both build the command
// from this one list.
inline void add_verbs(CLI::App& app, Runner& run) {
  add_grad(app, run);
  add_predict(app, run);
  add_stream(app, run);
  add_explain(app, run);
  add_train(app, run);
  add_eval(app, run);
  add_sample(app, run);
  add_plot(app, run);
  add_bench(app, run);
  add_diagnose(app, run);
  add_import(app, run);
  add_inspect(app, run);
}

}  // namespace bptt::cli
