// Shared by the libFuzzer harnesses (docs/reliability.md): the fuzzed bytes become a file (the
// readers take paths), and the reader's answer is checked against the contract of
// include/bptt/error.hpp: bad input is a bptt::Error whose message is one line and names the file.
// Anything else (another exception, a crash, a sanitizer report, a leak, a timeout or an
// allocation above -malloc_limit_mb) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bptt/error.hpp"

namespace bptt::fuzz {

// Writes the input to a file of this process (in /dev/shm when it exists) and returns its path.
inline std::string write_input(const std::uint8_t* data, std::size_t size, const char* ext) {
  static const std::string dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  const std::string path = dir + "/bptt-fuzz-" + std::to_string(::getpid()) + ext;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

[[noreturn]] inline void finding(const char* why, const std::string& message) {
  std::fprintf(stderr, "FINDING: %s: [%s]\n", why, message.c_str());
  std::abort();
}

// Runs f(); a bptt::Error must be one line and (when `path` is not empty) name the file.
template <class F>
void errors_only(const std::string& path, F&& f) {
  try {
    f();
  } catch (const bptt::Error& e) {
    const std::string m = e.what();
    if (m.find('\n') != std::string::npos || m.find('\r') != std::string::npos)
      finding("error message is not one line", m);
    if (!path.empty() && m.find(path) == std::string::npos)
      finding("error message does not name the file", m);
  }
}

}  // namespace bptt::fuzz
