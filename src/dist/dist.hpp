// Data-parallel training across processes (MPI). Without MPI, or outside `mpirun`, the world is
// one process and every call here is a no-op or the identity, so the trainer has one code path.
//
// A run under `mpirun -np N bptt train ...`: every rank fills the same global batch (tasks are
// pure functions of (seed, epoch, index)), takes its own rows of it (rows_of), runs forward and
// backward on them, and the gradient arena is summed over ranks with MPI_Allreduce, each rank's
// part weighted by its share of the loss weight, so the sum is the gradient of the global loss.
// Every rank then applies the same optimizer step. Rank 0 alone prints and writes files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bptt::dist {

// Initializes MPI when the process was started by mpirun (and bptt was built with MPI), and
// finalizes it on destruction. One per process, in main().
class Session {
 public:
  Session(int& argc, char**& argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

// True when built with MPI (the BPTT_MPI CMake option found OpenMPI).
bool built_with_mpi();

int rank();  // 0 without MPI
int size();  // 1 without MPI
inline bool active() { return size() > 1; }

// The rows [begin, end) of a batch of B sequences that rank r works on: contiguous, sizes
// differing by at most one. REQUIRES B >= size() (every rank has a row).
struct Rows {
  int begin = 0, end = 0;
  int count() const { return end - begin; }
};
Rows rows_of(int B, int r = rank());

// In-place sums over all ranks (MPI_Allreduce with MPI_SUM); the identity for one process.
void sum(float* data, std::size_t n);
void sum(double* data, std::size_t n);
double sum(double v);
double max(double v);

// Sums started now and finished by wait(): the all-reduce of one layer's gradients can run
// while the layers below are still in their backward pass.
class PendingSums {
 public:
  PendingSums() = default;
  ~PendingSums();
  PendingSums(const PendingSums&) = delete;
  PendingSums& operator=(const PendingSums&) = delete;
  template <class Real>
  void start(Real* data, std::size_t n);
  void wait();  // all started sums are complete afterwards

 private:
  std::vector<void*> requests_;  // MPI_Request handles (opaque here)
};

// Gathers every rank's rows of a [X, B, Y] tensor (local part [X, rows_of(B).count(), Y]) into
// rank 0's full tensor; other ranks' `full` is left empty. x_dim = X, y_dim = Y.
template <class Real>
void gather_rows(const std::vector<Real>& local, int x_dim, int B, int y_dim,
                 std::vector<Real>& full);

// This rank's rows of a full [X, B, Y] tensor.
template <class Real>
std::vector<Real> my_rows(const std::vector<Real>& full, int x_dim, int B, int y_dim);

// One hash per rank of the bytes of data (FNV-1a); returns the ranks whose hash differs from
// rank 0's (empty when all agree or there is one process).
std::vector<int> differing_replicas(const void* data, std::size_t bytes);

// Ends every process of the job with exit status `code` (MPI_Abort); plain exit without MPI.
[[noreturn]] void abort_all(int code);

}  // namespace bptt::dist
