// The one error type of the library. Every failure the user can cause (bad files, bad options,
// inconsistent data) is reported as a bptt::Error carrying where it happened, what was wrong and
// a hint. The CLI prints it as a single line and exits with status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace bptt {

class Error : public std::runtime_error {
 public:
  // where: the file and/or field the problem is in ("model.safetensors: rnn.weight_ih_l0"),
  // what:  what is wrong ("shape [4, 3] but the metadata asks for [16, 3]"),
  // hint:  what to do about it (may be empty).
  Error(std::string where, std::string what, std::string hint = {})
      : std::runtime_error(compose(where, what, hint)),
        where_(std::move(where)), what_(std::move(what)), hint_(std::move(hint)) {}

  const std::string& where() const noexcept { return where_; }
  const std::string& problem() const noexcept { return what_; }
  const std::string& hint() const noexcept { return hint_; }

  // A copy of this error with `outer` prepended to where(), e.g. the file name around a field.
  Error within(const std::string& outer) const {
    return Error(where_.empty() ? outer : outer + ": " + where_, what_, hint_);
  }

 private:
  static std::string compose(const std::string& where, const std::string& what,
                             const std::string& hint) {
    std::string s = where.empty() ? what : where + ": " + what;
    if (!hint.empty()) s += " (hint: " + hint + ")";
    return s;
  }
  std::string where_, what_, hint_;
};

}  // namespace bptt
