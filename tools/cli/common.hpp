// Small pieces shared by the verbs.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "bptt/error.hpp"
#include "bptt/types.hpp"

namespace bptt::cli {

// Runs f.template operator()<Real>() with Real = float or double.
template <class F>
void with_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
  }
}

// Adds `--dtype f32|f64` (optional; empty means "as the model is stored").
inline CLI::Option* add_dtype_option(CLI::App* cmd, std::string& dtype) {
  return cmd->add_option("--dtype", dtype,
                         "Compute and output precision: f32 or f64 (default: the model's)")
      ->check(CLI::IsMember({"f32", "f64"}));
}

}  // namespace bptt::cli
