// Small pieces shared by the verbs.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "bptt/cpu.hpp"
#include "bptt/error.hpp"
#include "bptt/precision.hpp"
#include "bptt/threads.hpp"
#include "bptt/types.hpp"

namespace bptt::cli {

// CLI11 messages may span lines; the contract is one line per error (the command's and the
// Python module's, through run_verb).
inline std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// Runs f.template operator()<Real>() with Real = float or double; bf16 runs float with bfloat16
// products (bptt/precision.hpp), and says once on stderr when they are emulated here.
template <class F>
void with_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::bf16: {
      if (!bf16_products_native())
        std::fprintf(stderr, "bptt: note: bf16 products are emulated with float products of rounded "
                             "operands (%s; same sums, slower than f32)\n",
                     !cpu_has_bf16()                         ? "this CPU has no AVX512-BF16"
                     : cpu_level() != CpuLevel::x86_64_v4 ? "BPTT_CPU_LEVEL is below x86-64-v4"
                                                          : "this build has no AVX512-BF16 kernels");
      const MatmulScope bf16(Matmul::bf16);
      return f.template operator()<float>();
    }
  }
}

// Adds `--dtype f32|f64|bf16` (optional; empty means "as the model is stored").
inline CLI::Option* add_dtype_option(CLI::App* cmd, std::string& dtype) {
  return cmd->add_option("--dtype", dtype,
                         "Compute and output precision: f32, f64, or bf16 (a float model whose\n"
                         "matrix products take bfloat16 operands; default: the model's)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
}

// Adds `--threads N` (default 1, as in train and bench): the OpenMP and BLAS threads a verb's
// kernels may use. One thread is the default so that results do not depend on the number of
// cores, and a busy machine does not make spinning threads wait for each other.
inline CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd
      ->add_option("--threads", threads,
                   "Threads for the matrix products and the time loop (default 1)")
      ->check(CLI::Range(1, 1024));
}

// Number checks in place of CLI11's PositiveNumber and NonNegativeNumber, whose message prints
// their range as "0.000000 to 1797693134862315708…" (309 digits). Same names in --help
// (INT:POSITIVE, FLOAT:NONNEGATIVE); the message says what is wanted. A value that is not a
// number at all is left to the option's own conversion error.
inline CLI::Validator sign_check(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return {};
        if (v > 0 || (zero_allowed && v == 0)) return {};
        return (zero_allowed ? "must be >= 0, not " : "must be > 0, not ") + text;
      },
      zero_allowed ? "NONNEGATIVE" : "POSITIVE");
}
inline const CLI::Validator kPositive = sign_check(false);
inline const CLI::Validator kNonNegative = sign_check(true);

}  // namespace bptt::cli
