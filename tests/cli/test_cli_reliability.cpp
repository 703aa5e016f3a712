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
  EXPECT_EQ(wait_exit(pid, root_ / "io"), 0) << read_bytes(root_ / "io" / "stderr");
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

TEST_F(CliReliability, AnAbsurdBenchShapeIsRefusedBeforeAllocating) {
  EXPECT_TRUE(rejected({"bench", "lstm_l2_t100000_b100000_i65_h256_o65_xent"},
                       {"shape lstm_l2_t100000_b100000_i65_h256_o65_xent", "T = 100000, B = 100000",
                        "needs", "GB but only"}));
}

// Found by fuzz_cli (fuzz/regressions/cli/explain_h0_carriage_return): explain echoed an option's
// value with its control bytes into the error, so the message itself held a line break.
TEST_F(CliReliability, ExplainEscapesControlBytesOfABadValue) {
  const std::string value = "-0\xff\r,1";
  EXPECT_TRUE(rejected({"explain", "--h0", value}, {"--h0", "'-0\xff\\x0d,1' is not a number"}));
  EXPECT_TRUE(rejected({"explain", "--x", "1,\n2x"}, {"--x", "'1,\\x0a2x' is not a list"}));
  EXPECT_TRUE(rejected({"explain", "--phi", "re\x1blu"}, {"--phi", "'re\\x1blu'"}));
}

// Non-finite numbers in input files are refused at load time, naming the file, the tensor and
// the element.
TEST_F(CliReliability, NonFiniteDataIsRefusedWithItsPosition) {
  Sizes s;  // LSTM, I = 2, H = 3, O = 2, T = 3, B = 2
  const std::string mp = small_model(s).write(path("model.safetensors"));
  FileSpec d = small_data(s, "mse");
  std::vector<double> x = values(s.T * s.B * s.I, 50);
  x[(1 * s.B + 1) * s.I + 0] = std::nan("");  // t = 1, b = 1, i = 0
  d.set("x", tensor_f64({s.T, s.B, s.I}, x));
  const std::string dp = d.write(path("data.safetensors"));
  const std::vector<std::string> grad = {"grad", "--model", mp, "--data", dp, "--out",
                                         path("g.safetensors"), "--loss", "mse"};
  EXPECT_TRUE(rejected(grad, {"data.safetensors: x", "element [t=1, b=1, i=0] is nan"}));
  // 1e300 is finite in f64 but beyond float's range: refused when computing in f32.
  std::vector<double> y = values(s.T * s.B * s.O, 60);
  y[(1 * s.B + 0) * s.O + 1] = 1e300;  // t = 1, b = 0, o = 1
  d = small_data(s, "mse");
  d.set("y", tensor_f64({s.T, s.B, s.O}, y));
  d.write(path("data.safetensors"));
  std::vector<std::string> f32 = grad;
  f32.insert(f32.end(), {"--dtype", "f32"});
  EXPECT_TRUE(rejected(f32, {"data.safetensors: y", "element [t=1, b=0, o=1] is inf"}));
}

TEST_F(CliReliability, NonFiniteParametersAreRefusedWithTheirPosition) {
  Sizes s;
  FileSpec m = small_model(s);
  std::vector<double> w = values(4 * s.H * s.H, 3);
  w[s.H + 2] = -INFINITY;  // row 1, column 2
  m.set("rnn.weight_hh_l0", tensor_f64({4 * s.H, s.H}, w));
  const std::string mp = m.write(path("model.safetensors"));
  const std::string dp = small_data(s, "mse").write(path("data.safetensors"));
  EXPECT_TRUE(rejected({"predict", "--model", mp, "--data", dp, "--out", path("p.safetensors")},
                       {"model.safetensors: rnn.weight_hh_l0", "element [1, 2] is -inf"}));
}

TEST_F(CliReliability, ASnapshotWithNonFiniteNumbersIsRefused) {
  const std::string snap = path("snap.safetensors");
  ASSERT_EQ(run(train_args({"--steps", "2", "--snapshot", snap})).code, 0);
  FileSpec f = FileSpec::from(st::File::read(snap));
  st::Tensor& t = f.at("optimizer.exp_avg");
  ASSERT_EQ(t.dtype, st::ElemType::F32);
  const float nan = std::nanf("");
  std::memcpy(t.bytes.data() + 5 * sizeof(float), &nan, sizeof(float));
  f.write(snap);
  EXPECT_TRUE(rejected(train_args({"--steps", "4", "--snapshot", snap, "--resume", snap}),
                       {"snap.safetensors: optimizer.exp_avg", "element [5] is nan"}));
}

// A header length within the file but beyond the format's 100 MB limit (a sparse file: no disk
// space is used) is refused before the header is read.
TEST_F(CliReliability, AHugeHeaderIsRefusedBeforeReadingIt) {
  const std::string mp = path("model.safetensors");
  const std::uint64_t n = 150'000'000;
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[std::size_t(i)] = char((n >> (8 * i)) & 0xff);
  write_file(mp, len);
  fs::resize_file(mp, 8 + n + 16);
  Sizes s;
  const std::string dp = small_data(s, "mse").write(path("data.safetensors"));
  const RunResult r =
      run({"predict", "--model", mp, "--data", dp, "--out", path("p.safetensors")});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("model.safetensors: header: length 150000000 bytes exceeds the format's "
                       "limit of 100000000"),
            std::string::npos)
      << r;
}

// A file larger than the memory this process may use is refused before it is read, saying how
// much it needs (BPTT_MEMORY_LIMIT_MB lowers the limit, as on a small machine).
TEST_F(CliReliability, AFileLargerThanMemoryIsRefused) {
  Sizes s;
  const std::string mp = small_model(s).write(path("model.safetensors"));
  const std::string dp = small_data(s, "mse").write(path("data.safetensors"));
  ::setenv("BPTT_MEMORY_LIMIT_MB", "0.0005", 1);
  const bool ok = rejected({"predict", "--model", mp, "--data", dp, "--out", path("p.safetensors")},
                           {"model.safetensors", "needs", "but only 500 bytes of memory are available"});
  ::unsetenv("BPTT_MEMORY_LIMIT_MB");
  EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace bptt::cli_test
