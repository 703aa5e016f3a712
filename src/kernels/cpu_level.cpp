// The process-wide CPU level of bptt/cpu.hpp. g_level is constant-initialized (no static
// initialization order to worry about) and holds −1 until the first call resolves it from
// BPTT_CPU_LEVEL or the CPU.
#include <atomic>
#include <cstdlib>
#include <string>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "kernels/simd.hpp"

namespace bptt {
namespace {

std::atomic<int> g_level{-1};

std::string names_of(const std::vector<CpuLevel>& levels) {
  std::string s;
  for (CpuLevel l : levels) s += (s.empty() ? "" : ", ") + std::string(to_string(l));
  return s;
}

CpuLevel from_environment_or_cpu() {
  const char* env = std::getenv("BPTT_CPU_LEVEL");
  if (env == nullptr || *env == '\0') return supported_cpu_levels().back();
  const CpuLevel level = parse_cpu_level(env, "BPTT_CPU_LEVEL");
  if (!cpu_supports(level))
    throw Error(
        ErrorKind::usage, "BPTT_CPU_LEVEL", "this CPU or build cannot run " + std::string(env),
        "it runs " + names_of(supported_cpu_levels()) + "; unset the variable for the highest");
  return level;
}

}  // namespace

std::string_view to_string(CpuLevel level) {
  switch (level) {
    case CpuLevel::baseline: return "baseline";
    case CpuLevel::x86_64_v3: return "x86-64-v3";
    case CpuLevel::x86_64_v4: return "x86-64-v4";
  }
  return "?";
}

CpuLevel parse_cpu_level(std::string_view name, std::string_view where) {
  for (CpuLevel l : {CpuLevel::baseline, CpuLevel::x86_64_v3, CpuLevel::x86_64_v4})
    if (name == to_string(l)) return l;
  throw Error(ErrorKind::usage, std::string(where),
              "unknown CPU level '" + std::string(name.substr(0, 40)) + "'",
              "one of baseline, x86-64-v3, x86-64-v4");
}

bool cpu_supports(CpuLevel level) {
  switch (level) {
    case CpuLevel::baseline: return true;
#if BPTT_HAVE_CPU_LEVELS
    case CpuLevel::x86_64_v3: __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v3");
    case CpuLevel::x86_64_v4: __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v4");
#else
    case CpuLevel::x86_64_v3:
    case CpuLevel::x86_64_v4: return false;
#endif
  }
  return false;
}

std::vector<CpuLevel> supported_cpu_levels() {
  std::vector<CpuLevel> out;
  for (CpuLevel l : {CpuLevel::baseline, CpuLevel::x86_64_v3, CpuLevel::x86_64_v4})
    if (cpu_supports(l)) out.push_back(l);
  return out;
}

CpuLevel cpu_level() {
  int v = g_level.load(std::memory_order_relaxed);
  if (v < 0) {
    // Two threads may both resolve it; they find the same answer and the first store wins.
    int unresolved = -1;
    g_level.compare_exchange_strong(unresolved, int(from_environment_or_cpu()),
                                    std::memory_order_relaxed);
    v = g_level.load(std::memory_order_relaxed);
  }
  return CpuLevel(v);
}

void set_cpu_level(CpuLevel level) {
  if (!cpu_supports(level))
    throw Error(ErrorKind::usage, "set_cpu_level",
                "this CPU or build cannot run " + std::string(to_string(level)),
                "it runs " + names_of(supported_cpu_levels()));
  g_level.store(int(level), std::memory_order_relaxed);
}

}  // namespace bptt
