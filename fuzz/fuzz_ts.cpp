// sktime/UEA .ts files (`train --ts`, `eval --ts`): load_ts with the file's own labels and with
// a model's, then the channel statistics and a batch of the first series.
#include <algorithm>

#include "bptt/data.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = bptt::fuzz::write_input(data, size, ".ts");
  bptt::fuzz::errors_only(path, [&] {
    const auto ds = bptt::data::load_ts(path);
    std::vector<double> mean, stddev;
    bptt::data::ts_channel_stats(ds, mean, stddev);
    std::vector<int> idx;
    for (int i = 0; i < int(std::min<std::size_t>(ds.size(), 4)); ++i) idx.push_back(i);
    bptt::Batch<float> b;
    bptt::data::fill_ts_batch(ds, idx, b, &mean, &stddev);
  });
  bptt::fuzz::errors_only(path, [&] {
    const std::vector<std::string> classes = {"1", "2", "a"};
    (void)bptt::data::load_ts(path, &classes);
  });
  return 0;
}
