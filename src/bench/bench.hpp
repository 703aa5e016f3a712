// Benchmark shapes, their arithmetic and the timed step that `bptt bench` runs.
//
// A shape is written `CELL[-PHI]_lL_tT_bB_iI_hH_oO[_LOSS][_bi][_pP][_nobias][_learn]`, e.g.
// lstm_l2_t100_b32_i65_h256_o65_xent or lstm_l1_t100_b64_i256_h512_o256_bi_p128: the cell as in
// model files (elman, lstm, gru; Elman's φ after a dash, default tanh), then L, T, B, I, H, O,
// the loss (mse, the default; bce; xent), and the torch.nn options in any order (bidirectional,
// an LSTM projection of P, no biases, a learned initial state). The readout θ follows the loss
// (identity, sigmoid, softmax).
//
// FLOPs count the matrix products only (2·M·N·K each), as every RNN benchmark does; see
// docs/benchmarks.md. With I_k the input size of layer k (I, then H), G the gate count:
//   forward F = Σ_k D·2·T·B·(G·H·(I_k + H_out) + P·H) + 2·T·B·D·H_out·O
//   train     = 3·F − D·2·T·B·G·H·I   (weight gradients F, state gradients F less the first
//                                      layer's dL/dx, which training does not need)
// with D directions, H_out = P (projection) or H, and I_k = I, then D·H_out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bptt/model.hpp"
#include "bptt/unroll.hpp"

namespace bptt {

struct BenchShape {
  std::string name;  // as written
  ModelConfig cfg;
  int T = 0, B = 0;
  LossKind loss = LossKind::mse;
  // Issue 18's training-mode regularization (suffixes _rdP, _wdP, _idP, _odP; _zoZ sets the
  // model's zoneout_h and, for LSTM, zoneout_c to Z): drawn at every training step.
  Regularizer reg;
  double zoneout = 0;
};

// Throws bptt::Error naming the shape and the part that is wrong.
BenchShape parse_bench_shape(const std::string& s);

// train and infer time a whole sequence of T steps; stream times one Stream::step of B streams
// (include/bptt/stream.hpp): the latency of one time step, T unused.
enum class BenchMode { train, infer, stream };
BenchMode parse_bench_mode(const std::string& s, const std::string& where);
const char* to_string(BenchMode m);

// Matrix-product FLOPs of one step (formula above; stream: the forward formula for T = 1).
double bench_flops(const BenchShape& s, BenchMode mode);

struct BenchResult {
  int steps = 0;                 // timed steps (after one warm-up step)
  double ms_median = 0, ms_min = 0, ms_max = 0;
  double gemm_ms = 0;            // median time of the step's matrix products alone (0: not run)
  std::size_t workspace_bytes = 0;  // workspace + parameters (+ gradients when training)
  std::size_t weight_bytes = 0;  // the weights and biases a forward step reads (the recurrent
                                 // layers' and the head's): one stream's step is matrix-vector
                                 // products, and reading them is its floor
};

struct BenchOptions {
  BenchMode mode = BenchMode::train;
  int min_steps = 5;         // time at least this many steps
  double min_seconds = 1.0;  // and keep going until this much time has passed
  int max_steps = 1000;
  bool gemm_bound = false;   // also time the same matrix products alone (the GEMM bound)
  int recompute = 0;         // train: > 0 runs recompute BPTT with states kept every K steps
  // train: "bptt", or an online method ("rtrl", "uoro", "kf-rtrl", "snap1", "eprop"): the T
  // steps of the window one at a time, an update after each, as `bptt train --method`
  std::string method = "bptt";
  int threads = 1;           // stream: the Stream's own thread count
  std::uint64_t seed = 1;
};

// Builds a model (PyTorch's initialization) and a random batch for the shape and times steps:
// train = forward over the whole sequence, the loss, full backward (recompute:K when
// o.recompute > 0) and an SGD update;
// infer = forward and the readout; stream = one Stream::step of B streams (timed in runs of
// consecutive steps of about 0.2 ms each, reported per step).
template <class Real>
BenchResult run_bench(const BenchShape& s, const BenchOptions& o);

// Peak resident memory of this process so far, MiB (getrusage).
double peak_rss_mib();

}  // namespace bptt
