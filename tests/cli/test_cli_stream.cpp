// `bptt stream`: one input vector per line of stdin, one output per line of stdout, equal to
// `bptt predict` on the same sequence; a blank line starts a new sequence; bad lines (wrong
// width, not a number, not finite) and models that cannot stream get one line and exit 2.
#include <fmt/core.h>

#include <sstream>

#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

class CliStream : public CliTest {
 protected:
  RunResult stream(const std::string& model, const std::string& input) const {
    const fs::path in = root_ / "io" / "stdin";
    write_file(in, input);
    return run_cli({"stream", "--model", model}, root_ / "io", in.string());
  }
  // The numbers of each line of `out`.
  static std::vector<std::vector<double>> parse(const std::string& out) {
    std::vector<std::vector<double>> rows;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      rows.emplace_back();
      for (double v; words >> v;) rows.back().push_back(v);
    }
    return rows;
  }
  // A one-line refusal naming every string of must_name.
  static void expect_refused(const RunResult& r, const std::vector<std::string>& must_name) {
    EXPECT_EQ(r.code, 2) << r;
    EXPECT_FALSE(r.signaled) << r;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r;
    for (const std::string& s : must_name) EXPECT_NE(r.err.find(s), std::string::npos) << s << r;
  }
};

TEST_F(CliStream, EachLineIsOneStepAndEqualsPredict) {
  for (const std::string cell : {"elman", "lstm", "gru"}) {
    Sizes s;
    s.cell = cell;
    s.L = 2;
    s.T = 5;
    s.B = 1;
    const std::string m = small_model(s).write(path("m.safetensors"));
    FileSpec data = small_data(s, "mse");
    const std::string d = data.write(path("d.safetensors"));
    ASSERT_EQ(run({"predict", "--model", m, "--data", d, "--out", path("p.safetensors")}).code, 0);
    const auto p = st::File::read(path("p.safetensors"));
    const std::vector<double> y = p.as_f64("y_hat");
    const std::vector<double> x = st::File::read(d).as_f64("x");
    std::string input;
    for (int t = 0; t < s.T; ++t) {
      for (int i = 0; i < s.I; ++i)
        input += (i ? (t % 2 ? "," : " ") : "") + fmt::format("{:.17g}", x[std::size_t(t * s.I + i)]);
      input += "\n";
    }
    const RunResult r = stream(m, input + "\n" + input);  // then the same sequence again
    ASSERT_EQ(r.code, 0) << r;
    const auto rows = parse(r.out);
    ASSERT_EQ(rows.size(), std::size_t(2 * s.T)) << r.out;
    for (int t = 0; t < 2 * s.T; ++t) {
      ASSERT_EQ(rows[std::size_t(t)].size(), std::size_t(s.O));
      for (int o = 0; o < s.O; ++o)
        EXPECT_NEAR(rows[std::size_t(t)][std::size_t(o)], y[std::size_t((t % s.T) * s.O + o)], 1e-12)
            << cell << " line " << t + 1;
    }
  }
}

TEST_F(CliStream, BadLinesAreRefusedByLine) {
  Sizes s;
  const std::string m = small_model(s).write(path("m.safetensors"));
  expect_refused(stream(m, "0.5\n"), {"stdin:1", "1 values, not I = 2"});
  expect_refused(stream(m, "0.5 1 2\n"), {"stdin:1", "more than I = 2"});
  expect_refused(stream(m, "0.5 x\n"), {"stdin:1", "'x' is not a number"});
  expect_refused(stream(m, "0.5 1e999\n"), {"stdin:1", "beyond the range of f64"});
  // The model is stored in f64 (small_model): 1e300 is a value; in f32 it would be refused.
  expect_refused(run_cli({"stream", "--model", m, "--dtype", "f32"}, root_ / "io",
                         (write_file(root_ / "io" / "in32", "1e300 1\n"), (root_ / "io" / "in32").string())),
                 {"stdin:1", "beyond the range of the f32 model"});
  expect_refused(stream(m, "0.5 nan\n"), {"stdin:1", "not finite"});
  expect_refused(stream(m, "0.5 0.25abc\n"), {"stdin:1", "not a number"});
  // A good line is answered before the bad one is reached.
  const RunResult r = stream(m, "0.5 0.25\n1 2 3\n");
  expect_refused(r, {"stdin:2"});
  EXPECT_EQ(parse(r.out).size(), 1u) << r;
}

TEST_F(CliStream, ModelsThatNeedTheWholeSequenceAreRefused) {
  Sizes s;
  s.bidirectional = true;
  const std::string m = small_model(s).write(path("bi.safetensors"));
  expect_refused(stream(m, "0.5 0.25\n"), {"bidirectional"});
}

}  // namespace
}  // namespace bptt::cli_test
