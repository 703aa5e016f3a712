// stream: a recurrent network answering one input at a time, as a service would.
//
//   stream MODEL.safetensors [STEPS]
//
// MODEL is a bptt model file or a PyTorch checkpoint as it is: a module's state_dict saved with
// safetensors.torch.save_file (one nn.RNN/LSTM/GRU and its nn.Linear head, any attribute names;
// docs/file_format.md). The program feeds it STEPS (default 1000) inputs of a synthetic signal
// (a sine wave per input feature), one bptt::Stream::step each, prints the first outputs and the
// median latency of a step, then starts a new sequence with reset() and checks that the first
// output repeats.
#include <bptt/bptt.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors [STEPS]\n", argv[0]);
    return 2;
  }
  const long steps = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 1000;
  if (steps < 1) {
    std::fprintf(stderr, "STEPS must be a positive number\n");
    return 2;
  }
  try {
    // 1. The model: load_model reads bptt files and plain PyTorch state_dicts alike.
    const bptt::Model<float> model = bptt::load_model<float>(argv[1]);
    const bptt::ModelConfig& c = model.cfg;
    std::printf("bptt %s: %s, input %d, hidden %d, %d layer(s), output %d\n", BPTT_VERSION_STRING,
                std::string(bptt::to_string(c.cell)).c_str(), c.input_size, c.hidden_size,
                c.num_layers, c.output_size);

    // 2. One stream: the weights are packed once here; step() allocates nothing.
    bptt::Stream<float> stream(model, /*streams=*/1);
    std::vector<float> x(std::size_t(c.input_size)), y(std::size_t(c.output_size));
    const auto input = [&](long t) {
      for (int i = 0; i < c.input_size; ++i) x[std::size_t(i)] = float(std::sin(0.1 * double(t) * (i + 1)));
    };

    // 3. The loop of a service: an input arrives, an output leaves.
    std::vector<double> us;
    float first = 0;
    for (long t = 0; t < steps; ++t) {
      input(t);
      const auto t0 = std::chrono::steady_clock::now();
      stream.step(x.data(), y.data());
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      if (t == 0) first = y[0];
      if (t < 3) {
        std::printf("step %ld: y =", t + 1);
        for (float v : y) std::printf(" %.5f", double(v));
        std::printf("\n");
      }
    }
    std::nth_element(us.begin(), us.begin() + std::ptrdiff_t(us.size() / 2), us.end());
    std::printf("%ld steps, median %.2f us per step\n", steps, us[us.size() / 2]);

    // 4. A new sequence: the state returns to the model's initial state.
    stream.reset();
    input(0);
    stream.step(x.data(), y.data());
    if (y[0] != first) {
      std::fprintf(stderr, "after reset() the first output differs: %g vs %g\n", double(y[0]), double(first));
      return 1;
    }
    std::printf("reset: the first output repeats\n");
  } catch (const bptt::Error& e) {
    std::fprintf(stderr, "stream: %s\n", e.what());
    return 2;
  }
  return 0;
}
