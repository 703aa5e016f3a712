// Snapshots (`train --resume`): Trainer::load_snapshot for the model the file's metadata
// describes, with an Adam (or the fingerprint's) optimizer on a streaming task of B = 4, T = 8,
// as `train --text ... --batch 4 --seq-len 8 --snapshot` writes them (the seeds).
#include <algorithm>

#include "bptt/io.hpp"
#include "bptt/train.hpp"
#include "fuzz_util.hpp"

namespace {

template <class Real>
class StreamTask : public bptt::Task<Real> {
 public:
  bptt::LossKind loss() const override { return bptt::LossKind::xent; }
  int T() const override { return 8; }
  int B() const override { return 4; }
  std::int64_t batches_per_epoch() const override { return 10; }
  void fill(std::uint64_t, std::int64_t, std::int64_t, bptt::Batch<Real>&) override {}
  bool carries_state() const override { return true; }
  bptt::Metrics evaluate(const bptt::Model<Real>&) override { return {}; }
  std::map<std::string, std::string> model_metadata() const override { return {}; }
};

template <class Real>
void load(const bptt::safetensors::File& f, const std::string& path) {
  const bptt::ModelConfig cfg = bptt::read_model_config(f);
  if (double(bptt::param_count(cfg)) * sizeof(Real) > double(f.names().size() + 1) * 1e6)
    return;  // a model the file cannot hold: read_model_config checked it against the tensors
  bptt::Model<Real> model(cfg);
  StreamTask<Real> task;
  bptt::TrainConfig tc;
  const auto meta = f.metadata();
  const std::string fp = meta.count("fingerprint") ? meta.at("fingerprint") : "";
  for (const char* kind : {"sgd", "adamw", "rmsprop", "adagrad"})
    if (fp.find(std::string("optimizer=") + kind + " ") != std::string::npos)
      tc.optimizer.kind = bptt::parse_optimizer(kind, "optimizer");
  if (fp.find("momentum=0 ") == std::string::npos) tc.optimizer.momentum = 0.9;
  if (const auto k2 = fp.find(" k2="); k2 != std::string::npos)
    tc.k2 = std::clamp(std::atoi(fp.c_str() + k2 + 4), 8, 64);
  bptt::Trainer<Real> trainer(model, task, tc);
  trainer.load_snapshot(path, fp);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = bptt::fuzz::write_input(data, size, ".snapshot.safetensors");
  bptt::fuzz::errors_only(path, [&] {
    const auto f = bptt::safetensors::File::read(path);
    if (f.metadata().count("dtype") && f.metadata().at("dtype") == "f64")
      load<double>(f, path);
    else
      load<float>(f, path);
  });
  return 0;
}
