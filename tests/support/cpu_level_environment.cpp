// Runs the whole test binary at the CPU level BPTT_CPU_LEVEL names (bptt/cpu.hpp), or reports
// the run as skipped: ctest's cpu_level_* entries (tests/CMakeLists.txt) set the variable and
// take exit status 77 as "skipped", so a machine without AVX-512 skips the x86-64-v4 run instead
// of failing every test in it. They also set BPTT_TEST_SKIP_HIGHEST_LEVEL, which skips the run
// of the highest level the CPU has: the ordinary run is at that level already. An unknown name
// fails the run. BPTT_TEST_NEEDS_AMX (ctest's bf16_without_amx, which sets BPTT_AMX=0) skips the
// run where the CPU has no AMX tiles: there the ordinary run is the same.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "kernels/bf16.hpp"

namespace bptt::test {
namespace {

class CpuLevelEnvironment : public testing::Environment {
 public:
  void SetUp() override {
    const char* needs_amx = std::getenv("BPTT_TEST_NEEDS_AMX");
    if (needs_amx != nullptr && *needs_amx != '\0' && !kernels::bf16::amx_available()) {
      std::printf("no AMX-BF16 tiles on this CPU, build or kernel: skipping the run without them\n");
      std::fflush(stdout);
      std::exit(77);
    }
    const char* name = std::getenv("BPTT_CPU_LEVEL");
    if (name == nullptr || *name == '\0') return;
    try {
      const CpuLevel level = parse_cpu_level(name, "BPTT_CPU_LEVEL");
      if (!cpu_supports(level)) {
        std::printf("BPTT_CPU_LEVEL=%s: this CPU cannot run it; skipping every test\n", name);
        std::fflush(stdout);
        std::exit(77);
      }
      const char* skip_highest = std::getenv("BPTT_TEST_SKIP_HIGHEST_LEVEL");
      if (skip_highest != nullptr && *skip_highest != '\0' &&
          level == supported_cpu_levels().back()) {
        std::printf("BPTT_CPU_LEVEL=%s is the highest this CPU has: the ordinary run tests it; "
                    "skipping\n", name);
        std::fflush(stdout);
        std::exit(77);
      }
      // Set now, not left to the first cpu_level() call: a test that unsets BPTT_CPU_LEVEL
      // (CliUsage.CpuLevelFromTheEnvironment) before anything asked for the level sent the rest
      // of a cpu_level_baseline run to the highest level.
      set_cpu_level(level);
      std::printf("bptt's float kernels run at CPU level %s\n", name);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
};

[[maybe_unused]] testing::Environment* const kEnvironment =
    testing::AddGlobalTestEnvironment(new CpuLevelEnvironment);

}  // namespace
}  // namespace bptt::test
