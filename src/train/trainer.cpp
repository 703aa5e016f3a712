#include <algorithm>
#include <cmath>
#include <fmt/core.h>

#include "dist/dist.hpp"
#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/train.hpp"

namespace bptt {

namespace {

template <class Real>
bool all_finite(const std::vector<Real>& v) {
  return std::all_of(v.begin(), v.end(), [](Real e) { return std::isfinite(e); });
}

}  // namespace

template <class Real>
void init_model(Model<Real>& model, std::uint64_t seed, double forget_bias) {
  if (!std::isfinite(forget_bias))
    throw Error(ErrorKind::value, "--forget-bias", "must be a finite number",
                "1 is the usual value");
  model.init_uniform(seed);
  if (model.cfg.cell != CellKind::lstm || forget_bias == 0) return;
  if (!model.cfg.bias)
    throw Error(ErrorKind::usage, "--forget-bias",
                "the model has no biases to add it to (--no-bias)", "leave one of them out");
  auto v = model.views();
  const int H = model.cfg.hidden_size;
  for (auto& layer : v.layers)  // gate order i, f, g, o: the forget gate is rows [H, 2H)
    for (int j = 0; j < H; ++j) layer.b_ih[H + j] += Real(forget_bias);
}

template <class Real>
Trainer<Real>::Trainer(Model<Real>& model, Task<Real>& task, const TrainConfig& cfg)
    : model_(model),
      task_(task),
      cfg_(cfg),
      opt_(cfg.optimizer, model.params.size()),
      // Under MPI this process works on its rows of each batch only (include/bptt/dist.hpp).
      grads_(model.cfg, task.T(), dist::rows_of(std::max(task.B(), dist::size())).count(),
             /*with_x=*/false) {  // training needs no dL/dx
  if (cfg.rtrl)
    require_options(model.cfg, {.causal = true, .layer_norm = false, .zoneout = false}, "--method rtrl",
                    "online RTRL");
  if (cfg.online) require_online_support(*cfg.online, model.cfg, "--method " + to_string(*cfg.online));
  if (cfg.k2 > 0) require_options(model.cfg, {.causal = true}, "--k2", "truncation (--k1/--k2)");
  if (task.carries_state())
    require_options(model.cfg, {.causal = true}, "--bidirectional",
                    "training on a stream whose state carries from window to window");
  if (!(cfg.dropout >= 0 && cfg.dropout < 1))
    throw Error(ErrorKind::value, "--dropout", "must lie in [0, 1)", "0 disables dropout");
  if (!(cfg.clip_norm >= 0))
    throw Error(ErrorKind::value, "--clip-norm", "must be >= 0", "0 disables clipping");
  if (!(cfg.clip_value >= 0))
    throw Error(ErrorKind::value, "--clip-value", "must be >= 0", "0 disables clipping");
  if (cfg.recompute < 0) throw Error(ErrorKind::value, "--recompute", "must be >= 1 step", "");
  if (!(cfg.memory_budget_mb >= 0))
    throw Error(ErrorKind::value, "--memory-budget", "must be a positive number of MB", "");
  cfg.schedule.validate();
  if (task.batches_per_epoch() < 1)
    throw Error(ErrorKind::shape, "training data", "holds no complete batch",
                "lower --batch or --seq-len");
  if (task.B() < dist::size())
    throw Error(
        ErrorKind::usage, "--batch",
        fmt::format("{} sequences cannot be split over {} processes", task.B(), dist::size()),
        "give --batch at least the number of processes (mpirun -np)");
  const int T = task.T(), B = dist::rows_of(task.B()).count();  // this process's rows
  const bool recompute = cfg.recompute > 0 || cfg.memory_budget_mb > 0;
  const bool history = cfg.k2 > 0 && cfg.k2 != T;
  if (cfg.k2 > 0 && cfg.k2 < T)
    throw Error(ErrorKind::usage, "--k2",
                "backpropagates " + std::to_string(cfg.k2) + " steps, fewer than the " +
                    std::to_string(T) + " steps of each update (--k1)",
                "give --k2 >= --k1");
  if (history && !task.carries_state())
    throw Error(ErrorKind::usage, "--k2",
                "needs data whose windows continue each other (--text streams)",
                "leave out --k2, or train on --text");
  cfg.regularizer.validate();
  if (cfg.rtrl && (recompute || history || cfg.dropout > 0 || cfg.regularizer.any(model.cfg)))
    throw Error(ErrorKind::usage, "--method rtrl",
                "cannot be combined with --recompute, --memory-budget, --k2, --dropout or the "
                "time-consistent dropouts and zoneout",
                "leave those out");
  if (cfg.online) {
    const std::string where = "--method " + to_string(*cfg.online);
    if (recompute || history || cfg.dropout > 0 || cfg.regularizer.any(model.cfg))
      throw Error(ErrorKind::usage, where,
                  "cannot be combined with --recompute, --memory-budget, --k2, --dropout or the "
                  "time-consistent dropouts and zoneout",
                  "leave those out");
    if (dist::active())
      throw Error(ErrorKind::usage, where, "runs in one process", "run it without mpirun");
    const double need = double(online_bytes(*cfg.online, model.cfg, B, sizeof(Real)));
    const double cap = cfg.memory_budget_mb > 0 ? cfg.memory_budget_mb * 1e6 : 4e9;
    if (need > cap)
      throw Error(ErrorKind::resource, where,
                  fmt::format("its estimates for {} sequences need {:.0f} MB (the limit is "
                              "{:.0f} MB)",
                              B, need / 1e6, cap / 1e6),
                  "lower --hidden, --layers or --batch");
    online_ = std::make_unique<OnlineGradient<Real>>(*cfg.online, model.cfg, B, cfg.seed);
    return;
  }
  if (history && recompute)
    throw Error(ErrorKind::usage, "--k2", "cannot be combined with --recompute or --memory-budget",
                "leave one of them out");
  if (cfg.rtrl && dist::active())
    throw Error(ErrorKind::usage, "--method rtrl", "runs in one process", "run it without mpirun");
  if (cfg.rtrl) {
    const double need = double(B) * model.cfg.num_layers *
                        double(model.cfg.state_size() + (model.cfg.cell == CellKind::lstm
                                                             ? model.cfg.hidden_size : 0)) *
                        double(model.params.size()) * sizeof(Real);
    const double cap = cfg.memory_budget_mb > 0 ? cfg.memory_budget_mb * 1e6 : 1e9;
    if (need > cap)
      throw Error(ErrorKind::resource, "--method rtrl",
                  fmt::format("the sensitivities of {} sequences need {:.0f} MB "
                              "(B·L·H·P numbers; the limit is {:.0f} MB)",
                              B, need / 1e6, cap / 1e6),
                  "lower --hidden, --layers or --batch, or use --method bptt");
    rtrl_ = std::make_unique<RtrlStream<Real>>(model.cfg, B);
    return;
  }
  int K = cfg.recompute;
  if (cfg.memory_budget_mb > 0) {
    K = recompute_interval_for_budget(model.cfg, T, B, sizeof(Real),
                                      std::size_t(cfg.memory_budget_mb * 1e6), cfg.dropout > 0);
    if (K >= T) K = 0;  // full BPTT fits
  }
  if (K > 0)
    recompute_ = std::make_unique<Recompute<Real>>(model.cfg, T, B, K, cfg.dropout > 0);
  else
    ws_ = std::make_unique<Workspace<Real>>(model.cfg, history ? cfg.k2 : T, B, cfg.dropout > 0);
}

template <class Real>
StepInfo Trainer<Real>::step() {
  if (index_ >= task_.batches_per_epoch()) {
    ++epoch_;
    index_ = 0;
    carry_h_.clear();
    carry_c_.clear();
    hist_x_.clear();
  }
  task_.fill(cfg_.seed, epoch_, index_, batch_);
  if (step_ == 0 && !task_.carries_state())
    batch_.validate(model_.cfg, task_.loss(), "training batch");
  // Under MPI every process fills the same batch and keeps its own rows of it; the gradient is
  // then weighted by this part's share of the loss weight (bptt_window).
  global_weight_ = total_weight<Real>(batch_);
  if (dist::active()) {
    slice_rows(batch_, dist::rows_of(batch_.B).begin, dist::rows_of(batch_.B).end,
               model_.cfg.units(), local_);
    std::swap(batch_, local_);
  }
  if (task_.carries_state()) {
    batch_.h0 = carry_h_;
    batch_.c0 = carry_c_;
    if (step_ == 0) batch_.validate(model_.cfg, task_.loss(), "training batch");
  }
  const StepInfo info = rtrl_ || online_ ? rtrl_window() : bptt_window();
  ++step_;
  ++index_;
  return info;
}

// With k2 > k1 (BPTT(k2; k1), Williams & Peng 1990): the inputs of the last k2 − k1 steps are
// kept, with the state where they start; each update runs forward from there over them and the
// k1 new steps (the history with the current parameters: nothing else of it is stored), takes
// the loss of the new steps only and backpropagates through all of them.
template <class Real>
Batch<Real>& Trainer<Real>::with_history() {
  const int T = task_.T();
  if (cfg_.k2 <= T) return batch_;
  const std::size_t B = std::size_t(batch_.B), I = std::size_t(model_.cfg.input_size),
                    O = std::size_t(model_.cfg.output_size);
  const std::size_t n = hist_x_.size() / (B * I);  // steps of history
  Batch<Real>& w = window_;
  w.T = int(n) + T;
  w.B = int(B);
  w.x = hist_x_;
  w.x.insert(w.x.end(), batch_.x.begin(), batch_.x.end());
  const auto prepend = [&](const auto& v, std::size_t width, auto& out, auto zero) {
    out.clear();
    if (v.empty()) return;
    out.assign(n * B * width, zero);
    out.insert(out.end(), v.begin(), v.end());
  };
  prepend(batch_.y, O, w.y, Real(0));
  prepend(batch_.classes, 1, w.classes, std::int64_t(0));
  w.mask.assign(n * B, Real(0));  // the history's losses were taken by earlier updates
  if (batch_.mask.empty())
    w.mask.insert(w.mask.end(), std::size_t(T) * B, Real(1));
  else
    w.mask.insert(w.mask.end(), batch_.mask.begin(), batch_.mask.end());
  w.lengths.clear();
  for (std::int64_t l : batch_.lengths) w.lengths.push_back(l + std::int64_t(n));
  w.h0 = batch_.h0;
  w.c0 = batch_.c0;
  return w;
}

// After a full-BPTT pass over window b of a stream: the next window starts from this one's
// final state or, with history (k2 > k1), where its history starts, keeping that history's inputs.
template <class Real>
void Trainer<Real>::keep_state(const Batch<Real>& b) {
  if (!task_.carries_state()) return;
  if (cfg_.k2 <= task_.T()) return ws_->state_at(b.T, carry_h_, carry_c_);
  const std::size_t BI = std::size_t(b.B) * model_.cfg.input_size;
  const int n = std::min(cfg_.k2 - task_.T(), b.T);
  hist_x_.assign(b.x.end() - std::ptrdiff_t(std::size_t(n) * BI), b.x.end());
  ws_->state_at(b.T - n, carry_h_, carry_c_);
}

template <class Real>
StepInfo Trainer<Real>::bptt_window() {
  grads_.zero();
  Dropout dropout{cfg_.dropout, cfg_.seed, std::uint64_t(step_)};
  if (dist::active())  // this process's rows draw the whole batch's masks
    dropout.rows = task_.B(), dropout.row0 = dist::rows_of(task_.B()).begin;
  const Dropout* d = cfg_.dropout > 0 ? &dropout : nullptr;
  Batch<Real>& b = with_history();
  if (cfg_.regularizer.any(model_.cfg)) {  // this step's masks and zoneout flags
    Regularizer r = cfg_.regularizer;
    r.seed = cfg_.seed, r.stream = std::uint64_t(step_);
    if (dist::active()) r.rows = task_.B(), r.row0 = dist::rows_of(task_.B()).begin;
    draw_masks(model_.cfg, r, b);
  }
  StepInfo info;
  const double local_weight = total_weight<Real>(b);
  bool reduced = false;  // the gradient is summed over processes already
  if (dist::active() && !(local_weight > 0)) {
    // This process's rows carry no loss (padding of a last batch): its share is zero. (Streams,
    // whose state must advance, always carry loss.)
    info.loss = 0;
  } else if (dist::active() && cfg_.overlap_allreduce && !recompute_) {
    // The loss gradient is weighted by this part's share before the backward pass, so every
    // layer's gradients are final when it finishes and their sum can start at once.
    const double share = local_weight / global_weight_;
    forward(model_, b, *ws_, d);
    info.loss = loss_and_dz(task_.loss(), model_.cfg, b, ws_->z(), ws_->yhat(), ws_->dz()) * share;
    Real* dz = ws_->dz();
    for (std::size_t i = 0; i < std::size_t(b.T) * b.B * model_.cfg.output_size; ++i)
      dz[i] *= Real(share);
    dist::PendingSums pending;
    ParamViews<Real> G(model_.cfg, grads_.params.data());
    BackwardOptions<Real> opts;
    // Layer k's tensors (both directions) are contiguous; the head's are final first, a learned
    // initial state's (after the head in the arena) only with layer 0: it goes last.
    const int L = model_.cfg.num_layers, D = model_.cfg.directions();
    Real* const arena_end = grads_.params.data() + grads_.params.size();
    Real* const layers_end = G.rnn_end;
    Real* const head_end = G.w_o ? G.b_o + model_.cfg.output_size : layers_end;
    opts.gradients_ready = [&](int k) {
      if (k == L && !G.w_o) return;  // no head
      Real* first = k == L ? G.w_o : G.layers[std::size_t(k * D)].w_ih;
      Real* last = k == L       ? head_end
                   : k + 1 < L ? G.layers[std::size_t((k + 1) * D)].w_ih
                               : layers_end;
      pending.start(first, std::size_t(last - first));
    };
    backward(model_, b, *ws_, grads_, opts);
    if (G.h0) pending.start(G.h0, std::size_t(arena_end - G.h0));
    pending.wait();
    info.loss = dist::sum(info.loss);
    reduced = true;
    keep_state(b);
  } else if (recompute_) {
    info.loss = recompute_->loss_and_gradients(model_, b, task_.loss(), grads_, d);
    if (task_.carries_state()) recompute_->final_state(carry_h_, carry_c_);
  } else {
    info.loss = loss_and_gradients(model_, b, task_.loss(), *ws_, grads_, d);
    keep_state(b);
  }
  if (dist::active() && !reduced) {
    // Each part is normalized by its own weight; weighted by its share of the batch's, the sum
    // over processes is the gradient of the global loss. One all-reduce over the whole arena.
    const double share = local_weight / global_weight_;
    for (Real& g : grads_.params) g *= Real(share);
    info.loss = dist::sum(info.loss * share);
    dist::sum(grads_.params.data(), grads_.params.size());
  }
  update(info);
  if (info.skipped) {  // a non-finite state carried on would make every later window non-finite
    if (!all_finite(carry_h_) || !all_finite(carry_c_)) {
      carry_h_.clear();
      carry_c_.clear();
      hist_x_.clear();
    }
  }
  return info;
}

// Online RTRL: the window's steps one at a time, each with its own update. A streaming task
// keeps the sensitivities across windows (reset at each epoch and on resume); other tasks start
// every batch from its initial state with zero sensitivity. Steps past a sequence's length are
// advanced too, but they carry no loss and every loss comes before them.
template <class Real>
StepInfo Trainer<Real>::rtrl_window() {
  const int T = batch_.T, B = batch_.B, I = model_.cfg.input_size, O = model_.cfg.output_size;
  // RTRL or an online approximation (online_): the same loop.
  const auto restart = [&](const std::vector<Real>& h, const std::vector<Real>& c) {
    if (rtrl_)
      rtrl_->reset(model_, h, c);
    else
      online_->reset(h, c);
  };
  if (!task_.carries_state() || !rtrl_started_ || carry_h_.empty()) restart(batch_.h0, batch_.c0);
  rtrl_started_ = true;
  std::vector<Real> w(static_cast<std::size_t>(B));
  std::vector<unsigned char> valid(static_cast<std::size_t>(B));
  StepInfo info;
  double loss = 0, weight = 0;
  for (int t = 0; t < T; ++t) {
    const std::size_t tb = std::size_t(t) * B;
    double norm = 0;
    for (int b = 0; b < B; ++b) {
      norm += double(w[std::size_t(b)] = batch_.weight(t, b));
      valid[std::size_t(b)] = batch_.valid(t, b) ? 1 : 0;
    }
    const Real* x = batch_.x.data() + tb * I;
    const Real* y = batch_.y.empty() ? nullptr : batch_.y.data() + tb * O;
    const std::int64_t* cls = batch_.classes.empty() ? nullptr : batch_.classes.data() + tb;
    const double l =
        rtrl_ ? rtrl_->step(model_, task_.loss(), x, y, cls, w.data(), norm > 0 ? norm : 1.0,
                            grads_.params)
              : online_->step(model_, task_.loss(), x, y, cls, w.data(), norm > 0 ? norm : 1.0,
                              grads_.params, valid.data());
    if (!(norm > 0)) continue;
    StepInfo s;
    s.loss = l;
    update(s);
    if (s.skipped) {  // a skipped step adds nothing to the window's loss
      info.skipped = true;
      // What went non-finite is this step's sensitivities or state, which every later step
      // would inherit: restart the online gradient here (zero sensitivity), from the current
      // state when it is finite and from zero otherwise.
      std::vector<Real> h, c;
      if (rtrl_)
        rtrl_->state(h, c);
      else
        online_->state(h, c);
      if (!all_finite(h) || !all_finite(c)) h.clear(), c.clear();
      restart(h, c);
      continue;
    }
    loss += l * norm;
    weight += norm;
    info.grad_norm = s.grad_norm;
    info.lr = s.lr;
  }
  info.loss = weight > 0 ? loss / weight : 0;
  if (task_.carries_state()) {
    if (rtrl_)
      rtrl_->state(carry_h_, carry_c_);
    else
      online_->state(carry_h_, carry_c_);
  }
  return info;
}

template <class Real>
void Trainer<Real>::update(StepInfo& info) {
  Real* g = grads_.params.data();
  const std::size_t n = grads_.params.size();
  info.grad_norm = global_norm(g, n);
  info.lr = cfg_.schedule.at(step_);
  // A non-finite update is never applied: the parameters (and so every model or snapshot
  // written later) stay the last finite ones. Without skip_nonfinite the run stops here.
  const auto nonfinite = [&](const char* what) {
    if (!cfg_.skip_nonfinite)
      throw Error(ErrorKind::value, "training",
                  fmt::format("the {} became non-finite at step {}", what, step_ + 1),
                  "lower --lr, clip with --clip-norm, or pass --skip-nonfinite to skip such "
                  "updates");
    info.skipped = true;
    ++skipped_;
  };
  if (!std::isfinite(info.loss)) return nonfinite("loss");
  if (!std::isfinite(info.grad_norm)) return nonfinite("gradient");
  if (cfg_.clip_value > 0) clip_by_value(g, n, cfg_.clip_value);
  if (cfg_.clip_norm > 0) clip_by_norm(g, n, cfg_.clip_norm);
  auto state = opt_.state();
  if (cfg_.skip_nonfinite) {  // keep what the update changes, to undo it
    backup_.assign(model_.params.begin(), model_.params.end());
    for (const auto& slot : state) backup_.insert(backup_.end(), slot.data->begin(), slot.data->end());
  }
  const std::int64_t opt_steps = opt_.steps();
  opt_.step(model_.params.data(), g, info.lr);
  if (all_finite(model_.params)) return;
  if (cfg_.skip_nonfinite) {
    auto from = backup_.begin();
    std::copy(from, from + std::ptrdiff_t(model_.params.size()), model_.params.begin());
    from += std::ptrdiff_t(model_.params.size());
    for (const auto& slot : state) {
      std::copy(from, from + std::ptrdiff_t(slot.data->size()), slot.data->begin());
      from += std::ptrdiff_t(slot.data->size());
    }
    opt_.set_steps(opt_steps);
  }
  nonfinite("updated parameters");
}

template <class Real>
void Trainer<Real>::save_snapshot(const std::string& path, const std::string& fingerprint) const {
  safetensors::Writer w;
  const ModelConfig& c = model_.cfg;
  add_model(model_, w);
  w.set_metadata("format", "bptt-snapshot");
  w.set_metadata("format_version", "1");
  w.set_metadata("fingerprint", fingerprint);
  w.set_metadata("dtype", std::is_same_v<Real, float> ? "f32" : "f64");
  w.set_metadata("step", std::to_string(step_));
  w.set_metadata("epoch", std::to_string(epoch_));
  w.set_metadata("position", std::to_string(index_));
  w.set_metadata("optimizer_steps", std::to_string(opt_.steps()));
  if (skipped_ > 0) w.set_metadata("skipped_nonfinite", std::to_string(skipped_));
  auto& opt = const_cast<Optimizer<Real>&>(opt_);
  for (const auto& slot : opt.state())
    if (!slot.data->empty())
      w.add("optimizer." + slot.name, {std::int64_t(slot.data->size())}, slot.data->data());
  // Under MPI each process holds its rows of the carried state and history: rank 0 gathers them
  // (every process calls this) and writes the whole batch's, so any number of processes resumes.
  const int B = task_.B();
  // (Streams are left to right only: L·D = L.)
  const std::vector<std::int64_t> h_shape = {c.num_layers, B, c.state_size()},
                                  c_shape = {c.num_layers, B, c.hidden_size};
  std::vector<Real> ch, cc, hx;
  dist::gather_rows(carry_h_, c.num_layers, B, c.state_size(), ch);
  dist::gather_rows(carry_c_, c.num_layers, B, c.hidden_size, cc);
  const int n = int(hist_x_.size() / (std::size_t(dist::rows_of(B).count()) * c.input_size));
  dist::gather_rows(hist_x_, n, B, c.input_size, hx);
  if (dist::rank() != 0) return;
  if (!ch.empty()) w.add("carry.h", h_shape, ch.data());
  if (!cc.empty()) w.add("carry.c", c_shape, cc.data());
  if (!hx.empty()) w.add("history.x", {n, B, c.input_size}, hx.data());
  if (online_) {  // the online method's estimate and the counter of its random signs
    w.set_metadata("online_step", std::to_string(online_->step_count()));
    w.set_metadata("online_started", rtrl_started_ ? "1" : "0");
    for (const auto& [name, data] : online_->carried())
      w.add("online." + name, {std::int64_t(data->size())}, data->data());
  }
  w.write(path);
}

namespace {

std::int64_t meta_int(const safetensors::File& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end())
    throw Error(ErrorKind::format, f.path() + ": __metadata__." + key, "missing",
                "the snapshot is damaged");
  try {
    std::size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < 0) throw std::invalid_argument("");
    return v;
  } catch (const std::exception&) {
    throw Error(ErrorKind::format, f.path() + ": __metadata__." + key,
                "'" + it->second.substr(0, 40) + "' is not a count", "the snapshot is damaged");
  }
}

}  // namespace

template <class Real>
void Trainer<Real>::load_snapshot(const std::string& path, const std::string& fingerprint) {
  const auto f = safetensors::File::read(path);
  const auto& meta = f.metadata();
  auto get = [&](const std::string& key) {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  if (get("format") != "bptt-snapshot")
    throw Error(ErrorKind::format, path + ": __metadata__.format", "not a bptt snapshot",
                "pass a file written by --snapshot");
  if (get("format_version") != "1")
    throw Error(ErrorKind::format, path + ": __metadata__.format_version",
                "version '" + get("format_version").substr(0, 20) + "' is not supported",
                "this bptt reads snapshot format version 1");
  const std::string dtype = std::is_same_v<Real, float> ? "f32" : "f64";
  if (get("dtype") != dtype)
    throw Error(ErrorKind::usage, path + ": __metadata__.dtype",
                "snapshot is " + get("dtype") + ", the run is " + dtype,
                "resume with the --dtype the snapshot was written with");
  if (get("fingerprint") != fingerprint)
    throw Error(ErrorKind::usage, path + ": __metadata__.fingerprint",
                "the snapshot is from a different model, data or optimizer",
                "resume with the options of the run that wrote it");
  // The data's own description (the text's vocabulary, a series' scaling, the classes, ...), as
  // the run's model carries it: another file with the same sizes passes the fingerprint but not
  // this. Snapshots written before these keys existed lack them and are not held to them.
  for (const auto& [key, value] : model_.metadata) {
    const auto it = meta.find(key);
    if (it != meta.end() && it->second != value)
      throw Error(
          ErrorKind::usage, path + ": __metadata__." + key,
          "the snapshot was trained on other data (its " + key + " differs from this run's)",
          "resume with the data options of the run that wrote it");
  }
  // Everything is read into temporaries first: a damaged file leaves the trainer untouched.
  Model<Real> loaded(model_.cfg);
  const ModelConfig cfg = read_model_config(f);
  if (cfg.cell != model_.cfg.cell || cfg.hidden_size != model_.cfg.hidden_size ||
      cfg.nonlinearity != model_.cfg.nonlinearity ||
      cfg.output_activation != model_.cfg.output_activation ||
      cfg.num_layers != model_.cfg.num_layers || cfg.input_size != model_.cfg.input_size ||
      cfg.output_size != model_.cfg.output_size || cfg.bidirectional != model_.cfg.bidirectional ||
      cfg.proj_size != model_.cfg.proj_size || cfg.bias != model_.cfg.bias ||
      cfg.initial_state != model_.cfg.initial_state || cfg.layer_norm != model_.cfg.layer_norm)
    throw Error(ErrorKind::usage, path, "the snapshot's model differs from this run's",
                "resume with the options of the run that wrote it");
  for (const ParamInfo& p : param_layout(model_.cfg)) {
    f.expect_shape(p.name, p.shape, "the run's shape");
    const auto v = f.as_real<Real>(p.name);
    require_finite(f, p.name, v);  // a snapshot is never written with non-finite parameters
    std::copy(v.begin(), v.end(), loaded.params.begin() + std::ptrdiff_t(p.offset));
  }
  std::vector<std::vector<Real>> slots;
  for (const auto& slot : opt_.state()) {
    const std::string name = "optimizer." + slot.name;
    if (slot.data->empty()) {
      slots.emplace_back();
      continue;
    }
    f.expect_shape(name, {std::int64_t(slot.data->size())}, "[parameters]");
    slots.push_back(f.as_real<Real>(name));
    require_finite(f, name, slots.back());
  }
  const std::vector<std::int64_t> h_shape = {model_.cfg.num_layers, task_.B(),
                                             model_.cfg.state_size()},
                                  c_shape = {model_.cfg.num_layers, task_.B(),
                                             model_.cfg.hidden_size};
  const std::int64_t step = meta_int(f, "step"), epoch = meta_int(f, "epoch"),
                     position = meta_int(f, "position"), opt_steps = meta_int(f, "optimizer_steps");
  const std::int64_t skipped = meta.count("skipped_nonfinite") ? meta_int(f, "skipped_nonfinite") : 0;
  // A streaming task carries state from window to window except at an epoch's first window.
  const bool needs_carry = task_.carries_state() && position > 0;
  const bool lstm = model_.cfg.cell == CellKind::lstm;
  if (needs_carry && (!f.has("carry.h") || (lstm && !f.has("carry.c"))))
    throw Error(ErrorKind::format, path + ": " + (f.has("carry.h") ? "carry.c" : "carry.h"),
                "missing tensor",
                "the snapshot is damaged: it was written mid-epoch but holds no carried state");
  std::vector<Real> ch, cc;
  if (f.has("carry.h")) {
    f.expect_shape("carry.h", h_shape, "[L, B, H_out]");
    ch = dist::my_rows(f.as_real<Real>("carry.h"), model_.cfg.num_layers, task_.B(),
                       model_.cfg.state_size());
  }
  if (f.has("carry.c")) {
    f.expect_shape("carry.c", c_shape, "[L, B, H]");
    cc = dist::my_rows(f.as_real<Real>("carry.c"), model_.cfg.num_layers, task_.B(),
                       model_.cfg.hidden_size);
  }
  std::vector<Real> hx;
  if (f.has("history.x")) {
    const auto& shape = f.at("history.x").shape;
    const std::int64_t most = std::max(0, cfg_.k2 - task_.T());
    if (shape.size() != 3 || shape[0] < 1 || shape[0] > most)
      throw Error(ErrorKind::shape, path + ": history.x", "holds no history this run can use",
                  "resume with the --k1/--k2 of the run that wrote it");
    f.expect_shape("history.x", {shape[0], task_.B(), model_.cfg.input_size}, "[n, B, I]");
    hx = dist::my_rows(f.as_real<Real>("history.x"), int(shape[0]), task_.B(),
                       model_.cfg.input_size);
  }
  std::int64_t online_step = 0;
  bool online_started = false;
  std::vector<std::vector<Real>> online_arrays;
  if (online_) {
    online_step = meta_int(f, "online_step");
    online_started = meta_int(f, "online_started") != 0;
    for (const auto& [name, data] : online_->carried()) {
      const std::string key = "online." + name;
      if (!f.has(key))
        throw Error(ErrorKind::format, path + ": " + key, "missing tensor",
                    "resume with the --method of the run that wrote the snapshot");
      f.expect_shape(key, {std::int64_t(data->size())}, "the method's estimate");
      online_arrays.push_back(f.as_real<Real>(key));
      require_finite(f, key, online_arrays.back());
    }
  }
  // Commit.
  model_.params = std::move(loaded.params);
  auto state = opt_.state();
  for (std::size_t i = 0; i < state.size(); ++i)
    if (!state[i].data->empty()) *state[i].data = std::move(slots[i]);
  opt_.set_steps(opt_steps);
  carry_h_ = std::move(ch);
  carry_c_ = std::move(cc);
  hist_x_ = std::move(hx);
  rtrl_started_ = false;
  if (online_) {  // the state it continues from is the carried one; then its estimate
    online_->reset(carry_h_, carry_c_);
    std::size_t i = 0;
    for (const auto& [name, data] : online_->carried()) *data = std::move(online_arrays[i++]);
    online_->set_step_count(online_step);
    rtrl_started_ = online_started;
  }
  step_ = step;
  skipped_ = skipped;
  epoch_ = epoch;
  index_ = position;
}

template void init_model<float>(Model<float>&, std::uint64_t, double);
template void init_model<double>(Model<double>&, std::uint64_t, double);
template class Trainer<float>;
template class Trainer<double>;

}  // namespace bptt
