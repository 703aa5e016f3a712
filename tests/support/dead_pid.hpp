// The pid of a child process that has exited and been reaped: a pid that no longer runs, for
// planting the temporary file of a writer that was killed mid-write.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace bptt::test {

// -1 when fork or waitpid fails.
inline pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) return -1;
  return child;
}

}  // namespace bptt::test
