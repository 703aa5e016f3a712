// End-to-end tests of `bptt train`, `eval`, `sample` and `plot` on a small text (about 2 KB,
// written into each test's work directory), run as a user runs them. Every training run is tiny
// (--hidden 16 --layers 1 --seq-len 16 --batch 4 --steps 20: well under a second):
//   CliTrain:  train writes --out, --metrics and --snapshot; eval --json agrees with what train
//              printed; sample is deterministic, as long as asked and inside the vocabulary;
//              plot draws PNG and SVG;
//   CliResume: 40 steps straight and 20 + --resume + 20 give byte-identical model files
//              (Adam, 2 layers with dropout, SGD with momentum; the resumed half crosses an epoch);
//   CliTrainBad: bad input, each refused with exit 2, one line naming the file or option (and
//              the line or field), and no output file left (CliTest::rejected): empty, binary
//              or missing text, out-of-range options and budgets, vocabulary mismatches at eval
//              and sample, damaged or foreign snapshots, malformed metrics for plot.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include <cstdlib>

#include "bptt/precision.hpp"
#include "cli/cli_util.hpp"
#include "kernels/matmul.hpp"

namespace bptt::cli_test {
namespace {

// About 2 KB of lower-case sentences, one per line, the same every time. The training part
// (90%) gives 4 streams of 28 windows of 16 steps, so step 28 starts the second epoch.
std::string corpus_text() {
  static const char* const words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog",
                                      "ran", "to", "red", "ball", "under", "old", "tree", "we",
                                      "saw", "it", "jump", "over", "fence", "then", "slept"};
  std::string s;
  std::uint32_t r = 12345;
  while (s.size() < 2000) {
    const int n = 4 + int(r % 5);
    for (int i = 0; i < n; ++i) {
      r = r * 1664525u + 1013904223u;
      s += words[(r >> 8) % std::size(words)];
      s += i + 1 < n ? " " : ".\n";
    }
  }
  return s;
}

const std::vector<std::string> kSmall = {"--hidden", "16", "--layers", "1", "--seq-len", "16",
                                         "--batch", "4"};
const std::vector<std::string> kData = {"--seq-len", "16", "--batch", "4"};

std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// `base` with the options of `extra` ("--name value" pairs or flags) replacing or added to it.
std::vector<std::string> merged(std::vector<std::string> a, const std::vector<std::string>& extra) {
  for (std::size_t i = 0; i < extra.size(); ++i) {
    const bool has_value = i + 1 < extra.size() && extra[i + 1].rfind("--", 0) != 0;
    auto it = std::find(a.begin(), a.end(), extra[i]);
    if (it != a.end() && has_value) {
      *(it + 1) = extra[++i];
    } else {
      a.push_back(extra[i]);
      if (has_value) a.push_back(extra[++i]);
    }
  }
  return a;
}

std::vector<std::string> small_with(const std::vector<std::string>& extra) {
  return merged(kSmall, extra);
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) v.push_back(l);
  return v;
}

// What `bptt train` prints after training, for a validation loss and bits per character.
std::string fmt_validation(double loss, double bpc) {
  return fmt::format("validation loss {:.4f}, bits_per_char {:.4g}", loss, bpc);
}

// The line of `out` that contains `what` (empty when none).
std::string line_with(const std::string& out, const std::string& what) {
  for (const std::string& l : lines_of(out))
    if (l.find(what) != std::string::npos) return l.substr(l.find(what));
  return "";
}

bool has_temporary_file(const std::set<std::string>& files) {
  return std::any_of(files.begin(), files.end(),
                     [](const std::string& f) { return f.find(".tmp-") != std::string::npos; });
}

bool gnuplot_installed() {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  for (std::string dir; std::getline(ss, dir, ':');)
    if (!dir.empty() && ::access((dir + "/gnuplot").c_str(), X_OK) == 0) return true;
  return false;
}

class CliTrain : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    text_ = path("text.txt");
    write_file(text_, corpus_text());
  }
  // `bptt train --text text.txt` with the small model and `extra`.
  RunResult train(const std::vector<std::string>& extra) const {
    return run(cat({"train", "--text", text_}, small_with(extra)));
  }
  // Trains the 20-step model every eval/sample test starts from.
  std::string trained_model() {
    const std::string m = path("model.safetensors");
    const RunResult r = train({"--steps", "20", "--out", m});
    EXPECT_EQ(r.code, 0) << r;
    return m;
  }
  std::string text_;
};

// ---------------------------------------------------------------------------------------------
// What a run writes

TEST_F(CliTrain, WritesModelMetricsAndSnapshot) {
  const std::string out = path("model.safetensors"), metrics = path("metrics.csv"),
                    snap = path("snap.safetensors");
  const RunResult r = train({"--steps", "20", "--eval-every", "10", "--log-every", "5", "--out",
                             out, "--metrics", metrics, "--snapshot", snap});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("trained 20 steps"), std::string::npos) << r;
  EXPECT_NE(r.out.find("bits_per_char"), std::string::npos) << r;
  EXPECT_FALSE(has_temporary_file(work_files()));

  // The model: the format of `bptt grad`'s --model, with the vocabulary in its metadata.
  const st::File m = st::File::read(out);
  EXPECT_EQ(m.metadata().at("cell"), "lstm");
  EXPECT_EQ(m.metadata().at("hidden_size"), "16");
  EXPECT_EQ(m.metadata().at("num_layers"), "1");
  EXPECT_EQ(m.metadata().at("output_activation"), "softmax");
  ASSERT_TRUE(m.metadata().count("vocab"));
  const std::string text = corpus_text();
  const std::set<unsigned char> vocab(text.begin(), text.end());
  EXPECT_EQ(m.metadata().at("input_size"), std::to_string(vocab.size()));
  EXPECT_TRUE(m.has("rnn.weight_ih_l0") && m.has("head.weight"));

  // The metrics: the header, then one row per report with 7 fields; the validation loss where
  // it was evaluated (steps 10 and 20), empty elsewhere; steps increasing.
  const std::vector<std::string> rows = lines_of(read_bytes(metrics));
  ASSERT_GE(rows.size(), 5u) << read_bytes(metrics);
  EXPECT_EQ(rows[0], "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput");
  long last_step = 0;
  int with_val = 0;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    std::vector<std::string> f;
    std::stringstream ss(rows[i] + ",");
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 7u) << "row " << i << ": " << rows[i];
    const long step = std::stol(f[0]);
    EXPECT_GT(step, last_step) << "row " << i << " repeats or goes back: " << read_bytes(metrics);
    last_step = step;
    EXPECT_GT(std::stod(f[2]), 0) << rows[i];
    if (!f[3].empty()) {
      ++with_val;
      EXPECT_TRUE(step == 10 || step == 20) << rows[i];
    }
  }
  EXPECT_EQ(last_step, 20);
  EXPECT_EQ(with_val, 2) << read_bytes(metrics);

  // The snapshot: the parameters, the optimizer state, the carried state.
  const st::File s = st::File::read(snap);
  EXPECT_TRUE(s.has("rnn.weight_ih_l0"));
  EXPECT_TRUE(s.has("carry.h"));
  bool optimizer_state = false;
  for (const std::string& n : s.names()) optimizer_state |= n.rfind("optimizer.", 0) == 0;
  EXPECT_TRUE(optimizer_state);
}

// --dtype bf16: a float model trained with bfloat16 products (a note on stderr where they are
// emulated: no AVX512-BF16, or a CPU level below x86-64-v4), unlike f32's; --save-dtype bf16 stores BF16 tensors (the rounded float
// values), which every verb loads; RTRL and finite differences refuse bf16 in one line.
TEST_F(CliTrain, Bf16TrainsSavesAndLoads) {
  const std::string f32 = path("f32.safetensors"), bf16 = path("bf16.safetensors"),
                    stored = path("stored.safetensors");
  ASSERT_EQ(train({"--steps", "8", "--out", f32}).code, 0);
  const RunResult r = train({"--steps", "8", "--dtype", "bf16", "--out", bf16});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.err.find("bf16 products are emulated") != std::string::npos,
            !bf16_products_native())
      << r;
  const st::File a = st::File::read(f32), b = st::File::read(bf16);
  EXPECT_EQ(b.at("rnn.weight_hh_l0").dtype, st::ElemType::F32);  // master weights stay float
  const std::vector<float> wa = a.as_f32("rnn.weight_hh_l0"), wb = b.as_f32("rnn.weight_hh_l0");
  double diff = 0;
  for (std::size_t i = 0; i < wa.size(); ++i) diff = std::max(diff, double(std::abs(wa[i] - wb[i])));
  EXPECT_GT(diff, 0.0);  // the products were rounded
  EXPECT_LT(diff, 0.05);

  ASSERT_EQ(train({"--steps", "8", "--dtype", "bf16", "--save-dtype", "bf16", "--out", stored}).code, 0);
  const st::File s = st::File::read(stored);
  for (const std::string& n : s.names()) EXPECT_EQ(s.at(n).dtype, st::ElemType::BF16) << n;
  const std::vector<float> ws = s.as_f32("rnn.weight_hh_l0");
  for (std::size_t i = 0; i < ws.size(); ++i) ASSERT_EQ(ws[i], kernels::round_bf16(wb[i])) << i;
  EXPECT_LT(std::filesystem::file_size(stored), std::filesystem::file_size(bf16));
  const RunResult e = run({"eval", "--model", stored, "--text", text_, "--seq-len", "16"});
  EXPECT_EQ(e.code, 0) << e;
  const RunResult e2 = run({"eval", "--model", stored, "--text", text_, "--seq-len", "16", "--dtype", "bf16"});
  EXPECT_EQ(e2.code, 0) << e2;

  const RunResult rtrl = train({"--steps", "2", "--method", "rtrl", "--dtype", "bf16"});
  EXPECT_EQ(rtrl.code, 2) << rtrl;
  EXPECT_NE(rtrl.err.find("bf16"), std::string::npos) << rtrl;
  const RunResult bad = train({"--steps", "2", "--save-dtype", "f16", "--out", path("x.safetensors")});
  EXPECT_EQ(bad.code, 2) << bad;
}

TEST_F(CliTrain, SameSeedSameModel) {
  ASSERT_EQ(train({"--steps", "20", "--out", path("a.safetensors")}).code, 0);
  ASSERT_EQ(train({"--steps", "20", "--out", path("b.safetensors")}).code, 0);
  ASSERT_EQ(train({"--steps", "20", "--seed", "2", "--out", path("c.safetensors")}).code, 0);
  EXPECT_EQ(read_bytes(path("a.safetensors")), read_bytes(path("b.safetensors")));
  EXPECT_NE(read_bytes(path("a.safetensors")), read_bytes(path("c.safetensors")));
}

// With two threads the batch's rows are split between them (16 rows: two parts of 8): still the
// same model, byte for byte, from the same seed and thread count.
TEST_F(CliTrain, SameSeedAndThreadsSameModel) {
  const std::vector<std::string> two = {"--steps", "12", "--batch", "16", "--seq-len", "8",
                                        "--threads", "2", "--out"};
  ASSERT_EQ(train(cat(two, {path("a.safetensors")})).code, 0);
  ASSERT_EQ(train(cat(two, {path("b.safetensors")})).code, 0);
  EXPECT_EQ(read_bytes(path("a.safetensors")), read_bytes(path("b.safetensors")));
}

TEST_F(CliTrain, EvalJsonAgreesWithTrain) {
  const std::string m = path("model.safetensors");
  const RunResult t = train({"--steps", "20", "--out", m});
  ASSERT_EQ(t.code, 0) << t;
  const RunResult e = run(cat({"eval", "--model", m, "--text", text_, "--json"}, kData));
  ASSERT_EQ(e.code, 0) << e;
  ASSERT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 1) << "not one line" << e;
  const auto j = nlohmann::json::parse(e.out);
  ASSERT_TRUE(j.is_object()) << e;
  ASSERT_TRUE(j.contains("loss") && j.contains("bits_per_char")) << e;
  const double loss = j["loss"].get<double>(), bpc = j["bits_per_char"].get<double>();
  EXPECT_NEAR(bpc, loss / std::log(2.0), 1e-12);
  // train prints "validation loss L, bits_per_char X" with L as {:.4f} and X as {:.4g}; eval
  // must read the same validation part (the last floor-rounded --val-fraction) as train did.
  EXPECT_NE(t.out.find(fmt_validation(loss, bpc)), std::string::npos)
      << "train printed:\n" << t.out << "eval printed:\n" << e.out;
  // Without --json: "loss L" and "bits_per_char X" lines.
  const RunResult plain = run(cat({"eval", "--model", m, "--text", text_}, kData));
  ASSERT_EQ(plain.code, 0) << plain;
  EXPECT_NE(plain.out.find("bits_per_char"), std::string::npos) << plain;
}

// ---------------------------------------------------------------------------------------------
// Sampling

TEST_F(CliTrain, SampleIsDeterministicLongEnoughAndInVocabulary) {
  const std::string m = trained_model();
  const std::string text = corpus_text();
  const std::set<char> vocab(text.begin(), text.end());
  auto sample = [&](const std::vector<std::string>& extra) {
    return run(cat({"sample", "--model", m}, extra));
  };
  const RunResult a = sample({"--length", "200", "--seed", "7"});
  ASSERT_EQ(a.code, 0) << a;
  EXPECT_TRUE(a.err.empty()) << a;
  ASSERT_EQ(a.out.size(), 201u) << a;  // 200 characters, then a newline
  EXPECT_EQ(a.out.back(), '\n');
  for (std::size_t i = 0; i < a.out.size(); ++i)
    EXPECT_TRUE(vocab.count(a.out[i])) << "byte " << int(static_cast<unsigned char>(a.out[i]))
                                       << " at " << i << " is not in the text";
  EXPECT_EQ(sample({"--length", "200", "--seed", "7"}).out, a.out) << "same seed, other text";
  EXPECT_NE(sample({"--length", "200", "--seed", "8"}).out, a.out) << "the seed is ignored";

  // The prime is printed first; then --length characters.
  const RunResult p = sample({"--length", "50", "--seed", "7", "--prime", "the cat "});
  ASSERT_EQ(p.code, 0) << p;
  ASSERT_EQ(p.out.size(), 8u + 50u + 1u) << p;
  EXPECT_EQ(p.out.substr(0, 8), "the cat ");
  for (char c : p.out) EXPECT_TRUE(vocab.count(c)) << p;

  // --length 0 prints only the prime; top-k 1 is greedy and so does not depend on the seed.
  EXPECT_EQ(sample({"--length", "0", "--prime", "we"}).out, "we\n");
  const RunResult g1 = sample({"--length", "40", "--top-k", "1", "--seed", "1"});
  const RunResult g2 = sample({"--length", "40", "--top-k", "1", "--seed", "99"});
  ASSERT_EQ(g1.code, 0) << g1;
  EXPECT_EQ(g1.out, g2.out);
  const RunResult tp = sample({"--length", "40", "--top-p", "0.5", "--temperature", "0.7"});
  ASSERT_EQ(tp.code, 0) << tp;
  EXPECT_EQ(tp.out.size(), 41u) << tp;
}

// ---------------------------------------------------------------------------------------------
// Plot

TEST_F(CliTrain, PlotDrawsPngAndSvg) {
  if (!gnuplot_installed()) GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  const std::string metrics = path("metrics.csv");
  ASSERT_EQ(train({"--steps", "20", "--eval-every", "5", "--log-every", "2", "--metrics", metrics}).code, 0);
  const RunResult png = run({"plot", "--metrics", metrics, "--out", path("loss.png")});
  ASSERT_EQ(png.code, 0) << png;
  EXPECT_EQ(read_bytes(path("loss.png")).substr(0, 8), "\x89PNG\r\n\x1a\n");
  // A plot killed mid-draw left its temporary; the next plot of the same name removes it.
  write_file(path("loss.svg.tmp-" + std::to_string(test::dead_pid())), "<svg partial");
  const RunResult svg = run({"plot", "--metrics", metrics, "--out", path("loss.svg"), "--title",
                             "it's \"quoted\"\nand two lines"});
  ASSERT_EQ(svg.code, 0) << svg;
  const std::string s = read_bytes(path("loss.svg"));
  EXPECT_NE(s.find("<svg"), std::string::npos);
  EXPECT_NE(s.find("validation"), std::string::npos) << "no validation curve";
  EXPECT_FALSE(has_temporary_file(work_files()));

  // Without validation rows: the training curve alone.
  write_file(path("train_only.csv"),
             "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n"
             "1,0.1,3.5,,0.002,0.5,100\n2,0.2,3.4,,0.002,0.5,100\n3,0.3,nan,,0.002,0.5,100\n");
  const RunResult t = run({"plot", "--metrics", path("train_only.csv"), "--out", path("t.svg")});
  ASSERT_EQ(t.code, 0) << t;

  // Several runs in one picture, against elapsed seconds: each labelled by its file's name.
  const RunResult both = run({"plot", "--metrics", metrics, path("train_only.csv"), "--x",
                              "elapsed", "--out", path("both.svg")});
  ASSERT_EQ(both.code, 0) << both;
  EXPECT_NE(both.out.find("2 runs"), std::string::npos) << both;
  const std::string b = read_bytes(path("both.svg"));
  EXPECT_NE(b.find("metrics validation"), std::string::npos);
  EXPECT_NE(b.find("train_only train"), std::string::npos);
  EXPECT_NE(b.find("elapsed seconds"), std::string::npos);
  // --log-y: a logarithmic loss axis; a loss of 0 (a regression's can be) is left out, and said.
  write_file(path("zero.csv"),
             "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n"
             "1,0.1,0.5,0.4,0.002,0.5,100\n2,0.2,0,0.01,0.002,0.5,100\n");
  const RunResult logy = run({"plot", "--metrics", path("zero.csv"), "--log-y", "--out", path("log.svg")});
  ASSERT_EQ(logy.code, 0) << logy;
  EXPECT_NE(logy.out.find("1 training points, 2 validation points; 1 losses <= 0 left out"),
            std::string::npos) << logy;
  write_file(path("zeros.csv"),
             "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n1,0.1,0,,0.002,0.5,100\n");
  const RunResult all_zero = run({"plot", "--metrics", path("zeros.csv"), "--log-y", "--out", path("z.svg")});
  EXPECT_EQ(all_zero.code, 2) << all_zero;
  EXPECT_NE(all_zero.err.find("above 0"), std::string::npos) << all_zero;
  EXPECT_EQ(run({"plot", "--metrics", path("zeros.csv"), "--out", path("z.svg")}).code, 0);
  const RunResult bad_x = run({"plot", "--metrics", metrics, "--x", "epoch", "--out", path("x.svg")});
  EXPECT_EQ(bad_x.code, 2) << bad_x;
  EXPECT_NE(bad_x.err.find("--x"), std::string::npos) << bad_x;
}

// ---------------------------------------------------------------------------------------------
// Resume: an interrupted run ends byte-identical to an uninterrupted one

struct ResumeCase {
  std::string name;
  std::vector<std::string> options;
  int split = 20;  // the first run stops here; the second goes on to 40
};

void PrintTo(const ResumeCase& c, std::ostream* os) { *os << c.name; }

class CliResume : public CliTrain, public ::testing::WithParamInterface<ResumeCase> {};

TEST_P(CliResume, TwentyPlusTwentyEqualsForty) {
  const std::vector<std::string>& o = GetParam().options;
  const std::string straight = path("straight.safetensors"), half = path("half.safetensors"),
                    resumed = path("resumed.safetensors"), snap = path("snap.safetensors");
  const RunResult a = train(cat(o, {"--steps", "40", "--out", straight}));
  ASSERT_EQ(a.code, 0) << a;
  const int split = GetParam().split;
  const RunResult b =
      train(cat(o, {"--steps", std::to_string(split), "--snapshot", snap, "--out", half}));
  ASSERT_EQ(b.code, 0) << b;
  const RunResult c = train(cat(o, {"--steps", "40", "--resume", snap, "--out", resumed}));
  ASSERT_EQ(c.code, 0) << c;
  EXPECT_NE(c.out.find("trained 40 steps (" + std::to_string(40 - split) + " this run)"),
            std::string::npos) << c;
  const std::string x = read_bytes(straight), y = read_bytes(resumed);
  ASSERT_FALSE(x.empty());
  EXPECT_TRUE(x == y) << "40 steps straight and 20 + resume + 20 give different model files";
  EXPECT_NE(read_bytes(half), x) << "the 20-step model equals the 40-step one";
  EXPECT_EQ(line_with(a.out, "validation loss"), line_with(c.out, "validation loss"));
}

INSTANTIATE_TEST_SUITE_P(
    Text, CliResume,
    ::testing::Values(ResumeCase{"adam", {}},
                      ResumeCase{"dropout_2_layers", {"--layers", "2", "--dropout", "0.2"}},
                      ResumeCase{"sgd_momentum", {"--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.5"}},
                      ResumeCase{"gru_f64_clip_value", {"--cell", "gru", "--dtype", "f64", "--clip-value", "0.1"}},
                      // Step 28 ends the first epoch: the carried state is reset after it.
                      ResumeCase{"at_epoch_end", {}, 28},
                      ResumeCase{"snapshot_every", {"--snapshot-every", "7"}, 21},
                      ResumeCase{"cosine_warmup_nesterov",
                                 {"--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--lr", "0.5",
                                  "--schedule", "cosine", "--decay-steps", "40", "--warmup", "5"}},
                      ResumeCase{"adamw_elman", {"--optimizer", "adamw", "--cell", "elman", "--layers", "2"}},
                      ResumeCase{"recompute", {"--recompute", "5", "--layers", "2"}},
                      // The snapshot holds the history of the last k2 − k1 steps.
                      ResumeCase{"k1_k2_history", {"--k1", "16", "--k2", "40", "--cell", "gru"}},
                      ResumeCase{"memory_budget", {"--memory-budget", "0.04"}},
                      // The torch.nn options a stream takes (its state carries: no
                      // bidirectional): the snapshot's carried h is P wide.
                      ResumeCase{"proj_nobias_learned",
                                 {"--proj-size", "5", "--no-bias", "--learn-initial-state",
                                  "--layers", "2"}},
                      ResumeCase{"learned_recompute_rtrl_free",
                                 {"--learn-initial-state", "--recompute", "4", "--cell", "gru"}},
                      // Layer-normalized cells: their gains are parameters like any other.
                      ResumeCase{"layer_norm", {"--layer-norm", "--layers", "2"}},
                      ResumeCase{"layer_norm_gru_k1_k2",
                                 {"--layer-norm", "--cell", "gru", "--k1", "16", "--k2", "40"}},
                      // Issue 18's masks are drawn from (seed, step): a resumed run draws the
                      // same ones, with and without a history window.
                      ResumeCase{"regularized",
                                 {"--layers", "2", "--recurrent-dropout", "0.25", "--input-dropout",
                                  "0.1", "--output-dropout", "0.2", "--weight-drop", "0.3",
                                  "--zoneout-h", "0.1", "--zoneout-c", "0.05"}},
                      ResumeCase{"regularized_gru_k1_k2",
                                 {"--cell", "gru", "--recurrent-dropout", "0.3", "--zoneout-h",
                                  "0.2", "--k1", "16", "--k2", "40"}},
                      // Issue 20's online methods: the snapshot holds each one's estimate and
                      // the counter its random signs are drawn from.
                      ResumeCase{"online_uoro_2_layers",
                                 {"--method", "uoro", "--layers", "2", "--hidden", "8"}},
                      ResumeCase{"online_kf_rtrl_gru", {"--method", "kf-rtrl", "--cell", "gru",
                                                        "--hidden", "6"}},
                      ResumeCase{"online_snap1", {"--method", "snap1", "--hidden", "8"}},
                      ResumeCase{"online_eprop_elman",
                                 {"--method", "eprop", "--cell", "elman", "--hidden", "8"}}),
    [](const ::testing::TestParamInfo<ResumeCase>& p) { return p.param.name; });

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, one line naming the file or option, nothing left behind

class CliTrainBad : public CliTrain {
 protected:
  // train with every output option, so that "nothing left behind" covers all three.
  std::vector<std::string> train_args(const std::string& text, const std::vector<std::string>& extra) const {
    return cat({"train", "--text", text},
               merged(cat(kSmall, {"--steps", "20", "--out", path("out.safetensors"), "--metrics",
                                   path("m.csv"), "--snapshot", path("s.safetensors")}),
                      extra));
  }
};

TEST_F(CliTrainBad, EmptyText) {
  write_file(path("empty.txt"), "");
  EXPECT_TRUE(rejected(train_args(path("empty.txt"), {}), {path("empty.txt"), "empty"}));
}

TEST_F(CliTrainBad, BinaryText) {
  std::string bin = corpus_text();
  bin[100] = '\0';
  write_file(path("binary.txt"), bin);
  const int line = 1 + int(std::count(bin.begin(), bin.begin() + 100, '\n'));
  EXPECT_TRUE(rejected(train_args(path("binary.txt"), {}),
                       {path("binary.txt") + ":" + std::to_string(line), "byte 100|offset 100"}));
}

TEST_F(CliTrainBad, MissingText) {
  EXPECT_TRUE(rejected(train_args(path("missing.txt"), {}), {path("missing.txt")}));
}

TEST_F(CliTrainBad, TextIsADirectory) {
  fs::create_directories(path("dir.txt"));
  EXPECT_TRUE(rejected(train_args(path("dir.txt"), {}), {path("dir.txt")}));
}

TEST_F(CliTrainBad, ValFractionOutOfRange) {
  EXPECT_TRUE(rejected(train_args(text_, {"--val-fraction", "1.5"}), {"--val-fraction"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--val-fraction", "-0.1"}), {"--val-fraction"}));
}

// 0 is not a length; it must not silently mean "the default" (docs: no silent clamping).
TEST_F(CliTrainBad, SeqLenZero) {
  EXPECT_TRUE(rejected(train_args(text_, {"--seq-len", "0"}), {"--seq-len"}));
}

// A number of the wrong sign is named with what is wanted, not with CLI11's range message
// ("not in range 0.000000 to 1797693...", 300 digits).
TEST_F(CliTrainBad, SignOfANumberSaysWhatIsWanted) {
  EXPECT_TRUE(rejected(train_args(text_, {"--hidden", "0"}), {"--hidden: must be > 0, not 0"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--steps", "-1"}), {"--steps: must be >= 0, not -1"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--layers", "-2"}), {"--layers: must be > 0, not -2"}));
  EXPECT_LT(run(train_args(text_, {"--layers", "-2"})).err.size(), 200u);
}

// The forget-gate bias exists only in an LSTM, and must be finite: before, inf trained to a
// non-finite update at step 1 and a GRU silently ignored it.
TEST_F(CliTrainBad, ForgetBias) {
  EXPECT_TRUE(rejected(train_args(text_, {"--forget-bias", "inf"}), {"--forget-bias", "finite"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--forget-bias", "1", "--cell", "gru"}),
                       {"--forget-bias", "LSTM"}));
}

TEST_F(CliTrainBad, BatchZero) {
  EXPECT_TRUE(rejected(train_args(text_, {"--batch", "0"}), {"--batch"}));
}

TEST_F(CliTrainBad, BatchLargerThanTheTextAllows) {
  EXPECT_TRUE(rejected(train_args(text_, {"--batch", "1000"}), {path("text.txt"), "--batch|B="}));
}

TEST_F(CliTrainBad, SeqLenLongerThanTheText) {
  EXPECT_TRUE(rejected(train_args(text_, {"--seq-len", "5000"}), {path("text.txt"), "--seq-len|T="}));
}

// Negative budgets must be refused, not read as "no limit" (which trains forever); the other
// budget given with each bounds the run should it be accepted.
TEST_F(CliTrainBad, GradientMethodOptions) {
  EXPECT_TRUE(rejected(train_args(text_, {"--k1", "8"}), {"--k1", "--seq-len"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--k2", "8"}), {"--k2", "--k1"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--k2", "40", "--recompute", "4"}), {"--k2"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--method", "rtrl", "--dropout", "0.1"}), {"--method rtrl"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--method", "rtrl", "--hidden", "512"}),
                       {"--method rtrl", "MB"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--method", "bptt2"}), {"--method"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--recompute", "0"}), {"--recompute"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--memory-budget", "0.0001"}), {"--memory-budget", "MB"}));
}

TEST_F(CliTrain, OnlineRtrlTrains) {
  const RunResult r = train({"--method", "rtrl", "--hidden", "8", "--steps", "3", "--seq-len", "5"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.err.find("online RTRL"), std::string::npos) << r;
  EXPECT_NE(r.out.find("trained 3 steps"), std::string::npos) << r;
}

TEST_F(CliTrainBad, NegativeBudgets) {
  EXPECT_TRUE(rejected(train_args(text_, {"--steps", "-5", "--time-budget", "0.5"}), {"--steps"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--epochs", "-1", "--time-budget", "0.5"}), {"--epochs"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--time-budget", "-1"}), {"--time-budget"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--eval-every", "-1"}), {"--eval-every"}));
  EXPECT_TRUE(rejected(train_args(text_, {"--snapshot-every", "-1"}), {"--snapshot-every"}));
}

// An --out in a directory that does not exist is refused before training, and the metrics file
// is not left behind.
TEST_F(CliTrainBad, OutputDirectoryMissing) {
  EXPECT_TRUE(rejected(cat(cat({"train", "--text", text_}, kSmall),
                           {"--steps", "20", "--out", path("no/dir/m.safetensors"), "--metrics",
                            path("m.csv")}),
                       {path("no/dir/m.safetensors")}));
}

// --val-fraction 0 is in the documented range [0, 1): the whole text trains, and the model is
// written (there is nothing to validate on).
TEST_F(CliTrain, ValFractionZeroTrainsAndSaves) {
  const RunResult r = train({"--steps", "5", "--val-fraction", "0", "--out", path("m.safetensors")});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_TRUE(fs::exists(path("m.safetensors"))) << r;
}

TEST_F(CliTrainBad, EvalWithVocabularyMismatch) {
  const std::string m = trained_model();
  write_file(path("other.txt"), corpus_text() + "the cat sat\nthe Zebra.\n");
  const std::string text = corpus_text();
  const std::string line = std::to_string(std::count(text.begin(), text.end(), '\n') + 2);
  EXPECT_TRUE(rejected(cat({"eval", "--model", m, "--text", path("other.txt")}, kData),
                       {path("other.txt"), "line " + line + "|:" + line, "vocabulary"}));
  EXPECT_TRUE(rejected(cat({"eval", "--model", m, "--text", path("other.txt"), "--json"}, kData),
                       {path("other.txt"), "vocabulary"}));
}

TEST_F(CliTrainBad, EvalWithAModelNotTrainedOnText) {
  const std::string m = small_model(Sizes{}).write(path("plain.safetensors"));
  EXPECT_TRUE(rejected(cat({"eval", "--model", m, "--text", text_}, kData), {"vocab"}));
  EXPECT_TRUE(rejected({"sample", "--model", m}, {"plain.safetensors", "vocab"}));
}

TEST_F(CliTrainBad, SamplePrimeOutsideVocabulary) {
  const std::string m = trained_model();
  EXPECT_TRUE(rejected({"sample", "--model", m, "--prime", "the Zebra"},
                       {"--prime", "model.safetensors", "vocabulary"}));
}

TEST_F(CliTrainBad, SampleTemperatureZero) {
  const std::string m = trained_model();
  EXPECT_TRUE(rejected({"sample", "--model", m, "--temperature", "0"}, {"--temperature"}));
  EXPECT_TRUE(rejected({"sample", "--model", m, "--temperature", "-1"}, {"--temperature"}));
}

TEST_F(CliTrainBad, SampleTopPZero) {
  const std::string m = trained_model();
  EXPECT_TRUE(rejected({"sample", "--model", m, "--top-p", "0"}, {"--top-p"}));
  EXPECT_TRUE(rejected({"sample", "--model", m, "--top-p", "1.5"}, {"--top-p"}));
  EXPECT_TRUE(rejected({"sample", "--model", m, "--top-k", "-1"}, {"--top-k"}));
  EXPECT_TRUE(rejected({"sample", "--model", m, "--length", "-1"}, {"--length"}));
}

TEST_F(CliTrainBad, ResumeFromATruncatedSnapshot) {
  const std::string snap = path("snap.safetensors");
  ASSERT_EQ(train({"--steps", "20", "--snapshot", snap}).code, 0);
  std::string bytes = read_bytes(snap);
  write_file(snap, bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(rejected(cat(train_args(text_, {}), {"--resume", snap}), {snap}));
  // A snapshot that is valid safetensors but lacks a tensor (e.g. the optimizer state).
  write_file(snap, bytes);
  FileSpec spec = FileSpec::from(st::File::read(snap));
  std::string dropped;
  for (const auto& [n, t] : spec.tensors)
    if (n.rfind("optimizer.", 0) == 0) dropped = n;
  ASSERT_FALSE(dropped.empty());
  spec.erase(dropped);
  spec.write(snap);
  EXPECT_TRUE(rejected(cat(train_args(text_, {}), {"--resume", snap}), {snap, dropped}));
}

TEST_F(CliTrainBad, ResumeWithADifferentModel) {
  const std::string snap = path("snap.safetensors");
  ASSERT_EQ(train({"--steps", "20", "--snapshot", snap}).code, 0);
  EXPECT_TRUE(rejected(cat(train_args(text_, {"--hidden", "24"}), {"--resume", snap}),
                       {snap, "fingerprint"}));
  EXPECT_TRUE(rejected(cat(train_args(text_, {"--optimizer", "sgd"}), {"--resume", snap}),
                       {snap, "optimizer"}));
}

// Another text of the same size and vocabulary size passes the fingerprint (the model's sizes)
// but not the snapshot's vocabulary.
TEST_F(CliTrainBad, ResumeWithADifferentText) {
  const std::string snap = path("snap.safetensors");
  ASSERT_EQ(train({"--steps", "20", "--snapshot", snap}).code, 0);
  std::string other = corpus_text();
  ASSERT_EQ(other.find('~'), std::string::npos);
  std::replace(other.begin(), other.end(), 'e', '~');
  const std::string other_path = path("other.txt");
  write_file(other_path, other);
  EXPECT_TRUE(rejected(cat(train_args(other_path, {}), {"--resume", snap}),
                       {snap, "__metadata__.vocab", "other data"}));
}

TEST_F(CliTrainBad, ResumeFromAMissingSnapshot) {
  EXPECT_TRUE(rejected(cat(train_args(text_, {}), {"--resume", path("none.safetensors")}),
                       {path("none.safetensors")}));
}

TEST_F(CliTrainBad, PlotMalformedMetrics) {
  const std::string header = "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n";
  const std::string png = path("loss.png");
  write_file(path("text_value.csv"), header + "5,0.1,3.9,,0.002,0.2,100\n10,0.2,abc,,0.002,0.2,100\n");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("text_value.csv"), "--out", png},
                       {path("text_value.csv") + ":3", "train_loss"}));
  write_file(path("short_row.csv"), header + "5,0.1,3.9,,0.002,0.2\n");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("short_row.csv"), "--out", png},
                       {path("short_row.csv") + ":2", "fields"}));
  write_file(path("missing_step.csv"), header + "5,0.1,3.9,,0.002,0.2,100\n,0.2,3.8,,0.002,0.2,100\n");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("missing_step.csv"), "--out", png},
                       {path("missing_step.csv") + ":3", "step"}));
  write_file(path("bad_val.csv"), header + "5,0.1,3.9,x1,0.002,0.2,100\n");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("bad_val.csv"), "--out", png},
                       {path("bad_val.csv") + ":2", "val_loss"}));
  write_file(path("no_header.csv"), "5,0.1,3.9,,0.002,0.2,100\n");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("no_header.csv"), "--out", png},
                       {path("no_header.csv") + ":1", "step"}));
  write_file(path("header_only.csv"), header);
  EXPECT_TRUE(rejected({"plot", "--metrics", path("header_only.csv"), "--out", png},
                       {path("header_only.csv"), "no rows"}));
  write_file(path("empty.csv"), "");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("empty.csv"), "--out", png},
                       {path("empty.csv"), "empty"}));
  write_file(path("binary.csv"), std::string("\0\0\x01\x02", 4));
  EXPECT_TRUE(rejected({"plot", "--metrics", path("binary.csv"), "--out", png}, {path("binary.csv")}));
  EXPECT_TRUE(rejected({"plot", "--metrics", path("none.csv"), "--out", png}, {path("none.csv")}));
}

TEST_F(CliTrainBad, PlotOutputNames) {
  const std::string header = "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n";
  write_file(path("m.csv"), header + "5,0.1,3.9,3.8,0.002,0.2,100\n");
  EXPECT_TRUE(rejected({"plot", "--metrics", path("m.csv"), "--out", path("loss.pdf")},
                       {path("loss.pdf"), ".pdf"}));
  EXPECT_TRUE(rejected({"plot", "--metrics", path("m.csv"), "--out", path("loss")}, {path("loss")}));
  EXPECT_TRUE(rejected({"plot", "--metrics", path("m.csv"), "--out", path("no/such/dir/loss.png")},
                       {path("no/such/dir/loss.png")}));
}

TEST_F(CliTrainBad, PlotWithoutGnuplot) {
  const std::string header = "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n";
  write_file(path("m.csv"), header + "5,0.1,3.9,3.8,0.002,0.2,100\n");
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  ::setenv("PATH", path("empty_path_dir").c_str(), 1);
  const ::testing::AssertionResult r =
      rejected({"plot", "--metrics", path("m.csv"), "--out", path("loss.png")},
               {"gnuplot", "apt-get install gnuplot-nox"});
  ::setenv("PATH", saved.c_str(), 1);
  EXPECT_TRUE(r);
}

}  // namespace
}  // namespace bptt::cli_test
