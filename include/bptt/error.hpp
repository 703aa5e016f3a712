// The one error type of the library. Every failure the user can cause (bad files, bad options,
// inconsistent data, exhausted resources) is reported as a bptt::Error carrying what kind of
// failure it is, where it happened, what was wrong and a hint. The CLI prints it as a single line
// and exits with status 2; the Python module raises it as bptt.Error with the same kind.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace bptt {

// What kind of failure an Error reports, for programs that react to it without parsing messages.
enum class ErrorKind {
  usage,     // the call or the command line asks for something unsupported or contradictory
             // (an unknown option value, a method that does not take this model, a bidirectional
             // model streamed left to right)
  io,        // a file or stream could not be opened, read, written or renamed
  format,    // a file's content is malformed (safetensors header, JSON, CSV, .ts, metadata)
  shape,     // sizes disagree (a tensor's shape, a buffer's length, a line's width, T or B)
  value,     // a number is out of its range or not finite (a negative rate, a NaN in the data)
  resource,  // memory, a size limit or a budget would be exceeded
};

// "usage", "io", "format", "shape", "value", "resource".
constexpr std::string_view to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::usage: return "usage";
    case ErrorKind::io: return "io";
    case ErrorKind::format: return "format";
    case ErrorKind::shape: return "shape";
    case ErrorKind::value: return "value";
    case ErrorKind::resource: return "resource";
  }
  return "usage";
}

class Error : public std::runtime_error {
 public:
  // kind:  what kind of failure (see ErrorKind),
  // where: the file and/or field the problem is in ("model.safetensors: rnn.weight_ih_l0"),
  // what:  what is wrong ("shape [4, 3] but the metadata asks for [16, 3]"),
  // hint:  what to do about it (may be empty).
  Error(ErrorKind kind, std::string where, std::string what, std::string hint = {})
      : std::runtime_error(compose(where, what, hint)), kind_(kind),
        where_(std::move(where)), what_(std::move(what)), hint_(std::move(hint)) {}

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& where() const noexcept { return where_; }
  const std::string& problem() const noexcept { return what_; }
  const std::string& hint() const noexcept { return hint_; }

  // A copy of this error with `outer` prepended to where(), e.g. the file name around a field.
  Error within(const std::string& outer) const {
    return Error(kind_, where_.empty() ? outer : outer + ": " + where_, what_, hint_);
  }

 private:
  static std::string compose(const std::string& where, const std::string& what,
                             const std::string& hint) {
    std::string s = where.empty() ? what : where + ": " + what;
    if (!hint.empty()) s += " (hint: " + hint + ")";
    return s;
  }
  ErrorKind kind_;
  std::string where_, what_, hint_;
};

}  // namespace bptt
