// Running gnuplot for the verbs that draw (plot, diagnose --out).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace bptt::cli {

// Runs `gnuplot script_path` with stdin from /dev/null; RETURNS its exit status (128 + signal
// when it was killed) and ASSIGNS what it printed on stdout and stderr to `output`. Throws
// bptt::Error when gnuplot cannot be started (not installed: the hint says how to install it).
int run_gnuplot(const std::string& script_path, std::string& output);

// The line of gnuplot's output that says what went wrong: the first that mentions an error or
// something it cannot do, else the first non-empty one, else "no message".
std::string gnuplot_problem(const std::string& output);

// A gnuplot single-quoted string: '' is a quote; control characters become spaces.
std::string quoted(const std::string& s);

// Writes `files` (name, content) into dir (created if missing) and draws `pictures` with the
// gnuplot script that script(name) returns, where name(file) is the path the script must use
// for a file of dir. Everything is written as a temporary first and renamed into place only
// when gnuplot drew every picture; throws bptt::Error (kind io) otherwise, leaving nothing
// behind. Returns the final paths (files, then pictures).
using NameOf = std::function<std::string(const std::string&)>;
std::vector<std::string> write_drawn(const std::string& dir,
                                     const std::vector<std::pair<std::string, std::string>>& files,
                                     const std::vector<std::string>& pictures,
                                     const std::function<std::string(const NameOf&)>& script);

}  // namespace bptt::cli
