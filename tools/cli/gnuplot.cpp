#include "gnuplot.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "bptt/error.hpp"

extern char** environ;

namespace bptt::cli {

int run_gnuplot(const std::string& script_path, std::string& output) {
  output.clear();
  int fds[2];
  if (::pipe(fds) != 0)
    throw Error(ErrorKind::resource, "gnuplot",
                fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::string prog = "gnuplot", arg = script_path;
  char* argv[] = {prog.data(), arg.data(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw Error(ErrorKind::io, "gnuplot",
                rc == ENOENT ? "not installed (not found on PATH)"
                             : fmt::format("cannot run it: {}", std::strerror(rc)),
                "apt-get install gnuplot-nox");
  }
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0)
      output.append(buf, std::size_t(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string gnuplot_problem(const std::string& output) {
  std::stringstream ss(output);
  std::string first;
  for (std::string l; std::getline(ss, l);) {
    l.erase(0, l.find_first_not_of(" \t^"));
    if (l.empty()) continue;
    if (first.empty()) first = l;
    if (l.find("rror") != std::string::npos || l.find("annot") != std::string::npos) return l;
  }
  return first.empty() ? "no message" : first;
}

}  // namespace bptt::cli
