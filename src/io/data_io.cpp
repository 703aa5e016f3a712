#include <set>

#include "bptt/error.hpp"
#include "bptt/io.hpp"

namespace bptt {

namespace {

using safetensors::ElemType;
using safetensors::File;

bool is_integer(ElemType t) {
  switch (t) {
    case ElemType::I64:
    case ElemType::I32:
    case ElemType::I16:
    case ElemType::I8:
    case ElemType::U8: return true;
    case ElemType::F64:
    case ElemType::F32:
    case ElemType::F16:
    case ElemType::BF16:
    case ElemType::BOOL: return false;
  }
  return false;
}

std::string dims(std::initializer_list<std::int64_t> d, const char* names) {
  std::string s = std::string(names) + " = [";
  for (auto it = d.begin(); it != d.end(); ++it)
    s += (it == d.begin() ? "" : ", ") + std::to_string(*it);
  return s + "]";
}

}  // namespace

template <class Real>
Batch<Real> load_batch(const File& f, const ModelConfig& cfg, std::optional<LossKind> loss) {
  static const std::set<std::string> known = {"x", "y", "lengths", "mask", "h0", "c0"};
  for (const std::string& name : f.names())
    if (!known.count(name))
      throw Error(ErrorKind::format, f.path() + ": " + name, "unexpected tensor in a data file",
                  "a data file holds x, y, lengths, mask, h0, c0");

  Batch<Real> batch;
  const auto& x = f.at("x");
  if (x.shape.size() != 3)
    throw Error(ErrorKind::shape, f.path() + ": x",
                "has " + std::to_string(x.shape.size()) + " dimensions",
                "x is time-major [T, B, I]");
  const std::int64_t T = x.shape[0], B = x.shape[1], I = cfg.input_size, O = cfg.output_size,
                     H = cfg.hidden_size, HO = cfg.state_size(), L = cfg.units();
  if (T < 1 || B < 1)
    throw Error(ErrorKind::shape, f.path() + ": x",
                "is empty (T = " + std::to_string(T) + ", B = " + std::to_string(B) + ")",
                "give at least one step and sequence");
  if (T > (1 << 24) || B > (1 << 24))
    throw Error(ErrorKind::resource, f.path() + ": x", "T or B larger than 2^24 is not supported");
  batch.T = int(T);
  batch.B = int(B);
  f.expect_shape("x", {T, B, I}, dims({T, B, I}, "[T, B, I]"));
  batch.x = f.as_real<Real>("x");

  if (loss && f.has("y")) {
    const auto& y = f.at("y");
    if (is_integer(y.dtype)) {
      if (*loss != LossKind::xent)
        throw Error(ErrorKind::usage, f.path() + ": y",
                    "holds integer class indices, but the loss is " + std::string(to_string(*loss)),
                    "use --loss xent, or store y as F32/F64 [T, B, O]");
      f.expect_shape("y", {T, B}, dims({T, B}, "[T, B]"));
      batch.classes = f.as_i64("y");
    } else {
      if (*loss == LossKind::xent)
        throw Error(ErrorKind::usage, f.path() + ": y",
                    "holds " + std::string(safetensors::elem_name(y.dtype)) +
                        " values, but the xent loss needs class indices",
                    "store y as I64 or I32 [T, B]");
      f.expect_shape("y", {T, B, O}, dims({T, B, O}, "[T, B, O]"));
      batch.y = f.as_real<Real>("y");
    }
  } else if (loss) {
    throw Error(ErrorKind::format, f.path() + ": y", "missing tensor", "the loss needs targets y");
  }
  if (f.has("lengths")) {
    f.expect_shape("lengths", {B}, dims({B}, "[B]"));
    if (!is_integer(f.at("lengths").dtype))
      throw Error(ErrorKind::format, f.path() + ": lengths", "must be an integer tensor",
                  "store lengths as I64 or I32");
    batch.lengths = f.as_i64("lengths");
  }
  if (f.has("mask")) {
    f.expect_shape("mask", {T, B}, dims({T, B}, "[T, B]"));
    batch.mask = f.as_real<Real>("mask");
  }
  if (f.has("h0")) {
    f.expect_shape("h0", {L, B, HO},
                   dims({L, B, HO}, cfg.bidirectional
                                        ? (cfg.proj_size ? "[L·D, B, P]" : "[L·D, B, H]")
                                        : (cfg.proj_size ? "[L, B, P]" : "[L, B, H]")));
    batch.h0 = f.as_real<Real>("h0");
  }
  if (f.has("c0")) {
    f.expect_shape("c0", {L, B, H}, dims({L, B, H}, cfg.bidirectional ? "[L·D, B, H]" : "[L, B, H]"));
    batch.c0 = f.as_real<Real>("c0");
  }
  if (loss)
    batch.validate(cfg, *loss, f.path());
  else
    batch.validate(cfg, f.path());
  return batch;
}

template Batch<float> load_batch<float>(const File&, const ModelConfig&, std::optional<LossKind>);
template Batch<double> load_batch<double>(const File&, const ModelConfig&, std::optional<LossKind>);

}  // namespace bptt
