// `bptt train` with the torch.nn options (--bidirectional, --proj-size, --no-bias,
// --learn-initial-state) end to end, with tiny models:
//   - a bidirectional classifier (the adding task, .ts) writes bidirectional = true and
//     readout = final, and eval reproduces train's numbers from the file alone; with
//     --recompute and --memory-budget too (layer by layer), and under --dropout;
//   - --bidirectional is refused where the right-to-left pass would see the answer (text, csv,
//     the copy task), and with the causal methods (--method rtrl, --k2);
//   - bad option values: --proj-size on a GRU or >= --hidden, --forget-bias without biases.
// Resuming with the options is in test_cli_train.cpp (CliResume); that the files load into
// torch.nn with load_state_dict(strict=True) is tools/fixtures/check_torch_load.py (ctest
// torch_load).
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "support/shared_data.hpp"
#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/tasks.hpp"

namespace bptt::cli_test {
namespace {

std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const std::vector<std::string> kAdding = {"train", "--task", "adding", "--seq-len", "10",
                                          "--hidden", "6", "--batch", "8", "--steps", "12"};

class CliOptions : public CliTest {
 protected:
  // Trains on the adding task with `extra`, checks the file's keys and that eval gives train's
  // validation loss.
  void train_and_eval(const std::vector<std::string>& extra,
                      const std::map<std::string, std::string>& keys) {
    const std::string m = path("m.safetensors");
    const RunResult t = run(cat(cat(kAdding, extra), {"--out", m}));
    ASSERT_EQ(t.code, 0) << t;
    const auto f = safetensors::File::read(m);
    for (const auto& [key, value] : keys)
      EXPECT_EQ(f.metadata().count(key) ? f.metadata().at(key) : "(missing)", value) << key;
    const RunResult e = run({"eval", "--model", m, "--task", "adding", "--json"});
    ASSERT_EQ(e.code, 0) << e;
    const auto j = nlohmann::json::parse(e.out);
    EXPECT_NE(t.out.find(fmt::format("validation loss {:.4f}", j["loss"].get<double>())),
              std::string::npos) << t.out << e.out;
  }
};

TEST_F(CliOptions, BidirectionalClassifierReadsTheFinalStates) {
  train_and_eval({"--bidirectional"}, {{"bidirectional", "true"}, {"readout", "final"},
                                       {"proj_size", "0"}, {"bias", "true"},
                                       {"initial_state", "zero"}});
}

TEST_F(CliOptions, EveryOptionAtOnceWithRecompute) {
  train_and_eval({"--bidirectional", "--proj-size", "3", "--no-bias", "--learn-initial-state",
                  "--layers", "2", "--recompute", "3", "--dropout", "0.2"},
                 {{"bidirectional", "true"}, {"readout", "final"}, {"proj_size", "3"},
                  {"bias", "false"}, {"initial_state", "learned"}});
}

TEST_F(CliOptions, BidirectionalUnderAMemoryBudget) {
  const RunResult t = run(cat(kAdding, {"--bidirectional", "--cell", "gru", "--memory-budget",
                                        "0.035"}));
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_NE(t.err.find("recompute"), std::string::npos) << t;
}

TEST_F(CliOptions, BidirectionalTimeSeriesClassifier) {
  const std::string train_ts = test::shared_data("JapaneseVowels_TRAIN.ts");
  BPTT_REQUIRE_SHARED_DATA(train_ts);
  const std::string m = path("jv.safetensors");
  const RunResult t = run({"train", "--ts", train_ts,
                           "--bidirectional", "--hidden", "8", "--steps", "5", "--out", m});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_NE(t.err.find("both directions' final states"), std::string::npos) << t;
  const RunResult e = run({"eval", "--model", m, "--ts", test::shared_data("JapaneseVowels_TEST.ts")});
  ASSERT_EQ(e.code, 0) << e;
  EXPECT_NE(e.out.find("accuracy"), std::string::npos) << e;
}

TEST_F(CliOptions, BidirectionalRefusedWhereTheAnswerIsAnInput) {
  write_file(path("t.txt"), std::string(2000, 'a') + "bcd\n");
  write_file(path("s.csv"), [] {
    std::string s = "v\n";
    for (int i = 0; i < 300; ++i) s += std::to_string(i % 17) + "\n";
    return s;
  }());
  EXPECT_TRUE(rejected({"train", "--text", path("t.txt"), "--bidirectional"},
                       {"--bidirectional", "next-character"}));
  EXPECT_TRUE(rejected({"train", "--csv", path("s.csv"), "--column", "v", "--bidirectional"},
                       {"--bidirectional", "forecasting"}));
  EXPECT_TRUE(rejected({"train", "--task", "copy", "--seq-len", "5", "--bidirectional"},
                       {"--bidirectional", "copy"}));
  EXPECT_TRUE(rejected(cat(kAdding, {"--bidirectional", "--method", "rtrl"}),
                       {"--method rtrl", "bidirectional"}));
}

TEST_F(CliOptions, BadOptionValues) {
  EXPECT_TRUE(rejected(cat(kAdding, {"--cell", "gru", "--proj-size", "3"}), {"--proj-size", "LSTM"}));
  EXPECT_TRUE(rejected(cat(kAdding, {"--proj-size", "6"}), {"proj_size", "hidden_size"}));
  EXPECT_TRUE(rejected(cat(kAdding, {"--no-bias", "--forget-bias", "1"}), {"--forget-bias", "--no-bias"}));
  EXPECT_TRUE(rejected(cat(kAdding, {"--proj-size", "-1"}), {"--proj-size"}));
}

}  // namespace
}  // namespace bptt::cli_test

namespace bptt::cli_test {
namespace {

// The uses that run left to right only refuse a bidirectional model (one built by hand: train
// refuses to make one for them), with the reason, instead of answering wrongly.
TEST(CausalUses, RefuseABidirectionalModel) {
  const data::Vocab vocab = data::Vocab::of("abc\n");
  ModelConfig cfg;
  cfg.cell = CellKind::lstm;
  cfg.input_size = cfg.output_size = vocab.size();
  cfg.hidden_size = 4;
  cfg.bidirectional = true;
  cfg.output_activation = Activation::softmax;
  Model<double> m(cfg);
  m.init_uniform(1);
  const auto refused = [](auto&& call, const std::string& what) {
    try {
      call();
      ADD_FAILURE() << what << " took a bidirectional model";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bidirectional"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  refused([&] { sample_text(m, vocab, SampleOptions{}, [](std::string_view) {}); }, "sampling");
  SyntheticSpec copy;
  copy.kind = SyntheticKind::copy;
  copy.seq_len = 3;
  ModelConfig cc = cfg;
  cc.input_size = copy.input_size();
  cc.output_size = copy.output_size();
  Model<double> mc(cc);
  refused([&] { evaluate_synthetic(mc, copy, 4); }, "copy task");
}

}  // namespace
}  // namespace bptt::cli_test
