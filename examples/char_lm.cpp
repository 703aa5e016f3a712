// char_lm: a character-level LSTM language model trained with the bptt library API.
//
//   char_lm TEXT_FILE [STEPS]
//
// Reads the text (bytes as symbols; the last 10% is held out for validation), trains a one-layer
// LSTM on B contiguous streams with truncated BPTT (as char-rnn: windows of T characters, the
// state carried from one window to the next), then prints the validation loss in bits per
// character and a sample. `bptt train --text FILE` does the same with every option exposed.
#include <bptt/error.hpp>
#include <bptt/io.hpp>
#include <bptt/tasks.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s TEXT_FILE [STEPS]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const long steps = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 500;
  if (steps < 1) {
    std::fprintf(stderr, "STEPS must be a positive number\n");
    return 2;
  }
  try {
    // 1. The data: the vocabulary is every distinct byte of the file; ids[0, train_end) trains.
    const bptt::data::TextCorpus corpus = bptt::data::load_text(path, /*val_fraction=*/0.1);
    const int V = corpus.vocab.size();
    std::printf("%s: %zu characters, vocabulary %d\n", path.c_str(), corpus.ids.size(), V);

    // 2. The model: one-hot characters in, a distribution over the next character out.
    bptt::ModelConfig cfg;
    cfg.cell = bptt::CellKind::lstm;
    cfg.input_size = V;                                  // I
    cfg.hidden_size = 64;                                // H
    cfg.num_layers = 1;                                  // L
    cfg.output_size = V;                                 // O
    cfg.output_activation = bptt::Activation::softmax;  // θ; the loss is xent on the logits
    bptt::Model<float> model(cfg);
    bptt::init_model(model, /*seed=*/1, /*forget_bias=*/1.0);

    // 3. The task cuts the training part into B streams and windows of T steps.
    const int B = 16, T = 32;
    auto task = bptt::make_text_task<float>(corpus, B, T);
    model.metadata = task->model_metadata();  // the vocabulary, saved with the model

    // 4. The trainer: Adam, gradient clipping by global norm, the state carried across windows.
    bptt::TrainConfig tc;
    tc.optimizer.kind = bptt::OptimizerKind::adam;
    tc.schedule.lr = 3e-3;
    tc.clip_norm = 5;
    bptt::Trainer<float> trainer(model, *task, tc);
    for (long s = 1; s <= steps; ++s) {
      const bptt::StepInfo info = trainer.step();
      if (s == 1 || s % 100 == 0 || s == steps)
        std::printf("step %4ld  epoch %lld  loss %.4f  grad norm %.3f\n", s,
                    static_cast<long long>(trainer.epoch()) + 1, info.loss, info.grad_norm);
    }

    // 5. Validation: the held-out part read the same way, loss in nats and bits per character.
    const bptt::Metrics m = bptt::evaluate_text(model, corpus, corpus.train_end,
                                                corpus.ids.size(), B, T);
    std::printf("validation loss %.4f nats, %.4f bits/char\n", m.loss,
                m.values.at("bits_per_char"));

    // 6. A sample, printed as it is generated. (bptt::save_model(model, "lm.safetensors")
    //    would write a file that `bptt sample --model` and PyTorch read.)
    bptt::SampleOptions opt;
    opt.length = 200;
    opt.temperature = 0.8;
    std::printf("sample:\n");
    bptt::sample_text(model, corpus.vocab, opt, [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    std::printf("\n");
  } catch (const bptt::Error& e) {
    std::fprintf(stderr, "char_lm: %s\n", e.what());
    return 2;
  }
  return 0;
}
