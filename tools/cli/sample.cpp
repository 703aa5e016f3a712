// bptt sample: generate text from a character model, streaming it as it is generated.
#include <fmt/core.h>

#include <cstdio>
#include <memory>

#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "bptt/tasks.hpp"
#include "common.hpp"
#include "verbs.hpp"

namespace bptt::cli {

namespace {

struct SampleCliOptions {
  std::string model, dtype;
  SampleOptions s;
  int threads = 1;
};

template <class Real>
void run_sample(const SampleCliOptions& o, const safetensors::File& mf) {
  const Model<Real> model = load_model<Real>(mf);
  auto it = model.metadata.find("vocab");
  if (it == model.metadata.end())
    throw Error(ErrorKind::usage, o.model + ": __metadata__.vocab", "missing",
                "sample needs a character model trained with `bptt train --text`");
  const auto vocab = data::Vocab::from_metadata(it->second, o.model + ": __metadata__.vocab");
  try {
    sample_text(model, vocab, o.s, [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
  } catch (const Error& e) {
    throw e.problem().find("vocabulary") != std::string::npos ? e.within(o.model) : e;
  }
  std::fputc('\n', stdout);
}

}  // namespace

void add_sample(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SampleCliOptions>();
  CLI::App* cmd = app.add_subcommand("sample", "Generate text from a character model, streaming it");
  cmd->add_option("--model", o->model, "Model file written by `bptt train --text ... --out`")->required();
  cmd->add_option("--length", o->s.length, "Characters to generate (default 500)");
  cmd->add_option("--temperature", o->s.temperature, "Divide the logits by this (default 1)");
  cmd->add_option("--top-k", o->s.top_k, "Sample among the k most likely characters (default 0: all)");
  cmd->add_option("--top-p", o->s.top_p, "Nucleus sampling: the smallest set with this probability (default 1)");
  cmd->add_option("--prime", o->s.prime, "Text to start from (printed first)");
  cmd->add_option("--seed", o->s.seed, "Random seed (default 1)");
  add_dtype_option(cmd, o->dtype);
  add_threads_option(cmd, o->threads);
  cmd->callback([o, &run] {
    run = [o] {
      const ThreadCount on_threads(o->threads);
      const auto mf = safetensors::File::read(o->model);
      const DType dtype = o->dtype.empty() ? stored_dtype(mf) : parse_dtype(o->dtype, "--dtype");
      with_dtype(dtype, [&]<class Real>() { run_sample<Real>(*o, mf); });
    };
  });
}

}  // namespace bptt::cli
