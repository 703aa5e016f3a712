#include "bench/bench.hpp"

#include <fmt/core.h>
#include "bptt/methods.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <memory>
#include <charconv>
#include <chrono>
#include <random>

#include "bptt/error.hpp"
#include "bptt/infer.hpp"
#include "bptt/limits.hpp"
#include "bptt/optim.hpp"
#include "bptt/stream.hpp"
#include "bptt/unroll.hpp"
#include "kernels/gemm.hpp"

namespace bptt {

namespace {

const char* kShapeHint =
    "write CELL[-PHI]_lL_tT_bB_iI_hH_oO[_LOSS][_bi][_pP][_nobias][_learn][_ln][_rdP][_wdP][_idP]"
    "[_odP][_zoZ], e.g. "
    "lstm_l1_t100_b32_i64_h128_o64 or lstm_l1_t100_b64_i256_h512_o256_bi_p128";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = s.find(sep, begin);
    parts.push_back(s.substr(begin, end - begin));
    if (end == std::string::npos) return parts;
    begin = end + 1;
  }
}

int parse_size(const std::string& shape, const std::string& part, char letter) {
  int v = 0;
  const char* first = part.data() + 1;
  const char* last = part.data() + part.size();
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (part.size() < 2 || part[0] != letter || ec != std::errc() || ptr != last || v < 1 ||
      v > 1'000'000)
    throw Error(ErrorKind::usage, "shape " + shape,
                "'" + part + "' should be " + letter + " followed by a size in 1..1000000",
                kShapeHint);
  return v;
}

// A probability suffix: `prefix` followed by a number in (0, 1), e.g. rd0.25.
double parse_probability(const std::string& shape, const std::string& part, const std::string& prefix) {
  double v = 0;
  const char* first = part.data() + prefix.size();
  const char* last = part.data() + part.size();
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || !(v > 0 && v < 1))
    throw Error(ErrorKind::usage, "shape " + shape,
                "'" + part + "' should be " + prefix + " followed by a probability in (0, 1)",
                kShapeHint);
  return v;
}

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <class Real>
Batch<Real> random_batch(const BenchShape& s, std::uint64_t seed) {
  const ModelConfig& c = s.cfg;
  const std::size_t TB = std::size_t(s.T) * s.B;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Batch<Real> b;
  b.T = s.T;
  b.B = s.B;
  b.x.assign(TB * c.input_size, Real(0));
  if (s.loss == LossKind::xent) {  // one-hot symbols in, the next symbol's class out
    std::uniform_int_distribution<int> sym(0, c.input_size - 1), cls(0, c.output_size - 1);
    for (std::size_t r = 0; r < TB; ++r) b.x[r * c.input_size + std::size_t(sym(rng))] = Real(1);
    b.classes.resize(TB);
    for (auto& k : b.classes) k = cls(rng);
  } else {
    for (auto& v : b.x) v = Real(u(rng));
    b.y.resize(TB * c.output_size);
    for (auto& v : b.y) v = s.loss == LossKind::bce ? Real(u(rng) > 0) : Real(u(rng));
  }
  return b;
}

// The matrix products one step performs, with full.cpp's shapes, on scratch buffers, each
// through the library GEMM (kernels::gemm): the time their arithmetic alone takes. The per-step
// products, which full.cpp runs through its packed kernel, are replayed through the library
// GEMM too, so the bound is what the GEMM library alone would reach.
template <class Real>
struct GemmReplay {
  struct Call {
    bool ta, tb;
    int M, N, K;
  };
  std::vector<Call> calls;
  std::vector<Real> a, b, c;

  GemmReplay(const BenchShape& s, BenchMode mode) {
    const ModelConfig& cfg = s.cfg;
    const int T = s.T, B = s.B, H = cfg.hidden_size, GH = cfg.gates() * H, O = cfg.output_size,
              HO = cfg.state_size(), P = cfg.proj_size, W = cfg.output_width(),
              D = cfg.directions();
    const int TB = T * B;
    for (int k = 0; k < cfg.num_layers; ++k)
      for (int d = 0; d < D; ++d) {
        calls.push_back({false, true, TB, GH, cfg.layer_input_size(k)});
        for (int t = 0; t < T; ++t) {
          calls.push_back({false, true, B, GH, HO});
          if (P) calls.push_back({false, true, B, P, H});
        }
      }
    calls.push_back({false, true, TB, O, W});
    if (mode == BenchMode::train) {
      calls.push_back({true, false, O, W, TB});
      calls.push_back({false, false, TB, W, O});
      for (int k = cfg.num_layers - 1; k >= 0; --k)
        for (int d = 0; d < D; ++d) {
          for (int t = 0; t < T; ++t) {
            if (P) calls.push_back({false, false, B, H, P});
            calls.push_back({false, false, B, HO, GH});
          }
          calls.push_back({true, false, GH, HO, TB});
          calls.push_back({true, false, GH, cfg.layer_input_size(k), TB});
          if (P) calls.push_back({true, false, P, H, TB});
          if (k > 0) calls.push_back({false, false, TB, W, GH});
        }
    }
    std::size_t na = 0, nb = 0, nc = 0;
    for (const Call& x : calls) {
      na = std::max(na, std::size_t(x.M) * x.K);
      nb = std::max(nb, std::size_t(x.K) * x.N);
      nc = std::max(nc, std::size_t(x.M) * x.N);
    }
    a.assign(na, Real(0.01));
    b.assign(nb, Real(0.02));
    c.assign(nc, Real(0));
  }
  void run() {
    for (const Call& x : calls)
      kernels::gemm(x.ta, x.tb, x.M, x.N, x.K, Real(1), a.data(), x.ta ? x.M : x.K, b.data(),
                    x.tb ? x.K : x.N, Real(0), c.data(), x.N);
  }
};

}  // namespace

BenchShape parse_bench_shape(const std::string& text) {
  const std::vector<std::string> parts = split(text, '_');
  if (parts.size() < 7)
    throw Error(ErrorKind::usage, "shape " + text,
                "has " + std::to_string(parts.size()) + " parts separated by '_', not 7 or more",
                kShapeHint);
  BenchShape s;
  s.name = text;
  const std::vector<std::string> cell = split(parts[0], '-');
  if (cell.size() > 2)
    throw Error(ErrorKind::usage, "shape " + text, "'" + parts[0] + "' is not a cell", kShapeHint);
  s.cfg.cell = parse_cell(cell[0], "shape " + text + ": cell");
  if (cell.size() == 2) {
    if (s.cfg.cell != CellKind::elman)
      throw Error(ErrorKind::usage, "shape " + text,
                  "only elman takes a nonlinearity (" + parts[0] + ")",
                  "write elman-relu, elman-sigmoid, ...");
    s.cfg.nonlinearity = parse_activation(cell[1], "shape " + text + ": nonlinearity");
  }
  s.cfg.num_layers = parse_size(text, parts[1], 'l');
  s.T = parse_size(text, parts[2], 't');
  s.B = parse_size(text, parts[3], 'b');
  s.cfg.input_size = parse_size(text, parts[4], 'i');
  s.cfg.hidden_size = parse_size(text, parts[5], 'h');
  s.cfg.output_size = parse_size(text, parts[6], 'o');
  // Suffixes: a loss, then the torch.nn options, each at most once.
  std::set<std::string> seen;
  for (std::size_t i = 7; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    const auto prefixed = [&](const char* pre) {
      const std::size_t n = std::char_traits<char>::length(pre);
      return p.size() > n && p.compare(0, n, pre) == 0 &&
             std::isdigit(static_cast<unsigned char>(p[n]));
    };
    const std::string what = p == "bi" || p == "nobias" || p == "learn" || p == "ln" ? p
                             : prefixed("rd") ? "rd" : prefixed("wd") ? "wd"
                             : prefixed("id") ? "id" : prefixed("od") ? "od"
                             : prefixed("zo") ? "zo"
                             : p.size() > 1 && p[0] == 'p' && std::isdigit(static_cast<unsigned char>(p[1])) ? "p"
                                                                                 : "loss";
    if (!seen.insert(what).second)
      throw Error(ErrorKind::usage, "shape " + text, "'" + p + "' repeats an option", kShapeHint);
    if (what == "loss" && i != 7)
      throw Error(ErrorKind::usage, "shape " + text,
                  "'" + p + "' is not bi, pP, nobias, learn, ln, rdP, wdP, idP, odP or zoZ (a loss "
                  "comes first)", kShapeHint);
    if (p == "bi") s.cfg.bidirectional = true;
    else if (p == "nobias") s.cfg.bias = false;
    else if (p == "learn") s.cfg.initial_state = InitialState::learned;
    else if (p == "ln") s.cfg.layer_norm = true;
    else if (what == "rd") s.reg.recurrent = parse_probability(text, p, "rd");
    else if (what == "wd") s.reg.weight = parse_probability(text, p, "wd");
    else if (what == "id") s.reg.input = parse_probability(text, p, "id");
    else if (what == "od") s.reg.output = parse_probability(text, p, "od");
    else if (what == "zo") s.cfg.zoneout_h = s.zoneout = parse_probability(text, p, "zo");
    else if (what == "p") s.cfg.proj_size = parse_size(text, p, 'p');
    else s.loss = parse_loss(p, "shape " + text + ": loss");
  }
  if (s.zoneout > 0 && s.cfg.cell == CellKind::lstm) s.cfg.zoneout_c = s.zoneout;
  s.cfg.output_activation = s.loss == LossKind::xent  ? Activation::softmax
                            : s.loss == LossKind::bce ? Activation::sigmoid
                                                      : Activation::identity;
  s.cfg.validate("shape " + text);
  return s;
}

BenchMode parse_bench_mode(const std::string& s, const std::string& where) {
  if (s == "train") return BenchMode::train;
  if (s == "infer") return BenchMode::infer;
  if (s == "stream") return BenchMode::stream;
  throw Error(ErrorKind::usage, where, "'" + s + "' is not a mode", "use train, infer or stream");
}

const char* to_string(BenchMode m) {
  switch (m) {
    case BenchMode::train: return "train";
    case BenchMode::infer: return "infer";
    case BenchMode::stream: return "stream";
  }
  return "?";
}

double bench_flops(const BenchShape& s, BenchMode mode) {
  const ModelConfig& c = s.cfg;
  const double TB = double(mode == BenchMode::stream ? 1 : s.T) * s.B,
               GH = double(c.gates()) * c.hidden_size,
               D = c.directions(), HO = c.state_size();
  double f = 2 * TB * c.output_width() * c.output_size;
  for (int k = 0; k < c.num_layers; ++k)
    f += D * 2 * TB * (GH * (c.layer_input_size(k) + HO) + double(c.proj_size) * c.hidden_size);
  return mode != BenchMode::train ? f : 3 * f - D * 2 * TB * GH * c.input_size;
}

namespace {

// The weights and biases a forward step reads: every parameter but a learned initial state.
std::size_t weight_bytes(const ModelConfig& cfg, std::size_t real_size) {
  std::size_t n = 0;
  for (const ParamInfo& p : param_layout(cfg))
    if (p.name.rfind("init.", 0) != 0) n += p.size;
  return n * real_size;
}

// One Stream::step of s.B streams, timed in runs of consecutive steps (a step can take less
// than a microsecond, below what one clock reading resolves well), reported per step.
template <class Real>
BenchResult run_stream_bench(const BenchShape& s, const BenchOptions& o, const Model<Real>& model) {
  if (o.gemm_bound)
    throw Error(ErrorKind::usage, "--gemm-bound", "is for --mode train and infer",
                "leave it out with --mode stream");
  Stream<Real> stream(model, s.B, o.threads);
  const Batch<Real> batch = random_batch<Real>(s, o.seed + 1);
  const std::size_t in = std::size_t(s.B) * s.cfg.input_size;
  std::vector<Real> y(std::size_t(s.B) * s.cfg.output_size);
  int t = 0;
  const auto one = [&] {
    stream.step(batch.x.data() + std::size_t(t) * in, y.data());
    t = (t + 1) % s.T;  // the inputs of the random sequence in turn
  };
  // Steps per timed run: enough for about 0.2 ms.
  one();
  int run = 1;
  for (;;) {
    const auto t0 = Clock::now();
    for (int i = 0; i < run; ++i) one();
    if (ms_since(t0) >= 0.2 || run >= (1 << 20)) break;
    run *= 2;
  }
  std::vector<double> ms;
  const auto start = Clock::now();
  while (int(ms.size()) < o.max_steps &&
         (int(ms.size()) < o.min_steps || ms_since(start) < 1000 * o.min_seconds)) {
    const auto t0 = Clock::now();
    for (int i = 0; i < run; ++i) one();
    ms.push_back(ms_since(t0) / run);
  }
  BenchResult r;
  r.steps = int(ms.size()) * run;
  r.ms_median = median(ms);
  r.ms_min = *std::min_element(ms.begin(), ms.end());
  r.ms_max = *std::max_element(ms.begin(), ms.end());
  r.workspace_bytes = sizeof(Real) * model.params.size();
  r.weight_bytes = weight_bytes(s.cfg, sizeof(Real));
  return r;
}

}  // namespace

template <class Real>
BenchResult run_bench(const BenchShape& s, const BenchOptions& o) {
  Model<Real> model(s.cfg);
  model.init_uniform(o.seed);
  if (o.mode == BenchMode::stream) return run_stream_bench(s, o, model);
  {  // the batch (x, y) and, when not recomputing, the workspace: refused before allocating
    const ModelConfig& c = s.cfg;
    const double TB = double(s.T) * s.B;
    const double need =
        TB * (c.input_size + c.output_size) * sizeof(Real) +
        (o.recompute > 0 ? 0.0
                         : TB * c.units() * c.hidden_size * (c.gates() + 4.0) * sizeof(Real));
    check_memory(need, "shape " + s.name,
                 fmt::format("the batch and workspace of T = {}, B = {}", s.T, s.B),
                 "use a smaller T or B");
  }
  const GradMethodSpec method = parse_grad_method(o.method, "--method");
  const bool online_method_run = method.method == GradMethod::rtrl || is_online(method.method);
  if (method.method != GradMethod::bptt && !online_method_run)
    throw Error(ErrorKind::usage, "--method", "bench trains with bptt, rtrl, uoro, kf-rtrl, snap1 or eprop",
                "use --recompute K for recompute BPTT");
  if (online_method_run && (o.mode != BenchMode::train || o.recompute > 0))
    throw Error(ErrorKind::usage, "--method", "an online method times training steps only",
                "use --mode train without --recompute");
  if (is_online(method.method))
    check_memory(double(online_bytes(online_method(method.method), s.cfg, s.B, sizeof(Real))),
                 "shape " + s.name, to_string(method) + "'s estimates", "use a smaller H or B");
  if (method.method == GradMethod::rtrl)
    check_memory(double(s.B) * s.cfg.num_layers * s.cfg.hidden_size *
                     (s.cfg.cell == CellKind::lstm ? 2 : 1) * double(param_count(s.cfg)) * sizeof(Real),
                 "shape " + s.name, "RTRL's sensitivities", "use a smaller H or B");
  Batch<Real> batch = random_batch<Real>(s, o.seed + 1);
  batch.validate(s.cfg, s.loss, "shape " + s.name);
  const bool train = o.mode == BenchMode::train;
  // Recompute holds one segment's workspace, full BPTT all T steps; inference is lean
  // (bptt/infer.hpp): a chunk of steps at a time, writing ŷ for all T.
  std::unique_ptr<Recompute<Real>> recompute;
  std::unique_ptr<Workspace<Real>> ws;
  std::unique_ptr<Inference<Real>> inference;
  std::vector<Real> yhat;
  std::unique_ptr<OnlineGradient<Real>> online;
  std::unique_ptr<RtrlStream<Real>> rtrl;
  if (is_online(method.method)) {
    online = std::make_unique<OnlineGradient<Real>>(online_method(method.method), s.cfg, s.B, o.seed);
  } else if (method.method == GradMethod::rtrl) {
    rtrl = std::make_unique<RtrlStream<Real>>(s.cfg, s.B);
  } else if (train && o.recompute > 0) {
    recompute = std::make_unique<Recompute<Real>>(s.cfg, s.T, s.B, o.recompute);
  } else if (train) {
    ws = std::make_unique<Workspace<Real>>(s.cfg, s.T, s.B);
  } else {
    inference = std::make_unique<Inference<Real>>(s.cfg, s.B);
    yhat.resize(std::size_t(s.T) * s.B * s.cfg.output_size);
  }
  Gradients<Real> grads(s.cfg, train ? s.T : 1, train ? s.B : 1, /*with_x=*/false);
  OptimizerConfig sgd;
  sgd.kind = OptimizerKind::sgd;
  Optimizer<Real> opt(sgd, train ? model.params.size() : 0);

  BenchResult r;
  r.weight_bytes = weight_bytes(s.cfg, sizeof(Real));
  std::uint64_t steps = 0;
  std::vector<Real> step_grad;
  // An online method: the window's steps one at a time from a zero state, an update after each.
  auto online_window = [&] {
    const int I = s.cfg.input_size, O = s.cfg.output_size;
    if (online) online->reset({}, {});
    if (rtrl) rtrl->reset({}, {});
    for (int t = 0; t < s.T; ++t) {
      const std::size_t tb = std::size_t(t) * s.B;
      const Real* x = batch.x.data() + tb * I;
      const Real* y = batch.y.empty() ? nullptr : batch.y.data() + tb * O;
      const std::int64_t* cls = batch.classes.empty() ? nullptr : batch.classes.data() + tb;
      if (online)
        online->step(model, s.loss, x, y, cls, nullptr, double(s.B), step_grad);
      else
        rtrl->step(model, s.loss, x, y, cls, nullptr, double(s.B), step_grad);
      opt.step(model.params.data(), step_grad.data(), 1e-6);
    }
  };
  auto step = [&] {
    if (online || rtrl) {
      online_window();
    } else if (train) {
      grads.zero();
      if (s.reg.any(s.cfg)) {  // this step's masks and flags, drawn as the trainer draws them
        Regularizer reg = s.reg;
        reg.seed = o.seed, reg.stream = steps++;
        draw_masks(s.cfg, reg, batch);
      }
      if (recompute)
        recompute->loss_and_gradients(model, batch, s.loss, grads);
      else
        loss_and_gradients(model, batch, s.loss, *ws, grads);
      opt.step(model.params.data(), grads.params.data(), 1e-6);
    } else {
      inference->run(model, batch, {.yhat = yhat});
    }
  };
  auto time_it = [&](auto&& f) {
    f();  // warm-up: page in the buffers, start the BLAS threads
    std::vector<double> ms;
    const auto start = Clock::now();
    while (int(ms.size()) < o.max_steps &&
           (int(ms.size()) < o.min_steps || ms_since(start) < 1000 * o.min_seconds)) {
      const auto t0 = Clock::now();
      f();
      ms.push_back(ms_since(t0));
    }
    return ms;
  };
  const std::vector<double> ms = time_it(step);
  r.workspace_bytes = (ws          ? ws->bytes()
                       : recompute ? recompute->bytes()
                       : online    ? online->bytes()
                       : rtrl      ? rtrl->bytes()
                                   : inference->bytes() + yhat.size() * sizeof(Real)) +
                      sizeof(Real) * model.params.size() * (train ? 2 : 1);
  r.steps = int(ms.size());
  r.ms_median = median(ms);
  r.ms_min = *std::min_element(ms.begin(), ms.end());
  r.ms_max = *std::max_element(ms.begin(), ms.end());
  if (o.gemm_bound) {
    GemmReplay<Real> replay(s, o.mode);
    r.gemm_ms = median(time_it([&] { replay.run(); }));
  }
  return r;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

template BenchResult run_bench<float>(const BenchShape&, const BenchOptions&);
template BenchResult run_bench<double>(const BenchShape&, const BenchOptions&);

}  // namespace bptt
