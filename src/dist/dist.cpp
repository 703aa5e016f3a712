// The MPI side of data-parallel training (include/bptt/dist.hpp). Compiled with MPI when the
// build found it (BPTT_WITH_MPI); otherwise a world of one process.
#include "dist/dist.hpp"

#include <cstdlib>
#include <cstring>

#include "bptt/error.hpp"

#ifdef BPTT_WITH_MPI
#include <mpi.h>
#endif

namespace bptt::dist {

namespace {
int g_rank = 0, g_size = 1;
[[maybe_unused]] bool g_mpi = false;  // MPI_Init was called

#ifdef BPTT_WITH_MPI
// Started by mpirun (OpenMPI) or another PMI launcher: only then is MPI initialized, so a plain
// `bptt` run never pays for it or depends on the MPI runtime being usable.
bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

template <class Real>
MPI_Datatype mpi_type() {
  return sizeof(Real) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE;
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS)
    throw Error(ErrorKind::io, "MPI", std::string(what) + " failed", "see mpirun's messages");
}
#endif
}  // namespace

Session::Session(int& argc, char**& argv) {
#ifdef BPTT_WITH_MPI
  if (!launched_by_mpirun()) return;
  MPI_Init(&argc, &argv);
  g_mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  // Errors come back as return codes (checked), not as an abort inside the library.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
#else
  (void)argc;
  (void)argv;
#endif
}

Session::~Session() {
#ifdef BPTT_WITH_MPI
  if (g_mpi) MPI_Finalize();
#endif
}

bool built_with_mpi() {
#ifdef BPTT_WITH_MPI
  return true;
#else
  return false;
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }

Rows rows_of(int B, int r) {
  const long long n = g_size;
  return Rows{int(B * (long long)r / n), int(B * (long long)(r + 1) / n)};
}

void sum(float* data, std::size_t n) {
#ifdef BPTT_WITH_MPI
  if (g_size > 1)
    check(MPI_Allreduce(MPI_IN_PLACE, data, int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
#else
  (void)data, (void)n;
#endif
}

void sum(double* data, std::size_t n) {
#ifdef BPTT_WITH_MPI
  if (g_size > 1)
    check(MPI_Allreduce(MPI_IN_PLACE, data, int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
#else
  (void)data, (void)n;
#endif
}

double sum(double v) {
  sum(&v, 1);
  return v;
}

double max(double v) {
#ifdef BPTT_WITH_MPI
  if (g_size > 1)
    check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
          "MPI_Allreduce");
#endif
  return v;
}

PendingSums::~PendingSums() {
  try {
    wait();
  } catch (...) {
  }
}

template <class Real>
void PendingSums::start(Real* data, std::size_t n) {
#ifdef BPTT_WITH_MPI
  if (g_size < 2 || n == 0) return;
  auto* req = new MPI_Request;
  check(MPI_Iallreduce(MPI_IN_PLACE, data, int(n), mpi_type<Real>(), MPI_SUM, MPI_COMM_WORLD, req),
        "MPI_Iallreduce");
  requests_.push_back(req);
#else
  (void)data, (void)n;
#endif
}

void PendingSums::wait() {
#ifdef BPTT_WITH_MPI
  for (void* p : requests_) {
    auto* req = static_cast<MPI_Request*>(p);
    const int rc = MPI_Wait(req, MPI_STATUS_IGNORE);
    delete req;
    if (rc != MPI_SUCCESS) {
      requests_.clear();
      check(rc, "MPI_Wait");
    }
  }
#endif
  requests_.clear();
}

template <class Real>
void gather_rows(const std::vector<Real>& local, int x_dim, int B, int y_dim,
                 std::vector<Real>& full) {
  if (g_size == 1) {
    full = local;
    return;
  }
#ifndef BPTT_WITH_MPI
  (void)x_dim, (void)B, (void)y_dim;
#else
  // Gather each rank's [X, b_r, Y] block whole, then interleave into [X, B, Y] on rank 0.
  std::vector<int> counts(static_cast<std::size_t>(g_size)), displs(static_cast<std::size_t>(g_size));
  for (int r = 0; r < g_size; ++r) {
    counts[std::size_t(r)] = x_dim * rows_of(B, r).count() * y_dim;
    displs[std::size_t(r)] = x_dim * rows_of(B, r).begin * y_dim;
  }
  std::vector<Real> blocks(g_rank == 0 ? std::size_t(x_dim) * B * y_dim : 0);
  check(MPI_Gatherv(local.data(), int(local.size()), mpi_type<Real>(), blocks.data(),
                    counts.data(), displs.data(), mpi_type<Real>(), 0, MPI_COMM_WORLD),
        "MPI_Gatherv");
  full.clear();
  if (g_rank != 0) return;
  full.resize(blocks.size());
  for (int r = 0; r < g_size; ++r) {
    const Rows rows = rows_of(B, r);
    const Real* block = blocks.data() + displs[std::size_t(r)];
    for (int x = 0; x < x_dim; ++x)
      std::memcpy(full.data() + (std::size_t(x) * B + rows.begin) * y_dim,
                  block + std::size_t(x) * rows.count() * y_dim,
                  sizeof(Real) * std::size_t(rows.count()) * y_dim);
  }
#endif
}

template <class Real>
std::vector<Real> my_rows(const std::vector<Real>& full, int x_dim, int B, int y_dim) {
  const Rows rows = rows_of(B);
  std::vector<Real> out(std::size_t(x_dim) * rows.count() * y_dim);
  for (int x = 0; x < x_dim; ++x)
    std::memcpy(out.data() + std::size_t(x) * rows.count() * y_dim,
                full.data() + (std::size_t(x) * B + rows.begin) * y_dim,
                sizeof(Real) * std::size_t(rows.count()) * y_dim);
  return out;
}

std::vector<int> differing_replicas(const void* data, std::size_t bytes) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  std::vector<int> out;
#ifdef BPTT_WITH_MPI
  if (g_size < 2) return out;
  std::vector<unsigned long long> all(static_cast<std::size_t>(g_size));
  unsigned long long mine = h;
  check(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all.data(), 1, MPI_UNSIGNED_LONG_LONG,
                      MPI_COMM_WORLD),
        "MPI_Allgather");
  for (int r = 1; r < g_size; ++r)
    if (all[std::size_t(r)] != all[0]) out.push_back(r);
#endif
  return out;
}

void abort_all(int code) {
#ifdef BPTT_WITH_MPI
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

template void PendingSums::start<float>(float*, std::size_t);
template void PendingSums::start<double>(double*, std::size_t);
template void gather_rows<float>(const std::vector<float>&, int, int, int, std::vector<float>&);
template void gather_rows<double>(const std::vector<double>&, int, int, int, std::vector<double>&);
template std::vector<float> my_rows<float>(const std::vector<float>&, int, int, int);
template std::vector<double> my_rows<double>(const std::vector<double>&, int, int, int);

}  // namespace bptt::dist
