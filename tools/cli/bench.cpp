// bptt bench: time training or inference steps of named shapes (see include/bptt/bench.hpp).
#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "bench/bench.hpp"
#include "bptt/error.hpp"
#include "bptt/precision.hpp"
#include "common.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct BenchCliOptions {
  std::vector<std::string> shapes;
  std::string mode = "train", dtype = "f32";
  int threads = 1;
  bool json = false;
  BenchOptions run;
};

template <class Real>
void run_one(const BenchCliOptions& o, const BenchShape& s) {
  BenchOptions ro = o.run;
  ro.mode = parse_bench_mode(o.mode, "--mode");
  ro.threads = o.threads;
  const BenchResult r = run_bench<Real>(s, ro);
  const double flops = bench_flops(s, ro.mode);
  const bool stream = ro.mode == BenchMode::stream;
  const double tokens = double(stream ? 1 : s.T) * s.B;  // per step
  const double weight_gbs = double(r.weight_bytes) / (r.ms_median * 1e6);
  const double gflops = flops / (r.ms_median * 1e6);
  if (o.json) {
    nlohmann::json j;
    j["impl"] = "bptt";
    j["shape"] = s.name;
    j["mode"] = o.mode;
    j["threads"] = o.threads;
    j["dtype"] = o.dtype;
    if (o.dtype == "bf16")  // which kernels ran the products (bptt/precision.hpp)
      j["bf16_products"] = bf16_products_amx()      ? "amx"
                           : bf16_products_native() ? "avx512_bf16"
                                                    : "emulated";
    j["steps"] = r.steps;
    j["ms_per_step"] = r.ms_median;
    j["ms_min"] = r.ms_min;
    j["ms_max"] = r.ms_max;
    j["tokens_per_second"] = tokens / (r.ms_median / 1000);
    j["gflop_per_step"] = flops / 1e9;
    j["gflops"] = gflops;
    j["peak_rss_mib"] = peak_rss_mib();
    j["workspace_mib"] = double(r.workspace_bytes) / (1 << 20);
    if (ro.recompute > 0) j["recompute"] = ro.recompute;
    if (ro.method != "bptt") j["method"] = ro.method;
    if (stream) {
      j["streams"] = s.B;
      j["us_per_step"] = r.ms_median * 1000;
      j["steps_per_second"] = 1000 / r.ms_median;
      j["weight_bytes"] = r.weight_bytes;
      j["weight_gb_per_second"] = weight_gbs;
    }
    if (ro.gemm_bound) {
      j["gemm_ms"] = r.gemm_ms;
      j["gemm_gflops"] = flops / (r.gemm_ms * 1e6);
      j["fraction_of_gemm"] = r.gemm_ms / r.ms_median;
    }
    fmt::print("{}\n", j.dump());
  } else if (stream) {
    fmt::print("{:<40} stream {:>2}t {:>10.3f} us/step {:>12.0f} steps/s ({} streams) {:>8.1f} GFLOP/s "
               "{:>7.1f} GB/s of weights ({:.0f} KiB)\n",
               s.name, o.threads, r.ms_median * 1000, 1000 / r.ms_median, s.B, gflops, weight_gbs,
               double(r.weight_bytes) / 1024);
  } else {
    fmt::print("{:<40} {:>5} {:>2}t {:>10.3f} ms/step {:>12.0f} tok/s {:>8.1f} GFLOP/s {:>8.1f} MiB peak",
               s.name, o.mode, o.threads, r.ms_median, tokens / (r.ms_median / 1000), gflops,
               peak_rss_mib());
    if (ro.gemm_bound)
      fmt::print("  (GEMMs alone {:.3f} ms = {:.1f} GFLOP/s; {:.0f}% of the step)", r.gemm_ms,
                 flops / (r.gemm_ms * 1e6), 100 * r.gemm_ms / r.ms_median);
    fmt::print("\n");
  }
  std::fflush(stdout);
}

}  // namespace

void add_bench(CLI::App& app, Runner& run) {
  auto o = std::make_shared<BenchCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Time training (forward, loss, full backward, SGD update) or inference steps on random\n"
      "data, or one streaming step (--mode stream: Stream::step of B streams, T unused), for each SHAPE, written CELL[-PHI]_lL_tT_bB_iI_hH_oO[_LOSS][_bi][_pP][_nobias][_learn][_ln][_rdP][_wdP][_idP][_odP][_zoZ],\n"
      "e.g. lstm_l2_t100_b32_i65_h256_o65_xent or lstm_l1_t100_b64_i256_h512_o256_bi_p128 (the\n"
      "suffixes: bidirectional, an LSTM projection of P, no biases, a learned initial state,\n"
      "layer-normalized cells; training with recurrent dropout, weight drop, input or output\n"
      "dropout of P, zoneout of Z, e.g. lstm_l1_t100_b64_i256_h512_o256_ln_zo0.1).\n"
      "Prints the median time per step, tokens per second,\n"
      "GFLOP/s (matrix products only; docs/benchmarks.md) and the process's peak memory.");
  cmd->add_option("shapes", o->shapes, "Shapes to run, one after the other")->required();
  cmd->add_option("--mode", o->mode, "train, infer or stream (one step of B streams: latency)")
      ->check(CLI::IsMember({"train", "infer", "stream"}));
  cmd->add_option("--threads", o->threads, "Threads the kernels may use")->check(CLI::Range(1, 1024));
  cmd->add_option("--dtype", o->dtype, "f32 (default), f64 or bf16 (float with bfloat16 products)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
  cmd->add_option("--min-steps", o->run.min_steps, "Time at least this many steps (default 5)")
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--min-time", o->run.min_seconds, "... and for at least this many seconds (default 1)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--max-steps", o->run.max_steps, "Stop after this many timed steps (default 1000)")
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_flag("--gemm-bound", o->run.gemm_bound,
                "Also time the step's matrix products alone with the same GEMM (the bound)");
  cmd->add_option("--seed", o->run.seed, "Seed of the random model and data");
  cmd->add_option("--recompute", o->run.recompute,
                  "Train mode: recompute BPTT keeping the state every K steps (default: full BPTT)")
      ->check(kPositive);
  cmd->add_option("--method", o->run.method,
                  "Train mode: bptt (default), or an online method timed over the window's T "
                  "steps with an update after each: rtrl, uoro, kf-rtrl, snap1, eprop "
                  "(docs/math.md 8e)");
  cmd->add_flag("--json", o->json, "One JSON object per shape and line");
  cmd->callback([o, &run] {
    run = [o] {
      if (o->run.max_steps < o->run.min_steps)
        throw Error(ErrorKind::usage, "--max-steps", "is below --min-steps", "raise --max-steps");
      std::vector<BenchShape> shapes;  // all checked before any is run
      for (const std::string& s : o->shapes) shapes.push_back(parse_bench_shape(s));
      const ThreadCount on_threads(o->threads);
      for (const BenchShape& s : shapes)
        with_dtype(parse_dtype(o->dtype, "--dtype"), [&]<class Real>() { run_one<Real>(*o, s); });
    };
  });
}

}  // namespace bptt::cli
