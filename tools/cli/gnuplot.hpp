// Running gnuplot for the verbs that draw (plot, diagnose --out).
#pragma once

#include <string>

namespace bptt::cli {

// Runs `gnuplot script_path` with stdin from /dev/null; RETURNS its exit status (128 + signal
// when it was killed) and ASSIGNS what it printed on stdout and stderr to `output`. Throws
// bptt::Error when gnuplot cannot be started (not installed: the hint says how to install it).
int run_gnuplot(const std::string& script_path, std::string& output);

// The line of gnuplot's output that says what went wrong: the first that mentions an error or
// something it cannot do, else the first non-empty one, else "no message".
std::string gnuplot_problem(const std::string& output);

}  // namespace bptt::cli
