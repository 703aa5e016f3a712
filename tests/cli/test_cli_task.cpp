// `bptt train --task adding|copy --seq-len T` and `bptt eval --task` end to end, with tiny models
// (--hidden 8, a few steps: well under a second each):
//   CliTask:    train writes a model with task and task_seq_len; eval (default: the model's T)
//               reproduces train's numbers, evaluates longer sequences with --seq-len; the copy
//               task reports its baseline; 10 + --resume + 10 steps equal 20 straight;
//   CliTaskBad: unknown task, --task with --text, --seq-len 0 or too short, eval with the other
//               task or a model not trained on one: exit 2, one line, nothing left behind.
#include <fmt/core.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const std::vector<std::string> kTiny = {"--hidden", "8", "--batch", "8"};

class CliTask : public CliTest {
 protected:
  RunResult train(const std::string& task, const std::vector<std::string>& extra) const {
    return run(cat(cat({"train", "--task", task}, kTiny), extra));
  }
  nlohmann::json eval_json(const std::vector<std::string>& args) const {
    const RunResult e = run(cat(cat({"eval"}, args), {"--json"}));
    EXPECT_EQ(e.code, 0) << e;
    EXPECT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 1) << "not one line" << e;
    return e.code == 0 ? nlohmann::json::parse(e.out) : nlohmann::json::object();
  }
};

TEST_F(CliTask, AddingTrainThenEval) {
  const std::string m = path("adding.safetensors");
  const RunResult t = train("adding", {"--seq-len", "12", "--steps", "30", "--out", m});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_NE(t.out.find("test MSE"), std::string::npos) << t;
  EXPECT_NE(t.out.find("baseline 0.1667"), std::string::npos) << t;
  const auto f = safetensors::File::read(m);
  EXPECT_EQ(f.metadata().at("task"), "adding");
  EXPECT_EQ(f.metadata().at("task_seq_len"), "12");
  EXPECT_EQ(f.metadata().at("input_size"), "2");
  EXPECT_EQ(f.metadata().at("output_size"), "1");
  EXPECT_EQ(f.metadata().at("hidden_size"), "8");
  EXPECT_EQ(f.metadata().at("num_layers"), "1");  // the task's default

  // eval defaults --seq-len to the model's and reads the same held-out set as train did.
  const auto j = eval_json({"--model", m, "--task", "adding"});
  ASSERT_TRUE(j.contains("loss") && j.contains("mse") && j.contains("baseline_mse") &&
              j.contains("accuracy")) << j.dump();
  const double loss = j["loss"].get<double>();
  EXPECT_EQ(j["mse"].get<double>(), loss);
  EXPECT_NEAR(j["baseline_mse"].get<double>(), 1.0 / 6, 1e-12);
  EXPECT_NE(t.out.find(fmt::format("validation loss {:.4f}", loss)), std::string::npos)
      << "train printed:\n" << t.out << "eval: " << j.dump();
  EXPECT_EQ(eval_json({"--model", m, "--task", "adding", "--seq-len", "12"}), j);
  // Longer sequences than in training: another held-out set, another number.
  const auto longer = eval_json({"--model", m, "--task", "adding", "--seq-len", "40"});
  ASSERT_TRUE(longer.contains("loss")) << longer.dump();
  EXPECT_NE(longer["loss"].get<double>(), loss);
  // Without --json: the summary line.
  const RunResult plain = run({"eval", "--model", m, "--task", "adding"});
  ASSERT_EQ(plain.code, 0) << plain;
  EXPECT_NE(plain.out.find("test MSE"), std::string::npos) << plain;
}

TEST_F(CliTask, CopyTrainThenEval) {
  const std::string m = path("copy.safetensors");
  const RunResult t = train("copy", {"--seq-len", "5", "--steps", "20", "--out", m});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_NE(t.err.find("8x25"), std::string::npos) << "copy with delay 5 has 25 steps" << t;
  const auto f = safetensors::File::read(m);
  EXPECT_EQ(f.metadata().at("task"), "copy");
  EXPECT_EQ(f.metadata().at("task_seq_len"), "5");
  EXPECT_EQ(f.metadata().at("input_size"), "10");
  EXPECT_EQ(f.metadata().at("output_activation"), "softmax");
  const auto j = eval_json({"--model", m, "--task", "copy"});
  ASSERT_TRUE(j.contains("loss") && j.contains("baseline_xent") && j.contains("accuracy"))
      << j.dump();
  EXPECT_NEAR(j["baseline_xent"].get<double>(), 10 * std::log(8.0) / 25, 1e-12);
  EXPECT_NE(t.out.find(fmt::format("validation loss {:.4f}", j["loss"].get<double>())),
            std::string::npos) << t << j.dump();
  const double acc = j["accuracy"].get<double>();
  EXPECT_TRUE(acc >= 0 && acc <= 1) << acc;
}

// Batches are drawn from (seed, epoch, index) only: a resumed run is the uninterrupted one.
TEST_F(CliTask, ResumeContinuesBitIdentically) {
  const std::vector<std::string> o = {"--seq-len", "10"};
  const std::string straight = path("straight.safetensors"), resumed = path("resumed.safetensors"),
                    snap = path("snap.safetensors");
  ASSERT_EQ(train("adding", cat(o, {"--steps", "20", "--out", straight})).code, 0);
  ASSERT_EQ(train("adding", cat(o, {"--steps", "10", "--snapshot", snap})).code, 0);
  const RunResult c = train("adding", cat(o, {"--steps", "20", "--resume", snap, "--out", resumed}));
  ASSERT_EQ(c.code, 0) << c;
  const std::string x = read_bytes(straight);
  ASSERT_FALSE(x.empty());
  EXPECT_TRUE(x == read_bytes(resumed)) << "20 straight and 10 + resume + 10 differ";
  ASSERT_EQ(train("adding", cat(o, {"--steps", "20", "--seed", "2", "--out", path("s2.safetensors")})).code, 0);
  EXPECT_NE(read_bytes(path("s2.safetensors")), x);
}

// ---------------------------------------------------------------------------------------------
// Bad input

class CliTaskBad : public CliTask {
 protected:
  std::vector<std::string> train_args(const std::string& task,
                                      const std::vector<std::string>& extra) const {
    return cat(cat({"train", "--task", task, "--steps", "5", "--out", path("out.safetensors")}, kTiny),
               extra);
  }
  // A model trained on adding at T = 12, for the eval errors.
  std::string adding_model() const {
    const std::string m = path("adding.safetensors");
    const RunResult t = run(cat(cat({"train", "--task", "adding"}, kTiny),
                                {"--seq-len", "12", "--steps", "2", "--out", m}));
    EXPECT_EQ(t.code, 0) << t;
    return m;
  }
};

TEST_F(CliTaskBad, UnknownTask) {
  EXPECT_TRUE(rejected(train_args("addition", {}), {"--task", "addition"}));
  const std::string m = adding_model();
  EXPECT_TRUE(rejected({"eval", "--model", m, "--task", "memory"}, {"--task", "memory"}));
}

TEST_F(CliTaskBad, TaskWithText) {
  write_file(path("t.txt"), "some text to read\n");
  EXPECT_TRUE(rejected(train_args("adding", {"--text", path("t.txt")}), {"--task", "--text"}));
  EXPECT_TRUE(rejected(train_args("copy", {"--data", path("t.txt")}), {"--task", "--data"}));
}

TEST_F(CliTaskBad, SeqLenOutOfRange) {
  EXPECT_TRUE(rejected(train_args("adding", {"--seq-len", "0"}), {"--seq-len"}));
  EXPECT_TRUE(rejected(train_args("copy", {"--seq-len", "0"}), {"--seq-len"}));
  EXPECT_TRUE(rejected(train_args("adding", {"--seq-len", "1"}), {"--seq-len", "adding"}));
  EXPECT_TRUE(rejected(train_args("adding", {"--seq-len", "1000000"}), {"--seq-len"}));
  const std::string m = adding_model();
  EXPECT_TRUE(rejected({"eval", "--model", m, "--task", "adding", "--seq-len", "0"}, {"--seq-len"}));
}

TEST_F(CliTaskBad, EvalWithAnotherTaskOrModel) {
  const std::string m = adding_model();
  EXPECT_TRUE(rejected({"eval", "--model", m, "--task", "copy"}, {"--task", "adding"}));
  // A model of the adding task's sizes that was not trained on it.
  Sizes s;
  s.I = 2;
  s.O = 1;
  const std::string plain = small_model(s).write(path("plain.safetensors"));
  EXPECT_TRUE(rejected({"eval", "--model", plain, "--task", "adding"}, {"--task"}));
}

}  // namespace
}  // namespace bptt::cli_test
