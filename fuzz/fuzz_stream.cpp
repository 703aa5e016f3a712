// `bptt stream`'s input: lines of numbers (tools/cli/stream_input.hpp), each parsed and fed to a
// small LSTM's Stream one step at a time, as the command does. A bad line must be a one-line
// bptt::Error naming it (stdin:N); a good one must give finite outputs.
#include <cmath>
#include <string>
#include <vector>

#include "../tools/cli/stream_input.hpp"
#include "bptt/stream.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bptt::Model<float> model = [] {
    bptt::ModelConfig c;
    c.cell = bptt::CellKind::lstm;
    c.input_size = 3;
    c.hidden_size = 4;
    c.output_size = 2;
    c.validate("fuzz");
    bptt::Model<float> m(c);
    m.init_uniform(1);
    return m;
  }();
  bptt::Stream<float> s(model, 1);
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<float> x;
  float y[2];
  long number = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      s.reset();
      continue;
    }
    bptt::fuzz::errors_only("stdin:" + std::to_string(number), [&] {
      bptt::cli::parse_stream_line(line, number, 3, x);
      s.step(x.data(), y);
      if (!std::isfinite(y[0]) || !std::isfinite(y[1]))
        bptt::fuzz::finding("a non-finite output from finite inputs", line);
    });
  }
  return 0;
}
