// Text (`train --text`, `eval --text`, `sample --prime`): the bytes as a model's vocabulary
// metadata (Vocab::from_metadata), as a text file (load_text, then char-rnn windows), and
// encoded with a vocabulary (encode_text).
#include "bptt/data.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  bptt::fuzz::errors_only("model.safetensors", [&] {
    const auto v = bptt::data::Vocab::from_metadata(text, "model.safetensors: __metadata__.vocab");
    if (bptt::data::Vocab::from_metadata(v.to_metadata(), "again") != v)
      bptt::fuzz::finding("vocabulary does not round-trip", text);
    for (int id = 0; id < v.size(); ++id)
      if (v.encode(v.decode(id)) != id) bptt::fuzz::finding("encode(decode(id)) != id", text);
  });
  const std::string path = bptt::fuzz::write_input(data, size, ".txt");
  bptt::fuzz::errors_only(path, [&] {
    const auto c = bptt::data::load_text(path, size % 2 ? 0.1 : 0.0);
    const bptt::data::TextStreams s(c.ids, 0, c.train_end, 2, 3, path);
    bptt::Batch<float> b;
    s.fill(s.windows() - 1, c.vocab.size(), b);
    // The prompt of `sample`: the same bytes encoded with a smaller vocabulary.
    (void)bptt::data::encode_text(path, text,
                                  bptt::data::Vocab::from_metadata("[10,32,97,98,99]", "vocab"));
  });
  return 0;
}
