// Command-line mistakes and output paths: unknown verbs and options, missing or invalid option
// values, input paths that do not exist, an --out that cannot be written, and that a failing
// command leaves an existing --out file exactly as it was. Each is refused with exit status 2
// and one line on stderr naming what is wrong, and leaves no file behind (CliTest::rejected).
// And CliSanitizer: a sanitizer report on a command's stderr fails the test (cli_util.hpp).
#include <gtest/gtest-spi.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "bptt/cpu.hpp"
#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

class CliUsage : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    Sizes s;
    s.cell = "gru";
    model_ = small_model(s).write(path("model.safetensors"));
    data_ = small_data(s, "mse").write(path("data.safetensors"));
    out_ = path("out.safetensors");
  }
  std::vector<std::string> grad_args() const {
    return {"grad", "--model", model_, "--data", data_, "--out", out_, "--loss", "mse"};
  }
  std::string model_, data_, out_;
};

TEST_F(CliUsage, TheValidCommandWorks) {
  const RunResult r = run(grad_args());
  ASSERT_EQ(r.code, 0) << r;
  std::filesystem::remove(out_);
}

// An environment variable as this process found it (a cpu_level_* run sets BPTT_CPU_LEVEL, the
// bf16_without_amx run BPTT_AMX), set for a child run and put back after each use.
class EnvVar {
 public:
  explicit EnvVar(std::string name) : name_(std::move(name)) {
    const char* found = std::getenv(name_.c_str());
    had_ = found != nullptr;
    before_ = had_ ? found : "";
  }
  ~EnvVar() { restore(); }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;
  void set(const std::string& value) const { ::setenv(name_.c_str(), value.c_str(), 1); }
  void restore() const {
    if (had_)
      ::setenv(name_.c_str(), before_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, before_;
  bool had_ = false;
};

// BPTT_CPU_LEVEL (bptt/cpu.hpp): a name bptt does not know, or a level this CPU cannot run, is
// refused before any work, naming the variable; a level the CPU has gives the same gradient
// file as the default (to float64's rounding: the float64 path has no per-level code but the
// packed step product, whose levels differ at most in FMA contraction).
TEST_F(CliUsage, CpuLevelFromTheEnvironment) {
  const EnvVar level("BPTT_CPU_LEVEL");
  level.set("avx9000");
  const bool refused = rejected(grad_args(), {"BPTT_CPU_LEVEL", "avx9000", "x86-64-v3"});
  level.restore();
  EXPECT_TRUE(refused);
  for (bptt::CpuLevel l : {bptt::CpuLevel::x86_64_v3, bptt::CpuLevel::x86_64_v4}) {
    if (bptt::cpu_supports(l)) continue;
    level.set(std::string(bptt::to_string(l)));
    const bool lacking = rejected(grad_args(), {"BPTT_CPU_LEVEL", "cannot run"});
    level.restore();
    EXPECT_TRUE(lacking) << bptt::to_string(l);
  }
  level.set("baseline");
  const RunResult r = run(grad_args());
  level.restore();
  ASSERT_EQ(r.code, 0) << r;
  std::filesystem::remove(out_);
}

// BPTT_AMX (bptt/precision.hpp): a value bptt does not know is refused before any work, naming
// the variable; 0 keeps bf16 products off the AMX tiles and the run goes on.
TEST_F(CliUsage, AmxFromTheEnvironment) {
  const EnvVar amx("BPTT_AMX");
  amx.set("maybe");
  const bool refused = rejected(grad_args(), {"BPTT_AMX", "maybe", "off"});
  amx.restore();
  EXPECT_TRUE(refused);
  amx.set("0");
  std::vector<std::string> args = grad_args();
  args.insert(args.end(), {"--dtype", "bf16"});
  const RunResult r = run(args);
  amx.restore();
  ASSERT_EQ(r.code, 0) << r;
  std::filesystem::remove(out_);
}

TEST_F(CliUsage, NoVerb) { EXPECT_TRUE(rejected({}, {"no verb given", "grad", "train"})); }

TEST_F(CliUsage, OnlyAnOptionNoVerb) {
  EXPECT_TRUE(rejected({"--model", model_}, {"--model"}));
}

TEST_F(CliUsage, UnknownVerb) { EXPECT_TRUE(rejected({"frobnicate"}, {"frobnicate"})); }

TEST_F(CliUsage, UnknownVerbWithOptions) {
  EXPECT_TRUE(rejected({"fit", "--model", model_, "--data", data_, "--out", out_}, {"fit"}));
}

TEST_F(CliUsage, UnknownOption) {
  std::vector<std::string> args = grad_args();
  args.push_back("--bogus");
  EXPECT_TRUE(rejected(args, {"--bogus"}));
}

TEST_F(CliUsage, OptionOfAnotherVerb) {
  EXPECT_TRUE(rejected({"predict", "--model", model_, "--data", data_, "--out", out_, "--loss",
                        "mse"},
                       {"--loss"}));
}

TEST_F(CliUsage, StrayPositionalArgument) {
  std::vector<std::string> args = grad_args();
  args.push_back("extra.safetensors");
  EXPECT_TRUE(rejected(args, {"extra.safetensors"}));
}

TEST_F(CliUsage, MissingRequiredOptions) {
  EXPECT_TRUE(rejected({"grad"}, {"--model|--data|--out|--loss"}));
  EXPECT_TRUE(rejected({"grad", "--data", data_, "--out", out_, "--loss", "mse"}, {"--model"}));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--out", out_, "--loss", "mse"}, {"--data"}));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", data_, "--loss", "mse"}, {"--out"}));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", data_, "--out", out_}, {"--loss"}));
  EXPECT_TRUE(rejected({"predict", "--model", model_, "--out", out_}, {"--data"}));
  EXPECT_TRUE(rejected({"predict", "--data", data_, "--out", out_}, {"--model"}));
}

TEST_F(CliUsage, OptionWithoutValue) {
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", data_, "--loss", "mse", "--out"},
                       {"--out"}));
}

TEST_F(CliUsage, DuplicateOption) {
  std::vector<std::string> args = grad_args();
  args.insert(args.end(), {"--model", data_});
  EXPECT_TRUE(rejected(args, {"--model"}));
}

// An empty value after '=' is a mistake in that option, whatever CLI11 makes of the rest.
TEST_F(CliUsage, EmptyOptionValue) {
  EXPECT_TRUE(rejected({"grad", "--model=", "--data", data_, "--out", out_, "--loss", "mse"},
                       {"--model"}));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", data_, "--out=", "--loss", "mse"},
                       {"--out"}));
  EXPECT_TRUE(rejected({"predict", "--model", model_, "--data", data_, "--out", out_, "--dtype="},
                       {"--dtype"}));
}

TEST_F(CliUsage, UnknownLoss) {
  std::vector<std::string> args = grad_args();
  args.back() = "foo";
  EXPECT_TRUE(rejected(args, {"--loss", "foo"}));
}

TEST_F(CliUsage, UnknownDtype) {
  std::vector<std::string> args = grad_args();
  args.insert(args.end(), {"--dtype", "f16"});
  EXPECT_TRUE(rejected(args, {"--dtype", "f16"}));
  EXPECT_TRUE(rejected({"predict", "--model", model_, "--data", data_, "--out", out_, "--dtype",
                        "float64"},
                       {"--dtype", "float64"}));
}

TEST_F(CliUsage, NonexistentModelPath) {
  const std::string missing = path("no_such_model.safetensors");
  EXPECT_TRUE(rejected({"grad", "--model", missing, "--data", data_, "--out", out_, "--loss",
                        "mse"},
                       {missing}));
  EXPECT_TRUE(rejected({"predict", "--model", missing, "--data", data_, "--out", out_}, {missing}));
}

TEST_F(CliUsage, NonexistentDataPath) {
  const std::string missing = path("no_such_data.safetensors");
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", missing, "--out", out_, "--loss",
                        "mse"},
                       {missing}));
  EXPECT_TRUE(rejected({"predict", "--model", model_, "--data", missing, "--out", out_},
                       {missing}));
}

TEST_F(CliUsage, ModelPathIsADirectory) {
  std::filesystem::create_directory(path("dir"));
  EXPECT_TRUE(rejected({"grad", "--model", path("dir"), "--data", data_, "--out", out_, "--loss",
                        "mse"},
                       {path("dir")}));
}

TEST_F(CliUsage, OutInANonexistentDirectory) {
  const std::string out = path("no_such_dir/out.safetensors");
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", data_, "--out", out, "--loss", "mse"},
                       {out}));
  EXPECT_TRUE(rejected({"predict", "--model", model_, "--data", data_, "--out", out}, {out}));
  EXPECT_FALSE(std::filesystem::exists(path("no_such_dir")));
}

TEST_F(CliUsage, OutIsADirectory) {
  std::filesystem::create_directory(path("outdir"));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", data_, "--out", path("outdir"),
                        "--loss", "mse"},
                       {path("outdir")}));
  EXPECT_TRUE(std::filesystem::is_empty(path("outdir")));
}

TEST_F(CliUsage, ExplainBadOptions) {
  EXPECT_TRUE(rejected({"explain", "--x", "1,abc"}, {"--x"}));
  EXPECT_TRUE(rejected({"explain", "--w", "fast"}, {"--w"}));
  EXPECT_TRUE(rejected({"explain", "--phi", "softmax"}, {"--phi"}));
  EXPECT_TRUE(rejected({"explain", "--theta", "gelu"}, {"--theta"}));
  EXPECT_TRUE(rejected({"explain", "--x", "1,2", "--y", "1"}, {"--y|--x"}));
  EXPECT_TRUE(rejected({"explain", "--bogus"}, {"--bogus"}));
}

// ---------------------------------------------------------------------------------------------
// An existing --out file survives a failing command byte for byte.

class CliKeepsOut : public CliUsage {
 protected:
  void SetUp() override {
    CliUsage::SetUp();
    write_file(out_, kSentinel);
  }
  void TearDown() override {
    EXPECT_EQ(read_bytes(out_), kSentinel);
    CliUsage::TearDown();
  }
  const std::string kSentinel = "sentinel: must survive a failed command\n";
};

TEST_F(CliKeepsOut, WhenTheDataLacksY) {
  FileSpec d = FileSpec::from(st::File::read(data_));
  d.erase("y");
  const std::string dp = d.write(path("data_no_y.safetensors"));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", dp, "--out", out_, "--loss", "mse"},
                       {dp, "y"}));
}

TEST_F(CliKeepsOut, WhenTheModelIsMalformed) {
  write_file(path("bad.safetensors"), raw_file("[1]"));
  EXPECT_TRUE(rejected({"predict", "--model", path("bad.safetensors"), "--data", data_, "--out",
                        out_},
                       {path("bad.safetensors")}));
}

TEST_F(CliKeepsOut, WhenAValueIsInconsistent) {
  FileSpec d = FileSpec::from(st::File::read(data_));
  d.set("lengths", tensor_i64({2}, {1, 99}));
  const std::string dp = d.write(path("data_len.safetensors"));
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", dp, "--out", out_, "--loss", "mse",
                        "--dtype", "f32"},
                       {dp, "lengths"}));
}

TEST_F(CliKeepsOut, WhenTheOptionsAreWrong) {
  std::vector<std::string> args = grad_args();
  args.back() = "foo";
  EXPECT_TRUE(rejected(args, {"--loss"}));
}

TEST_F(CliKeepsOut, WhenTheOutputIsAlsoTheModel) {
  // --out names the model file itself, and the data is bad: the model must survive.
  FileSpec d = FileSpec::from(st::File::read(data_));
  d.erase("x");
  const std::string dp = d.write(path("data_no_x.safetensors"));
  const std::string before = read_bytes(model_);
  EXPECT_TRUE(rejected({"grad", "--model", model_, "--data", dp, "--out", model_, "--loss", "mse"},
                       {dp, "x"}));
  EXPECT_EQ(read_bytes(model_), before);
}

// Every verb that runs the network takes --threads (default 1, as train and bench do); the
// gradients do not depend on it beyond rounding, and 0 threads is a usage error.
TEST_F(CliUsage, ThreadsOption) {
  const RunResult one = run(grad_args());
  ASSERT_EQ(one.code, 0) << one;
  const st::File a = st::File::read(out_);
  std::filesystem::remove(out_);
  std::vector<std::string> args = grad_args();
  args.insert(args.end(), {"--threads", "2"});
  const RunResult two = run(args);
  ASSERT_EQ(two.code, 0) << two;
  const st::File b = st::File::read(out_);
  for (const std::string& n : a.names())
    test::expect_close("--threads 2 vs 1: " + n, b.as_f64(n), a.as_f64(n), test::Tol{1e-5, 1});
  std::filesystem::remove(out_);
  args.back() = "0";
  EXPECT_TRUE(rejected(args, {"--threads"}));
  for (const char* verb : {"eval", "sample", "predict", "diagnose"}) {
    const RunResult help = run({verb, "--help"});
    EXPECT_NE(help.out.find("--threads"), std::string::npos) << verb << ": " << help;
  }
}

// A sanitizer report on a command's stderr fails the test whatever the exit status (the asan
// preset; cli_util.hpp): the patterns, and run_cli applying them to a command that exits 2 as
// expected but whose one line, naming a file called "runtime error: x.txt", looks like UBSan's.
TEST(CliSanitizer, ReportsAreRecognized) {
  EXPECT_EQ(sanitizer_report("a.cpp:3:5: runtime error: signed integer overflow\n"),
            "a.cpp:3:5: runtime error: signed integer overflow");
  EXPECT_NE(sanitizer_report("x\n==7==ERROR: AddressSanitizer: heap-use-after-free\n"), "");
  EXPECT_NE(sanitizer_report("==7==ERROR: LeakSanitizer: detected memory leaks\n"), "");
  EXPECT_NE(sanitizer_report("==7==ERROR: ThreadSanitizer: data race\n"), "");
  EXPECT_NE(sanitizer_report("==7==WARNING: MemorySanitizer: use-of-uninitialized-value\n"
                             "==7==ERROR: MemorySanitizer: ...\n"),
            "");
  EXPECT_EQ(sanitizer_report("bptt: error: x.txt: no such file\n"), "");
  EXPECT_EQ(sanitizer_report("ERROR: one line\nSanitizer on another\n"), "");
  EXPECT_NONFATAL_FAILURE(expect_no_sanitizer_report("runtime error: x\n", "cmd"),
                          "sanitizer report in the stderr of cmd");
}

TEST_F(CliUsage, ASanitizerReportOnStderrFailsTheTest) {
  const std::string missing = path("runtime error: x.txt");
  RunResult r;
  EXPECT_NONFATAL_FAILURE(r = run({"train", "--text", missing}), "sanitizer report");
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find(missing), std::string::npos) << r;
}

}  // namespace
}  // namespace bptt::cli_test
