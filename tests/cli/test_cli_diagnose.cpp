// `bptt diagnose` as a user runs it: the JSON document's keys and shapes, the table, the
// pictures and data files under --out DIR (created if missing, no temporary left), a
// bidirectional model (a row per layer and direction, no truncation rows and why), and bad input
// refused with exit status 2 and one line (CliTest::rejected).
#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

class DiagnoseCli : public CliTest {
 protected:
  // A two-layer model of `cell` and mse data, written to the work directory.
  void make_files(const std::string& cell = "lstm", int T = 6) {
    Sizes s;
    s.cell = cell;
    s.L = 2;
    s.T = T;
    s.B = 3;
    sizes_ = s;
    small_model(s).write(path("m.safetensors"));
    small_data(s, "mse").write(path("d.safetensors"));
  }
  std::vector<std::string> args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {"diagnose", "--model", path("m.safetensors"), "--data",
                                  path("d.safetensors"), "--loss", "mse"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  Sizes sizes_;
};

void expect_shape(const nlohmann::json& a, std::size_t rows, std::size_t cols, const char* key) {
  ASSERT_TRUE(a.is_array()) << key;
  ASSERT_EQ(a.size(), rows) << key;
  for (const auto& r : a) {
    ASSERT_TRUE(r.is_array()) << key;
    EXPECT_EQ(r.size(), cols) << key;
  }
}

TEST_F(DiagnoseCli, JsonKeys) {
  make_files("lstm", 6);
  const RunResult r = run(args({"--json"}));
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(r.err.empty()) << r;
  const auto j = nlohmann::json::parse(r.out);
  const std::size_t L = 2, T = 6;
  for (const char* key :
       {"model", "steps", "batch", "loss", "dtype", "loss_value", "full_grad_norm",
        "grad_norm_by_step", "grad_norm_h0", "grad_norm_reduction", "jacobian_norm_by_distance",
        "jacobian_log10_norm_by_distance", "sequences_by_distance", "jacobian_probes",
        "w_hh_singular_values", "w_hh_gate_singular_values", "gate_names", "power_iteration",
        "pascanu_bound", "truncation_bias"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j.at("steps"), 6);
  EXPECT_EQ(j.at("batch"), 3);
  EXPECT_EQ(j.at("loss"), "mse");
  EXPECT_EQ(j.at("dtype"), "f64");
  EXPECT_EQ(j.at("model").at("cell"), "lstm");
  expect_shape(j.at("grad_norm_by_step"), L, T, "grad_norm_by_step");
  expect_shape(j.at("jacobian_norm_by_distance"), L, T + 1, "jacobian_norm_by_distance");
  expect_shape(j.at("jacobian_log10_norm_by_distance"), L, T + 1, "log10");
  expect_shape(j.at("w_hh_gate_singular_values"), L, 4, "w_hh_gate_singular_values");
  EXPECT_EQ(j.at("w_hh_singular_values").size(), L);
  EXPECT_EQ(j.at("gate_names"), (nlohmann::json{"i", "f", "g", "o"}));
  EXPECT_EQ(j.at("jacobian_probes").at("kind"), "exact");  // H = 3
  // Distance 0 is ‖I‖_F = √H.
  EXPECT_NEAR(j.at("jacobian_norm_by_distance")[0][0].get<double>(), std::sqrt(3.0), 1e-12);
  for (const auto& row : j.at("grad_norm_by_step"))
    for (const auto& v : row) EXPECT_GT(v.get<double>(), 0.0);
  const auto& pb = j.at("pascanu_bound");
  for (const char* key : {"activation", "gamma", "threshold", "applies", "note", "layers"})
    EXPECT_TRUE(pb.contains(key)) << key;
  EXPECT_EQ(pb.at("applies"), false);  // LSTM
  EXPECT_EQ(pb.at("layers").size(), L);
  const auto& tb = j.at("truncation_bias");
  ASSERT_EQ(tb.size(), 4u);  // K = 1, 2, 4, 6
  std::vector<int> ks;
  for (const auto& e : tb) {
    ks.push_back(e.at("K").get<int>());
    EXPECT_TRUE(e.contains("cosine") && e.contains("relative_error") && e.contains("grad_norm"));
  }
  EXPECT_EQ(ks, (std::vector<int>{1, 2, 4, 6}));
  EXPECT_NEAR(tb.back().at("cosine").get<double>(), 1.0, 1e-12);
  EXPECT_LT(tb.back().at("relative_error").get<double>(), 1e-12);
}

TEST_F(DiagnoseCli, TableAndFloat) {
  make_files("elman", 5);
  const RunResult r = run(args({"--dtype", "f32"}));
  ASSERT_EQ(r.code, 0) << r;
  for (const char* want : {"‖dL/dh_t‖", "‖∂h_T/∂h_t‖_F", "σ_max", "1/γ", "cosine", "(f32)"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << r;
  EXPECT_EQ(work_files(), (std::set<std::string>{"d.safetensors", "m.safetensors"}));
}

TEST_F(DiagnoseCli, WritesPicturesAndData) {
  make_files("gru", 5);
  const std::string dir = path("out/diag");  // created with its parent
  const RunResult r = run(args({"--out", dir, "--json"}));
  ASSERT_EQ(r.code, 0) << r;
  const std::set<std::string> want = {
      "grad_norm_by_step.png", "jacobian_norm_by_distance.png", "truncation_bias.png",
      "grad_norm_by_step.dat", "jacobian_norm_by_distance.dat", "truncation_bias.dat",
      "w_hh_singular_values.dat", "diagnose.json", "diagnose.gp"};
  std::set<std::string> got;
  for (const auto& e : fs::directory_iterator(dir)) got.insert(e.path().filename().string());
  EXPECT_EQ(got, want);
  for (const char* png :
       {"grad_norm_by_step.png", "jacobian_norm_by_distance.png", "truncation_bias.png"}) {
    const std::string bytes = read_bytes(fs::path(dir) / png);
    EXPECT_GT(bytes.size(), 1000u) << png;
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png;
  }
  // diagnose.json is the document printed on stdout.
  EXPECT_EQ(nlohmann::json::parse(read_bytes(fs::path(dir) / "diagnose.json")),
            nlohmann::json::parse(r.out));
  // The data file has a row per distance 0..T after its two comment lines.
  const std::string dat = read_bytes(fs::path(dir) / "jacobian_norm_by_distance.dat");
  EXPECT_EQ(std::count(dat.begin(), dat.end(), '\n'), 2 + 6);

  // A second run over the same directory replaces the files, and removes the temporaries a
  // run killed mid-write left there.
  const std::string dead = ".tmp-" + std::to_string(test::dead_pid());
  for (const char* n : {"diagnose.json", "truncation_bias.png", "run.gp"})
    write_file(fs::path(dir) / (n + dead), "partial");
  const RunResult again = run(args({"--out", dir}));
  ASSERT_EQ(again.code, 0) << again;
  EXPECT_NE(again.out.find("written to"), std::string::npos) << again;
  got.clear();
  for (const auto& e : fs::directory_iterator(dir)) got.insert(e.path().filename().string());
  EXPECT_EQ(got, want);
}

TEST_F(DiagnoseCli, Bidirectional) {
  Sizes s;
  s.cell = "gru";
  s.L = 2;
  s.T = 6;
  s.B = 3;
  s.bidirectional = true;  // layer 1 and the head read [h→ ; h←], 2H wide
  small_model(s).write(path("m.safetensors"));
  FileSpec data = small_data(s, "mse");
  data.set("lengths", tensor_i64({s.B}, {6, 4, 1}));
  data.write(path("d.safetensors"));

  const RunResult r = run(args({"--json"}));
  ASSERT_EQ(r.code, 0) << r;
  const auto j = nlohmann::json::parse(r.out);
  const std::size_t U = 4, T = 6;
  EXPECT_EQ(j.at("model").at("bidirectional"), true);
  EXPECT_EQ(j.at("model").at("num_layers"), 2);
  EXPECT_EQ(j.at("directions"), 2);
  EXPECT_EQ(j.at("unit_names"), (nlohmann::json{"l0", "l0_reverse", "l1", "l1_reverse"}));
  expect_shape(j.at("grad_norm_by_step"), U, T, "grad_norm_by_step");
  EXPECT_EQ(j.at("grad_norm_h0").size(), U);
  expect_shape(j.at("jacobian_norm_by_distance"), U, T + 1, "jacobian_norm_by_distance");
  expect_shape(j.at("jacobian_log10_norm_by_distance"), U, T + 1, "log10");
  expect_shape(j.at("w_hh_gate_singular_values"), U, 3, "w_hh_gate_singular_values");
  EXPECT_EQ(j.at("w_hh_singular_values").size(), U);
  EXPECT_EQ(j.at("sequences_by_distance"), (nlohmann::json{3, 3, 2, 2, 2, 1, 1}));
  ASSERT_EQ(j.at("power_iteration").size(), U);
  EXPECT_EQ(j.at("power_iteration")[1].at("unit"), "l0_reverse");
  EXPECT_EQ(j.at("power_iteration")[1].at("layer"), 0);
  EXPECT_EQ(j.at("power_iteration")[1].at("reverse"), true);
  ASSERT_EQ(j.at("pascanu_bound").at("layers").size(), U);
  EXPECT_EQ(j.at("pascanu_bound").at("layers")[3].at("unit"), "l1_reverse");
  // The right-to-left unit's first step (data step 1) gets gradient from every sequence.
  EXPECT_GT(j.at("grad_norm_by_step")[1][0].get<double>(), 0.0);
  EXPECT_NEAR(j.at("jacobian_norm_by_distance")[1][0].get<double>(), std::sqrt(3.0), 1e-12);
  // No truncation rows, and why.
  EXPECT_TRUE(j.at("truncation_bias").empty());
  ASSERT_TRUE(j.at("truncation_skipped").is_string());
  EXPECT_NE(j.at("truncation_skipped").get<std::string>().find("bidirectional"), std::string::npos);

  const RunResult table = run(args({"--out", path("diag")}));
  ASSERT_EQ(table.code, 0) << table;
  for (const char* want : {"bidirectional gru", "layer 0 (reverse)", "layer 1 (reverse)",
                           "0 (reverse)", "right to left", "skipped", "written to"})
    EXPECT_NE(table.out.find(want), std::string::npos) << want << table;
  const std::string grad = read_bytes(fs::path(path("diag")) / "grad_norm_by_step.dat");
  EXPECT_NE(grad.find("# step layer_0 layer_0_reverse layer_1 layer_1_reverse\n"),
            std::string::npos)
      << grad;
  const std::string jac = read_bytes(fs::path(path("diag")) / "jacobian_norm_by_distance.dat");
  EXPECT_NE(jac.find("norm_layer_1_reverse"), std::string::npos) << jac;
  EXPECT_EQ(std::count(jac.begin(), jac.end(), '\n'), 2 + 7);
  for (const char* png : {"grad_norm_by_step.png", "jacobian_norm_by_distance.png",
                          "truncation_bias.png"})
    EXPECT_GT(fs::file_size(fs::path(path("diag")) / png), 1000u) << png;
}

// The JSON of a unidirectional model names its rows too, and has no truncation_skipped reason.
TEST_F(DiagnoseCli, UnidirectionalNewKeys) {
  make_files("elman", 4);
  const RunResult r = run(args({"--json"}));
  ASSERT_EQ(r.code, 0) << r;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("directions"), 1);
  EXPECT_EQ(j.at("unit_names"), (nlohmann::json{"l0", "l1"}));
  EXPECT_TRUE(j.at("truncation_skipped").is_null());
  EXPECT_EQ(j.at("model").at("bidirectional"), false);
}

TEST_F(DiagnoseCli, Help) {
  const RunResult r = run({"diagnose", "--help"});
  ASSERT_EQ(r.code, 0) << r;
  for (const char* opt : {"--model", "--data", "--loss", "--out", "--json", "--dtype"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << r;
  const RunResult top = run({"--help"});
  EXPECT_NE(top.out.find("diagnose"), std::string::npos) << top;
}

TEST_F(DiagnoseCli, BadInput) {
  make_files("lstm", 4);
  EXPECT_TRUE(rejected({"diagnose", "--model", path("none.safetensors"), "--data",
                        path("d.safetensors"), "--loss", "mse"},
                       {path("none.safetensors")}));
  EXPECT_TRUE(rejected({"diagnose", "--model", path("m.safetensors"), "--data",
                        path("none.safetensors"), "--loss", "mse"},
                       {path("none.safetensors")}));
  // float targets with the xent loss
  EXPECT_TRUE(rejected({"diagnose", "--model", path("m.safetensors"), "--data",
                        path("d.safetensors"), "--loss", "xent"},
                       {path("d.safetensors"), "y"}));
  // --out names a file
  write_file(path("file.txt"), "not a directory");
  EXPECT_TRUE(rejected(args({"--out", path("file.txt")}), {path("file.txt"), "directory"}));
  // the model file as data
  EXPECT_TRUE(rejected({"diagnose", "--model", path("m.safetensors"), "--data",
                        path("m.safetensors"), "--loss", "mse"},
                       {path("m.safetensors")}));
  EXPECT_TRUE(rejected(args({"--dtype", "f16"}), {"--dtype"}));
  EXPECT_TRUE(rejected({"diagnose", "--model", path("m.safetensors"), "--loss", "mse"},
                       {"--data"}));
}

}  // namespace
}  // namespace bptt::cli_test
