#include <algorithm>
#include <cmath>

#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/train.hpp"

namespace bptt {

template <class Real>
void init_model(Model<Real>& model, std::uint64_t seed, double forget_bias) {
  model.init_uniform(seed);
  if (model.cfg.cell != CellKind::lstm || forget_bias == 0) return;
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
      ws_(model.cfg, task.T(), task.B(), cfg.dropout > 0),
      grads_(model.cfg, task.T(), task.B()) {
  grads_.x.clear();  // training needs no dL/dx
  if (!(cfg.dropout >= 0 && cfg.dropout < 1))
    throw Error("--dropout", "must lie in [0, 1)", "0 disables dropout");
  if (!(cfg.clip_norm >= 0)) throw Error("--clip-norm", "must be >= 0", "0 disables clipping");
  if (!(cfg.clip_value >= 0)) throw Error("--clip-value", "must be >= 0", "0 disables clipping");
  cfg.schedule.validate();
  if (task.batches_per_epoch() < 1)
    throw Error("training data", "holds no complete batch", "lower --batch or --seq-len");
}

template <class Real>
StepInfo Trainer<Real>::step() {
  if (index_ >= task_.batches_per_epoch()) {
    ++epoch_;
    index_ = 0;
    carry_h_.clear();
    carry_c_.clear();
  }
  task_.fill(cfg_.seed, epoch_, index_, batch_);
  if (task_.carries_state()) {
    batch_.h0 = carry_h_;
    batch_.c0 = carry_c_;
  }
  if (step_ == 0) batch_.validate(model_.cfg, task_.loss(), "training batch");

  grads_.zero();
  const Dropout dropout{cfg_.dropout, cfg_.seed, std::uint64_t(step_)};
  StepInfo info;
  info.loss = loss_and_gradients(model_, batch_, task_.loss(), ws_, grads_,
                                 cfg_.dropout > 0 ? &dropout : nullptr);
  if (task_.carries_state())  // the next window starts from this one's final state
    ws_.state_at(batch_.T, carry_h_, carry_c_);
  Real* g = grads_.params.data();
  const std::size_t n = grads_.params.size();
  info.grad_norm = global_norm(g, n);
  if (!std::isfinite(info.loss) || !std::isfinite(info.grad_norm))
    throw Error("training", "the loss or gradient became non-finite at step " +
                                std::to_string(step_ + 1),
                "lower --lr, or clip with --clip-norm");
  if (cfg_.clip_value > 0) clip_by_value(g, n, cfg_.clip_value);
  if (cfg_.clip_norm > 0) clip_by_norm(g, n, cfg_.clip_norm);
  info.lr = cfg_.schedule.at(step_);
  opt_.step(model_.params.data(), g, info.lr);
  ++step_;
  ++index_;
  return info;
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
  auto& opt = const_cast<Optimizer<Real>&>(opt_);
  for (const auto& slot : opt.state())
    if (!slot.data->empty())
      w.add("optimizer." + slot.name, {std::int64_t(slot.data->size())}, slot.data->data());
  const std::vector<std::int64_t> state_shape = {c.num_layers, task_.B(), c.hidden_size};
  if (!carry_h_.empty()) w.add("carry.h", state_shape, carry_h_.data());
  if (!carry_c_.empty()) w.add("carry.c", state_shape, carry_c_.data());
  w.write(path);
}

namespace {

std::int64_t meta_int(const safetensors::File& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end())
    throw Error(f.path() + ": __metadata__." + key, "missing", "the snapshot is damaged");
  try {
    std::size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < 0) throw std::invalid_argument("");
    return v;
  } catch (const std::exception&) {
    throw Error(f.path() + ": __metadata__." + key, "'" + it->second.substr(0, 40) +
                                                        "' is not a count", "the snapshot is damaged");
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
    throw Error(path + ": __metadata__.format", "not a bptt snapshot",
                "pass a file written by --snapshot");
  if (get("format_version") != "1")
    throw Error(path + ": __metadata__.format_version",
                "version '" + get("format_version").substr(0, 20) + "' is not supported",
                "this bptt reads snapshot format version 1");
  const std::string dtype = std::is_same_v<Real, float> ? "f32" : "f64";
  if (get("dtype") != dtype)
    throw Error(path + ": __metadata__.dtype", "snapshot is " + get("dtype") + ", the run is " + dtype,
                "resume with the --dtype the snapshot was written with");
  if (get("fingerprint") != fingerprint)
    throw Error(path + ": __metadata__.fingerprint",
                "the snapshot is from a different model, data or optimizer",
                "resume with the options of the run that wrote it");
  // Everything is read into temporaries first: a damaged file leaves the trainer untouched.
  Model<Real> loaded(model_.cfg);
  const ModelConfig cfg = read_model_config(f);
  if (cfg.cell != model_.cfg.cell || cfg.hidden_size != model_.cfg.hidden_size ||
      cfg.nonlinearity != model_.cfg.nonlinearity ||
      cfg.output_activation != model_.cfg.output_activation ||
      cfg.num_layers != model_.cfg.num_layers || cfg.input_size != model_.cfg.input_size ||
      cfg.output_size != model_.cfg.output_size)
    throw Error(path, "the snapshot's model differs from this run's",
                "resume with the options of the run that wrote it");
  for (const ParamInfo& p : param_layout(model_.cfg)) {
    f.expect_shape(p.name, p.shape, "the run's shape");
    const auto v = f.as_real<Real>(p.name);
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
  }
  const std::vector<std::int64_t> state_shape = {model_.cfg.num_layers, task_.B(),
                                                 model_.cfg.hidden_size};
  const std::int64_t step = meta_int(f, "step"), epoch = meta_int(f, "epoch"),
                     position = meta_int(f, "position"), opt_steps = meta_int(f, "optimizer_steps");
  // A streaming task carries state from window to window except at an epoch's first window.
  const bool needs_carry = task_.carries_state() && position > 0;
  const bool lstm = model_.cfg.cell == CellKind::lstm;
  if (needs_carry && (!f.has("carry.h") || (lstm && !f.has("carry.c"))))
    throw Error(path + ": " + (f.has("carry.h") ? "carry.c" : "carry.h"), "missing tensor",
                "the snapshot is damaged: it was written mid-epoch but holds no carried state");
  std::vector<Real> ch, cc;
  if (f.has("carry.h")) {
    f.expect_shape("carry.h", state_shape, "[L, B, H]");
    ch = f.as_real<Real>("carry.h");
  }
  if (f.has("carry.c")) {
    f.expect_shape("carry.c", state_shape, "[L, B, H]");
    cc = f.as_real<Real>("carry.c");
  }
  // Commit.
  model_.params = std::move(loaded.params);
  auto state = opt_.state();
  for (std::size_t i = 0; i < state.size(); ++i)
    if (!state[i].data->empty()) *state[i].data = std::move(slots[i]);
  opt_.set_steps(opt_steps);
  carry_h_ = std::move(ch);
  carry_c_ = std::move(cc);
  step_ = step;
  epoch_ = epoch;
  index_ = position;
}

template void init_model<float>(Model<float>&, std::uint64_t, double);
template void init_model<double>(Model<double>&, std::uint64_t, double);
template class Trainer<float>;
template class Trainer<double>;

}  // namespace bptt
