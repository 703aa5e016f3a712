// bptt train: fit a model to text, a series, labelled sequences or a safetensors data file.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "dist/dist.hpp"
#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "common.hpp"
#include "embed.hpp"
#include "task_options.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct TrainOptions {
  DataOptions data;
  std::string cell = "lstm", nonlinearity = "tanh";
  int hidden = 128, layers = 2;
  // The torch.nn options (model.hpp): bidirectional layers, an LSTM projection, no biases, a
  // learned initial state.
  bool bidirectional = false, no_bias = false, learn_initial_state = false;
  bool layer_norm = false;  // Ba et al.'s layer-normalized cells (model.hpp)
  int proj_size = 0;
  double dropout = 0, forget_bias = 0;
  // Issue 18: time-consistent dropout (docs/training.md) and zoneout.
  double input_dropout = 0, recurrent_dropout = 0, output_dropout = 0, weight_drop = 0;
  double zoneout_h = 0, zoneout_c = 0;
  std::string optimizer = "adam", schedule = "constant";
  double lr = 2e-3, momentum = 0, weight_decay = -1, gamma = 0.5, min_lr = 0;
  bool nesterov = false;
  std::int64_t warmup = 0, step_size = 1000, decay_steps = 0;
  double clip_norm = 5, clip_value = 0;
  std::int64_t steps = 0, epochs = 0;
  double time_budget = 0;
  std::string dtype = "f32";
  std::uint64_t seed = 1;
  int threads = 1;
  std::string out, snapshot, resume, metrics;
  std::string save_dtype;  // empty: the training precision's (F32 for bf16)
  std::int64_t snapshot_every = 0, eval_every = 0, log_every = 0;
  // How each window's gradient is computed.
  std::string method = "bptt";
  int recompute = 0, k1 = 0, k2 = 0;
  double memory_budget = 0;  // MB
  bool skip_nonfinite = false;
  std::int64_t check_replicas = 0;  // MPI: compare the parameters of all processes every N steps
  std::string allreduce = "overlap";  // MPI: sum each layer's gradients as soon as it has them
  // Which model/optimizer options the user gave; the others take the data kind's defaults.
  bool given_hidden = false, given_layers = false, given_lr = false, given_weight_decay = false;
};

// SIGINT and SIGTERM: finish the current step, save the snapshot, evaluate and save the model.
// A second signal of the same kind kills the process at once (the default action).
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_stop_signal(int sig) {
  g_interrupted = sig;
  std::signal(sig, SIG_DFL);
}

std::string fingerprint(const TrainOptions& o, const TrainConfig& tc, const ModelConfig& c, int B,
                        int T, const std::string& kind) {
  return fmt::format(
      "cell={} phi={} theta={} I={} H={} L={} O={} data={} B={} T={} optimizer={} lr={} "
      "momentum={} nesterov={} weight_decay={} schedule={} warmup={} step_size={} gamma={} "
      "decay_steps={} min_lr={} clip_norm={} clip_value={} dropout={} seed={} dtype={}",
      to_string(c.cell), to_string(c.nonlinearity), to_string(c.output_activation), c.input_size,
      c.hidden_size, c.num_layers, c.output_size, kind, B, T, o.optimizer, tc.schedule.lr,
      o.momentum, o.nesterov, tc.optimizer.weight_decay, o.schedule, o.warmup, o.step_size, o.gamma, o.decay_steps,
      o.min_lr, o.clip_norm, o.clip_value, o.dropout, o.seed, o.dtype) +
         // Only when not the default, so snapshots of plain BPTT runs keep their fingerprint.
         (tc.k2 > T ? fmt::format(" k2={}", tc.k2) : "") + (tc.rtrl ? " method=rtrl" : "") +
         (tc.online ? " method=" + to_string(*tc.online) : std::string()) +
         (c.bidirectional ? " bidirectional" : "") +
         (c.proj_size ? fmt::format(" proj_size={}", c.proj_size) : "") +
         (c.bias ? "" : " bias=false") +
         (c.initial_state == InitialState::learned ? " initial_state=learned" : "") +
         (c.layer_norm ? " layer_norm" : "") +
         (o.input_dropout > 0 ? fmt::format(" input_dropout={}", o.input_dropout) : "") +
         (o.recurrent_dropout > 0 ? fmt::format(" recurrent_dropout={}", o.recurrent_dropout) : "") +
         (o.output_dropout > 0 ? fmt::format(" output_dropout={}", o.output_dropout) : "") +
         (o.weight_drop > 0 ? fmt::format(" weight_drop={}", o.weight_drop) : "") +
         (c.zoneout_h > 0 ? fmt::format(" zoneout_h={}", c.zoneout_h) : "") +
         (c.zoneout_c > 0 ? fmt::format(" zoneout_c={}", c.zoneout_c) : "");
}

// The directory of an output file must exist before hours of training are spent.
void check_output_path(const std::string& path, const char* option) {
  if (path.empty()) return;
  const std::filesystem::path p(path);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw Error(ErrorKind::io, path, std::string("the directory of ") + option + " does not exist",
                "create it first or choose another path");
  if (std::filesystem::is_directory(p, ec))
    throw Error(ErrorKind::io, path, std::string(option) + " names a directory",
                "give a file name");
}

template <class Real>
void run_train(const TrainOptions& o) {
  check_output_path(o.out, "--out");
  check_output_path(o.snapshot, "--snapshot");
  check_output_path(o.metrics, "--metrics");
  if (o.snapshot_every > 0 && o.snapshot.empty())
    fmt::print(stderr, "note: --snapshot-every has no effect without --snapshot\n");
  const ThreadCount on_threads(o.threads);
  const TaskData data(o.data);
  const int B = o.data.batch ? o.data.batch : data.default_batch();
  if (o.k1 > 0 && o.data.seq_len > 0 && o.data.seq_len != o.k1)
    throw Error(ErrorKind::usage, "--k1",
                fmt::format("{} differs from --seq-len {}", o.k1, o.data.seq_len),
                "--k1 is the window each update advances by: give one of them");
  if ((o.k1 > 0 || o.k2 > 0) && data.kind() != "text")
    throw Error(ErrorKind::usage, o.k1 > 0 ? "--k1" : "--k2",
                "separate update and backprop windows need continuing streams (--text)",
                "for this data use --seq-len");
  const int T = o.k1 ? o.k1 : o.data.seq_len ? o.data.seq_len : data.default_seq_len();

  ModelConfig cfg;
  cfg.cell = parse_cell(o.cell, "--cell");
  cfg.nonlinearity = parse_activation(o.nonlinearity, "--nonlinearity");
  cfg.output_activation = data.output_activation();
  cfg.input_size = data.input_size();
  cfg.output_size = data.output_size();
  cfg.hidden_size = o.given_hidden ? o.hidden : data.default_hidden();
  cfg.num_layers = o.given_layers ? o.layers : data.default_layers();
  cfg.bidirectional = o.bidirectional;
  cfg.proj_size = o.proj_size;
  cfg.bias = !o.no_bias;
  cfg.initial_state = o.learn_initial_state ? InitialState::learned : InitialState::zero;
  cfg.layer_norm = o.layer_norm;
  for (const auto& [z, name] : {std::pair{o.zoneout_h, "--zoneout-h"}, {o.zoneout_c, "--zoneout-c"}})
    if (!(z >= 0 && z < 1))
      throw Error(ErrorKind::value, name, fmt::format("{} is outside [0, 1)", z),
                  "the probability that a unit keeps its previous value; 0 disables it");
  if (o.zoneout_c > 0 && cfg.cell != CellKind::lstm)
    throw Error(ErrorKind::usage, "--zoneout-c", "only an LSTM has a cell state",
                "use --zoneout-h, or train with --cell lstm");
  cfg.zoneout_h = o.zoneout_h;
  cfg.zoneout_c = o.zoneout_c;
  if (o.bidirectional) {
    if (const std::string why = data.bidirectional_refusal(); !why.empty())
      throw Error(ErrorKind::usage, "--bidirectional", "refused for " + why,
                  "train a left-to-right model");
    cfg.readout = data.bidirectional_readout();
  }
  if (o.proj_size != 0 && cfg.cell != CellKind::lstm)
    throw Error(ErrorKind::usage, "--proj-size",
                "only an LSTM has a projection (torch.nn.LSTM's proj_size)",
                "leave --proj-size out, or train with --cell lstm");
  cfg.validate("options");
  if (o.forget_bias != 0 && cfg.cell != CellKind::lstm)
    throw Error(ErrorKind::usage, "--forget-bias", "only an LSTM has a forget gate",
                "leave --forget-bias out, or train with --cell lstm");
  Model<Real> model(cfg);
  init_model(model, o.seed, o.forget_bias);
  auto task = data.task<Real>(B, T);
  model.metadata = task->model_metadata();

  TrainConfig tc;
  tc.optimizer.kind = parse_optimizer(o.optimizer, "--optimizer");
  tc.optimizer.momentum = o.momentum;
  tc.optimizer.nesterov = o.nesterov;
  const double wd = o.given_weight_decay ? o.weight_decay : data.default_weight_decay();
  tc.optimizer.weight_decay =
      wd >= 0 ? wd : (tc.optimizer.kind == OptimizerKind::adamw ? 0.01 : 0);
  tc.schedule.kind = parse_schedule(o.schedule, "--schedule");
  tc.schedule.lr = o.given_lr ? o.lr : data.default_lr();
  tc.schedule.warmup = o.warmup;
  tc.schedule.step_size = o.step_size;
  tc.schedule.gamma = o.gamma;
  tc.schedule.min_lr = o.min_lr;
  const std::int64_t bpe = task->batches_per_epoch();
  std::int64_t epochs = o.epochs;
  if (o.steps == 0 && o.epochs == 0 && o.time_budget == 0) epochs = data.default_epochs();
  std::int64_t limit = o.steps;
  if (epochs > 0) limit = limit ? std::min(limit, epochs * bpe) : epochs * bpe;
  tc.schedule.total = o.decay_steps ? o.decay_steps : limit;
  tc.clip_norm = o.clip_norm;
  tc.clip_value = o.clip_value;
  tc.dropout = o.dropout;
  tc.regularizer.input = o.input_dropout;
  tc.regularizer.recurrent = o.recurrent_dropout;
  tc.regularizer.output = o.output_dropout;
  tc.regularizer.weight = o.weight_drop;
  tc.seed = o.seed;
  tc.recompute = o.recompute;
  tc.memory_budget_mb = o.memory_budget;
  tc.k2 = o.k2;
  tc.rtrl = o.method == "rtrl";
  if (o.method != "bptt" && o.method != "rtrl")
    tc.online = online_method(parse_grad_method(o.method, "--method").method);
  tc.skip_nonfinite = o.skip_nonfinite;
  tc.overlap_allreduce = o.allreduce == "overlap";
  Trainer<Real> trainer(model, *task, tc);
  const std::string fp = fingerprint(o, tc, cfg, B, T, data.kind());
  if (!o.resume.empty()) trainer.load_snapshot(o.resume, fp);
  const bool evaluates = task->has_evaluation();
  // Under mpirun (docs/distributed.md) rank 0 alone prints and writes files.
  const bool root = dist::rank() == 0;
  if (root && dist::active())
    fmt::print(stderr, "distributed: {} processes, {} sequences of each batch per process\n",
               dist::size(), dist::rows_of(B).count());
  if (root && trainer.recompute_interval() > 0)
    fmt::print(stderr, "gradient: recompute, states kept every {} steps ({:.3g} MB instead of "
               "{:.3g} MB)\n", trainer.recompute_interval(),
               double(recompute_bytes(cfg, task->T(), B, trainer.recompute_interval(), sizeof(Real), o.dropout > 0)) / 1e6,
               double(full_bptt_bytes(cfg, task->T(), B, sizeof(Real), o.dropout > 0)) / 1e6);
  if (root && tc.k2 > task->T())
    fmt::print(stderr, "gradient: BPTT({}; {}): an update every {} steps, each backpropagating "
               "{} steps\n", tc.k2, task->T(), task->T(), tc.k2);
  if (root && tc.rtrl)
    fmt::print(stderr, "gradient: online RTRL, an update after every time step\n");
  if (root && tc.online)
    fmt::print(stderr, "gradient: {} (docs/math.md 8e), an update after every time step; its "
               "estimate takes {:.3g} MB\n", to_string(*tc.online),
               double(online_bytes(*tc.online, cfg, B, sizeof(Real))) / 1e6);

  if (root) fmt::print(stderr, "data: {}\n", data.describe());
  if (root) {
    std::string options;
    if (cfg.bidirectional)
      options += cfg.readout == Readout::final_state
                     ? " bidirectional (the head reads both directions' final states)"
                     : " bidirectional";
    if (cfg.proj_size) options += fmt::format(" projected to {}", cfg.proj_size);
    if (!cfg.bias) options += " no bias";
    if (cfg.initial_state == InitialState::learned) options += " learned initial state";
    if (cfg.layer_norm) options += " layer norm";
    if (o.input_dropout > 0) options += fmt::format(" input dropout {}", o.input_dropout);
    if (o.recurrent_dropout > 0) options += fmt::format(" recurrent dropout {}", o.recurrent_dropout);
    if (o.output_dropout > 0) options += fmt::format(" output dropout {}", o.output_dropout);
    if (o.weight_drop > 0) options += fmt::format(" weight drop {}", o.weight_drop);
    if (cfg.zoneout_h > 0) options += fmt::format(" zoneout h {}", cfg.zoneout_h);
    if (cfg.zoneout_c > 0) options += fmt::format(" zoneout c {}", cfg.zoneout_c);
    fmt::print(stderr, "model: {} {}x{}{}, {} parameters, {} batches of {}x{} per epoch\n",
               to_string(cfg.cell), cfg.num_layers, cfg.hidden_size,
               options.empty() ? "" : "," + options, model.params.size(), bpe, B, task->T());
  }

  std::unique_ptr<std::ofstream> metrics;
  if (root && !o.metrics.empty()) {
    metrics = std::make_unique<std::ofstream>(o.metrics, std::ios::trunc);
    if (!*metrics)
      throw Error(ErrorKind::io, o.metrics, "cannot write the metrics file", "check the directory");
    *metrics << "step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput"
             << (o.skip_nonfinite ? ",skipped_nonfinite\n" : "\n");
  }
  const bool tty = isatty(fileno(stderr));
  // Embedded (the Python module), the host owns the signals and asks to stop through the hooks.
  TrainHooks* const hooks = train_hooks();
  if (!hooks) {
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
  }
  bool stopped_by_host = false;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  double loss_sum = 0, last_report = 0;
  std::int64_t loss_n = 0, steps_this_run = 0;
  const double items_per_step = double(B) * task->T();  // T: --seq-len, task->T(): steps
  auto report = [&](const StepInfo& info, const Metrics* val) {
    const double t = elapsed();
    const double rate = double(steps_this_run) * items_per_step / std::max(t, 1e-9);
    const double train_loss = loss_n ? loss_sum / double(loss_n) : info.loss;
    std::string eta;
    if (limit > 0) eta = fmt::format(" | ETA {:.0f}s", double(limit - trainer.steps_done()) * t / double(std::max<std::int64_t>(steps_this_run, 1)));
    else if (o.time_budget > 0) eta = fmt::format(" | {:.0f}s left", std::max(0.0, o.time_budget - t));
    const std::string line = fmt::format(
        "step {}{} | epoch {} | loss {:.4f}{} | lr {:.2e} | {:.0f} {}/s{}", trainer.steps_done(),
        limit > 0 ? fmt::format("/{}", limit) : "", trainer.epoch() + 1, train_loss,
        val ? fmt::format(" | val {:.4f}", val->loss) : "", info.lr, rate,
        data.kind() == "text" ? "chars" : "steps", eta);
    if (!root)
      ;
    else if (tty && !val)
      fmt::print(stderr, "\r{:<100}", line);
    else
      fmt::print(stderr, "{}{}\n", tty ? "\r" : "", line);
    if (metrics)
      *metrics << fmt::format("{},{:.3f},{:.6g},{},{:.6g},{:.6g},{:.1f}", trainer.steps_done(), t,
                              train_loss, val ? fmt::format("{:.6g}", val->loss) : "", info.lr,
                              info.grad_norm, rate)
               << (o.skip_nonfinite ? fmt::format(",{}\n", trainer.skipped()) : "\n")
               << std::flush;
    if (root && hooks && hooks->on_row) {
      TrainRow row;
      row.step = trainer.steps_done();
      row.elapsed_s = t;
      row.train_loss = train_loss;
      row.has_val_loss = val != nullptr;
      row.val_loss = val ? val->loss : 0.0;
      row.lr = info.lr;
      row.grad_norm = info.grad_norm;
      row.throughput = rate;
      row.skipped_nonfinite = o.skip_nonfinite ? trainer.skipped() : -1;
      hooks->on_row(row);
    }
    loss_sum = 0;
    loss_n = 0;
    last_report = t;
  };

  StepInfo info;
  // Every process must take the same decisions: stop when any of them would (a budget reached,
  // or a signal; max over processes: 2 = a signal, 1 = a budget).
  bool interrupted = false;
  const auto should_stop = [&] {
    const bool budget = (limit > 0 && trainer.steps_done() >= limit) ||
                        (o.time_budget > 0 && elapsed() >= o.time_budget);
    if (hooks && hooks->stop && !stopped_by_host) stopped_by_host = hooks->stop();
    const double v =
        dist::max(g_interrupted || stopped_by_host ? 2.0 : budget ? 1.0 : 0.0);
    interrupted = v >= 2;
    return v > 0;
  };
  while (!should_stop()) {
    info = trainer.step();
    ++steps_this_run;
    if (!info.skipped) {  // a skipped update's loss is not finite
      loss_sum += info.loss;
      ++loss_n;
    }
    // Fault injection for the test of --check-replicas (docs/distributed.md): the named rank's
    // parameters drift after the first step.
    if (trainer.steps_done() == 1 && dist::active())
      if (const char* r = std::getenv("BPTT_FAULT_PERTURB_RANK"); r && std::atoi(r) == dist::rank())
        model.params[0] += Real(1e-3);
    if (o.check_replicas > 0 && trainer.steps_done() % o.check_replicas == 0) {
      const std::vector<int> bad =
          dist::differing_replicas(model.params.data(), model.params.size() * sizeof(Real));
      if (!bad.empty()) {
        std::string ranks;
        for (int r : bad) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
        throw Error(ErrorKind::usage, "--check-replicas",
                    fmt::format("after step {} the parameters of rank {} "
                                "differ from rank 0's",
                                trainer.steps_done(), ranks),
                    "the processes diverged: check that every rank runs the same bptt, options "
                    "and data, then --resume from the last snapshot");
      }
    }
    if (should_stop()) break;  // the final evaluation reports this step
    const bool eval_now = root && evaluates && o.eval_every > 0 && trainer.steps_done() % o.eval_every == 0;
    if (eval_now) {
      const Metrics val = task->evaluate(model);
      report(info, &val);
    } else if (o.log_every > 0 ? trainer.steps_done() % o.log_every == 0
                               : elapsed() - last_report >= (tty ? 0.5 : 10.0)) {
      report(info, nullptr);
    }
    if (!o.snapshot.empty() && o.snapshot_every > 0 && trainer.steps_done() % o.snapshot_every == 0)
      trainer.save_snapshot(o.snapshot, fp);
  }
  if (interrupted) {  // the snapshot first: it is what --resume needs
    if (root)
    fmt::print(stderr, "\n{}: saving{} and evaluating\n",
               g_interrupted == SIGTERM && !stopped_by_host ? "terminated" : "interrupted",
               o.snapshot.empty() ? "" : " the snapshot");
    if (!o.snapshot.empty()) trainer.save_snapshot(o.snapshot, fp);
  }
  if (!o.snapshot.empty() && !interrupted) trainer.save_snapshot(o.snapshot, fp);
  if (!root) return;  // every process holds the same model; rank 0 evaluates and writes it
  Metrics val;
  if (evaluates) val = task->evaluate(model);
  if (steps_this_run > 0) report(info, evaluates ? &val : nullptr);
  if (!o.out.empty())
    save_model(model, o.out,
               o.save_dtype.empty() ? (std::is_same_v<Real, float> ? DType::f32 : DType::f64)
                                    : parse_dtype(o.save_dtype, "--save-dtype"));
  fmt::print("trained {} steps ({} this run) in {:.1f}s", trainer.steps_done(), steps_this_run,
             elapsed());
  if (evaluates) {
    fmt::print("; validation loss {:.4f}", val.loss);
    for (const auto& [k, v] : val.values) fmt::print(", {} {:.4g}", k, v);
  } else {
    fmt::print("; no held-out data to evaluate on");
  }
  if (o.skip_nonfinite)
    fmt::print("; {} non-finite update{} skipped", trainer.skipped(),
               trainer.skipped() == 1 ? "" : "s");
  fmt::print("\n");
  if (!val.summary.empty()) fmt::print("{}\n", val.summary);
  if (!o.out.empty()) fmt::print("model written to {}\n", o.out);
}

}  // namespace

void add_train(CLI::App& app, Runner& run) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a model by exact backpropagation through time.\n"
      "Text: a character model on B contiguous streams, windows of --seq-len steps, the state\n"
      "carried between windows with the gradient cut at each window start (as char-rnn).");
  add_data_options(cmd, o->data);
  for (const char* name : {"--seq-len", "--batch"})  // 0 is not "the default" when typed
    cmd->get_option(name)->check(kPositive);
  cmd->add_option("--cell", o->cell, "elman, lstm or gru (default lstm)")->group("Model");
  cmd->add_option("--nonlinearity", o->nonlinearity, "Elman's φ: tanh, relu, sigmoid, identity")->group("Model");
  cmd->add_option("--hidden", o->hidden, "Hidden units per layer (default: text 128, csv 32, ts 64, task 128)")
      ->check(kPositive)->group("Model");
  cmd->add_option("--layers", o->layers, "Stacked layers (default: text 2, csv, ts and task 1)")
      ->check(kPositive)->group("Model");
  cmd->add_option("--dropout", o->dropout, "Dropout between layers, as PyTorch (default 0)")->group("Model");
  cmd->add_option("--recurrent-dropout", o->recurrent_dropout,
                  "Variational dropout on the h entering W_hh: one mask per sequence and layer,\n"
                  "the same at every step (Gal & Ghahramani 2016; default 0)")
      ->group("Model");
  cmd->add_option("--input-dropout", o->input_dropout,
                  "One dropout mask per sequence on the network's input, every step (default 0)")
      ->group("Model");
  cmd->add_option("--output-dropout", o->output_dropout,
                  "One dropout mask per sequence on the top layer's output entering the head\n"
                  "(default 0)")
      ->group("Model");
  cmd->add_option("--weight-drop", o->weight_drop,
                  "DropConnect on every W_hh, one mask per training step (Merity et al. 2018;\n"
                  "default 0)")
      ->group("Model");
  cmd->add_option("--zoneout-h", o->zoneout_h,
                  "Zoneout of h: each unit keeps its previous value with this probability at each\n"
                  "step; evaluation uses the expectation (Krueger et al. 2017; model metadata)")
      ->group("Model");
  cmd->add_option("--zoneout-c", o->zoneout_c, "Zoneout of the LSTM's cell state (as --zoneout-h)")
      ->group("Model");
  cmd->add_flag("--bidirectional", o->bidirectional,
                "Every layer also runs right to left (torch's bidirectional=True); a .ts or\n"
                "adding-task classifier then reads both directions' final states. Refused where\n"
                "the right-to-left pass would see the answer (text, csv, the copy task)")
      ->group("Model");
  cmd->add_option("--proj-size", o->proj_size,
                  "LSTM projection: h = W_hr (o ⊙ tanh c), P wide (torch's proj_size; 0 < P < H)")
      ->check(CLI::NonNegativeNumber)
      ->group("Model");
  cmd->add_flag("--no-bias", o->no_bias, "Layers without biases (torch's bias=False)")->group("Model");
  cmd->add_flag("--learn-initial-state", o->learn_initial_state,
                "Train the initial state h0 (and c0) as parameters init.h0, init.c0")
      ->group("Model");
  cmd->add_flag("--layer-norm", o->layer_norm,
                "Layer-normalized cells (Ba et al. 2016): LN(x W_ih^T) γ_ih + b_ih + LN(h W_hh^T)\n"
                "γ_hh + b_hh, and the LSTM's h = o ⊙ tanh(LN(c) γ_c + β_c); tensors rnn.ln_*")
      ->group("Model");
  cmd->add_option("--forget-bias", o->forget_bias, "Added to LSTM forget-gate biases (default 0)")->group("Model");
  cmd->add_option("--optimizer", o->optimizer, "sgd, adam, adamw, rmsprop, adagrad (default adam)")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "rmsprop", "adagrad"}))->group("Optimizer");
  cmd->add_option("--lr", o->lr, "Learning rate (default: text 2e-3, csv 1e-3, ts 3e-4, task 1e-2)")->group("Optimizer");
  cmd->add_option("--momentum", o->momentum, "SGD/RMSprop momentum (default 0)")->group("Optimizer");
  cmd->add_flag("--nesterov", o->nesterov, "Nesterov momentum for SGD")->group("Optimizer");
  cmd->add_option("--weight-decay", o->weight_decay, "L2 (decoupled for adamw; default 0, adamw 0.01)")->group("Optimizer");
  cmd->add_option("--schedule", o->schedule, "Learning-rate schedule: constant, step, cosine")
      ->check(CLI::IsMember({"constant", "step", "cosine"}))->group("Optimizer");
  cmd->add_option("--warmup", o->warmup, "Linear warm-up steps (default 0)")->group("Optimizer");
  cmd->add_option("--step-size", o->step_size, "step schedule: steps between decays (default 1000)")->group("Optimizer");
  cmd->add_option("--gamma", o->gamma, "step schedule: decay factor (default 0.5)")->group("Optimizer");
  cmd->add_option("--decay-steps", o->decay_steps, "cosine schedule: steps to decay over (default --steps)")->group("Optimizer");
  cmd->add_option("--min-lr", o->min_lr, "cosine schedule: final learning rate (default 0)")->group("Optimizer");
  cmd->add_option("--clip-norm", o->clip_norm, "Clip the gradient's global norm (default 5; 0 off)")->group("Optimizer");
  cmd->add_option("--clip-value", o->clip_value, "Clip each gradient element to ±v (default 0 off)")->group("Optimizer");
  cmd->add_option("--method", o->method,
                  "bptt (default: each window by backpropagation through time), rtrl (online "
                  "real-time recurrent learning: an update after every step, no history kept; "
                  "small models only), or an online approximation of RTRL with an update after "
                  "every step: uoro, kf-rtrl (both from random signs, --seed), snap1 or eprop "
                  "(one layer) (docs/math.md 8e)")
      ->check(CLI::IsMember({"bptt", "rtrl", "uoro", "kf-rtrl", "snap1", "eprop"}))
      ->group("Gradient");
  cmd->add_option("--recompute", o->recompute,
                  "Keep the state only every K steps and recompute each segment in the backward "
                  "pass: the same gradient in far less memory, for one more forward pass")
      ->check(kPositive)->group("Gradient");
  cmd->add_option("--memory-budget", o->memory_budget,
                  "MB the backward pass may hold: full BPTT if it fits, else --recompute with the "
                  "largest K that fits")
      ->check(kPositive)->group("Gradient");
  cmd->add_option("--k1", o->k1,
                  "Text: steps between updates (the window each update advances by; = --seq-len)")
      ->check(kPositive)->group("Gradient");
  cmd->add_option("--k2", o->k2,
                  "Text: steps each update backpropagates through (>= --k1; default --k1): "
                  "BPTT(k2; k1), Williams & Peng 1990")
      ->check(kPositive)->group("Gradient");
  cmd->add_option("--allreduce", o->allreduce,
                  "Under mpirun: overlap (default; each layer's gradients are summed across "
                  "processes while the layers below run backward) or after (one all-reduce "
                  "after the backward pass)")
      ->check(CLI::IsMember({"overlap", "after"}))->group("Output");
  cmd->add_option("--check-replicas", o->check_replicas,
                  "Under mpirun: every N steps compare a hash of the parameters of all "
                  "processes and stop with an error naming the ranks that differ")
      ->check(kNonNegative)->group("Output");
  cmd->add_flag("--skip-nonfinite", o->skip_nonfinite,
                "Skip an update whose loss, gradient or result is NaN or infinite (the "
                "parameters stay as they were) and count it, instead of stopping with an error")
      ->group("Optimizer");
  cmd->add_option("--steps", o->steps, "Stop after this many optimizer steps, counted from the start")->check(kNonNegative)->group("Budget");
  cmd->add_option("--epochs", o->epochs, "Stop after this many passes over the training data")->check(kNonNegative)->group("Budget");
  cmd->add_option("--time-budget", o->time_budget, "Stop after this many seconds, then evaluate and save")->check(kNonNegative)->group("Budget");
  add_dtype_option(cmd, o->dtype)
      ->description("Precision: f32 (default), f64, or bf16 (float weights, optimizer and\n"
                    "states; the matrix products take bfloat16 operands)");
  cmd->add_option("--seed", o->seed, "Random seed (default 1); the same seed and threads give identical results");
  cmd->add_option("--threads", o->threads, "Threads for the matrix products and the time loop (default 1)")
      ->check(kPositive);
  cmd->add_option("--out", o->out, "Write the trained model here (safetensors; PyTorch loads it)")->group("Output");
  cmd->add_option("--save-dtype", o->save_dtype,
                  "Store --out's parameters as f32, f64 or bf16 (rounded, half of F32's size;\n"
                  "every loader takes it). Default: f32, or f64 with --dtype f64")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}))
      ->group("Output");
  cmd->add_option("--snapshot", o->snapshot, "Save the training state here (at --snapshot-every and at the end)")->group("Output");
  cmd->add_option("--snapshot-every", o->snapshot_every, "Steps between snapshots")->check(kNonNegative)->group("Output");
  cmd->add_option("--resume", o->resume, "Continue from this snapshot (give the run's other options again)")->group("Output");
  cmd->add_option("--metrics", o->metrics, "CSV of step, elapsed_s, train_loss, val_loss, lr, grad_norm, throughput")->group("Output");
  cmd->add_option("--eval-every", o->eval_every, "Steps between validation evaluations (default: only at the end)")->check(kNonNegative)->group("Output");
  cmd->add_option("--log-every", o->log_every, "Steps between progress lines (default: by time)")->check(kNonNegative)->group("Output");
  cmd->callback([o, &run, cmd] {
    o->given_hidden = cmd->count("--hidden") > 0;
    o->given_layers = cmd->count("--layers") > 0;
    o->given_lr = cmd->count("--lr") > 0;
    o->given_weight_decay = cmd->count("--weight-decay") > 0;
    run = [o] {
      with_dtype(parse_dtype(o->dtype, "--dtype"), [&]<class Real>() { run_train<Real>(*o); });
    };
  });
}

}  // namespace bptt::cli
