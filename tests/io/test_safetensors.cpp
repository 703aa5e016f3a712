// Tests of the safetensors reader and writer: round trips, dtype conversions, the byte layout
// of written files, and every kind of malformed file the reader must reject with a bptt::Error
// that names the file and the tensor or field at fault, on one line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bptt/error.hpp"
#include "bptt/safetensors.hpp"
#include "support/dead_pid.hpp"

namespace st = bptt::safetensors;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

// Each test gets its own directory under the system temp dir, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("bptt_safetensors_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes `content` verbatim.
  std::string write_bytes(const std::string& name, const std::string& content) const {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    return p;
  }

  // Writes a safetensors file by hand: u64 header length, header, data.
  std::string write_raw(const std::string& name, const std::string& header,
                        const std::string& data = {}) const {
    return write_bytes(name, le64(header.size()) + header + data);
  }

  static std::string le64(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
  }

  static std::string read_all(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  fs::path dir_;
};

// One tensor entry of a header, as JSON text.
std::string entry(const std::string& dtype, const std::string& shape, std::uint64_t begin,
                  std::uint64_t end) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// Runs `f` and checks that it throws a bptt::Error whose where() starts with `path` and contains
// `field`, whose problem() contains `what`, that has a hint, and whose message is one line.
::testing::AssertionResult throws_error(const std::function<void()>& f, const std::string& path,
                                        const std::string& field, const std::string& what) {
  try {
    f();
  } catch (const bptt::Error& e) {
    const std::string msg = e.what();
    if (e.where().rfind(path, 0) != 0)
      return ::testing::AssertionFailure() << "where() does not start with the path: " << msg;
    if (e.where().find(field) == std::string::npos)
      return ::testing::AssertionFailure() << "where() does not name '" << field << "': " << msg;
    if (e.problem().find(what) == std::string::npos)
      return ::testing::AssertionFailure() << "problem() lacks '" << what << "': " << msg;
    if (e.hint().empty()) return ::testing::AssertionFailure() << "no hint: " << msg;
    if (msg.find('\n') != std::string::npos || msg.find('\r') != std::string::npos)
      return ::testing::AssertionFailure() << "message is not one line: " << msg;
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-bptt exception: " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not an exception";
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// Reading `p` must fail naming `field` with a problem containing `what`.
::testing::AssertionResult read_fails(const std::string& p, const std::string& field,
                                      const std::string& what) {
  return throws_error([&] { st::File::read(p); }, p, field, what);
}

std::string f16_file_bytes(const std::vector<std::uint16_t>& v) {
  std::string s(v.size() * 2, '\0');
  for (std::size_t i = 0; i < v.size(); ++i) {
    s[2 * i] = static_cast<char>(v[i] & 0xff);
    s[2 * i + 1] = static_cast<char>(v[i] >> 8);
  }
  return s;
}

// A writer killed mid-write leaves "<path>.tmp-<pid>"; the next successful write of the same path
// removes it once that process is gone, and leaves alone a live writer's temporary and the
// temporaries of other paths.
TEST_F(Safetensors, AWriteRemovesTheTemporariesOfDeadWriters) {
  const pid_t child = bptt::test::dead_pid();  // reaped: its pid no longer runs
  ASSERT_GT(child, 0);
  const std::string out = path("model.safetensors");
  const std::string dead = out + ".tmp-" + std::to_string(child), alive = out + ".tmp-1",
                    other = path("other.safetensors") + ".tmp-" + std::to_string(child),
                    not_pid = out + ".tmp-notes";
  for (const std::string& p : {dead, alive, other, not_pid}) std::ofstream(p) << "partial";
  st::Writer f;
  const std::vector<double> w = {1, 2};
  f.add("w", {2}, w.data());
  f.write(out);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive)) << "pid 1 runs";
  EXPECT_TRUE(fs::exists(other)) << "another path's temporary";
  EXPECT_TRUE(fs::exists(not_pid)) << "not a temporary of ours";
  EXPECT_EQ(st::File::read(out).as_f64("w"), w);
}

// ---------------------------------------------------------------------------------------------
// Round trips and conversions

TEST_F(Safetensors, RoundTripsF64F32I64MetadataAndScalar) {
  const std::vector<double> w = {1.5, -2.25, 3.0, 1e-300, -0.0, 6.0};
  const std::vector<float> b = {0.5f, -7.0f, 1e30f};
  const std::vector<std::int64_t> idx = {0, -1, std::numeric_limits<std::int64_t>::max(), 42};
  const double lr = 0.125;
  st::Writer wr;
  wr.add("rnn.weight_ih_l0", {2, 3}, w.data());
  wr.add("rnn.bias_ih_l0", {3}, b.data());
  wr.add("steps", {2, 2}, idx.data());
  wr.add("lr", {}, &lr);
  wr.set_metadata("cell", "lstm");
  wr.set_metadata("format", "bptt-1");
  const std::string p = path("model.safetensors");
  wr.write(p);

  const st::File f = st::File::read(p);
  EXPECT_EQ(f.path(), p);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"cell", "lstm"},
                                                               {"format", "bptt-1"}}));
  EXPECT_EQ(f.names(),
            (std::vector<std::string>{"lr", "rnn.bias_ih_l0", "rnn.weight_ih_l0", "steps"}));
  EXPECT_EQ(f.at("rnn.weight_ih_l0").dtype, st::ElemType::F64);
  EXPECT_EQ(f.at("rnn.weight_ih_l0").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f.as_f64("rnn.weight_ih_l0"), w);
  EXPECT_TRUE(std::signbit(f.as_f64("rnn.weight_ih_l0")[4]));
  EXPECT_EQ(f.at("rnn.bias_ih_l0").dtype, st::ElemType::F32);
  EXPECT_EQ(f.as_f32("rnn.bias_ih_l0"), b);
  EXPECT_EQ(f.at("steps").dtype, st::ElemType::I64);
  EXPECT_EQ(f.as_i64("steps"), idx);
  EXPECT_TRUE(f.at("lr").shape.empty());
  EXPECT_EQ(f.at("lr").numel(), 1);
  EXPECT_EQ(f.as_f64("lr"), std::vector<double>{0.125});
  EXPECT_TRUE(f.has("lr"));
  EXPECT_FALSE(f.has("missing"));
}

TEST_F(Safetensors, ConvertsBetweenF32AndF64) {
  const std::vector<float> f32 = {0.1f, -3.5f};
  const std::vector<double> f64 = {0.1, -3.5};
  st::Writer wr;
  wr.add("a", {2}, f32.data());
  wr.add("b", {2}, f64.data());
  wr.write(path("x.safetensors"));
  const st::File f = st::File::read(path("x.safetensors"));
  EXPECT_EQ(f.as_f64("a"), (std::vector<double>{static_cast<double>(0.1f), -3.5}));
  EXPECT_EQ(f.as_f32("b"), (std::vector<float>{0.1f, -3.5f}));
}

TEST_F(Safetensors, ConvertsF16KnownValues) {
  // 1, -2, max half, smallest subnormal, largest subnormal, 1/3 rounded, -0, +inf, -inf, NaN
  const std::vector<std::uint16_t> h = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff,
                                        0x3555, 0x8000, 0x7c00, 0xfc00, 0x7e00};
  const std::string p = write_raw("h.safetensors", "{\"h\":" + entry("F16", "[10]", 0, 20) + "}",
                                  f16_file_bytes(h));
  const std::vector<double> v = st::File::read(p).as_f64("h");
  ASSERT_EQ(v.size(), 10u);
  EXPECT_EQ(v[0], 1.0);
  EXPECT_EQ(v[1], -2.0);
  EXPECT_EQ(v[2], 65504.0);
  EXPECT_EQ(v[3], std::ldexp(1.0, -24));
  EXPECT_EQ(v[4], 1023 * std::ldexp(1.0, -24));
  EXPECT_EQ(v[5], 0.333251953125);
  EXPECT_EQ(v[6], 0.0);
  EXPECT_TRUE(std::signbit(v[6]));
  EXPECT_EQ(v[7], std::numeric_limits<double>::infinity());
  EXPECT_EQ(v[8], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(v[9]));
  EXPECT_EQ(st::File::read(p).as_f32("h")[2], 65504.0f);
}

TEST_F(Safetensors, ConvertsBF16KnownValues) {
  // 1, -3, pi rounded to bf16, 1e-40 (subnormal in float), +inf
  const std::vector<std::uint16_t> h = {0x3f80, 0xc040, 0x4049, 0x0001, 0x7f80};
  const std::string p = write_raw("b.safetensors", "{\"b\":" + entry("BF16", "[5]", 0, 10) + "}",
                                  f16_file_bytes(h));
  const std::vector<float> v = st::File::read(p).as_f32("b");
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -3.0f);
  EXPECT_EQ(v[2], 3.140625f);
  EXPECT_EQ(v[3], std::ldexp(1.0f, -133));
  EXPECT_EQ(v[4], std::numeric_limits<float>::infinity());
}

TEST_F(Safetensors, ReadsNarrowIntegerDtypesAsI64) {
  std::string data;
  data += "\xfe\xff\xff\xff" "\x05\x00\x00\x00"s;  // I32 -2, 5
  data += "\x00\x80" "\xff\x7f"s;                  // I16 -32768, 32767
  data += "\x80" "\x7f"s;                          // I8 -128, 127
  data += "\xff" "\x00"s;                          // U8 255, 0
  const std::string header = "{\"i32\":" + entry("I32", "[2]", 0, 8) +
                             ",\"i16\":" + entry("I16", "[2]", 8, 12) +
                             ",\"i8\":" + entry("I8", "[2]", 12, 14) +
                             ",\"u8\":" + entry("U8", "[2]", 14, 16) + "}";
  const st::File f = st::File::read(write_raw("i.safetensors", header, data));
  EXPECT_EQ(f.as_i64("i32"), (std::vector<std::int64_t>{-2, 5}));
  EXPECT_EQ(f.as_i64("i16"), (std::vector<std::int64_t>{-32768, 32767}));
  EXPECT_EQ(f.as_i64("i8"), (std::vector<std::int64_t>{-128, 127}));
  EXPECT_EQ(f.as_i64("u8"), (std::vector<std::int64_t>{255, 0}));
}

TEST_F(Safetensors, RejectsBoolAndMismatchedKindsInConversions) {
  const std::string header = "{\"mask\":" + entry("BOOL", "[2]", 0, 2) +
                             ",\"w\":" + entry("F32", "[1]", 2, 6) +
                             ",\"n\":" + entry("I32", "[1]", 6, 10) + "}";
  const std::string p = write_raw("k.safetensors", header, std::string(10, '\0'));
  const st::File f = st::File::read(p);
  EXPECT_TRUE(throws_error([&] { f.as_f64("mask"); }, p, "mask", "BOOL"));
  EXPECT_TRUE(throws_error([&] { f.as_f32("mask"); }, p, "mask", "BOOL"));
  EXPECT_TRUE(throws_error([&] { f.as_i64("mask"); }, p, "mask", "BOOL"));
  EXPECT_TRUE(throws_error([&] { f.as_i64("w"); }, p, "w", "F32"));
  EXPECT_TRUE(throws_error([&] { f.as_f64("n"); }, p, "n", "I32"));
  try {
    f.as_f64("mask");
  } catch (const bptt::Error& e) {
    EXPECT_NE(e.hint().find("F64, F32, F16, BF16"), std::string::npos) << e.what();
  }
  try {
    f.as_i64("mask");
  } catch (const bptt::Error& e) {
    EXPECT_NE(e.hint().find("I64, I32, I16, I8, U8"), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, AllowsGapsAndZeroSizeTensors) {
  const std::string header = "{\"a\":" + entry("F32", "[1]", 4, 8) +
                             ",\"empty\":" + entry("F64", "[0, 3]", 8, 8) +
                             ",\"empty_inside\":" + entry("F32", "[0]", 6, 6) +
                             ",\"b\":" + entry("U8", "[2]", 12, 14) + "}";
  std::string data(16, '\0');
  const float one = 1.0f;
  std::memcpy(data.data() + 4, &one, 4);
  data[12] = 7;
  const st::File f = st::File::read(write_raw("g.safetensors", header, data));
  EXPECT_EQ(f.as_f32("a"), std::vector<float>{1.0f});
  EXPECT_EQ(f.at("empty").numel(), 0);
  EXPECT_TRUE(f.as_f64("empty").empty());
  EXPECT_EQ(f.as_i64("b"), (std::vector<std::int64_t>{7, 0}));
}

TEST_F(Safetensors, AcceptsNumericAndBoolMetadataAsJsonText) {
  const std::string p = write_raw(
      "m.safetensors", "{\"__metadata__\":{\"s\":\"x\",\"n\":3,\"f\":0.5,\"b\":true}}");
  const st::File f = st::File::read(p);
  const auto& m = f.metadata();
  EXPECT_EQ(m.at("s"), "x");
  EXPECT_EQ(m.at("n"), "3");
  EXPECT_EQ(m.at("f"), "0.5");
  EXPECT_EQ(m.at("b"), "true");
}

TEST_F(Safetensors, AcceptsEmptyHeaderObjectAndSpacePadding) {
  const st::File f = st::File::read(write_raw("e.safetensors", "{}      "));
  EXPECT_TRUE(f.names().empty());
  EXPECT_TRUE(f.metadata().empty());
}

TEST_F(Safetensors, MissingTensorErrorNamesTheTensor) {
  const std::string p = write_raw("t.safetensors", "{\"a\":" + entry("F32", "[1]", 0, 4) + "}",
                                  std::string(4, '\0'));
  const st::File f = st::File::read(p);
  EXPECT_TRUE(throws_error([&] { f.at("rnn.weight_hh_l0"); }, p, "rnn.weight_hh_l0", "missing"));
  EXPECT_TRUE(throws_error([&] { f.as_f64("nope"); }, p, "nope", "missing tensor"));
}

TEST_F(Safetensors, ExpectShapeDescribesActualAndExpectedShape) {
  const std::vector<double> x(12, 0.0);
  st::Writer wr;
  wr.add("x", {4, 3}, x.data());
  const std::string p = path("s.safetensors");
  wr.write(p);
  const st::File f = st::File::read(p);
  EXPECT_NO_THROW(f.expect_shape("x", {4, 3}, "[T, I] = [4, 3]"));
  try {
    f.expect_shape("x", {7, 2, 3}, "[T, B, I] = [7, 2, 3]");
    ADD_FAILURE() << "no error";
  } catch (const bptt::Error& e) {
    EXPECT_EQ(e.where(), p + ": x");
    EXPECT_EQ(e.problem(), "shape [4, 3], expected [T, B, I] = [7, 2, 3]");
  }
  EXPECT_TRUE(throws_error([&] { f.expect_shape("y", {1}, "[1]"); }, p, "y", "missing"));
}

// ---------------------------------------------------------------------------------------------
// Malformed files

TEST_F(Safetensors, RejectsMissingFile) {
  EXPECT_TRUE(read_fails(path("does_not_exist.safetensors"), "", "cannot open"));
}

TEST_F(Safetensors, RejectsDirectory) {
  fs::create_directories(path("adir"));
  EXPECT_TRUE(read_fails(path("adir"), "", "cannot open"));
}

TEST_F(Safetensors, RejectsFileShorterThan8Bytes) {
  EXPECT_TRUE(read_fails(write_bytes("empty.safetensors", ""), "", "too short"));
  EXPECT_TRUE(read_fails(write_bytes("five.safetensors", "\x02\0\0\0\0"s), "", "too short"));
}

TEST_F(Safetensors, RejectsHeaderLengthPastEndOfFile) {
  EXPECT_TRUE(read_fails(write_bytes("a.safetensors", le64(3) + "{}"), "header", "past the end"));
  EXPECT_TRUE(read_fails(write_bytes("b.safetensors", le64(~std::uint64_t{0}) + "{}"), "header",
                         "past the end"));
  EXPECT_TRUE(read_fails(write_bytes("c.safetensors", le64(std::uint64_t{1} << 63) + "{}"),
                         "header", "past the end"));
}

TEST_F(Safetensors, RejectsHeaderThatIsNotValidJson) {
  EXPECT_TRUE(read_fails(write_raw("a.safetensors", "{\"a\":"), "header", "not valid JSON"));
  EXPECT_TRUE(read_fails(write_raw("b.safetensors", ""), "header", "not valid JSON"));
  EXPECT_TRUE(read_fails(write_raw("c.safetensors", "{\"\xff\":1}"), "header", "not valid JSON"));
  EXPECT_TRUE(read_fails(write_raw("d.safetensors", "{}\n{}"), "header", "not valid JSON"));
  EXPECT_TRUE(read_fails(write_raw("e.safetensors", std::string("{}\0", 3)), "header",
                         "not valid JSON"));
}

TEST_F(Safetensors, RejectsHeaderThatIsNotAnObject) {
  EXPECT_TRUE(read_fails(write_raw("a.safetensors", "[1, 2]"), "header", "not an object"));
  EXPECT_TRUE(read_fails(write_raw("b.safetensors", "\"x\""), "header", "not an object"));
  EXPECT_TRUE(read_fails(write_raw("c.safetensors", "null"), "header", "not an object"));
}

TEST_F(Safetensors, RejectsMetadataThatIsNotAnObject) {
  EXPECT_TRUE(read_fails(write_raw("a.safetensors", "{\"__metadata__\":[1]}"), "__metadata__",
                         "not an object"));
  EXPECT_TRUE(read_fails(write_raw("b.safetensors", "{\"__metadata__\":\"x\"}"), "__metadata__",
                         "not an object"));
}

TEST_F(Safetensors, RejectsMetadataValuesThatAreNotStringsNumbersOrBools) {
  for (const std::string v : {"null", "[1]", "{\"a\":\"b\"}"}) {
    const std::string p = write_raw("m.safetensors", "{\"__metadata__\":{\"key\":" + v + "}}");
    EXPECT_TRUE(read_fails(p, "__metadata__.key", "metadata value")) << v;
  }
}

TEST_F(Safetensors, RejectsTensorEntryThatIsNotAnObject) {
  EXPECT_TRUE(read_fails(write_raw("a.safetensors", "{\"rnn.weight_ih_l0\":[1,2]}"),
                         "rnn.weight_ih_l0", "not a JSON object"));
  EXPECT_TRUE(read_fails(write_raw("b.safetensors", "{\"w\":\"F32\"}"), "w", "not a JSON object"));
}

TEST_F(Safetensors, RejectsTensorEntryWithMissingFields) {
  const std::string p1 =
      write_raw("a.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "0000");
  EXPECT_TRUE(read_fails(p1, "w", "no \"dtype\""));
  const std::string p2 =
      write_raw("b.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "0000");
  EXPECT_TRUE(read_fails(p2, "w", "no \"shape\""));
  const std::string p3 = write_raw("c.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}",
                                   "0000");
  EXPECT_TRUE(read_fails(p3, "w", "no \"data_offsets\""));
}

TEST_F(Safetensors, RejectsTensorEntryWithWrongJsonTypes) {
  const auto with = [&](const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
    return write_raw("w.safetensors",
                     "{\"w\":{\"dtype\":" + dtype + ",\"shape\":" + shape +
                         ",\"data_offsets\":" + offsets + "}}",
                     "0000");
  };
  EXPECT_TRUE(read_fails(with("3", "[1]", "[0,4]"), "w", "\"dtype\" is not a string"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "\"1\"", "[0,4]"), "w", "\"shape\" is not an array"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "{}", "[0,4]"), "w", "\"shape\" is not an array"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "[1.0]", "[0,4]"), "w", "non-integer dim"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "[[1]]", "[0,4]"), "w", "non-integer dim"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "[true]", "[0,4]"), "w", "non-integer dim"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "[1]", "\"0,4\""), "w", "data_offsets"));
  EXPECT_TRUE(read_fails(with("\"F32\"", "[1]", "{\"a\":0}"), "w", "data_offsets"));
}

TEST_F(Safetensors, RejectsUnknownDtype) {
  for (const std::string d : {"F8_E4M3", "Q4", "f32", "", "F128"}) {
    const std::string p =
        write_raw("d.safetensors", "{\"rnn.bias_hh_l1\":" + entry(d, "[1]", 0, 1) + "}", "0");
    EXPECT_TRUE(read_fails(p, "rnn.bias_hh_l1", "unknown dtype")) << d;
  }
}

TEST_F(Safetensors, RejectsNegativeDims) {
  const std::string p =
      write_raw("n.safetensors", "{\"w\":" + entry("F32", "[2, -1]", 0, 0) + "}");
  EXPECT_TRUE(read_fails(p, "w", "negative dim"));
}

TEST_F(Safetensors, RejectsDataOffsetsThatAreNotTwoNonNegativeIntegers) {
  for (const std::string off : {"[0]", "[]", "[0,4,8]", "[-1,3]", "[0,-4]", "[0.0,4]",
                                "[\"0\",4]", "[0,18446744073709551616]", "[null,4]"}) {
    const std::string p = write_raw(
        "o.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" + off + "}}",
        "0000");
    EXPECT_TRUE(read_fails(p, "w", "not two non-negative integers")) << off;
  }
}

TEST_F(Safetensors, RejectsBeginGreaterThanEnd) {
  const std::string p =
      write_raw("b.safetensors", "{\"w\":" + entry("U8", "[0]", 4, 2) + "}", "0000");
  EXPECT_TRUE(read_fails(p, "w", "begin 4 > end 2"));
}

TEST_F(Safetensors, RejectsOffsetsPastTheDataSection) {
  const std::string p1 =
      write_raw("a.safetensors", "{\"w\":" + entry("F32", "[2]", 0, 8) + "}", "0000");
  EXPECT_TRUE(read_fails(p1, "w", "out of range"));
  const std::string p2 = write_raw(
      "b.safetensors", "{\"w\":" + entry("U8", "[0]", ~std::uint64_t{0}, ~std::uint64_t{0}) + "}",
      "0000");
  EXPECT_TRUE(read_fails(p2, "w", "out of range"));
}

TEST_F(Safetensors, RejectsByteCountThatDoesNotMatchDtypeAndShape) {
  const std::string p1 =
      write_raw("a.safetensors", "{\"w\":" + entry("F32", "[3]", 0, 8) + "}", "00000000");
  EXPECT_TRUE(read_fails(p1, "w", "needs 12"));
  const std::string p2 =
      write_raw("b.safetensors", "{\"w\":" + entry("F64", "[]", 0, 4) + "}", "00000000");
  EXPECT_TRUE(read_fails(p2, "w", "needs 8"));
}

TEST_F(Safetensors, RejectsShapesWhoseSizeOverflowsWithoutAllocating) {
  // These would need exabytes; they must be rejected from the header alone.
  const std::string p1 = write_raw(
      "a.safetensors", "{\"w\":" + entry("F64", "[4611686018427387904, 4]", 0, 0) + "}");
  EXPECT_TRUE(read_fails(p1, "w", "too large"));
  const std::string p2 = write_raw(
      "b.safetensors", "{\"w\":" + entry("F64", "[18446744073709551615]", 0, 0) + "}");
  EXPECT_TRUE(read_fails(p2, "w", "too large"));
  const std::string p3 = write_raw(
      "c.safetensors", "{\"w\":" + entry("F64", "[1152921504606846976, 2]", 0, 0) + "}");
  EXPECT_TRUE(read_fails(p3, "w", "needs more than 2^64"));
}

TEST_F(Safetensors, RejectsOverlappingTensors) {
  const std::string data(16, '\0');
  const std::string p1 = write_raw(
      "a.safetensors",
      "{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"b\":" + entry("F32", "[2]", 4, 12) + "}", data);
  EXPECT_TRUE(read_fails(p1, "b", "overlaps tensor a"));
  const std::string p2 = write_raw(
      "b.safetensors",
      "{\"a\":" + entry("F32", "[1]", 4, 8) + ",\"b\":" + entry("U8", "[4]", 4, 8) + "}", data);
  EXPECT_TRUE(read_fails(p2, "b", "overlaps tensor a"));
  const std::string p3 = write_raw(
      "c.safetensors",
      "{\"big\":" + entry("U8", "[16]", 0, 16) + ",\"a\":" + entry("U8", "[1]", 3, 4) + "}", data);
  EXPECT_TRUE(read_fails(p3, "a", "overlaps tensor big"));
}

TEST_F(Safetensors, KeepsErrorsOnOneLineForNamesWithControlCharacters) {
  const std::string p = write_raw("c.safetensors",
                                  "{\"bad\\nname\\u0001\":" + entry("Q4", "[1]", 0, 1) + "}", "0");
  EXPECT_TRUE(read_fails(p, "bad\\nname\\x01", "unknown dtype"));
}

// ---------------------------------------------------------------------------------------------
// Writer

TEST_F(Safetensors, WriterOutputFollowsTheFormat) {
  const std::vector<float> a = {1.0f, 2.0f, 3.0f};
  const std::vector<std::int64_t> z = {9};
  st::Writer wr;
  wr.set_metadata("note", "hello");
  wr.add("zeta", {3}, a.data());  // insertion order, not alphabetical
  wr.add("alpha", {1}, z.data());
  const std::string p = path("f.safetensors");
  wr.write(p);

  const std::string bytes = read_all(p);
  ASSERT_GE(bytes.size(), 8u);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 12 + 8);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));  // padded with spaces only
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"note\":\"hello\"},\"zeta\":", 0), 0u) << header;
  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "zeta", "alpha"}));
  EXPECT_EQ(j["zeta"]["dtype"], "F32");
  EXPECT_EQ(j["zeta"]["data_offsets"], nlohmann::ordered_json::parse("[0, 12]"));
  EXPECT_EQ(j["alpha"]["dtype"], "I64");
  EXPECT_EQ(j["alpha"]["shape"], nlohmann::ordered_json::parse("[1]"));
  EXPECT_EQ(j["alpha"]["data_offsets"], nlohmann::ordered_json::parse("[12, 20]"));
  float a1 = 0;
  std::memcpy(&a1, bytes.data() + 8 + n + 4, 4);
  EXPECT_EQ(a1, 2.0f);
  EXPECT_EQ(static_cast<unsigned char>(bytes[8 + n + 12]), 9u);
}

TEST_F(Safetensors, WriterOmitsEmptyMetadata) {
  const double x = 1.0;
  st::Writer wr;
  wr.add("x", {}, &x);
  wr.write(path("x.safetensors"));
  const std::string bytes = read_all(path("x.safetensors"));
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);
  EXPECT_EQ(bytes.substr(8, 5), "{\"x\":");
}

TEST_F(Safetensors, WriterRejectsDuplicateAndReservedNames) {
  const double x = 1.0;
  st::Writer wr;
  wr.add("w", {}, &x);
  EXPECT_TRUE(throws_error([&] { wr.add("w", {}, &x); }, "", "w", "duplicate"));
  EXPECT_TRUE(throws_error([&] { wr.add("__metadata__", {}, &x); }, "", "__metadata__",
                           "reserved"));
}

TEST_F(Safetensors, WriterRejectsBadShapesAndByteCounts) {
  const double x = 1.0;
  st::Writer wr;
  EXPECT_TRUE(throws_error([&] { wr.add("w", {2, -1}, &x); }, "", "w", "negative dim"));
  st::Tensor t;
  t.dtype = st::ElemType::F32;
  t.shape = {3};
  t.bytes.resize(8);
  EXPECT_TRUE(throws_error([&] { wr.add("t", t); }, "", "t", "needs 12"));
  t.bytes.resize(12);
  EXPECT_NO_THROW(wr.add("t", t));
}

TEST_F(Safetensors, WriterIntoMissingDirectoryThrowsAndLeavesNoTempFile) {
  const double x = 1.0;
  st::Writer wr;
  wr.add("x", {}, &x);
  const std::string p = path("no/such/dir/out.safetensors");
  EXPECT_TRUE(throws_error([&] { wr.write(p); }, p, "", "cannot write"));
  EXPECT_FALSE(fs::exists(p));
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(Safetensors, WriterOntoDirectoryThrowsAndLeavesNoTempFile) {
  const double x = 1.0;
  st::Writer wr;
  wr.add("x", {}, &x);
  const std::string p = path("taken");
  fs::create_directories(fs::path(p) / "child");
  EXPECT_TRUE(throws_error([&] { wr.write(p); }, p, "", "cannot write"));
  EXPECT_TRUE(fs::is_directory(p));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST_F(Safetensors, WriterReplacesExistingFileAtomically) {
  const std::string p = write_bytes("r.safetensors", "old contents");
  const std::vector<float> v = {4.0f, 5.0f};
  st::Writer wr;
  wr.add("v", {2}, v.data());
  wr.write(p);
  EXPECT_EQ(st::File::read(p).as_f32("v"), v);
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

}  // namespace
