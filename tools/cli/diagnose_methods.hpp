// `bptt diagnose --methods LIST` (diagnose_methods.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/diagnose.hpp"
#include "bptt/model.hpp"

namespace bptt::cli {

struct MethodsRun {
  std::vector<std::string> methods;
  int samples = 8;
  std::uint64_t seed = 1;
  std::string out;  // a directory for methods.{json,dat,gp,png}, or empty
  bool json = false;
  std::string loss, dtype;  // as the run names them, for the JSON
};

// Prints the table (or with r.json the JSON document) and writes r.out's files.
template <class Real>
void report_methods(const Model<Real>& model, const Batch<Real>& batch, LossKind loss,
                    const MethodsRun& r);

// The JSON document of `diagnose --methods --json` (for the Python module).
template <class Real>
std::string methods_json(const Model<Real>& model, const BatchArg<Real>& batch, LossKind loss,
                         const MethodsRun& r);

}  // namespace bptt::cli
