// `bptt bench`: shape strings, the FLOP formula, and the verb's output contract. Only that it
// runs and reports is tested: timings are measured by bench/compare.sh, never asserted.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/bench.hpp"
#include "bptt/error.hpp"
#include "cli/cli_util.hpp"

namespace bptt {
namespace {

TEST(BenchShape, ParsesEveryPart) {
  const BenchShape s = parse_bench_shape("lstm_l2_t100_b32_i65_h256_o65_xent");
  EXPECT_EQ(s.cfg.cell, CellKind::lstm);
  EXPECT_EQ(s.cfg.num_layers, 2);
  EXPECT_EQ(s.T, 100);
  EXPECT_EQ(s.B, 32);
  EXPECT_EQ(s.cfg.input_size, 65);
  EXPECT_EQ(s.cfg.hidden_size, 256);
  EXPECT_EQ(s.cfg.output_size, 65);
  EXPECT_EQ(s.loss, LossKind::xent);
  EXPECT_EQ(s.cfg.output_activation, Activation::softmax);
  const BenchShape e = parse_bench_shape("elman-relu_l1_t1000_b1_i1_h32_o1");
  EXPECT_EQ(e.cfg.cell, CellKind::elman);
  EXPECT_EQ(e.cfg.nonlinearity, Activation::relu);
  EXPECT_EQ(e.loss, LossKind::mse);
  EXPECT_EQ(e.cfg.output_activation, Activation::identity);
  EXPECT_EQ(parse_bench_shape("gru_l1_t1_b1_i1_h1_o1_bce").cfg.output_activation, Activation::sigmoid);
  // The torch.nn options as suffixes, in any order, after the loss when there is one.
  const BenchShape o = parse_bench_shape("lstm_l1_t100_b64_i256_h512_o256_bi_p128");
  EXPECT_TRUE(o.cfg.bidirectional);
  EXPECT_EQ(o.cfg.proj_size, 128);
  EXPECT_TRUE(o.cfg.bias);
  EXPECT_EQ(o.loss, LossKind::mse);
  const BenchShape n = parse_bench_shape("gru_l2_t10_b4_i3_h8_o2_xent_nobias_learn_bi");
  EXPECT_TRUE(n.cfg.bidirectional);
  EXPECT_FALSE(n.cfg.bias);
  EXPECT_EQ(n.cfg.initial_state, InitialState::learned);
  EXPECT_EQ(n.loss, LossKind::xent);
  // Issue 18: layer norm, the time-consistent dropouts, zoneout (h and, for LSTM, c).
  const BenchShape r = parse_bench_shape("lstm_l1_t100_b64_i256_h512_o256_ln_zo0.1_rd0.25_wd0.5");
  EXPECT_TRUE(r.cfg.layer_norm);
  EXPECT_DOUBLE_EQ(r.cfg.zoneout_h, 0.1);
  EXPECT_DOUBLE_EQ(r.cfg.zoneout_c, 0.1);
  EXPECT_DOUBLE_EQ(r.reg.recurrent, 0.25);
  EXPECT_DOUBLE_EQ(r.reg.weight, 0.5);
  const BenchShape g = parse_bench_shape("gru_l1_t10_b4_i3_h8_o2_xent_id0.1_od0.2_zo0.3");
  EXPECT_DOUBLE_EQ(g.reg.input, 0.1);
  EXPECT_DOUBLE_EQ(g.reg.output, 0.2);
  EXPECT_DOUBLE_EQ(g.cfg.zoneout_h, 0.3);
  EXPECT_DOUBLE_EQ(g.cfg.zoneout_c, 0);
}

TEST(BenchShape, RejectsMalformedShapes) {
  for (const char* bad : {"", "lstm", "lstm_l1_t1_b1_i1_h1", "lstm_l1_t1_b1_i1_h1_o1_mse_x",
                          "lstmx_l1_t1_b1_i1_h1_o1", "lstm-relu_l1_t1_b1_i1_h1_o1",
                          "lstm_l0_t1_b1_i1_h1_o1", "lstm_t1_l1_b1_i1_h1_o1", "lstm_l1_t1_b1_i1_h1_o1_ce",
                          "lstm_l1_t-1_b1_i1_h1_o1", "lstm_l1_t1x_b1_i1_h1_o1", "lstm_l1_t_b1_i1_h1_o1",
                          "elman-softmax_l1_t1_b1_i1_h1_o1", "lstm_l1_t99999999999_b1_i1_h1_o1",
                          "lstm_l1_t1_b1_i1_h4_o1_bi_bi", "lstm_l1_t1_b1_i1_h4_o1_bi_xent",
                          "lstm_l1_t1_b1_i1_h4_o1_p4", "gru_l1_t1_b1_i1_h4_o1_p2",
                          "lstm_l1_t1_b1_i1_h4_o1_p0", "lstm_l1_t1_b1_i1_h4_o1_px",
                          "lstm_l1_t1_b1_i1_h4_o1_ln_ln", "lstm_l1_t1_b1_i1_h4_o1_rd1.5",
                          "lstm_l1_t1_b1_i1_h4_o1_zo0", "lstm_l1_t1_b1_i1_h4_o1_wd0.2x",
                          "lstm_l1_t1_b1_i1_h4_o1_rd0.1_rd0.2"}) {
    try {
      parse_bench_shape(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
    }
  }
}

TEST(BenchFlops, CountsEveryMatrixProduct) {
  // LSTM L=2, T=3, B=2, I=5, H=4, O=6: G·H = 16.
  const BenchShape s = parse_bench_shape("lstm_l2_t3_b2_i5_h4_o6");
  const double TB = 6, GH = 16;
  const double fwd = 2 * TB * GH * 5 + 2 * TB * GH * 4   // layer 0: input and recurrent products
                     + 2 * TB * GH * 4 + 2 * TB * GH * 4  // layer 1
                     + 2 * TB * 4 * 6;                    // head
  EXPECT_DOUBLE_EQ(bench_flops(s, BenchMode::infer), fwd);
  // Backward: every weight gradient (= fwd) and every state gradient except dL/dx of layer 0.
  EXPECT_DOUBLE_EQ(bench_flops(s, BenchMode::train), fwd + fwd + (fwd - 2 * TB * GH * 5));
  // Bidirectional with a projection P = 3: each layer twice, layer 1 reads 2·P, the recurrent
  // products are P wide plus the projection's P·H, the head reads 2·P.
  const BenchShape b = parse_bench_shape("lstm_l2_t3_b2_i5_h4_o6_bi_p3");
  const double unit0 = 2 * TB * GH * 5 + 2 * TB * GH * 3 + 2 * TB * 3 * 4,
               unit1 = 2 * TB * GH * 6 + 2 * TB * GH * 3 + 2 * TB * 3 * 4;
  const double fb = 2 * unit0 + 2 * unit1 + 2 * TB * 6 * 6;
  EXPECT_DOUBLE_EQ(bench_flops(b, BenchMode::infer), fb);
  EXPECT_DOUBLE_EQ(bench_flops(b, BenchMode::train), 3 * fb - 2 * 2 * TB * GH * 5);
}

TEST(BenchRun, TimesTheRequestedSteps) {
  BenchOptions o;
  o.min_steps = 3;
  o.min_seconds = 0;
  o.max_steps = 3;
  o.gemm_bound = true;
  for (BenchMode m : {BenchMode::train, BenchMode::infer}) {
    o.mode = m;
    for (const char* shape : {"gru_l2_t5_b3_i4_h6_o2_bce", "lstm_l2_t5_b3_i4_h6_o2_bi_p3_nobias_learn",
                              "lstm_l2_t5_b3_i4_h6_o2_ln_rd0.3_wd0.3_id0.2_od0.2_zo0.1"}) {
    const BenchResult r = run_bench<float>(parse_bench_shape(shape), o);
    EXPECT_EQ(r.steps, 3);
    EXPECT_GT(r.ms_median, 0);
    EXPECT_LE(r.ms_min, r.ms_median);
    EXPECT_LE(r.ms_median, r.ms_max);
    EXPECT_GT(r.gemm_ms, 0);
    EXPECT_GT(r.workspace_bytes, 0u);
    }
  }
}

class BenchCli : public cli_test::CliTest {};

TEST_F(BenchCli, JsonLinePerShapeWithTheContractKeys) {
  const auto r = run({"bench", "elman_l1_t3_b2_i2_h3_o2", "lstm_l2_t4_b3_i5_h4_o5_xent", "--json",
                      "--min-time", "0", "--min-steps", "2", "--max-steps", "2"});
  ASSERT_EQ(r.code, 0) << r;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(lines, line)) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 2u) << r;
  EXPECT_EQ(rows[0]["shape"], "elman_l1_t3_b2_i2_h3_o2");
  EXPECT_EQ(rows[1]["shape"], "lstm_l2_t4_b3_i5_h4_o5_xent");
  for (const auto& j : rows) {
    for (const char* key : {"shape", "mode", "threads", "ms_per_step", "gflops", "peak_rss_mib",
                            "tokens_per_second"})
      EXPECT_TRUE(j.contains(key)) << key << r;
    EXPECT_EQ(j["mode"], "train");
    EXPECT_EQ(j["threads"], 1);
    EXPECT_EQ(j["steps"], 2);
    EXPECT_GT(j["ms_per_step"].get<double>(), 0);
    EXPECT_GT(j["peak_rss_mib"].get<double>(), 0);
  }
  const auto infer = run({"bench", "gru_l1_t2_b2_i2_h2_o2", "--mode", "infer", "--threads", "2",
                          "--min-time", "0"});
  ASSERT_EQ(infer.code, 0) << infer;
  EXPECT_NE(infer.out.find("infer"), std::string::npos) << infer;
  EXPECT_NE(infer.out.find("ms/step"), std::string::npos) << infer;
}

TEST_F(BenchCli, BadShapesAndOptionsAreUsageErrors) {
  EXPECT_TRUE(rejected({"bench", "lstm_l1_t1_b1_i1_h1"}, {"shape lstm_l1_t1_b1_i1_h1"}));
  EXPECT_TRUE(rejected({"bench", "lstm_l1_t1_b1_i1_h1_o1", "rnn_l1_t1_b1_i1_h1_o1"}, {"rnn"}));
  EXPECT_TRUE(rejected({"bench", "lstm_l1_t1_b1_i1_h1_o1", "--mode", "fast"}, {"--mode"}));
  EXPECT_TRUE(rejected({"bench", "lstm_l1_t1_b1_i1_h1_o1", "--threads", "0"}, {"--threads"}));
  EXPECT_TRUE(rejected({"bench"}, {"shapes"}));
}

}  // namespace
}  // namespace bptt
