// The command line: the `bptt` app as tools/cli/main.cpp builds it, fed an argv of the fuzzed
// bytes split at NUL bytes. Parsing (CLI11 and every verb's option callbacks) must end in
// CLI::ParseError or bptt::Error; `explain`, which reads nothing and computes little, is also
// run. Other verbs are not run: they would read and write files and train.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "verbs.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!std::freopen("/dev/null", "w", stdout)) std::abort();  // explain's table
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args = {"bptt"};
  std::string cur;
  for (std::size_t i = 0; i < size && args.size() < 64; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += char(data[i]);
    }
  }
  if (!cur.empty() && args.size() < 64) args.push_back(cur);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  CLI::App app{"bptt"};
  app.require_subcommand(1, 1);
  app.fallthrough(false);
  bptt::cli::Runner run;
  bptt::cli::add_verbs(app, run);
  try {
    app.parse(int(args.size()), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;
  } catch (const bptt::Error& e) {
    const std::string m = e.what();
    if (m.find('\n') != std::string::npos) bptt::fuzz::finding("error message is not one line", m);
    return 0;
  }
  if (run && app.got_subcommand("explain")) bptt::fuzz::errors_only("", run);
  return 0;
}
