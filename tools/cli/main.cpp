// bptt: train and inspect recurrent networks by exact backpropagation through time.
// Exit status: 0 success, 2 usage error or bad input (one line on stderr), 1 internal error.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>
#include <string>
#include <thread>

#include "bptt/cpu.hpp"
#include "bptt/precision.hpp"
#include "dist/dist.hpp"
#include "bptt/error.hpp"
#include "common.hpp"
#include "verbs.hpp"

namespace {

using bptt::cli::one_line;

// What CLI11 reports vaguely, said precisely: an unknown or missing verb ("A subcommand is
// required") and an empty "--option=" (which CLI11 treats as absent and then blames another
// option). Returns the problem, or "" when the arguments can go to CLI11.
std::string precheck(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> verbs;
  for (const CLI::App* sub : app.get_subcommands({})) verbs.push_back(sub->get_name());
  std::string list;
  for (const auto& v : verbs) list += (list.empty() ? "" : ", ") + v;
  if (argc < 2) return "no verb given; the verbs are " + list;
  const std::string first = argv[1];
  if (first == "-h" || first == "--help" || first == "--help-all") return "";
  if (first.rfind("-", 0) == 0)
    return "expected a verb before '" + one_line(first.substr(0, 40)) + "'; the verbs are " + list;
  if (std::find(verbs.begin(), verbs.end(), first) == verbs.end())
    return "unknown verb '" + one_line(first.substr(0, 40)) + "'; the verbs are " + list;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.size() > 3 && a.rfind("--", 0) == 0 && a.back() == '=')
      return "option " + one_line(a.substr(0, a.size() - 1)) + " has an empty value";
  }
  return "";
}

// Under mpirun the whole job ends with `code` (a process that failed alone must not leave the
// others waiting in a collective), its error said once: an error every rank meets (a usage
// error) is printed by rank 0, whose abort ends the others while they wait kRankWait for it.
// Aborting at once, another rank could end the job before rank 0 had printed anything (a ctest
// run of Mpi.TooFewSequencesForTheProcessesIsAUsageError saw no line). A rank still alive after
// the wait failed alone and prints its own line, naming itself. Otherwise returns code.
constexpr std::chrono::milliseconds kRankWait{2000};

int fail(int code, const std::string& line) {
  const int rank = bptt::dist::rank();
  if (bptt::dist::active() && rank != 0) {
    std::this_thread::sleep_for(kRankWait);
    fmt::print(stderr, "rank {}: {}\n", rank, line);
    std::fflush(stderr);
    bptt::dist::abort_all(code);
  }
  fmt::print(stderr, "{}\n", line);
  if (bptt::dist::active()) {
    std::fflush(stderr);
    bptt::dist::abort_all(code);
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  bptt::dist::Session mpi(argc, argv);  // MPI_Init under mpirun, nothing otherwise
  CLI::App app{"bptt: recurrent networks trained by exact backpropagation through time"};
  app.require_subcommand(1, 1);
  app.fallthrough(false);
  bptt::cli::Runner run;
  bptt::cli::add_verbs(app, run);

  if (const std::string problem = precheck(app, argc, argv); !problem.empty()) {
    fmt::print(stderr, "bptt: usage error: {} (hint: run 'bptt --help' or 'bptt VERB --help')\n",
               problem);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(2, "bptt: usage error: " + one_line(e.what()) +
                       " (hint: run 'bptt --help' or 'bptt VERB --help')");
  }

  try {
    bptt::cpu_level();          // a bad BPTT_CPU_LEVEL is refused before any work starts,
    bptt::bf16_products_amx();  // and a bad BPTT_AMX
    if (run) run();
    return 0;
  } catch (const bptt::Error& e) {
    return fail(2, "bptt: error: " + one_line(e.what()));
  } catch (const std::bad_alloc&) {
    return fail(2, "bptt: error: out of memory (hint: use smaller B, T or H)");
  } catch (const std::exception& e) {
    return fail(1, "bptt: internal error: " + one_line(e.what()));
  }
}
