// Data-parallel training under `mpirun -np 2` (issue 6), against one process:
//   - 20 steps give the same model (f64 within 1e-10, f32 within 1e-5, relative);
//   - a snapshot written by 2 processes resumes in 1 (and the run continues as one would);
//   - --check-replicas stops with an error naming the rank whose parameters drifted;
//   - killing one rank ends the whole job within seconds, naming the rank, and the snapshot on
//     disk resumes.
// Skipped, with a message, when bptt was built without MPI or mpirun is not installed. A sanitizer
// report on a job's stderr fails the test (the asan preset runs these too).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dist/dist.hpp"
#include "bptt/safetensors.hpp"
#include "cli/cli_util.hpp"
#include "support/compare.hpp"
#include "support/temp_dir.hpp"

extern char** environ;

namespace bptt {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string find_mpirun() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    const std::string p = std::string(dir) + "/mpirun";
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

struct Proc {
  pid_t pid = -1;
  std::string out, err;  // capture files
};

// Starts argv[0] with stdout/stderr into files; the environment is ours plus extra.
Proc start(const std::vector<std::string>& args, const std::string& dir,
           const std::vector<std::string>& extra_env = {}) {
  Proc p;
  p.out = dir + "/stdout";
  p.err = dir + "/stderr";
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  env.emplace_back("OPENBLAS_NUM_THREADS=1");
  // OpenMPI's leaks are not ours (the asan preset runs these tests too).
  env.emplace_back("ASAN_OPTIONS=detect_leaks=0");
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, p.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, p.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (posix_spawn(&p.pid, argv[0], &fa, nullptr, argv.data(), envp.data()) != 0) p.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return p;
}

// Waits up to `seconds`; returns the exit status (128 + signal when killed), or -1 on timeout
// (the process is then killed).
int wait_for(const Proc& p, double seconds) {
  const auto t0 = Clock::now();
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(p.pid, &status, WNOHANG);
    if (r == p.pid) break;
    if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// max |a − b| / max(1, |b|) over every tensor of two model files (+inf when a value is not
// finite, a tensor of b is missing from a or the sizes differ).
double model_difference(const std::string& a, const std::string& b) {
  const auto fa = safetensors::File::read(a), fb = safetensors::File::read(b);
  double d = 0;
  for (const std::string& name : fb.names()) {
    if (!fa.has(name)) return INFINITY;
    const double e = test::max_rel_error(fa.as_f64(name), fb.as_f64(name), 1);
    if (!(e <= d)) d = e;
  }
  return d;
}

class Mpi : public test::TempDirTest {
 protected:
  Mpi() : TempDirTest("bptt_mpi_") {}
  void SetUp() override {
    if (!dist::built_with_mpi()) GTEST_SKIP() << "bptt was built without MPI (BPTT_MPI)";
    mpirun_ = find_mpirun();
    if (mpirun_.empty()) GTEST_SKIP() << "mpirun not installed (Debian openmpi-bin)";
    TempDirTest::SetUp();
    const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat.\n", "dog ", "ran "};
    std::mt19937 rng(99);
    std::string s;
    while (s.size() < 20000) s += words[rng() % 8];
    std::ofstream(path("text.txt"), std::ios::binary) << s;
  }
  std::vector<std::string> train(const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {BPTT_CLI_PATH, "train", "--text", path("text.txt"),
                                  "--hidden", "12", "--layers", "2", "--seq-len", "10",
                                  "--batch", "6", "--seed", "3"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::vector<std::string> mpi(int n, const std::vector<std::string>& cmd) const {
    std::vector<std::string> a = {mpirun_, "--allow-run-as-root", "--oversubscribe", "-np",
                                  std::to_string(n)};
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
  }
  // Runs a command to completion in its own capture directory.
  int run(const std::vector<std::string>& args, const std::string& tag, std::string* err = nullptr,
          const std::vector<std::string>& env = {}) const {
    fs::create_directories(path(tag));
    const Proc p = start(args, path(tag), env);
    const int code = wait_for(p, 120);
    const std::string e = slurp(p.err);
    std::string command = tag + ":";
    for (const std::string& a : args) command += " " + a;
    cli_test::expect_no_sanitizer_report(e, command);
    if (err) *err = e;
    EXPECT_NE(code, -1) << tag << " timed out";
    return code;
  }
  std::string mpirun_;
};

TEST_F(Mpi, TwoProcessesTrainLikeOne) {
  for (const char* dtype : {"f64", "f32"}) {
    SCOPED_TRACE(dtype);
    const std::vector<std::string> o = {"--steps", "20", "--dtype", dtype, "--dropout", "0.2",
                                        "--clip-norm", "1"};
    std::string err;
    auto one = train(o), two = train(o);
    one.insert(one.end(), {"--out", path("one.safetensors")});
    two.insert(two.end(), {"--out", path("two.safetensors")});
    ASSERT_EQ(run(one, "one", &err), 0) << err;
    ASSERT_EQ(run(mpi(2, two), "two", &err), 0) << err;
    EXPECT_NE(err.find("distributed: 2 processes"), std::string::npos) << err;
    const double d = model_difference(path("two.safetensors"), path("one.safetensors"));
    EXPECT_LT(d, std::string(dtype) == "f64" ? 1e-10 : 1e-5);
    // ... and 20 steps are not 19: the comparison can see one step.
    auto fewer = train({"--steps", "19", "--dtype", dtype, "--dropout", "0.2", "--clip-norm", "1",
                        "--out", path("fewer.safetensors")});
    ASSERT_EQ(run(fewer, "fewer", &err), 0) << err;
    EXPECT_GT(model_difference(path("fewer.safetensors"), path("one.safetensors")), 1e-4);
  }
}

// Every torch.nn option at once (a bidirectional, projected, bias-free LSTM with a learned
// initial state and dropout, on the adding task): each layer's gradients, both directions, are
// summed as soon as they are final, the learned state's last; two processes train like one.
TEST_F(Mpi, TwoProcessesTrainLikeOneWithEveryModelOption) {
  for (const char* dtype : {"f64", "f32"}) {
    SCOPED_TRACE(dtype);
    const auto cmd = [&](const std::string& out) {
      return std::vector<std::string>{BPTT_CLI_PATH, "train", "--task", "adding", "--seq-len",
                                      "10", "--hidden", "8", "--layers", "2", "--batch", "6",
                                      "--seed", "3", "--steps", "15", "--dtype", dtype,
                                      "--bidirectional", "--proj-size", "4", "--no-bias",
                                      "--learn-initial-state", "--dropout", "0.2", "--out", out};
    };
    std::string err;
    ASSERT_EQ(run(cmd(path("one.safetensors")), "one", &err), 0) << err;
    ASSERT_EQ(run(mpi(2, cmd(path("two.safetensors"))), "two", &err), 0) << err;
    EXPECT_NE(err.find("distributed: 2 processes"), std::string::npos) << err;
    EXPECT_LT(model_difference(path("two.safetensors"), path("one.safetensors")),
              std::string(dtype) == "f64" ? 1e-10 : 1e-5);
  }
}

// Issue 18's options: layer norm, and masks and zoneout flags drawn per step, each process its
// rows of the whole batch's (weight drop: one mask for all).
TEST_F(Mpi, TwoProcessesTrainLikeOneWithLayerNormMasksAndZoneout) {
  for (const char* cell : {"lstm", "gru"}) {
    SCOPED_TRACE(cell);
    const auto cmd = [&](const std::string& out) {
      return std::vector<std::string>{
          BPTT_CLI_PATH, "train", "--task", "adding", "--seq-len", "10", "--hidden", "8",
          "--layers", "2", "--batch", "6", "--seed", "3", "--steps", "15", "--dtype", "f64",
          "--cell", cell, "--layer-norm", "--recurrent-dropout", "0.3", "--input-dropout", "0.2",
          "--output-dropout", "0.25", "--weight-drop", "0.4", "--zoneout-h", "0.15", "--out", out};
    };
    std::string err;
    ASSERT_EQ(run(cmd(path("one.safetensors")), "one", &err), 0) << err;
    ASSERT_EQ(run(mpi(2, cmd(path("two.safetensors"))), "two", &err), 0) << err;
    EXPECT_NE(err.find("distributed: 2 processes"), std::string::npos) << err;
    EXPECT_LT(model_difference(path("two.safetensors"), path("one.safetensors")), 1e-10);
  }
}

TEST_F(Mpi, SnapshotOfTwoProcessesResumesInOne) {
  std::string err;
  auto straight = train({"--steps", "16", "--dtype", "f64", "--out", path("straight.safetensors")});
  ASSERT_EQ(run(straight, "straight", &err), 0) << err;
  auto first = train({"--steps", "8", "--dtype", "f64", "--snapshot", path("s.safetensors")});
  ASSERT_EQ(run(mpi(2, first), "first", &err), 0) << err;
  auto second = train({"--steps", "16", "--dtype", "f64", "--resume", path("s.safetensors"),
                       "--out", path("resumed.safetensors")});
  ASSERT_EQ(run(second, "second", &err), 0) << err;
  EXPECT_LT(model_difference(path("resumed.safetensors"), path("straight.safetensors")), 1e-10);
}

TEST_F(Mpi, CheckReplicasNamesTheRankThatDrifted) {
  std::string err;
  auto cmd = train({"--steps", "6", "--check-replicas", "2", "--out", path("m.safetensors")});
  EXPECT_EQ(run(mpi(2, cmd), "ok", &err), 0) << err;
  const int code = run(mpi(2, cmd), "drift", &err, {"BPTT_FAULT_PERTURB_RANK=1"});
  EXPECT_EQ(code, 2) << err;
  EXPECT_NE(err.find("--check-replicas: after step 2 the parameters of rank 1 differ"),
            std::string::npos)
      << err;
}

// The pid of the process of rank `rank` whose command line mentions `marker`.
pid_t find_rank(int rank, const std::string& marker) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = slurp(e.path().string() + "/cmdline");
    if (cmdline.find(marker) == std::string::npos || cmdline.rfind("mpirun") == 0) continue;
    const std::string env = slurp(e.path().string() + "/environ");
    const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
    std::size_t at = 0;
    while ((at = env.find(want, at)) != std::string::npos) {
      const std::size_t end = at + want.size();
      if ((at == 0 || env[at - 1] == '\0') && (end == env.size() || env[end] == '\0'))
        return pid_t(std::stol(name));
      at = end;
    }
  }
  return -1;
}

TEST_F(Mpi, KillingOneRankEndsTheJobAndTheSnapshotResumes) {
  const std::string snap = path("kill.safetensors");
  auto cmd = train({"--steps", "1000000", "--snapshot", snap, "--snapshot-every", "1"});
  fs::create_directories(path("kill"));
  const Proc job = start(mpi(2, cmd), path("kill"));
  ASSERT_GT(job.pid, 0);
  const auto t0 = Clock::now();
  while (!fs::exists(snap) && std::chrono::duration<double>(Clock::now() - t0).count() < 60)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(snap)) << slurp(job.err);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // mid-run, snapshots being written
  const pid_t victim = find_rank(1, snap);
  ASSERT_GT(victim, 0) << "rank 1 not found";
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const auto killed = Clock::now();
  const int code = wait_for(job, 30);
  const double took = std::chrono::duration<double>(Clock::now() - killed).count();
  const std::string err = slurp(job.err);
  cli_test::expect_no_sanitizer_report(err, "the job of which rank 1 was killed");
  EXPECT_NE(code, -1) << "the job did not end after one rank was killed";
  EXPECT_NE(code, 0) << err;
  EXPECT_LT(took, 10.0) << err;
  EXPECT_NE(err.find("rank 1"), std::string::npos) << err;
  // The last snapshot is whole: a single process resumes from it and trains on.
  std::string rerr;
  const auto meta = safetensors::File::read(snap).metadata();
  const long step = std::stol(meta.at("step"));
  auto resume = train({"--steps", std::to_string(step + 3), "--snapshot", snap, "--snapshot-every",
                       "1", "--resume", snap, "--out", path("after.safetensors")});
  ASSERT_EQ(run(resume, "resume", &rerr), 0) << rerr;
  EXPECT_TRUE(fs::exists(path("after.safetensors")));
}

TEST_F(Mpi, TooFewSequencesForTheProcessesIsAUsageError) {
  std::string err;
  auto cmd = train({"--steps", "2", "--batch", "1"});
  EXPECT_EQ(run(mpi(2, cmd), "bad", &err), 2) << err;
  EXPECT_NE(err.find("--batch"), std::string::npos) << err;
}

}  // namespace
}  // namespace bptt
