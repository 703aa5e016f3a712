// The input lines of `bptt stream` (tools/cli/stream.cpp), apart so that the fuzzer
// (fuzz/fuzz_stream.cpp) reaches the same parser.
#pragma once

#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "bptt/error.hpp"

namespace bptt::cli {

// The I numbers of one input line (separated by spaces, tabs or commas) into x; throws
// bptt::Error naming the line for anything else (a non-number, a non-finite one, a wrong count).
template <class Real>
inline void parse_stream_line(const std::string& line, long number, int I, std::vector<Real>& x) {
  const std::string where = "stdin:" + std::to_string(number);
  x.clear();
  const char* p = line.data();
  const char* end = p + line.size();
  const auto separator = [](char ch) { return ch == ' ' || ch == '\t' || ch == ',' || ch == '\r'; };
  while (p < end) {
    while (p < end && separator(*p)) ++p;
    if (p == end) break;
    double v = 0;
    const auto [next, ec] = std::from_chars(p, end, v);
    if (ec == std::errc::result_out_of_range)
      throw Error(ErrorKind::value, where,
                  "value " + std::to_string(x.size() + 1) + " is beyond the range of f64",
                  "scale the inputs");
    if (ec != std::errc() || (next < end && !separator(*next))) {
      const char* stop = p;
      while (stop < end && !separator(*stop)) ++stop;
      throw Error(
          ErrorKind::format, where,
          "value " + std::to_string(x.size() + 1) + " '" + std::string(p, stop) +
              "' is not a number",
          "write " + std::to_string(I) + " numbers per line, separated by spaces or commas");
    }
    if (!std::isfinite(v))
      throw Error(ErrorKind::value, where,
                  "value " + std::to_string(x.size() + 1) + " is not finite",
                  "inputs must be finite numbers");
    if (!std::isfinite(Real(v)))
      throw Error(ErrorKind::value, where,
                  "value " + std::to_string(x.size() + 1) + " is beyond the range of the " +
                      (sizeof(Real) == 4 ? "f32" : "f64") + " model",
                  "scale the inputs");
    if (x.size() == std::size_t(I))
      throw Error(ErrorKind::shape, where, "has more than I = " + std::to_string(I) + " values",
                  "one input vector of the model's input size per line");
    x.push_back(Real(v));
    p = next;
  }
  if (x.size() != std::size_t(I))
    throw Error(ErrorKind::shape, where,
                "has " + std::to_string(x.size()) + " values, not I = " + std::to_string(I),
                "one input vector of the model's input size per line");
}

}  // namespace bptt::cli
