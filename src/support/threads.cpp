#include "bptt/threads.hpp"

#include <string>

#include "bptt/error.hpp"

namespace bptt {

namespace {
// 0: no ThreadCount alive on this thread (one thread).
thread_local int t_count = 0;
}  // namespace

ThreadCount::ThreadCount(int n) : previous_(t_count) {
  if (n < 1)
    throw Error(ErrorKind::value, "threads", "is " + std::to_string(n) + ", not at least 1",
                "give 1 or more");
  t_count = n;
}

ThreadCount::~ThreadCount() { t_count = previous_; }

int ThreadCount::current() noexcept { return t_count > 0 ? t_count : 1; }

}  // namespace bptt
