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
