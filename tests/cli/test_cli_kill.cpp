// Issue 7, crash safety: `bptt train --snapshot S --snapshot-every 1 --out M` killed with SIGKILL
// at random moments, over and over, each run resuming from the snapshot the previous one left.
// After every kill the files on disk must load (S as a snapshot that the next run's --resume
// accepts, M with load_model), the step count of S must never go back, and no partial file may
// stand under either name. Steps of this tiny model take microseconds, so a run spends its time
// starting, writing (and fsyncing) snapshots and writing the model: the kills land there.
// Runs reach their --steps (and write M) or are killed: at least BPTT_KILL_TEST_KILLS kills
// (default 100; docs/reliability.md records longer runs).
#include <chrono>
#include <random>
#include <thread>

#include "bptt/io.hpp"
#include "cli/cli_util.hpp"
#include "cli/spawn_util.hpp"

namespace bptt::cli_test {
namespace {

class CliKill : public CliTest {};

TEST_F(CliKill, RandomSigkillsLeaveLoadableFilesAndResumeContinues) {
  int kills_wanted = 100;
  if (const char* e = std::getenv("BPTT_KILL_TEST_KILLS")) kills_wanted = std::max(1, std::atoi(e));
  std::string text;
  for (int i = 0; i < 150; ++i) text += i % 3 ? "abc cab bca. " : "ab ba\n";
  const std::string data = path("text.txt"), snap = path("snap.safetensors"),
                    model = path("model.safetensors");
  write_file(data, text);
  std::mt19937 rng(20240607);
  int kills = 0, finished = 0, runs = 0, snapshot_checks = 0, model_checks = 0;
  std::int64_t last_step = 0;
  const auto started = std::chrono::steady_clock::now();
  // How long a run of 40 steps takes here (mostly startup): kills are spread over [0, that].
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run({"train", "--text", data, "--hidden", "4", "--layers", "1", "--seq-len", "8",
                 "--batch", "2", "--snapshot", snap, "--snapshot-every", "1", "--out", model,
                 "--steps", "40"}).code, 0);
  const int run_us = int(std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now() - t0).count());
  last_step = 40;
  while (kills < kills_wanted && runs < 20 * kills_wanted) {
    ++runs;
    std::vector<std::string> args = {"train", "--text", data, "--hidden", "4", "--layers", "1",
                                     "--seq-len", "8", "--batch", "2", "--snapshot", snap,
                                     "--snapshot-every", "1", "--out", model, "--steps",
                                     std::to_string(last_step + 40)};
    if (fs::exists(snap)) {
      args.push_back("--resume");
      args.push_back(snap);
    }
    const pid_t pid = spawn_cli(args, root_ / "io");
    ASSERT_GT(pid, 0);
        std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, run_us)(rng)));
    ::kill(pid, SIGKILL);
    const int code = wait_exit(pid, root_ / "io");
    if (code == 128 + SIGKILL) {
      ++kills;
    } else {
      ASSERT_EQ(code, 0) << "run " << runs << ": " << read_bytes(root_ / "io" / "stderr");
      ++finished;
    }
    if (fs::exists(snap)) {
      st::File f = st::File::read(snap);  // throws (and fails the test) if damaged
      const std::int64_t step = std::stoll(f.metadata().at("step"));
      ASSERT_GE(step, last_step) << "run " << runs << ": the snapshot went back";
      last_step = step;
      ++snapshot_checks;
    }
    if (fs::exists(model)) {
      ASSERT_NO_THROW(load_model<float>(model)) << "run " << runs;
      ++model_checks;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GE(kills, kills_wanted);
  EXPECT_GT(last_step, 0);
  // The last snapshot resumes: two more steps from where the kills left it.
  const RunResult r = run({"train", "--text", data, "--hidden", "4", "--layers", "1", "--seq-len",
                           "8", "--batch", "2", "--snapshot", snap, "--out", model, "--resume",
                           snap, "--steps", std::to_string(last_step + 2)});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("trained " + std::to_string(last_step + 2) + " steps (2 this run)"),
            std::string::npos)
      << r;
  const RunResult e = run({"eval", "--model", model, "--text", data, "--seq-len", "8", "--batch", "2"});
  EXPECT_EQ(e.code, 0) << e;
  // A kill during a write leaves its "<name>.tmp-<pid>" behind (never under the final name).
  int temporaries = 0;
  for (const std::string& f : work_files()) temporaries += f.find(".tmp-") != std::string::npos;
  std::printf("[ kill test ] %d temporary files left by kills mid-write\n", temporaries);
  std::printf("[ kill test ] a run of 40 steps takes %.1f ms; %d runs: %d killed, %d finished; %d snapshot and %d model checks; "
              "reached step %lld; %.1f s\n",
              run_us / 1e3, runs, kills, finished, snapshot_checks, model_checks,
              static_cast<long long>(last_step), seconds);
}

}  // namespace
}  // namespace bptt::cli_test
