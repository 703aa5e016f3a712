#include "gnuplot.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bptt/error.hpp"
#include "io/temp_files.hpp"

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

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "''";
    else q += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  return q + "'";
}

namespace {

struct Unlink {  // removes the temporaries that were not renamed into place
  std::vector<std::string> paths;
  ~Unlink() {
    for (const std::string& p : paths) ::unlink(p.c_str());
  }
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), std::streamsize(text.size()));
  out.close();
  if (!out) throw Error(ErrorKind::io, path, "cannot write", "check that the directory is writable");
}

}  // namespace

std::vector<std::string> write_drawn(const std::string& dir,
                                     const std::vector<std::pair<std::string, std::string>>& files,
                                     const std::vector<std::string>& pictures,
                                     const std::function<std::string(const NameOf&)>& script) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw Error(ErrorKind::io, dir,
                "cannot create the directory" + (ec ? ": " + ec.message() : std::string()),
                "check the path and its permissions");
  const std::string suffix = ".tmp-" + std::to_string(::getpid());
  const fs::path root(dir);
  const NameOf tmp = [&](const std::string& n) { return (root / (n + suffix)).string(); };
  Unlink temps;
  for (const auto& [name, content] : files) {
    temps.paths.push_back(tmp(name));
    write_text(tmp(name), content);
  }
  for (const std::string& p : pictures) temps.paths.push_back(tmp(p));
  const std::string run_script = tmp("run.gp");
  temps.paths.push_back(run_script);
  write_text(run_script, script(tmp));
  std::string output;
  const int status = run_gnuplot(run_script, output);
  if (status != 0)
    throw Error(ErrorKind::io, "gnuplot",
                fmt::format("failed (exit {}): {}", status, gnuplot_problem(output)));
  for (const std::string& p : pictures)
    if (fs::file_size(tmp(p), ec) == 0 || ec)
      throw Error(ErrorKind::io, "gnuplot", "wrote no picture " + p + ": " + gnuplot_problem(output));
  std::vector<std::string> names, written;
  for (const auto& f : files) names.push_back(f.first);
  names.insert(names.end(), pictures.begin(), pictures.end());
  for (const std::string& n : names) {
    const std::string final_path = (root / n).string();
    fs::rename(tmp(n), final_path, ec);
    if (ec) throw Error(ErrorKind::io, final_path, "cannot rename into place: " + ec.message());
    written.push_back(final_path);
  }
  for (const std::string& n : names) remove_stale_temporaries((root / n).string());
  remove_stale_temporaries((root / "run.gp").string());
  return written;
}

}  // namespace bptt::cli
