// The fuzz harnesses of fuzz/ compiled into the normal test build (GCC, no libFuzzer) and run on
// every committed seed (fuzz/corpus/NAME/) and every input that once made a fuzzer fail
// (fuzz/regressions/NAME/): the regression tests of issue 7. A harness aborts on a finding
// (a reader that throws anything but a one-line bptt::Error naming the file), which fails the
// test; under the asan preset memory errors fail it too. The command-line harness needs the CLI
// sources and is replayed by fuzz/run.sh only.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define LLVMFuzzerTestOneInput fuzz_model
#include "../../fuzz/fuzz_model.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_data
#include "../../fuzz/fuzz_data.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_snapshot
#include "../../fuzz/fuzz_snapshot.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_csv
#include "../../fuzz/fuzz_csv.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_ts
#include "../../fuzz/fuzz_ts.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_text
#include "../../fuzz/fuzz_text.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_stream
#include "../../fuzz/fuzz_stream.cpp"
#undef LLVMFuzzerTestOneInput

namespace {

namespace fs = std::filesystem;
using Harness = int (*)(const std::uint8_t*, std::size_t);

struct Case {
  const char* name;
  Harness harness;
};

class FuzzReplay : public ::testing::TestWithParam<Case> {};

TEST_P(FuzzReplay, SeedsAndRegressionsPass) {
  const Case c = GetParam();
  int files = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(BPTT_FUZZ_DIR) / kind / c.name;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
      SCOPED_TRACE(e.path().string());
      EXPECT_EQ(c.harness(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), 0);
      ++files;
    }
  }
  EXPECT_GT(files, 0) << "no seeds for fuzz_" << c.name;
}

INSTANTIATE_TEST_SUITE_P(Fuzz, FuzzReplay,
                         ::testing::Values(Case{"model", fuzz_model}, Case{"data", fuzz_data},
                                           Case{"snapshot", fuzz_snapshot}, Case{"csv", fuzz_csv},
                                           Case{"ts", fuzz_ts}, Case{"text", fuzz_text},
                                           Case{"stream", fuzz_stream}),
                         [](const auto& p) { return std::string(p.param.name); });

}  // namespace
