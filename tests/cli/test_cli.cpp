// End-to-end tests of the `bptt` command on the PyTorch fixtures (tests/fixtures/torch, see
// tools/fixtures/make_fixtures.py): `bptt grad` and `bptt predict` run as a user runs them, and
// their output files are compared with what torch computed, in float64 (≤ 1e-9) and float32
// (≤ 2e-4), as max|ours − torch| / max(1, max|torch|) per tensor. Also: the default dtype, a
// model stored as F32, and that `explain` and every --help exit 0 with usage text.
// The error paths are in test_cli_errors.cpp and test_cli_usage.cpp.
#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

struct Fixture {
  std::string name, loss, cell;
  bool h0 = false;
  // The torch.nn options (absent from the manifest's entries of the plain fixtures).
  bool bidirectional = false, projection = false, no_bias = false, learned = false;
  bool final_readout = false;
  bool options() const { return bidirectional || projection || no_bias || learned || final_readout; }
};

std::vector<Fixture> fixtures() {
  std::ifstream in(kTorchDir + "manifest.json");
  std::vector<Fixture> out;
  if (!in) return out;
  const auto j = nlohmann::json::parse(in);
  for (const auto& f : j.at("fixtures"))
    // The small fixtures only: the command's plumbing is the same at every size, and the large
    // ones (H >= 16) would take minutes under --method numeric and rtrl. The library's tests
    // check them all (tests/torch/test_torch_fixtures.cpp).
    if (f.at("H").get<int>() < 16)
      out.push_back({f.at("name").get<std::string>(), f.at("loss").get<std::string>(),
                     f.at("cell").get<std::string>(), f.at("h0").get<bool>(),
                     f.value("bidirectional", false), f.value("proj_size", 0) > 0,
                     !f.value("bias", true), f.value("initial_state", "zero") == "learned",
                     f.value("readout", "steps") == "final"});
  return out;
}

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.name; }

std::string fixture_name(const ::testing::TestParamInfo<Fixture>& p) { return p.param.name; }

std::string model_of(const Fixture& f) { return kTorchDir + f.name + ".model.safetensors"; }
std::string data_of(const Fixture& f) { return kTorchDir + f.name + ".data.safetensors"; }
std::string ref_of(const Fixture& f, const std::string& dtype) {
  return kTorchDir + f.name + "." + dtype + ".safetensors";
}

// The names `bptt grad` writes: every parameter, x, h0, c0 (LSTM), loss.
std::set<std::string> grad_names(const st::File& model, const std::string& cell) {
  std::set<std::string> s = names_of(model);
  s.insert({"x", "h0", "loss"});
  if (cell == "lstm") s.insert("c0");
  return s;
}

// With --states also every step's h (and c).
std::set<std::string> predict_names(const std::string& cell, bool states = false) {
  std::set<std::string> s = {"y_hat", "h_n"};
  if (cell == "lstm") s.insert("c_n");
  if (states) s.insert("h");
  if (states && cell == "lstm") s.insert("c");
  return s;
}

// What `bptt grad --method M` says when it refuses a fixture's model ("" when it takes it):
// truncation and RTRL run left to right only, so a bidirectional model is refused for good
// (methods.hpp, require_options).
std::string refusal(const Fixture& f, const std::string& method) {
  const bool causal = method.rfind("truncated", 0) == 0 || method == "rtrl";
  if (causal && f.bidirectional) return "a bidirectional model cannot use";
  if (causal && f.final_readout) return "reads the final state";
  return "";
}

class CliFixture : public CliTest, public ::testing::WithParamInterface<Fixture> {
 protected:
  bool no_temporary_files() const {
    for (const std::string& f : work_files())
      if (f.find(".tmp-") != std::string::npos) return false;
    return true;
  }

  // Runs `bptt grad` with `dtype` ("" = default) and checks names, dtype and values against
  // torch's `ref_dtype` file.
  void check_grad(const std::string& model, const std::string& dtype, st::ElemType want,
                  const std::string& ref_dtype, double tol, const std::string& method = "") {
    const Fixture& fx = GetParam();
    const std::string out = path("grad.safetensors");
    std::vector<std::string> args = {"grad", "--model", model, "--data", data_of(fx), "--out", out,
                                     "--loss", fx.loss};
    if (!dtype.empty()) args.insert(args.end(), {"--dtype", dtype});
    if (!method.empty()) args.insert(args.end(), {"--method", method});
    const RunResult r = run(args);
    if (const std::string why = refusal(fx, method); !method.empty() && !why.empty()) {
      EXPECT_EQ(r.code, 2) << r;  // one line naming the method, and no file
      EXPECT_NE(r.err.find(why), std::string::npos) << r;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r;
      EXPECT_FALSE(std::filesystem::exists(out));
      return;
    }
    ASSERT_EQ(r.code, 0) << r;
    EXPECT_TRUE(r.err.empty()) << r;
    EXPECT_TRUE(no_temporary_files()) << "temporary file left";

    const st::File got = st::File::read(out);
    const st::File ref = st::File::read(ref_of(fx, ref_dtype));
    const st::File m = st::File::read(model_of(fx));
    EXPECT_EQ(names_of(got), grad_names(m, fx.cell));
    EXPECT_EQ(got.metadata().count("format") ? got.metadata().at("format") : "", "bptt-grad");
    EXPECT_EQ(got.metadata().count("loss") ? got.metadata().at("loss") : "", fx.loss);
    for (const std::string& name : grad_names(m, fx.cell))
      EXPECT_TRUE(matches(got, ref, name, want, tol)) << fx.name;
  }

  void check_predict(const std::string& dtype, st::ElemType want, double tol) {
    const Fixture& fx = GetParam();
    const std::string out = path("pred.safetensors");
    // The option fixtures hold every step's states too: ask for them.
    std::vector<std::string> args = {"predict", "--model", model_of(fx), "--data", data_of(fx),
                                     "--out", out, "--dtype", dtype};
    if (fx.options()) args.push_back("--states");
    const RunResult r = run(args);
    ASSERT_EQ(r.code, 0) << r;
    EXPECT_TRUE(r.err.empty()) << r;
    EXPECT_TRUE(no_temporary_files()) << "temporary file left";
    const st::File got = st::File::read(out);
    const st::File ref = st::File::read(ref_of(fx, dtype));
    EXPECT_EQ(names_of(got), predict_names(fx.cell, fx.options()));
    EXPECT_EQ(got.metadata().count("format") ? got.metadata().at("format") : "", "bptt-predict");
    for (const std::string& name : predict_names(fx.cell, fx.options()))
      EXPECT_TRUE(matches(got, ref, name, want, tol)) << fx.name;
  }
};

TEST_P(CliFixture, GradFloat64) { check_grad(model_of(GetParam()), "f64", st::ElemType::F64, "f64", 1e-9); }
TEST_P(CliFixture, GradFloat32) { check_grad(model_of(GetParam()), "f32", st::ElemType::F32, "f32", 2e-4); }
// The fixtures' models are stored as F64, so the default is float64.
TEST_P(CliFixture, GradDefaultDtypeIsTheModels) {
  ASSERT_EQ(st::File::read(model_of(GetParam())).at("rnn.weight_ih_l0").dtype, st::ElemType::F64);
  check_grad(model_of(GetParam()), "", st::ElemType::F64, "f64", 1e-9);
}
// Central differences (every parameter, x, h0, c0) against PyTorch's autograd: the check of
// the check.
TEST_P(CliFixture, GradNumericMatchesTorch) {
  check_grad(model_of(GetParam()), "", st::ElemType::F64, "f64", 1e-6, "numeric");
}
// The other methods against PyTorch's autograd: recompute and rtrl are exact, and truncation
// with a window longer than any fixture's T is full BPTT.
TEST_P(CliFixture, GradRecomputeMatchesTorch) {
  check_grad(model_of(GetParam()), "f64", st::ElemType::F64, "f64", 1e-9, "recompute:2");
  check_grad(model_of(GetParam()), "f64", st::ElemType::F64, "f64", 1e-9, "recompute");
}
TEST_P(CliFixture, GradRtrlMatchesTorch) {
  check_grad(model_of(GetParam()), "f64", st::ElemType::F64, "f64", 1e-9, "rtrl");
}
TEST_P(CliFixture, GradTruncatedBeyondTMatchesTorch) {
  check_grad(model_of(GetParam()), "f64", st::ElemType::F64, "f64", 1e-9, "truncated:100000");
}
TEST_P(CliFixture, PredictFloat64) { check_predict("f64", st::ElemType::F64, 1e-9); }
TEST_P(CliFixture, PredictFloat32) { check_predict("f32", st::ElemType::F32, 2e-4); }

INSTANTIATE_TEST_SUITE_P(Cli, CliFixture, ::testing::ValuesIn(fixtures()), fixture_name);

TEST(CliFixtures, ManifestCoversEveryCellLossAndOption) {
  const std::vector<Fixture> all = fixtures();
  ASSERT_FALSE(all.empty()) << "missing " << kTorchDir << "manifest.json";
  std::set<std::string> seen;
  for (const Fixture& f : all) {
    seen.insert(f.cell);
    seen.insert(f.loss);
    const st::File d = st::File::read(data_of(f));
    if (d.has("lengths")) seen.insert("lengths");
    if (d.has("mask")) seen.insert("mask");
    if (!d.has("h0")) seen.insert("no h0");
    if (d.has("c0")) seen.insert("c0");
    if (f.bidirectional) seen.insert(d.has("lengths") ? "bidirectional lengths" : "bidirectional");
    if (f.projection) seen.insert("proj_size");
    if (f.no_bias) seen.insert("bias=False");
    if (f.learned) seen.insert(d.has("h0") ? "learned, given h0" : "learned");
    if (f.final_readout) seen.insert("readout final");
  }
  for (const char* want : {"bidirectional", "bidirectional lengths", "proj_size", "bias=False",
                           "learned", "learned, given h0", "readout final"})
    EXPECT_TRUE(seen.count(want)) << "no fixture with " << want;
  for (const char* want : {"elman", "lstm", "gru", "mse", "bce", "xent", "lengths", "mask",
                           "no h0", "c0"})
    EXPECT_TRUE(seen.count(want)) << "no fixture with " << want;
}

// ---------------------------------------------------------------------------------------------
// A model stored in single precision, other input encodings

const Fixture kLstm = {"lstm_l2_t7_b3_xent_len_mask_h0", "xent", "lstm", true};
const Fixture kGru = {"gru_l2_t7_b3_xent_len_mask_h0", "xent", "gru", true};
const Fixture kElman = {"elman_tanh_l2_t7_b3_bce_len_mask_h0", "bce", "elman", true};

class CliModelF32 : public CliFixture {
 protected:
  std::string f32_model() {
    const st::File m = st::File::read(model_of(GetParam()));
    return FileSpec::from(m).to_f32(m).write(path("model_f32.safetensors"));
  }
};

// Default dtype = the stored one: an F32 model gives F32 gradients (torch's f32 results).
TEST_P(CliModelF32, DefaultsToFloat32) {
  const std::string model = f32_model();
  check_grad(model, "", st::ElemType::F32, "f32", 2e-4);
}

// --dtype f64 converts the F32 parameters; the results are torch's f64 ones up to the rounding
// of the parameters to float.
TEST_P(CliModelF32, ConvertsToFloat64) {
  const std::string model = f32_model();
  const std::string out = path("grad.safetensors");
  const RunResult r = run({"grad", "--model", model, "--data", data_of(GetParam()), "--out", out,
                           "--loss", GetParam().loss, "--dtype", "f64"});
  ASSERT_EQ(r.code, 0) << r;
  const st::File got = st::File::read(out);
  const st::File ref = st::File::read(ref_of(GetParam(), "f64"));
  const st::File m = st::File::read(model);
  EXPECT_EQ(names_of(got), grad_names(m, GetParam().cell));
  for (const std::string& name : grad_names(m, GetParam().cell))
    EXPECT_TRUE(matches(got, ref, name, st::ElemType::F64, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Cli, CliModelF32, ::testing::Values(kLstm, kGru, kElman), fixture_name);

class CliEndToEnd : public CliTest {};

// h0 is written also when the data has none (dL/dh0 at h0 = 0).
TEST_F(CliEndToEnd, GradWritesH0WhenDataHasNone) {
  const Fixture fx = {"lstm_l3_t7_b2_bce_len", "bce", "lstm", false};
  ASSERT_FALSE(st::File::read(data_of(fx)).has("h0"));
  const RunResult r = run({"grad", "--model", model_of(fx), "--data", data_of(fx), "--out",
                           path("g.safetensors"), "--loss", "bce"});
  ASSERT_EQ(r.code, 0) << r;
  const st::File got = st::File::read(path("g.safetensors"));
  const st::File ref = st::File::read(ref_of(fx, "f64"));
  EXPECT_TRUE(matches(got, ref, "h0", st::ElemType::F64, 1e-9));
  EXPECT_TRUE(matches(got, ref, "c0", st::ElemType::F64, 1e-9));
}

// Class indices as I32 and lengths as I32 give the same results as I64.
TEST_F(CliEndToEnd, AcceptsI32ClassesAndLengths) {
  const st::File d = st::File::read(data_of(kGru));
  FileSpec data = FileSpec::from(d);
  data.set("y", tensor_i32(d.at("y").shape, d.as_i64("y")));
  data.set("lengths", tensor_i32(d.at("lengths").shape, d.as_i64("lengths")));
  const std::string dp = data.write(path("data_i32.safetensors"));
  const RunResult r = run({"grad", "--model", model_of(kGru), "--data", dp, "--out",
                           path("g.safetensors"), "--loss", "xent"});
  ASSERT_EQ(r.code, 0) << r;
  const st::File got = st::File::read(path("g.safetensors"));
  const st::File ref = st::File::read(ref_of(kGru, "f64"));
  for (const std::string& name : grad_names(st::File::read(model_of(kGru)), "gru"))
    EXPECT_TRUE(matches(got, ref, name, st::ElemType::F64, 1e-9));
}

// predict ignores y, whatever its shape.
TEST_F(CliEndToEnd, PredictIgnoresY) {
  FileSpec data = FileSpec::from(st::File::read(data_of(kElman)));
  data.set("y", tensor_f64({1}, {42.0}));
  const std::string dp = data.write(path("data.safetensors"));
  const RunResult r = run({"predict", "--model", model_of(kElman), "--data", dp, "--out",
                           path("p.safetensors")});
  ASSERT_EQ(r.code, 0) << r;
  const st::File got = st::File::read(path("p.safetensors"));
  EXPECT_TRUE(matches(got, st::File::read(ref_of(kElman, "f64")), "y_hat", st::ElemType::F64, 1e-9));
}

// An existing --out file is replaced by a successful run.
TEST_F(CliEndToEnd, ReplacesAnExistingOutputFile) {
  write_file(path("g.safetensors"), "old contents");
  const RunResult r = run({"grad", "--model", model_of(kLstm), "--data", data_of(kLstm), "--out",
                           path("g.safetensors"), "--loss", "xent"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(work_files(), std::set<std::string>{"g.safetensors"});
  const st::File got = st::File::read(path("g.safetensors"));
  EXPECT_TRUE(matches(got, st::File::read(ref_of(kLstm, "f64")), "loss", st::ElemType::F64, 1e-9));
}

// ---------------------------------------------------------------------------------------------
// explain and --help

TEST_F(CliEndToEnd, ExplainRunsTheBuiltInExample) {
  const RunResult r = run({"explain"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(r.err.empty()) << r;
  for (const char* want : {"Forward pass", "Backward pass", "dL/dw", "dL/dv", "dL/dh0"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << r;
}

TEST_F(CliEndToEnd, ExplainJsonIsOneObject) {
  const RunResult r = run({"explain", "--json", "--w", "0.5", "--x=-1,2", "--y", "0.5,0.25"});
  ASSERT_EQ(r.code, 0) << r;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("forward").size(), 2u);
  EXPECT_EQ(j.at("backward").size(), 2u);
  EXPECT_NEAR(j.at("grad").at("w").get<double>(), j.at("numeric").at("w").get<double>(), 1e-6);
}

TEST_F(CliEndToEnd, HelpExitsZeroWithUsage) {
  const std::vector<std::vector<std::string>> cmds = {
      {"--help"}, {"-h"}, {"grad", "--help"}, {"predict", "--help"}, {"explain", "--help"}};
  for (const auto& cmd : cmds) {
    const RunResult r = run(cmd);
    EXPECT_EQ(r.code, 0) << r;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r;
    EXPECT_NE(r.out.find("--help"), std::string::npos) << r;
  }
  const RunResult top = run({"--help"});
  for (const char* verb : {"grad", "predict", "explain"})
    EXPECT_NE(top.out.find(verb), std::string::npos) << verb << top;
  const RunResult grad = run({"grad", "--help"});
  for (const char* opt : {"--model", "--data", "--out", "--loss", "--dtype"})
    EXPECT_NE(grad.out.find(opt), std::string::npos) << opt << grad;
  const RunResult predict = run({"predict", "--help"});
  for (const char* opt : {"--model", "--data", "--out", "--dtype"})
    EXPECT_NE(predict.out.find(opt), std::string::npos) << opt << predict;
  const RunResult explain = run({"explain", "--help"});
  for (const char* opt : {"--w", "--v", "--h0", "--phi", "--theta", "--x", "--y", "--json"})
    EXPECT_NE(explain.out.find(opt), std::string::npos) << opt << explain;
}

TEST_F(CliEndToEnd, GradMethodUsageErrors) {
  const std::vector<std::string> base = {"grad", "--model", model_of(kLstm), "--data",
                                         data_of(kLstm), "--out", path("g.safetensors"), "--loss",
                                         "xent"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  EXPECT_TRUE(rejected(with({"--method", "magic"}), {"--method"}));
  EXPECT_TRUE(rejected(with({"--method", "numeric", "--dtype", "f32"}), {"--method numeric"}));
  for (const char* bad : {"truncated", "truncated:0", "truncated:k", "recompute:-1", "rtrl:3"})
    EXPECT_TRUE(rejected(with({"--method", bad}), {"--method"})) << bad;
}

}  // namespace
}  // namespace bptt::cli_test
