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
  static const std::set<std::string> known = {"x", "y", "lengths", "mask", "h0", "c0",
                                              "mask_input", "mask_recurrent", "mask_output",
                                              "zoneout_h", "zoneout_c"};
  const std::vector<ParamInfo> layout = param_layout(cfg);
  // mask_weight_hh_l{k}[_reverse]: one per W_hh of the model, shaped like it.
  const auto weight_mask = [](const std::string& param) {
    return "mask_" + param.substr(4);  // rnn.weight_hh_l0 -> mask_weight_hh_l0
  };
  std::set<std::string> weight_masks;
  for (const ParamInfo& p : layout)
    if (p.name.rfind("rnn.weight_hh_l", 0) == 0) weight_masks.insert(weight_mask(p.name));
  for (const std::string& name : f.names())
    if (!known.count(name) && !weight_masks.count(name))
      throw Error(ErrorKind::format, f.path() + ": " + name, "unexpected tensor in a data file",
                  "a data file holds x, y, lengths, mask, h0, c0 and the training-mode masks "
                  "mask_input, mask_recurrent, mask_output, mask_weight_hh_l{k}, zoneout_h, "
                  "zoneout_c (docs/file_format.md)");

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
  // The training-mode masks (Batch::mask_input, ...): the pass then runs under exactly these.
  const std::int64_t W = cfg.output_width(), GH = std::int64_t(cfg.gates()) * H;
  if (f.has("mask_input")) {
    f.expect_shape("mask_input", {B, I}, dims({B, I}, "[B, I]"));
    batch.mask_input = f.as_real<Real>("mask_input");
  }
  if (f.has("mask_recurrent")) {
    f.expect_shape("mask_recurrent", {L, B, HO}, dims({L, B, HO}, "[L·D, B, H_out]"));
    batch.mask_recurrent = f.as_real<Real>("mask_recurrent");
  }
  if (f.has("mask_output")) {
    f.expect_shape("mask_output", {B, W}, dims({B, W}, "[B, D·H_out]"));
    batch.mask_output = f.as_real<Real>("mask_output");
  }
  bool any_weight = false;
  for (const std::string& m : weight_masks) any_weight = any_weight || f.has(m);
  if (any_weight)  // all of them or none: a missing one would silently mean "all kept"
    for (const ParamInfo& p : layout) {
      if (p.name.rfind("rnn.weight_hh_l", 0) != 0) continue;
      const std::string m = weight_mask(p.name);
      if (!f.has(m))
        throw Error(ErrorKind::format, f.path() + ": " + m, "missing tensor",
                    "give a weight-drop mask for every W_hh, or none");
      f.expect_shape(m, {GH, HO}, dims({GH, HO}, "[G·H, H_out]"));
      const std::vector<Real> v = f.as_real<Real>(m);
      batch.mask_weight_hh.insert(batch.mask_weight_hh.end(), v.begin(), v.end());
    }
  if (f.has("zoneout_h")) {
    f.expect_shape("zoneout_h", {T, L, B, HO}, dims({T, L, B, HO}, "[T, L·D, B, H_out]"));
    batch.zoneout_h = f.as_real<Real>("zoneout_h");
  }
  if (f.has("zoneout_c")) {
    if (cfg.cell != CellKind::lstm)
      throw Error(ErrorKind::usage, f.path() + ": zoneout_c",
                  "given, but a " + std::string(to_string(cfg.cell)) + " cell has no cell state",
                  "remove zoneout_c or use an LSTM model");
    f.expect_shape("zoneout_c", {T, L, B, H}, dims({T, L, B, H}, "[T, L·D, B, H]"));
    batch.zoneout_c = f.as_real<Real>("zoneout_c");
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
