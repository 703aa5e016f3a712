#include "embed.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "bptt/error.hpp"
#include "common.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {
thread_local std::string* t_capture = nullptr;
thread_local TrainHooks* t_train_hooks = nullptr;
}  // namespace

void emit(std::string_view text) {
  if (t_capture)
    t_capture->append(text);
  else
    std::fwrite(text.data(), 1, text.size(), stdout);
}

CaptureOutput::CaptureOutput(std::string& into) : previous_(t_capture) { t_capture = &into; }
CaptureOutput::~CaptureOutput() { t_capture = previous_; }

WithTrainHooks::WithTrainHooks(TrainHooks& hooks) : previous_(t_train_hooks) {
  t_train_hooks = &hooks;
}
WithTrainHooks::~WithTrainHooks() { t_train_hooks = previous_; }
TrainHooks* train_hooks() { return t_train_hooks; }

std::vector<std::string> verb_options(const std::string& verb) {
  CLI::App app{"bptt"};
  Runner run;
  add_verbs(app, run);
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands({}))
    if (sub->get_name() == verb)
      for (const CLI::Option* o : sub->get_options())
        for (const std::string& n : o->get_lnames())
          if (n != "help") names.push_back(n);
  return names;
}

void run_verb(const std::vector<std::string>& args) {
  CLI::App app{"bptt"};
  app.require_subcommand(1, 1);
  app.fallthrough(false);
  Runner run;
  add_verbs(app, run);
  // CLI11 parses a reversed list of arguments (its vector overload), program name excluded.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    const std::string verb = args.empty() ? std::string("bptt") : args.front();
    throw Error(ErrorKind::usage, verb, one_line(e.what()),
                "see 'bptt " + verb + " --help' for the options");
  }
  if (run) run();
}

}  // namespace bptt::cli
