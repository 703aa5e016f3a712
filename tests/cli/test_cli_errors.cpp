// Bad input files given to `bptt grad` and `bptt predict`. Every case must be refused the same
// way (docs/file_format.md, "What the reader rejects"; docs/conventions.md, "Errors"): exit status
// 2, exactly one line on stderr naming the file's path and the tensor or field at fault, no
// crash, and no output or temporary file left behind (CliTest::rejected checks all of it).
//   CliMalformed: files that are not valid safetensors, as --model and as --data;
//   CliBadContent: valid safetensors whose tensors, metadata or values are wrong.
#include "cli/cli_util.hpp"

namespace bptt::cli_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Malformed safetensors

enum class Role { model, data };

// A malformed file; `a` and `b` are tensor names suited to the role (so that only the byte
// layout is wrong), `names` what the error line must name besides the path.
struct Malformed {
  std::string label;
  std::string (*bytes)(const std::string& a, const std::string& b);
  std::vector<std::string> names;
};

std::string entry(const std::string& dtype, const std::string& shape, int begin, int end) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

const std::string k16(16, '\0');

std::string deep_array() {
  constexpr std::size_t depth = 1000000;
  return std::string(depth, '[') + std::string(depth, ']');
}

const std::vector<Malformed>& malformed_cases() {
  static const std::vector<Malformed> cases = {
      {"empty", [](const std::string&, const std::string&) { return std::string(); }, {}},
      {"five_bytes", [](const std::string&, const std::string&) { return std::string("abcde"); }, {}},
      {"header_length_past_end",
       [](const std::string&, const std::string&) {
         std::string s = raw_file("{}");
         s[0] = 'x';  // 120 bytes of header in a 10-byte file
         return s;
       },
       {"header"}},
      {"header_length_huge",
       [](const std::string&, const std::string&) { return std::string(8, '\xff') + "{}"; },
       {"header"}},
      {"header_not_json",
       [](const std::string&, const std::string&) { return raw_file("{\"x\": nope}    "); },
       {"header"}},
      {"header_json_array",
       [](const std::string&, const std::string&) { return raw_file("[1, 2, 3]"); },
       {"header"}},
      {"metadata_not_object",
       [](const std::string&, const std::string&) { return raw_file("{\"__metadata__\": 7}"); },
       {"__metadata__"}},
      {"missing_data_offsets",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":{\"dtype\":\"F64\",\"shape\":[2]}}", k16);
       },
       {"$a", "data_offsets"}},
      {"missing_shape",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":{\"dtype\":\"F64\",\"data_offsets\":[0,16]}}", k16);
       },
       {"$a", "shape"}},
      {"offsets_out_of_range",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":" + entry("F64", "[2]", 0, 16) + "}", k16.substr(8));
       },
       {"$a"}},
      {"offsets_begin_after_end",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":" + entry("F64", "[1]", 16, 8) + "}", k16);
       },
       {"$a"}},
      {"overlapping_offsets",
       [](const std::string& a, const std::string& b) {
         return raw_file("{\"" + a + "\":" + entry("F64", "[2]", 0, 16) + ",\"" + b +
                             "\":" + entry("F64", "[2]", 8, 24) + "}",
                         k16 + k16);
       },
       {"$a|$b"}},
      {"byte_size_not_matching_shape",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":" + entry("F64", "[3]", 0, 16) + "}", k16);
       },
       {"$a"}},
      {"negative_dim",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":" + entry("F64", "[-2]", 0, 16) + "}", k16);
       },
       {"$a"}},
      // A shape or data_offsets nested a million levels deep: the error must be reported like
      // any other non-integer dim, not by a stack overflow while formatting the message.
      {"shape_deeply_nested",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":{\"dtype\":\"F64\",\"shape\":[" + deep_array() +
                             "],\"data_offsets\":[0,16]}}",
                         k16);
       },
       {"$a", "shape"}},
      {"data_offsets_deeply_nested",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[" +
                             deep_array() + ",16]}}",
                         k16);
       },
       {"$a", "data_offsets"}},
      {"unknown_dtype_F8_E4M3",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":" + entry("F8_E4M3", "[2]", 0, 2) + "}", k16);
       },
       {"$a", "F8_E4M3"}},
      {"unknown_dtype_Q4",
       [](const std::string& a, const std::string&) {
         return raw_file("{\"" + a + "\":" + entry("Q4", "[2]", 0, 1) + "}", k16);
       },
       {"$a", "Q4"}},
  };
  return cases;
}

struct MalformedParam {
  Malformed m;
  Role role;
  std::string verb;
};

std::vector<MalformedParam> malformed_params() {
  std::vector<MalformedParam> out;
  // grad reads both files; predict goes through the same reader, so once per case suffices.
  for (const Malformed& m : malformed_cases()) {
    out.push_back({m, Role::model, "grad"});
    out.push_back({m, Role::data, "grad"});
    out.push_back({m, Role::data, "predict"});
  }
  return out;
}

std::string malformed_name(const ::testing::TestParamInfo<MalformedParam>& p) {
  return p.param.verb + "_" + (p.param.role == Role::model ? "model_" : "data_") + p.param.m.label;
}

void PrintTo(const MalformedParam& p, std::ostream* os) { *os << p.verb << " " << p.m.label; }

class CliMalformed : public CliTest, public ::testing::WithParamInterface<MalformedParam> {};

TEST_P(CliMalformed, IsRejectedNamingFileAndField) {
  const MalformedParam& p = GetParam();
  const Sizes s;
  const bool model_role = p.role == Role::model;
  const std::string a = model_role ? "rnn.weight_ih_l0" : "x";
  const std::string b = model_role ? "rnn.weight_hh_l0" : "y";
  std::string model = path("model.safetensors"), data = path("data.safetensors");
  if (model_role) {
    write_file(model, p.m.bytes(a, b));
    small_data(s, "mse").write(data);
  } else {
    small_model(s).write(model);
    write_file(data, p.m.bytes(a, b));
  }
  std::vector<std::string> names = {model_role ? model : data};
  for (std::string n : p.m.names) {
    for (std::size_t i = n.find("$a"); i != std::string::npos; i = n.find("$a")) n.replace(i, 2, a);
    for (std::size_t i = n.find("$b"); i != std::string::npos; i = n.find("$b")) n.replace(i, 2, b);
    names.push_back(n);
  }
  std::vector<std::string> args = {p.verb, "--model", model, "--data", data, "--out",
                                   path("out.safetensors")};
  if (p.verb == "grad") args.insert(args.end(), {"--loss", "mse"});
  EXPECT_TRUE(rejected(args, names));
}

INSTANTIATE_TEST_SUITE_P(Cli, CliMalformed, ::testing::ValuesIn(malformed_params()),
                         malformed_name);

// ---------------------------------------------------------------------------------------------
// Wrong tensors, metadata and values

struct BadContent {
  std::string label;
  std::string verb = "grad";  // grad or predict
  std::string loss = "mse";
  Sizes sizes;
  void (*change)(FileSpec& model, FileSpec& data, const Sizes& s);
  Role at;                         // the file the error is in
  std::vector<std::string> names;  // what the error line must name besides that file's path
};

Sizes sizes(const std::string& cell, int L = 1) {
  Sizes s;
  s.cell = cell;
  s.L = L;
  return s;
}

using M = FileSpec;

const std::vector<BadContent>& bad_content_cases() {
  static const Sizes lstm = sizes("lstm"), gru = sizes("gru"), elman = sizes("elman"),
                     lstm2 = sizes("lstm", 2);
  static const std::vector<BadContent> cases = {
      // Model tensors.
      {"model_without_weight_hh_l0", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.erase("rnn.weight_hh_l0"); }, Role::model,
       {"rnn.weight_hh_l0"}},
      {"predict_model_without_head_bias", "predict", "mse", gru,
       [](M& m, M&, const Sizes&) { m.erase("head.bias"); }, Role::model, {"head.bias"}},
      {"model_weight_ih_wrong_I", "grad", "mse", lstm,
       [](M& m, M&, const Sizes& s) {
         m.set("rnn.weight_ih_l0", tensor_f64({4 * s.H, s.I + 1}, values(4 * s.H * (s.I + 1), 3)));
       },
       Role::model, {"rnn.weight_ih_l0"}},
      {"model_bias_rank2", "grad", "mse", gru,
       [](M& m, M&, const Sizes& s) {
         m.set("rnn.bias_ih_l0", tensor_f64({1, 3 * s.H}, values(3 * s.H, 3)));
       },
       Role::model, {"rnn.bias_ih_l0"}},
      {"model_head_weight_wrong_O", "predict", "mse", elman,
       [](M& m, M&, const Sizes& s) {
         m.set("head.weight", tensor_f64({s.O + 1, s.H}, values((s.O + 1) * s.H, 3)));
       },
       Role::model, {"head.weight"}},
      {"model_unexpected_tensor", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.set("head.scale", tensor_f64({1}, {1.0})); }, Role::model,
       {"head.scale"}},
      {"model_weight_integer_dtype", "grad", "mse", lstm,
       [](M& m, M&, const Sizes& s) {
         m.set("rnn.weight_hh_l0", tensor_i64({4 * s.H, s.H}, std::vector<std::int64_t>(std::size_t(4 * s.H * s.H), 1)));
       },
       Role::model, {"rnn.weight_hh_l0"}},
      // Metadata.
      {"metadata_missing_cell", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta.erase("cell"); }, Role::model, {"cell"}},
      {"metadata_cell_transformer", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["cell"] = "transformer"; }, Role::model,
       {"cell", "transformer"}},
      {"metadata_unknown_nonlinearity", "grad", "mse", elman,
       [](M& m, M&, const Sizes&) { m.meta["nonlinearity"] = "swish"; }, Role::model,
       {"nonlinearity"}},
      {"metadata_softmax_nonlinearity", "grad", "mse", elman,
       [](M& m, M&, const Sizes&) { m.meta["nonlinearity"] = "softmax"; }, Role::model,
       {"nonlinearity"}},
      {"metadata_relu_for_lstm", "predict", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["nonlinearity"] = "relu"; }, Role::model,
       {"nonlinearity"}},
      {"metadata_unknown_output_activation", "grad", "mse", gru,
       [](M& m, M&, const Sizes&) { m.meta["output_activation"] = "gelu"; }, Role::model,
       {"output_activation"}},
      {"metadata_input_size_abc", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["input_size"] = "abc"; }, Role::model,
       {"input_size"}},
      {"metadata_input_size_0", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["input_size"] = "0"; }, Role::model, {"input_size"}},
      {"metadata_input_size_minus_3", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["input_size"] = "-3"; }, Role::model,
       {"input_size"}},
      {"metadata_input_size_overflows_int", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["input_size"] = "99999999999"; }, Role::model,
       {"input_size"}},
      {"metadata_hidden_size_2p5", "predict", "mse", gru,
       [](M& m, M&, const Sizes&) { m.meta["hidden_size"] = "2.5"; }, Role::model,
       {"hidden_size"}},
      {"metadata_missing_output_size", "grad", "mse", gru,
       [](M& m, M&, const Sizes&) { m.meta.erase("output_size"); }, Role::model,
       {"output_size"}},
      // Sizes that disagree with the tensors by a lot must be reported as a mismatch, not by
      // trying to allocate the model the metadata describes.
      {"metadata_hidden_size_huge", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["hidden_size"] = "10000000"; }, Role::model,
       {"hidden_size|rnn."}},
      {"metadata_hidden_size_int_max", "predict", "mse", gru,
       [](M& m, M&, const Sizes&) { m.meta["hidden_size"] = "2147483647"; }, Role::model,
       {"hidden_size|rnn."}},
      {"metadata_num_layers_2_tensors_for_1", "grad", "mse", lstm,
       [](M& m, M&, const Sizes&) { m.meta["num_layers"] = "2"; }, Role::model,
       {"num_layers|_l1"}},
      {"metadata_num_layers_1_tensors_for_2", "grad", "mse", lstm2,
       [](M& m, M&, const Sizes&) { m.meta["num_layers"] = "1"; }, Role::model, {"num_layers|_l1"}},
      // Data tensors.
      {"data_without_x", "grad", "mse", lstm, [](M&, M& d, const Sizes&) { d.erase("x"); },
       Role::data, {"x"}},
      {"predict_data_without_x", "predict", "mse", gru,
       [](M&, M& d, const Sizes&) { d.erase("x"); }, Role::data, {"x"}},
      {"grad_data_without_y", "grad", "mse", lstm, [](M&, M& d, const Sizes&) { d.erase("y"); },
       Role::data, {"y"}},
      {"x_rank_2", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("x", tensor_f64({s.T, s.B * s.I}, values(s.T * s.B * s.I, 9))); },
       Role::data, {"x"}},
      {"x_wrong_I", "predict", "mse", elman,
       [](M&, M& d, const Sizes& s) {
         d.set("x", tensor_f64({s.T, s.B, s.I + 1}, values(s.T * s.B * (s.I + 1), 9)));
       },
       Role::data, {"x"}},
      {"x_no_steps", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("x", tensor_f64({0, s.B, s.I}, {})); }, Role::data,
       {"x"}},
      {"x_integer", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) {
         d.set("x", tensor_i64({s.T, s.B, s.I}, std::vector<std::int64_t>(std::size_t(s.T * s.B * s.I), 1)));
       },
       Role::data, {"x"}},
      {"x_nan", "grad", "mse", gru,
       [](M&, M& d, const Sizes& s) {
         std::vector<double> x = values(s.T * s.B * s.I, 9);
         x[1] = std::nan("");
         d.set("x", tensor_f64({s.T, s.B, s.I}, x));
       },
       Role::data, {"x"}},
      {"y_wrong_O", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) {
         d.set("y", tensor_f64({s.T, s.B, s.O + 1}, values(s.T * s.B * (s.O + 1), 9)));
       },
       Role::data, {"y"}},
      {"y_xent_wrong_shape", "grad", "xent", gru,
       [](M&, M& d, const Sizes& s) {
         d.set("y", tensor_i64({s.T, s.B, 1}, std::vector<std::int64_t>(std::size_t(s.T * s.B), 0)));
       },
       Role::data, {"y"}},
      {"h0_wrong_L", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) {
         d.set("h0", tensor_f64({s.L + 1, s.B, s.H}, values((s.L + 1) * s.B * s.H, 9)));
       },
       Role::data, {"h0"}},
      {"predict_h0_wrong_H", "predict", "mse", gru,
       [](M&, M& d, const Sizes& s) {
         d.set("h0", tensor_f64({s.L, s.B, s.H + 1}, values(s.L * s.B * (s.H + 1), 9)));
       },
       Role::data, {"h0"}},
      {"c0_wrong_B", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) {
         d.set("c0", tensor_f64({s.L, s.B + 1, s.H}, values(s.L * (s.B + 1) * s.H, 9)));
       },
       Role::data, {"c0"}},
      {"mask_wrong_shape", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("mask", tensor_f64({s.B, s.T}, std::vector<double>(std::size_t(s.T * s.B), 1.0))); },
       Role::data, {"mask"}},
      {"lengths_wrong_size", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("lengths", tensor_i64({s.B + 1}, std::vector<std::int64_t>(std::size_t(s.B + 1), 1))); },
       Role::data, {"lengths"}},
      {"data_unexpected_tensor", "grad", "mse", lstm,
       [](M&, M& d, const Sizes&) { d.set("weights", tensor_f64({1}, {1.0})); }, Role::data,
       {"weights"}},
      {"predict_data_unexpected_tensor", "predict", "mse", lstm,
       [](M&, M& d, const Sizes&) { d.set("x_extra", tensor_f64({1}, {1.0})); }, Role::data,
       {"x_extra"}},
      {"data_tensor_name_with_newline", "grad", "mse", gru,
       [](M&, M& d, const Sizes&) { d.set("x\nextra", tensor_f64({1}, {1.0})); }, Role::data,
       {"extra"}},
      {"y_float_for_xent", "grad", "xent", lstm,
       [](M&, M& d, const Sizes& s) {
         d.set("y", tensor_f64({s.T, s.B}, std::vector<double>(std::size_t(s.T * s.B), 1.0)));
       },
       Role::data, {"y"}},
      {"y_int_for_mse", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) {
         d.set("y", tensor_i64({s.T, s.B, s.O}, std::vector<std::int64_t>(std::size_t(s.T * s.B * s.O), 0)));
       },
       Role::data, {"y"}},
      {"y_int_for_bce", "grad", "bce", gru,
       [](M&, M& d, const Sizes& s) {
         d.set("y", tensor_i64({s.T, s.B}, std::vector<std::int64_t>(std::size_t(s.T * s.B), 0)));
       },
       Role::data, {"y"}},
      {"lengths_float", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("lengths", tensor_f64({s.B}, std::vector<double>(std::size_t(s.B), 2.0))); },
       Role::data, {"lengths"}},
      {"mask_integer", "grad", "mse", elman,
       [](M&, M& d, const Sizes& s) { d.set("mask", tensor_i64({s.T, s.B}, std::vector<std::int64_t>(std::size_t(s.T * s.B), 1))); },
       Role::data, {"mask"}},
      // Values inconsistent with the model or each other.
      {"lengths_past_T", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("lengths", tensor_i64({s.B}, {s.T, s.T + 1})); },
       Role::data, {"lengths"}},
      {"predict_lengths_past_T", "predict", "mse", gru,
       [](M&, M& d, const Sizes& s) { d.set("lengths", tensor_i64({s.B}, {s.T + 5, 1})); },
       Role::data, {"lengths"}},
      {"lengths_negative", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("lengths", tensor_i64({s.B}, {-1, s.T})); },
       Role::data, {"lengths"}},
      {"class_index_equal_to_O", "grad", "xent", lstm,
       [](M&, M& d, const Sizes& s) {
         std::vector<std::int64_t> c(std::size_t(s.T * s.B), 0);
         c.back() = s.O;
         d.set("y", tensor_i64({s.T, s.B}, c));
       },
       Role::data, {"y"}},
      {"class_index_negative", "grad", "xent", gru,
       [](M&, M& d, const Sizes& s) {
         std::vector<std::int64_t> c(std::size_t(s.T * s.B), 1);
         c[2] = -1;
         d.set("y", tensor_i32({s.T, s.B}, c));
       },
       Role::data, {"y"}},
      {"mask_negative", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) {
         std::vector<double> w(std::size_t(s.T * s.B), 1.0);
         w[3] = -0.5;
         d.set("mask", tensor_f64({s.T, s.B}, w));
       },
       Role::data, {"mask"}},
      {"mask_nan", "grad", "bce", elman,
       [](M&, M& d, const Sizes& s) {
         std::vector<double> w(std::size_t(s.T * s.B), 1.0);
         w[0] = std::nan("");
         d.set("mask", tensor_f64({s.T, s.B}, w));
       },
       Role::data, {"mask"}},
      {"mask_all_zero", "grad", "mse", lstm,
       [](M&, M& d, const Sizes& s) { d.set("mask", tensor_f64({s.T, s.B}, std::vector<double>(std::size_t(s.T * s.B), 0.0))); },
       Role::data, {"mask"}},
      {"lengths_all_zero", "grad", "xent", gru,
       [](M&, M& d, const Sizes& s) { d.set("lengths", tensor_i64({s.B}, std::vector<std::int64_t>(std::size_t(s.B), 0))); },
       Role::data, {"mask|lengths"}},
      {"c0_for_gru", "grad", "mse", gru,
       [](M&, M& d, const Sizes& s) { d.set("c0", tensor_f64({s.L, s.B, s.H}, values(s.L * s.B * s.H, 9))); },
       Role::data, {"c0"}},
      {"predict_c0_for_elman", "predict", "mse", elman,
       [](M&, M& d, const Sizes& s) { d.set("c0", tensor_f64({s.L, s.B, s.H}, values(s.L * s.B * s.H, 9))); },
       Role::data, {"c0"}},
      {"bce_target_above_1", "grad", "bce", lstm,
       [](M&, M& d, const Sizes& s) {
         std::vector<double> y(std::size_t(s.T * s.B * s.O), 0.5);
         y[4] = 1.5;
         d.set("y", tensor_f64({s.T, s.B, s.O}, y));
       },
       Role::data, {"y"}},
      {"bce_target_negative", "grad", "bce", elman,
       [](M&, M& d, const Sizes& s) {
         std::vector<double> y(std::size_t(s.T * s.B * s.O), 0.5);
         y[0] = -0.25;
         d.set("y", tensor_f32({s.T, s.B, s.O}, y));
       },
       Role::data, {"y"}},
      {"mse_target_inf", "grad", "mse", gru,
       [](M&, M& d, const Sizes& s) {
         std::vector<double> y(std::size_t(s.T * s.B * s.O), 0.5);
         y[0] = INFINITY;
         d.set("y", tensor_f64({s.T, s.B, s.O}, y));
       },
       Role::data, {"y"}},
  };
  return cases;
}

std::string bad_content_name(const ::testing::TestParamInfo<BadContent>& p) {
  return p.param.label;
}

void PrintTo(const BadContent& c, std::ostream* os) { *os << c.label; }

class CliBadContent : public CliTest, public ::testing::WithParamInterface<BadContent> {};

TEST_P(CliBadContent, IsRejectedNamingFileAndField) {
  const BadContent& c = GetParam();
  FileSpec model = small_model(c.sizes);
  FileSpec data = small_data(c.sizes, c.loss);
  c.change(model, data, c.sizes);
  const std::string mp = model.write(path("model.safetensors"));
  const std::string dp = data.write(path("data.safetensors"));
  std::vector<std::string> names = {c.at == Role::model ? mp : dp};
  names.insert(names.end(), c.names.begin(), c.names.end());
  std::vector<std::string> args = {c.verb, "--model", mp, "--data", dp, "--out",
                                   path("out.safetensors")};
  if (c.verb == "grad") args.insert(args.end(), {"--loss", c.loss});
  EXPECT_TRUE(rejected(args, names));
  // Also in the other precision (the loaders are templates over float and double).
  args.insert(args.end(), {"--dtype", "f32"});
  EXPECT_TRUE(rejected(args, names)) << "with --dtype f32";
}

INSTANTIATE_TEST_SUITE_P(Cli, CliBadContent, ::testing::ValuesIn(bad_content_cases()),
                         bad_content_name);

// The unchanged small files are accepted: the cases above fail for their one change only.
class CliBadContentBaseline : public CliTest {};

TEST_F(CliBadContentBaseline, SmallFilesAreValid) {
  int k = 0;
  for (const char* cell : {"elman", "lstm", "gru"})
    for (const char* loss : {"mse", "bce", "xent"}) {
      const Sizes s = sizes(cell, 1 + k++ % 2);  // L = 1 and 2 alternately
      const std::string mp = small_model(s).write(path("model.safetensors"));
      const std::string dp = small_data(s, loss).write(path("data.safetensors"));
      const RunResult g = run({"grad", "--model", mp, "--data", dp, "--out", path("g.safetensors"),
                               "--loss", loss});
      EXPECT_EQ(g.code, 0) << g;
      const RunResult p = run({"predict", "--model", mp, "--data", dp, "--out",
                               path("p.safetensors"), "--dtype", "f32"});
      EXPECT_EQ(p.code, 0) << p;
    }
}

}  // namespace
}  // namespace bptt::cli_test
