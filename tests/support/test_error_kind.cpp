// bptt::Error's kind (ErrorKind, error.hpp) through the public entry points: one representative
// failure of each kind (usage, io, format, shape, value, resource), to_string of every kind, and
// Error::within keeping the kind.
#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"
#include "bptt/batch.hpp"
#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/limits.hpp"
#include "bptt/methods.hpp"
#include "bptt/model.hpp"
#include "bptt/optim.hpp"
#include "bptt/safetensors.hpp"
#include "bptt/types.hpp"
#include "bptt/unroll.hpp"

namespace bptt {
namespace {

// Runs `f`, expects a bptt::Error of kind `kind` whose message contains `what`.
template <class F>
void expect_kind(ErrorKind kind, F&& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected a " << to_string(kind) << " error: " << what;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << "kind " << to_string(e.kind()) << ", expected "
                              << to_string(kind) << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

class ErrorKinds : public test::TempDirTest {
 protected:
  ErrorKinds() : TempDirTest("bptt_error_kind_") {}
};

ModelConfig small_config() {
  ModelConfig c;
  c.cell = CellKind::elman;
  c.input_size = 2;
  c.hidden_size = 3;
  c.num_layers = 1;
  c.output_size = 2;
  c.validate("test");
  return c;
}

// T steps of B sequences with targets for mse.
Batch<double> small_batch(const ModelConfig& c, int T, int B) {
  Batch<double> b;
  b.T = T;
  b.B = B;
  b.x.assign(std::size_t(T) * B * c.input_size, 0.5);
  b.y.assign(std::size_t(T) * B * c.output_size, 0.25);
  return b;
}

// A valid safetensors file with one small tensor.
std::string write_valid_file(const std::string& path) {
  safetensors::Writer w;
  const std::vector<double> v = {1, 2, 3, 4};
  w.add("t", {2, 2}, v.data());
  w.write(path);
  return path;
}

TEST(ErrorKind, ToStringNamesEveryKind) {
  EXPECT_EQ(to_string(ErrorKind::usage), "usage");
  EXPECT_EQ(to_string(ErrorKind::io), "io");
  EXPECT_EQ(to_string(ErrorKind::format), "format");
  EXPECT_EQ(to_string(ErrorKind::shape), "shape");
  EXPECT_EQ(to_string(ErrorKind::value), "value");
  EXPECT_EQ(to_string(ErrorKind::resource), "resource");
  static_assert(to_string(ErrorKind::resource) == "resource");  // usable at compile time
}

TEST(ErrorKind, ConstructorKeepsKindAndParts) {
  const Error e(ErrorKind::format, "model.safetensors: x", "bad dtype", "use F32");
  EXPECT_EQ(e.kind(), ErrorKind::format);
  EXPECT_EQ(e.where(), "model.safetensors: x");
  EXPECT_EQ(e.problem(), "bad dtype");
  EXPECT_EQ(e.hint(), "use F32");
  EXPECT_STREQ(e.what(), "model.safetensors: x: bad dtype (hint: use F32)");
}

TEST(ErrorKind, WithinKeepsTheKind) {
  for (ErrorKind k : {ErrorKind::usage, ErrorKind::io, ErrorKind::format, ErrorKind::shape,
                      ErrorKind::value, ErrorKind::resource}) {
    const Error inner(k, "rnn.weight_ih_l0", "shape [4, 3]", "a hint");
    const Error outer = inner.within("model.safetensors");
    EXPECT_EQ(outer.kind(), k) << to_string(k);
    EXPECT_EQ(outer.where(), "model.safetensors: rnn.weight_ih_l0");
    EXPECT_EQ(outer.problem(), inner.problem());
    EXPECT_EQ(outer.hint(), inner.hint());
  }
  const Error no_where(ErrorKind::value, "", "overflows");
  EXPECT_EQ(no_where.within("explain").kind(), ErrorKind::value);
  EXPECT_EQ(no_where.within("explain").where(), "explain");
}

// ---- usage: an unsupported or contradictory request ------------------------------------------

TEST(ErrorKind, UnknownNamesAreUsageErrors) {
  expect_kind(ErrorKind::usage, [] { parse_cell("lstmm", "--cell"); }, "unknown cell");
  expect_kind(ErrorKind::usage, [] { parse_grad_method("bogus"); }, "unknown method 'bogus'");
  expect_kind(ErrorKind::usage, [] { parse_optimizer("adamm", "--optimizer"); },
              "unknown optimizer");
}

TEST(ErrorKind, ContradictoryOptionsAreUsageErrors) {
  OptimizerConfig o;
  o.kind = OptimizerKind::sgd;
  o.nesterov = true;  // without momentum
  expect_kind(ErrorKind::usage, [&] { o.validate(); }, "needs --momentum > 0");
  ModelConfig c = small_config();
  c.proj_size = 1;  // a projection is an LSTM option
  expect_kind(ErrorKind::usage, [&] { c.validate("options"); }, "given for a elman cell");
}

// ---- io: files that cannot be opened, read or written -----------------------------------------

TEST_F(ErrorKinds, MissingFilesAreIoErrors) {
  const std::string missing = path("missing.safetensors");
  expect_kind(ErrorKind::io, [&] { safetensors::File::read(missing); }, "cannot open");
  expect_kind(ErrorKind::io, [&] { data::read_file_bytes(missing); }, "cannot open");
  expect_kind(ErrorKind::io, [&] { data::read_file_bytes(dir_.string()); }, "is a directory");
  const std::string in_missing_dir = path("no/such/dir/model.safetensors");
  expect_kind(ErrorKind::io, [&] { write_valid_file(in_missing_dir); }, "cannot write");
}

// ---- format: malformed content ----------------------------------------------------------------

TEST_F(ErrorKinds, DamagedSafetensorsAreFormatErrors) {
  const std::string truncated = write_file("truncated.safetensors", "abc");
  expect_kind(ErrorKind::format, [&] { safetensors::File::read(truncated); },
              "too short for a safetensors file");
  const std::string header = "{not json";
  std::string garbage(8, '\0');
  garbage[0] = char(header.size());
  const std::string p = write_file("garbage.safetensors", garbage + header);
  expect_kind(ErrorKind::format, [&] { safetensors::File::read(p); }, "not valid JSON");
  expect_kind(ErrorKind::format, [&] { safetensors::File::from_memory("abc", 3, "buffer"); },
              "too short");
  const safetensors::File f = safetensors::File::read(write_valid_file(path("ok.safetensors")));
  expect_kind(ErrorKind::format, [&] { f.at("absent"); }, "missing tensor");
}

TEST_F(ErrorKinds, MalformedDataFilesAreFormatErrors) {
  const std::string csv = write_file("series.csv", "t,y\n1,2\n2,abc\n3,4\n4,5\n");
  expect_kind(ErrorKind::format, [&] { data::load_csv_column(csv, "y"); }, "is not a number");
  expect_kind(ErrorKind::format, [] { data::Vocab::from_metadata("[1,", "vocab"); },
              "bad vocabulary");
}

// ---- shape: sizes that disagree ---------------------------------------------------------------

TEST_F(ErrorKinds, SizeMismatchesAreShapeErrors) {
  const ModelConfig c = small_config();
  Model<double> model(c);
  model.init_uniform(1);
  const Batch<double> batch = small_batch(c, 4, 2);
  Workspace<double> ws(c, 4, 3);  // sized for another batch
  Gradients<double> g(c, 4, 2);
  g.zero();
  expect_kind(ErrorKind::shape, [&] { loss_and_gradients(model, batch, LossKind::mse, ws, g); },
              "sized for T = 4, B = 3 but the batch has T = 4, B = 2");
  Batch<double> short_x = batch;
  short_x.x.pop_back();
  expect_kind(ErrorKind::shape, [&] { short_x.validate(c, "data"); }, "elements, expected");
  const safetensors::File f = safetensors::File::read(write_valid_file(path("t.safetensors")));
  expect_kind(ErrorKind::shape, [&] { f.expect_shape("t", {4}, "[4]"); }, "shape [2, 2]");
  const std::string csv = write_file("series.csv", "t,y\n1,2\n2,3,4\n3,4\n4,5\n");
  expect_kind(ErrorKind::shape, [&] { data::load_csv_column(csv, "y"); },
              "row has 3 fields but the header has 2");
}

// ---- value: numbers out of range or not finite ------------------------------------------------

TEST_F(ErrorKinds, OutOfRangeNumbersAreValueErrors) {
  Schedule s;
  s.lr = -1;
  expect_kind(ErrorKind::value, [&] { s.validate(); }, "must be a finite number >= 0");
  OptimizerConfig o;
  o.momentum = -0.5;
  expect_kind(ErrorKind::value, [&] { o.validate(); }, "must be >= 0");
  ModelConfig c = small_config();
  c.hidden_size = 0;
  expect_kind(ErrorKind::value, [&] { c.validate("options"); }, "must be at least 1, got 0");
  const std::string text = write_file("text.txt", "hello, world\n");
  expect_kind(ErrorKind::value, [&] { data::load_text(text, 1.0); }, "is not in [0, 1)");
  const std::string csv = write_file("series.csv", "t,y\n1,2\n2,inf\n3,4\n4,5\n");
  expect_kind(ErrorKind::value, [&] { data::load_csv_column(csv, "y"); }, "not finite");
  const ModelConfig ok = small_config();
  Batch<double> nan_batch = small_batch(ok, 2, 1);
  nan_batch.x[1] = std::numeric_limits<double>::quiet_NaN();
  expect_kind(ErrorKind::value, [&] { nan_batch.validate(ok, "data"); }, "is nan");
}

// ---- resource: memory and size limits ---------------------------------------------------------

TEST_F(ErrorKinds, ExceededLimitsAreResourceErrors) {
  expect_kind(ErrorKind::resource, [] { check_memory(1e30, "test", "a huge buffer", "hint"); },
              "a huge buffer needs");
  const std::string p = write_valid_file(path("model.safetensors"));
  ::setenv("BPTT_MEMORY_LIMIT_MB", "0.0001", 1);  // 100 bytes
  try {
    expect_kind(ErrorKind::resource, [&] { safetensors::File::read(p); },
                "but only 100 bytes of memory are available");
  } catch (...) {
    ::unsetenv("BPTT_MEMORY_LIMIT_MB");
    throw;
  }
  ::unsetenv("BPTT_MEMORY_LIMIT_MB");
}

}  // namespace
}  // namespace bptt
