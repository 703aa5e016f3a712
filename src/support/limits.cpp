#include "bptt/limits.hpp"

#include <fmt/core.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "bptt/error.hpp"

namespace bptt {

std::uint64_t memory_limit_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  std::uint64_t limit = pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page)
                                              : UINT64_MAX;
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    rlimit rl{};
    if (getrlimit(resource, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      limit = std::min<std::uint64_t>(limit, rl.rlim_cur);
  }
  if (const char* env = std::getenv("BPTT_MEMORY_LIMIT_MB")) {
    char* end = nullptr;
    const double mb = std::strtod(env, &end);
    if (end != env && *end == '\0' && mb > 0 && mb < 1e12)
      limit = std::min<std::uint64_t>(limit, std::uint64_t(mb * 1e6));
  }
  return limit;
}

std::string format_bytes(double bytes) {
  if (bytes < 1e6) return fmt::format("{:.0f} bytes", bytes);
  if (bytes < 1e9) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes < 1e15) return fmt::format("{:.1f} GB", bytes / 1e9);
  return fmt::format("{:.3g} GB", bytes / 1e9);
}

void check_memory(double bytes, const std::string& where, const std::string& what,
                  const std::string& hint) {
  const std::uint64_t limit = memory_limit_bytes();
  if (!(bytes <= double(limit)))
    throw Error(ErrorKind::resource, where,
                fmt::format("{} needs {} but only {} of memory are available", what,
                            format_bytes(bytes), format_bytes(double(limit))),
                hint);
}

}  // namespace bptt
