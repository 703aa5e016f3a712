// bptt stream: one sequence, one step per line of stdin (bptt::Stream), for scripts and pipes.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/stream.hpp"
#include "common.hpp"
#include "stream_input.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct StreamOptions {
  std::string model, dtype;
};

template <class Real>
void run_stream(const safetensors::File& mf) {
  const Model<Real> model = load_model<Real>(mf);
  Stream<Real> s(model, 1);
  const int I = model.cfg.input_size, O = model.cfg.output_size;
  std::vector<Real> x;
  std::vector<Real> y(static_cast<std::size_t>(O));
  const char* format = sizeof(Real) == 4 ? "%.9g" : "%.17g";  // round-trips the precision
  std::string line;
  long number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {  // a blank line: a new sequence
      s.reset();
      continue;
    }
    parse_stream_line(line, number, I, x);
    s.step(x.data(), y.data());
    for (int o = 0; o < O; ++o) {
      if (o) std::fputc(' ', stdout);
      std::fprintf(stdout, format, double(y[std::size_t(o)]));
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);  // an answer per line as it arrives, also through a pipe
  }
  if (std::cin.bad()) throw Error(ErrorKind::io, "stdin", "could not be read");
}

}  // namespace

void add_stream(CLI::App& app, Runner& run) {
  auto o = std::make_shared<StreamOptions>();
  CLI::App* cmd = app.add_subcommand(
      "stream",
      "Run a model one step at a time on one sequence: each line of stdin is an input vector\n"
      "x_t (I numbers separated by spaces or commas), each line of stdout the output\n"
      "y_t = θ(head(h_t)) (O numbers), written as soon as its input arrives. A blank line\n"
      "starts a new sequence (the state returns to the model's initial state). Left-to-right\n"
      "models only.");
  cmd->add_option("--model", o->model, "Model file (safetensors, see docs/file_format.md)")
      ->required();
  add_dtype_option(cmd, o->dtype);
  cmd->callback([o, &run] {
    run = [o] {
      const ThreadCount on_threads(1);
      const auto mf = safetensors::File::read(o->model);
      const DType dtype = o->dtype.empty() ? stored_dtype(mf) : parse_dtype(o->dtype, "--dtype");
      try {
        with_dtype(dtype, [&]<class Real>() { run_stream<Real>(mf); });
      } catch (const Error& e) {
        if (e.where().rfind("stdin", 0) == 0) throw;
        throw e.within(o->model);
      }
    };
  });
}

}  // namespace bptt::cli
