// `bptt import` and `bptt inspect` on plain PyTorch state_dict files (no bptt metadata), and the
// other verbs reading such a file directly; bad files get one line and exit 2. Agreement with
// torch.nn itself is tools/fixtures/check_torch_load.py (ctest torch_load).
#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

class CliImport : public CliTest {
 protected:
  // small_model's tensors under `rnn`/`head` paths, without metadata.
  std::string plain(const std::string& file, const std::string& rnn, const std::string& head,
                    const std::vector<std::pair<std::string, st::Tensor>>& extra = {}) const {
    FileSpec m = small_model(Sizes{});
    FileSpec p;
    for (auto& [n, t] : m.tensors) {
      std::string name = n;
      if (name.rfind("rnn.", 0) == 0) name = (rnn.empty() ? "" : rnn + ".") + name.substr(4);
      else name = head + name.substr(4);  // "head.weight" -> head + ".weight"
      p.set(name, t);
    }
    for (const auto& [n, t] : extra) p.set(n, t);
    return p.write(path(file));
  }
};

TEST_F(CliImport, PlainStateDictsWorkEverywhere) {
  const std::string m = plain("sd.safetensors", "encoder.lstm", "decoder.fc");
  const std::string d = small_data(Sizes{}, "mse").write(path("d.safetensors"));
  // predict reads it as it is, and gives what the bptt file gives.
  ASSERT_EQ(run({"predict", "--model", m, "--data", d, "--out", path("p1.safetensors")}).code, 0);
  const std::string ref = small_model(Sizes{}).write(path("ref.safetensors"));
  ASSERT_EQ(run({"predict", "--model", ref, "--data", d, "--out", path("p2.safetensors")}).code, 0);
  EXPECT_EQ(st::File::read(path("p1.safetensors")).as_f64("y_hat"),
            st::File::read(path("p2.safetensors")).as_f64("y_hat"));
  // import writes a bptt model file; inspect says what it inferred.
  const RunResult imp = run({"import", m, "--out", path("m.safetensors")});
  ASSERT_EQ(imp.code, 0) << imp;
  EXPECT_EQ(st::File::read(path("m.safetensors")).metadata().at("cell"), "lstm");
  const RunResult ins = run({"inspect", m, "--json"});
  ASSERT_EQ(ins.code, 0) << ins;
  const auto j = nlohmann::json::parse(ins.out);
  EXPECT_EQ(j["format"], "pytorch_state_dict");
  EXPECT_EQ(j["rnn"], "encoder.lstm");
  EXPECT_EQ(j["head"], "decoder.fc");
  EXPECT_EQ(j["config"]["hidden_size"], 3);
  EXPECT_EQ(j["config"]["bidirectional"], false);
  const RunResult text = run({"inspect", path("m.safetensors")});
  ASSERT_EQ(text.code, 0) << text;
  EXPECT_NE(text.out.find("a bptt model file"), std::string::npos) << text.out;
}

// A state_dict of the RNN alone is a head-less model: y_hat is the top layer's h (H wide here),
// grad takes y of that width and writes no head tensors, stream prints h; --no-head drops a
// Linear that is there.
TEST_F(CliImport, RnnWithoutALinearIsAHeadlessModel) {
  FileSpec m = small_model(Sizes{});
  FileSpec p;
  for (auto& [n, t] : m.tensors)
    if (n.rfind("rnn.", 0) == 0) p.set("encoder." + n.substr(4), t);
  const std::string sd = p.write(path("rnn_only.safetensors"));
  Sizes h;  // the data of a model whose output is h: O = H
  h.O = h.H;
  const std::string d = small_data(h, "mse").write(path("d.safetensors"));
  const RunResult pred = run({"predict", "--model", sd, "--data", d, "--out", path("p.safetensors")});
  ASSERT_EQ(pred.code, 0) << pred;
  const st::File out = st::File::read(path("p.safetensors"));
  EXPECT_EQ(out.at("y_hat").shape, (std::vector<std::int64_t>{h.T, h.B, h.H}));
  // the last step's y_hat is h_n (no lengths: every sequence runs T steps)
  const std::vector<double> y = out.as_f64("y_hat"), hn = out.as_f64("h_n");
  for (std::size_t i = 0; i < hn.size(); ++i)
    EXPECT_EQ(y[std::size_t(h.T - 1) * h.B * h.H + i], hn[i]) << i;
  const RunResult grad = run({"grad", "--model", sd, "--data", d, "--loss", "mse", "--out",
                              path("g.safetensors")});
  ASSERT_EQ(grad.code, 0) << grad;
  const st::File g = st::File::read(path("g.safetensors"));
  EXPECT_TRUE(g.has("rnn.weight_hh_l0"));
  EXPECT_FALSE(g.has("head.weight"));
  const RunResult ins = run({"inspect", sd, "--json"});
  ASSERT_EQ(ins.code, 0) << ins;
  const auto j = nlohmann::json::parse(ins.out);
  EXPECT_TRUE(j["head"].is_null()) << ins.out;
  EXPECT_EQ(j["config"]["head"], false);
  EXPECT_EQ(j["config"]["output_size"], h.H);
  // y of the width a head would give is refused, naming y
  EXPECT_TRUE(rejected({"grad", "--model", sd, "--data", small_data(Sizes{}, "mse").write(path("d2.safetensors")),
                        "--loss", "mse", "--out", path("g2.safetensors")},
                       {"y"}));
  // --no-head on a file with a Linear; not with --head
  const std::string with_fc = plain("fc.safetensors", "encoder", "fc");
  const RunResult imp = run({"import", with_fc, "--rnn", "encoder", "--no-head", "--out", path("n.safetensors")});
  ASSERT_EQ(imp.code, 0) << imp;
  EXPECT_EQ(st::File::read(path("n.safetensors")).metadata().at("head"), "false");
  EXPECT_TRUE(rejected({"import", with_fc, "--head", "fc", "--no-head", "--out", path("x.safetensors")},
                       {"--no-head"}));
}

TEST_F(CliImport, AmbiguousOrUnusableFilesAreRefused) {
  const st::Tensor extra = tensor_f64({2, 3}, values(6, 9));
  const std::string two_heads = plain("two.safetensors", "rnn", "fc", {{"fc2.weight", extra}});
  EXPECT_TRUE(rejected({"import", two_heads, "--out", path("o.safetensors")},
                       {"two.safetensors", "2 Linear layers", "--head"}));
  EXPECT_TRUE(rejected({"inspect", two_heads}, {"two.safetensors", "--head"}));
  EXPECT_TRUE(rejected({"predict", "--model", two_heads, "--data", path("none"), "--out",
                        path("o.safetensors")},
                       {"two.safetensors|none"}));
  // Picking the head resolves it.
  EXPECT_EQ(run({"import", two_heads, "--head", "fc2", "--rnn", "rnn", "--out", path("o.safetensors")}).code, 0);
  const std::string emb = plain("emb.safetensors", "rnn", "fc", {{"embedding.weight", tensor_f64({4, 5}, values(20, 3))}});
  EXPECT_TRUE(rejected({"import", emb, "--out", path("e.safetensors")}, {"embedding.weight"}));
  EXPECT_TRUE(rejected({"import", path("o.safetensors"), "--out", path("again.safetensors")},
                       {"already a bptt model file"}));
  EXPECT_TRUE(rejected({"import", emb, "--nonlinearity", "relu", "--rnn", "rnn", "--head", "fc",
                        "--out", path("e.safetensors")},
                       {"--nonlinearity"}));
}

}  // namespace
}  // namespace bptt::cli_test
