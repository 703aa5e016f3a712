// bptt: train and inspect recurrent networks by exact backpropagation through time.
// Exit status: 0 success, 2 usage error or bad input (one line on stderr), 1 internal error.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>
#include <string>

#include "bptt/error.hpp"
#include "verbs.hpp"

namespace {

// CLI11 messages may span lines; the contract is one line per error.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bptt: recurrent networks trained by exact backpropagation through time"};
  app.require_subcommand(1, 1);
  app.fallthrough(false);
  bptt::cli::Runner run;
  bptt::cli::add_grad(app, run);
  bptt::cli::add_predict(app, run);
  bptt::cli::add_explain(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "bptt: usage error: {} (hint: run 'bptt --help' or 'bptt VERB --help')\n",
               one_line(e.what()));
    return 2;
  }

  try {
    if (run) run();
    return 0;
  } catch (const bptt::Error& e) {
    fmt::print(stderr, "bptt: error: {}\n", one_line(e.what()));
    return 2;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "bptt: error: out of memory (hint: use smaller B, T or H)\n");
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bptt: internal error: {}\n", one_line(e.what()));
    return 1;
  }
}
