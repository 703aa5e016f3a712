// Data files (`grad`/`predict`/`train --data`): the first byte picks the loss, the rest is the
// file; load_data_file (as train --data) and load_batch for a fixed small model (as grad).
#include "bptt/io.hpp"
#include "bptt/tasks.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bptt::LossKind losses[] = {bptt::LossKind::mse, bptt::LossKind::bce, bptt::LossKind::xent};
  const bptt::LossKind loss = losses[data[0] % 3];
  const bool predict = (data[0] >> 2) & 1;
  const std::string path = bptt::fuzz::write_input(data + 1, size - 1, ".data.safetensors");
  bptt::fuzz::errors_only(path, [&] { (void)bptt::load_data_file(path, loss); });
  bptt::fuzz::errors_only(path, [&] {
    const auto f = bptt::safetensors::File::read(path);
    bptt::ModelConfig cfg;
    cfg.cell = (data[0] >> 3) & 1 ? bptt::CellKind::lstm : bptt::CellKind::gru;
    cfg.input_size = 2;
    cfg.hidden_size = 3;
    cfg.num_layers = 1 + ((data[0] >> 4) & 1);
    cfg.output_size = 2;
    std::optional<bptt::LossKind> l;
    if (!predict) l = loss;
    (void)bptt::load_batch<float>(f, cfg, l);
    (void)bptt::load_batch<double>(f, cfg, l);
  });
  return 0;
}
