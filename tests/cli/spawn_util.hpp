// Running `bptt` in the background, for the tests that signal or kill it (CliStop, CliKill).
#pragma once

#include <signal.h>

#include "cli/cli_util.hpp"

namespace bptt::cli_test {

// Starts `bptt args...` with stdin from /dev/null and stdout/stderr into dir/stdout and
// dir/stderr; returns its pid (-1 when it could not be started).
inline pid_t spawn_cli(const std::vector<std::string>& args, const fs::path& dir) {
  std::vector<std::string> argv_s = {BPTT_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string out = (dir / "stdout").string(), err = (dir / "stderr").string();
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// Waits for `pid`, started by spawn_cli(args, dir); the exit status, or 128 + the signal that
// ended it. A sanitizer report in dir/stderr fails the test (expect_no_sanitizer_report).
inline int wait_exit(pid_t pid, const fs::path& dir) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  expect_no_sanitizer_report(read_bytes(dir / "stderr"),
                             "bptt (pid " + std::to_string(pid) + ", output in " + dir.string() +
                                 ")");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace bptt::cli_test
