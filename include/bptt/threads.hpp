// How many threads bptt's calls may use. A thread count belongs to an object or to the calling
// thread, never to the process:
//  - Workspace, Recompute and Stream carry their own (a constructor argument): forward(),
//    backward(), loss_and_gradients(), Recompute::loss_and_gradients() and Stream::step() run
//    on the count of the object they are given;
//  - every other call (the truncated, RTRL and numeric gradients, training, evaluation,
//    sampling, diagnose) runs on the count of the innermost ThreadCount alive on the calling
//    thread, or on one thread when there is none; objects constructed without a count take that
//    one too.
// So a service whose threads each call bptt runs each call on as many cores as that call was
// given (one by default), never a team of all the machine's cores per call. bptt's parallel
// parts are OpenMP teams started by the calling thread; OpenBLAS always runs single-threaded
// inside them. A `const Model` may be read by any number of threads at once, each with its own
// Workspace, Recompute or Stream (docs/api.md, "Threads").
#pragma once

namespace bptt {

class ThreadCount {
 public:
  // Calls made from this thread while the object lives use n threads. Throws bptt::Error
  // (kind value) for n < 1.
  explicit ThreadCount(int n);
  ~ThreadCount();  // restores the count that was current before
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

  // The calling thread's count: the innermost live ThreadCount's, else 1.
  static int current() noexcept;

 private:
  int previous_;
};

}  // namespace bptt
