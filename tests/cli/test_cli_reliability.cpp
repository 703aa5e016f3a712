// Issue 7, training side: what `bptt train` does when its numbers stop being finite, when it is
// stopped by SIGINT or SIGTERM, and when the options ask for more memory than there is.
//   CliNonFinite: a step whose update is not finite stops the run with exit 2 and an error naming
//                 the step, leaving an existing --out and --snapshot untouched; with
//                 --skip-nonfinite such updates are skipped, counted on stdout and in --metrics;
//   CliStop:      SIGTERM and SIGINT end the run after the current step with a snapshot that
//                 --resume continues from;
//   CliLimits:    absurd sizes are refused before anything is allocated, saying how much they
//                 need.
#include <signal.h>

#include <fmt/core.h>

#include <chrono>
#include <thread>

#include "cli/cli_util.hpp"
#include "cli/spawn_util.hpp"

namespace bptt::cli_test {
namespace {

std::string corpus() {
  static const char* const words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"};
  std::string s;
  std::uint32_t r = 7;
  while (s.size() < 3000) {
    r = r * 1664525u + 1013904223u;
    s += words[(r >> 8) % std::size(words)];
    s += (r >> 20) % 7 == 0 ? ".\n" : " ";
  }
  return s;
}

class CliReliability : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    text_ = path("text.txt");
    write_file(text_, corpus());
  }
  std::vector<std::string> train_args(const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {"train",     "--text",  text_, "--hidden", "8", "--layers",
                                  "1",         "--seq-len", "8", "--batch",  "4"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string text_;
};

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// SGD at lr 1e39 takes a float parameter past FLT_MAX at the first update.
const std::vector<std::string> kBlowUp = {"--optimizer", "sgd", "--lr", "1e39", "--clip-norm",
                                          "0"};

TEST_F(CliReliability, NonFiniteUpdateStopsNamingTheStepAndKeepsTheFiles) {
  const std::string out = path("model.safetensors"), snap = path("snap.safetensors");
  RunResult r = run(train_args({"--steps", "3", "--out", out, "--snapshot", snap}));
  ASSERT_EQ(r.code, 0) << r;
  const std::string model_before = read_bytes(out), snap_before = read_bytes(snap);
  std::vector<std::string> blow = {"--steps", "3", "--out", out, "--snapshot", snap,
                                   "--snapshot-every", "1"};
  blow.insert(blow.end(), kBlowUp.begin(), kBlowUp.end());
  r = run(train_args(blow));
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_FALSE(r.signaled);
  const std::string line = last_line(r.err);
  EXPECT_NE(line.find("bptt: error: training: the updated parameters became non-finite at step 1"),
            std::string::npos)
      << r;
  EXPECT_NE(line.find("--skip-nonfinite"), std::string::npos) << r;
  EXPECT_TRUE(r.out.empty()) << r;
  EXPECT_EQ(read_bytes(out), model_before);
  EXPECT_EQ(read_bytes(snap), snap_before);
  for (const std::string& f : work_files()) EXPECT_EQ(f.find(".tmp-"), std::string::npos) << f;
}

TEST_F(CliReliability, SkipNonfiniteSkipsCountsAndKeepsTheLastGoodParameters) {
  const std::string out = path("model.safetensors"), metrics = path("metrics.csv");
  std::vector<std::string> args = {"--steps", "4", "--log-every", "2", "--out", out,
                                   "--metrics", metrics, "--skip-nonfinite", "--seed", "3"};
  args.insert(args.end(), kBlowUp.begin(), kBlowUp.end());
  RunResult r = run(train_args(args));
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("trained 4 steps"), std::string::npos) << r;
  EXPECT_NE(r.out.find("; 4 non-finite updates skipped"), std::string::npos) << r;
  const std::string csv = read_bytes(metrics);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput,skipped_nonfinite");
  EXPECT_EQ(last_line(csv).substr(last_line(csv).rfind(',')), ",4") << csv;
  // Every update was skipped: the model is the initial one, the same as 0 steps would give.
  const std::string init = path("init.safetensors");
  r = run(train_args({"--steps", "1", "--out", init, "--seed", "3", "--optimizer", "sgd", "--lr",
                      "0", "--clip-norm", "0"}));  // SGD at lr 0 leaves the initial parameters
  ASSERT_EQ(r.code, 0) << r;
  const st::File a = st::File::read(out), b = st::File::read(init);
  for (const std::string& n : a.names()) EXPECT_EQ(a.as_f64(n), b.as_f64(n)) << n;
}

class CliStop : public CliReliability, public ::testing::WithParamInterface<int> {};

TEST_P(CliStop, SavesASnapshotAfterTheCurrentStepAndResumes) {
  const int sig = GetParam();
  const std::string snap = path("snap.safetensors"), out = path("model.safetensors");
  const pid_t pid = spawn_cli(train_args({"--steps", "100000000", "--snapshot", snap, "--out", out}),
                              root_ / "io");
  ASSERT_GT(pid, 0);
  // Wait until training runs (the progress line), then stop it.
  for (int i = 0; i < 400 && read_bytes(root_ / "io" / "stderr").find("model:") == std::string::npos;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(::kill(pid, sig), 0);
  EXPECT_EQ(wait_exit(pid), 0) << read_bytes(root_ / "io" / "stderr");
  const std::string err = read_bytes(root_ / "io" / "stderr");
  EXPECT_NE(err.find(sig == SIGTERM ? "terminated: saving the snapshot"
                                    : "interrupted: saving the snapshot"),
            std::string::npos)
      << err;
  const st::File s = st::File::read(snap);
  const std::int64_t step = std::stoll(s.metadata().at("step"));
  EXPECT_GT(step, 0);
  EXPECT_NO_THROW(st::File::read(out));
  const RunResult r = run(train_args({"--steps", std::to_string(step + 2), "--snapshot", snap,
                                      "--resume", snap, "--out", out}));
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find(fmt::format("trained {} steps (2 this run)", step + 2)), std::string::npos)
      << r;
}

INSTANTIATE_TEST_SUITE_P(Signals, CliStop, ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& p) { return p.param == SIGTERM ? "SIGTERM" : "SIGINT"; });

TEST_F(CliReliability, AnAbsurdModelIsRefusedBeforeAllocating) {
  EXPECT_TRUE(rejected({"train", "--text", text_, "--hidden", "2000000000", "--out",
                        path("m.safetensors")},
                       {"options", "parameters", "needs", "GB", "of memory are available"}));
}

TEST_F(CliReliability, AnAbsurdWorkspaceIsRefusedBeforeAllocating) {
  EXPECT_TRUE(rejected({"train", "--task", "adding", "--seq-len", "1000", "--batch",
                        "100000", "--hidden", "640", "--out", path("m.safetensors")},
                       {"workspace", "T = 1000, B = 100000", "needs", "GB"}));
}

}  // namespace
}  // namespace bptt::cli_test
