// Model files: safetensors::File::read, then load_model in both precisions and the metadata the
// verbs read from a model (the text vocabulary).
#include "bptt/data.hpp"
#include "bptt/io.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = bptt::fuzz::write_input(data, size, ".model.safetensors");
  bptt::fuzz::errors_only(path, [&] {
    const auto f = bptt::safetensors::File::read(path);
    const auto m32 = bptt::load_model<float>(f);
    const auto m64 = bptt::load_model<double>(f);
    if (m32.params.size() != m64.params.size()) bptt::fuzz::finding("f32 and f64 differ", path);
    if (auto it = f.metadata().find("vocab"); it != f.metadata().end())
      (void)bptt::data::Vocab::from_metadata(it->second, path + ": __metadata__.vocab");
  });
  return 0;
}
