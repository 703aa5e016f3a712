// Tests of the sktime/UEA .ts source: JapaneseVowels TRAIN/TEST, the header variants it must
// accept, every error (each naming the file, the line and the field, on one line), label mapping
// to a model's classes, and the batches (padding, lengths, last-step mask, normalization).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/shared_data.hpp"
#include "support/temp_dir.hpp"
#include "bptt/batch.hpp"
#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/model.hpp"

namespace fs = std::filesystem;
using bptt::Error;
using namespace bptt::data;

namespace {

// Runs `f`, expects a bptt::Error whose where() equals `where`, whose problem() contains
// `what`, with a hint, on one line (and, when given, of that kind).
template <class F>
void expect_error(F&& f, const std::string& where, const std::string& what,
                  std::optional<bptt::ErrorKind> kind = std::nullopt) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one at '" << where << "': " << what;
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), where) << e.what();
    EXPECT_NE(e.problem().find(what), std::string::npos) << "what: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    if (kind) {
      EXPECT_EQ(e.kind(), *kind) << to_string(e.kind()) << ": " << e.what();
    }
  }
}

const char* const kHeader =
    "# a comment\n"
    "@problemName Toy\n"
    "@timeStamps false\n"
    "@missing false\n"
    "@univariate false\n"
    "@dimensions 2\n"
    "@equalLength false\n"
    "@classLabel true a b c\n"
    "@data\n";  // lines 1-9; the first series is on line 10

class TsData : public bptt::test::TempDirTest {
 protected:
  TsData() : TempDirTest("bptt_ts_") {}
  std::string write(const std::string& content, const std::string& name = "toy.ts") const {
    return write_file(name, content);
  }
  // kHeader followed by `data`.
  std::string toy(const std::string& data) const { return write(std::string(kHeader) + data); }
};

// ---- JapaneseVowels -------------------------------------------------------------------------

TEST(TsShared, JapaneseVowelsTrain) {
  const std::string p = bptt::test::shared_data("JapaneseVowels_TRAIN.ts");
  BPTT_REQUIRE_SHARED_DATA(p);
  const TsDataset ds = load_ts(p);
  EXPECT_EQ(ds.path, p);
  EXPECT_EQ(ds.dims, 12);
  EXPECT_EQ(ds.class_names,
            (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "7", "8", "9"}));
  ASSERT_EQ(ds.size(), 270u);
  ASSERT_EQ(ds.lengths.size(), 270u);
  ASSERT_EQ(ds.labels.size(), 270u);
  EXPECT_EQ(*std::min_element(ds.lengths.begin(), ds.lengths.end()), 7);
  EXPECT_EQ(*std::max_element(ds.lengths.begin(), ds.lengths.end()), 26);
  for (std::size_t i = 0; i < ds.size(); ++i)
    ASSERT_EQ(ds.series[i].size(), std::size_t(ds.lengths[i]) * 12);
  std::vector<int> per_class(9);
  for (int l : ds.labels) per_class.at(static_cast<std::size_t>(l))++;
  EXPECT_EQ(per_class, std::vector<int>(9, 30));
  // Time-major: step 0 of dimensions 1 and 2, then step 1 of dimension 1.
  EXPECT_DOUBLE_EQ(ds.series[0][0], 1.860936);
  EXPECT_DOUBLE_EQ(ds.series[0][1], -0.207383);
  EXPECT_DOUBLE_EQ(ds.series[0][12], 1.891651);
  EXPECT_EQ(ds.lengths[0], 20);
  EXPECT_EQ(ds.labels[0], 0);
}

TEST(TsShared, JapaneseVowelsTestWithTheTrainingClasses) {
  const std::string train_path = bptt::test::shared_data("JapaneseVowels_TRAIN.ts");
  const std::string p = bptt::test::shared_data("JapaneseVowels_TEST.ts");
  BPTT_REQUIRE_SHARED_DATA(train_path);
  BPTT_REQUIRE_SHARED_DATA(p);
  const TsDataset own = load_ts(p);
  ASSERT_EQ(own.size(), 370u);
  EXPECT_EQ(own.dims, 12);
  EXPECT_EQ(*std::min_element(own.lengths.begin(), own.lengths.end()), 7);
  EXPECT_EQ(*std::max_element(own.lengths.begin(), own.lengths.end()), 29);
  std::vector<int> per_class(9);
  for (int l : own.labels) per_class.at(static_cast<std::size_t>(l))++;
  EXPECT_EQ(per_class, (std::vector<int>{31, 35, 88, 44, 29, 24, 40, 50, 29}));

  // A model's classes in another order: labels index into them.
  const std::vector<std::string> model = {"9", "8", "7", "6", "5", "4", "3", "2", "1", "extra"};
  const TsDataset mapped = load_ts(p, &model);
  EXPECT_EQ(mapped.class_names, model);
  for (std::size_t i = 0; i < own.size(); ++i) ASSERT_EQ(mapped.labels[i], 8 - own.labels[i]);

  // A model that does not know class 9: the first series of class 9 is an error at its line.
  const std::vector<std::string> eight = {"1", "2", "3", "4", "5", "6", "7", "8"};
  std::size_t first9 = 0;
  while (own.labels[first9] != 8) ++first9;
  expect_error([&] { load_ts(p, &eight); }, p + ":" + std::to_string(16 + first9) + ": class label",
               "class '9' is unknown to the model");
}

TEST(TsShared, JapaneseVowelsBatchAndStats) {
  const std::string p = bptt::test::shared_data("JapaneseVowels_TRAIN.ts");
  BPTT_REQUIRE_SHARED_DATA(p);
  const TsDataset ds = load_ts(p);
  std::vector<double> mean, stddev;
  ts_channel_stats(ds, mean, stddev);
  ASSERT_EQ(mean.size(), 12u);
  bptt::Batch<float> batch;
  std::vector<int> all(ds.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  fill_ts_batch(ds, all, batch, &mean, &stddev);
  EXPECT_EQ(batch.T, 26);
  EXPECT_EQ(batch.B, 270);
  bptt::ModelConfig cfg;
  cfg.cell = bptt::CellKind::gru;
  cfg.input_size = 12;
  cfg.hidden_size = 4;
  cfg.output_size = 9;
  EXPECT_NO_THROW(batch.validate(cfg, bptt::LossKind::xent, "batch"));
  // Normalized over the valid steps: mean 0, stddev 1 per dimension.
  for (int d = 0; d < 12; ++d) {
    double s = 0, s2 = 0, n = 0;
    for (int t = 0; t < batch.T; ++t)
      for (int b = 0; b < batch.B; ++b)
        if (batch.valid(t, b)) {
          const double v = batch.x[(std::size_t(t) * batch.B + b) * 12 + d];
          s += v;
          s2 += v * v;
          n += 1;
        }
    EXPECT_NEAR(s / n, 0.0, 1e-5) << d;
    EXPECT_NEAR(s2 / n, 1.0, 1e-4) << d;
  }
}

// ---- formats accepted -----------------------------------------------------------------------

TEST_F(TsData, ToySeries) {
  const std::string p = toy("1,2,3:4,5,6:b\n# a comment in the data\n\n 7 , 8 : 9,10 : a \n");
  const TsDataset ds = load_ts(p);
  EXPECT_EQ(ds.dims, 2);
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ds.lengths, (std::vector<int>{3, 2}));
  EXPECT_EQ(ds.labels, (std::vector<int>{1, 0}));
  EXPECT_EQ(ds.series[0], (std::vector<double>{1, 4, 2, 5, 3, 6}));  // [len, dims]
  EXPECT_EQ(ds.series[1], (std::vector<double>{7, 9, 8, 10}));
}

TEST_F(TsData, UnivariateWithoutDimensionsCrlfAndCase) {
  const std::string p = write(
      "@PROBLEMNAME x\r\n@univariate TRUE\r\n@EqualLength true\r\n@SeriesLength 3\r\n"
      "@classlabel True yes no\r\n@DATA\r\n1,2,3:no\r\n-1.5e1,+2,0:yes");
  const TsDataset ds = load_ts(p);
  EXPECT_EQ(ds.dims, 1);
  EXPECT_EQ(ds.series[1], (std::vector<double>{-15, 2, 0}));
  EXPECT_EQ(ds.labels, (std::vector<int>{1, 0}));
}

TEST_F(TsData, DimensionsTakenFromTheFirstLine) {
  const std::string p = write("@classLabel true x\n@data\n1:2:3:x\n4:5:6:x\n");
  const TsDataset ds = load_ts(p);
  EXPECT_EQ(ds.dims, 3);
  EXPECT_EQ(ds.series[1], (std::vector<double>{4, 5, 6}));
  const std::string q = write("@classLabel true x\n@data\n1:2:3:x\n4:5:x\n", "q.ts");
  expect_error([&] { load_ts(q); }, q + ":4", "2 dimensions but the header says 3");
}

// ---- errors ---------------------------------------------------------------------------------

TEST_F(TsData, MissingFileAndDirectory) {
  const std::string p = (dir_ / "none.ts").string();
  expect_error([&] { load_ts(p); }, p, "cannot open", bptt::ErrorKind::io);
  expect_error([&] { load_ts(dir_.string()); }, dir_.string(), "directory");
}

TEST_F(TsData, HeaderErrors) {
  struct Case {
    std::string header, where_line, what;
  };
  const std::vector<Case> cases = {
      {"@timeStamps true\n", "1", "time stamps"},
      {"@missing maybe\n", "1", "expects true or false, not 'maybe'"},
      {"@dimensions 0\n", "1", "expects a whole number"},
      {"@dimensions two\n", "1", "not 'two'"},
      {"@dimensions 99999999999\n", "1", "expects a whole number"},
      {"@seriesLength -3\n", "1", "expects a whole number"},
      {"@classLabel false\n", "1", "only classification files"},
      {"@classLabel true\n", "1", "lists no labels"},
      {"@classLabel true a b a\n", "1", "'a' is listed twice"},
      {"@targetLabel true\n", "1", "regression"},
      {"@frobnicate 3\n", "1", "unknown tag '@frobnicate'"},
      {"@dimensions 2\n@dimensions 2\n", "2", "given twice"},
      {"@univariate true\n@dimensions 3\n", "2", "@univariate true but @dimensions 3"},
      {"@dimensions 2\n@data\n", "2", "no '@classLabel true <labels>' before @data"},
      {"@classLabel true a\n1,2:a\n@data\n", "2", "a data line before @data"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    const std::string p = write(c.header + "@classLabel true a\n@data\n1:a\n");
    expect_error([&] { load_ts(p); }, p + ":" + c.where_line, c.what);
  }
}

TEST_F(TsData, NoDataSection) {
  const std::string p = write("@classLabel true a\n@dimensions 1\n");
  expect_error([&] { load_ts(p); }, p, "no @data line", bptt::ErrorKind::format);
  const std::string e = write("", "empty.ts");
  expect_error([&] { load_ts(e); }, e, "no @data line");
}

TEST_F(TsData, EmptyDataSection) {
  const std::string p = write("@classLabel true a\n@dimensions 1\n@data\n\n# nothing\n");
  expect_error([&] { load_ts(p); }, p + ":3", "no series after @data");
}

TEST_F(TsData, TagAfterData) {
  const std::string p = toy("1:2:a\n@dimensions 2\n");
  expect_error([&] { load_ts(p); }, p + ":11", "a header tag after @data");
}

TEST_F(TsData, WrongNumberOfDimensions) {
  const std::string p = toy("1:2:a\n1:2:3:a\n");
  expect_error([&] { load_ts(p); }, p + ":11", "3 dimensions but the header says 2",
               bptt::ErrorKind::shape);
  const std::string q = write(std::string(kHeader) + "1,2,3:a\n1:a\n", "q.ts");
  expect_error([&] { load_ts(q); }, q + ":10", "1 dimension but the header says 2");
  const std::string r = write(std::string(kHeader) + "1,2,3\n", "r.ts");
  expect_error([&] { load_ts(r); }, r + ":10", "no ':' before the class label");
}

TEST_F(TsData, UnequalChannels) {
  const std::string p = toy("1,2,3:4,5,6:a\n1,2,3:4,5:a\n");
  expect_error([&] { load_ts(p); }, p + ":11: dimension 2", "2 values but dimension 1 has 3");
}

TEST_F(TsData, EmptyChannel) {
  const std::string p = toy("1,2:  :a\n");
  expect_error([&] { load_ts(p); }, p + ":10: dimension 2", "no values");
}

TEST_F(TsData, NonNumericValues) {
  for (const std::string v : {"abc", "", "1.2.3", "(0", "0x1", "1e", "--2", "1 2"}) {
    SCOPED_TRACE(v);
    const std::string p = toy("1,2:3,4:a\n1,2,9:3,4," + v + ":b\n");
    expect_error([&] { load_ts(p); }, p + ":11: dimension 2",
                 "value 3 ('" + v + "') is not a number");
  }
  const std::string p = toy("(0,1),(1,2):(0,3),(1,4):a\n");  // time stamps
  expect_error([&] { load_ts(p); }, p + ":10: dimension 1", "value 1 ('(0') is not a number");
}

TEST_F(TsData, MissingValues) {
  for (const std::string v : {"?", "NaN", "nan", " ? "}) {
    SCOPED_TRACE(v);
    const std::string p = toy(v + ",2:3,4:a\n");
    expect_error([&] { load_ts(p); }, p + ":10: dimension 1", "value 1 is missing");
  }
}

TEST_F(TsData, NonFiniteValues) {
  for (const std::string v : {"inf", "-Infinity", "1e400"}) {
    SCOPED_TRACE(v);
    const std::string p = toy("1,2:3," + v + ":a\n");
    expect_error([&] { load_ts(p); }, p + ":10: dimension 2",
                 "value 2 ('" + v + "') is not a finite");
  }
}

TEST_F(TsData, Labels) {
  const std::string p = toy("1:2:a\n1:2:d\n");
  expect_error([&] { load_ts(p); }, p + ":11: class label", "'d' is not one of the @classLabel");
  const std::string q = write(std::string(kHeader) + "1:2: \n", "q.ts");
  expect_error([&] { load_ts(q); }, q + ":10: class label", "missing class label");
  const std::string r = write(std::string(kHeader) + "1:2:a\n3:4:c\n", "r.ts");
  const std::vector<std::string> model = {"b", "a"};
  expect_error([&] { load_ts(r, &model); }, r + ":11: class label",
               "class 'c' is unknown to the model");
}

TEST_F(TsData, ControlBytesAreEscapedInMessages) {
  const std::string p = toy("1,2:3,4\r5:a\n");
  expect_error([&] { load_ts(p); }, p + ":10: dimension 2", "value 2 ('4\\x0d5') is not a number");
  const std::string q = write("@classLabel true a\n@da\x01ta\n", "q.ts");
  expect_error([&] { load_ts(q); }, q + ":2", "unknown tag '@da\\x01ta'");
}

TEST_F(TsData, SeriesLength) {
  const std::string p = write(
      "@dimensions 1\n@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n"
      "1,2,3:a\n1,2:a\n");
  expect_error([&] { load_ts(p); }, p + ":7", "series has 2 steps but @seriesLength is 3");
}

TEST_F(TsData, JunkNeverCrashes) {
  std::string junk = std::string(kHeader);
  for (int k = 0; k < 4096; ++k) junk += static_cast<char>((k * 131 + 7) % 256);
  const std::string p = write(junk);
  EXPECT_THROW(load_ts(p), Error);
  const std::string q = write(std::string(kHeader) + "::::::::\n:\n", "q.ts");
  EXPECT_THROW(load_ts(q), Error);
}

// ---- batches --------------------------------------------------------------------------------

TEST_F(TsData, BatchLayoutPaddingAndMask) {
  const TsDataset ds = load_ts(toy("1,2,3:4,5,6:b\n7:8:c\n9,10:11,12:a\n"));
  bptt::Batch<double> batch;
  batch.h0 = {1, 2};
  fill_ts_batch(ds, {2, 0, 1}, batch);
  ASSERT_EQ(batch.T, 3);
  ASSERT_EQ(batch.B, 3);
  EXPECT_EQ(batch.lengths, (std::vector<std::int64_t>{2, 3, 1}));
  // x [T, B, 2]: sequence 2 (len 2), sequence 0 (len 3), sequence 1 (len 1), zero padded.
  EXPECT_EQ(batch.x, (std::vector<double>{9, 11, 1, 4, 7, 8,   //
                                          10, 12, 2, 5, 0, 0,  //
                                          0, 0, 3, 6, 0, 0}));
  EXPECT_EQ(batch.classes, (std::vector<std::int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(batch.mask, (std::vector<double>{0, 0, 1,  //
                                             1, 0, 0,  //
                                             0, 1, 0}));
  EXPECT_TRUE(batch.y.empty() && batch.h0.empty() && batch.c0.empty());
  double total = 0;
  for (int t = 0; t < batch.T; ++t)
    for (int b = 0; b < batch.B; ++b) total += batch.weight(t, b);
  EXPECT_EQ(total, 3.0);  // one loss term per sequence

  bptt::ModelConfig cfg;
  cfg.input_size = 2;
  cfg.hidden_size = 3;
  cfg.output_size = 3;
  EXPECT_NO_THROW(batch.validate(cfg, bptt::LossKind::xent, "batch"));

  // Refilling with a smaller batch reuses the buffers.
  const double* x = batch.x.data();
  fill_ts_batch(ds, {1}, batch);
  EXPECT_EQ(batch.x.data(), x);
  EXPECT_EQ(batch.x, (std::vector<double>{7, 8}));
  EXPECT_EQ(batch.mask, (std::vector<double>{1}));
}

TEST_F(TsData, ChannelStatsAndNormalization) {
  const TsDataset ds = load_ts(toy("1,2,3:5,5,5:b\n4:5:c\n"));
  std::vector<double> mean, stddev;
  ts_channel_stats(ds, mean, stddev);
  EXPECT_EQ(mean, (std::vector<double>{2.5, 5}));
  EXPECT_DOUBLE_EQ(stddev[0], std::sqrt(1.25));  // population stddev of 1, 2, 3, 4
  EXPECT_EQ(stddev[1], 1.0);                     // constant channel
  bptt::Batch<float> batch;
  fill_ts_batch(ds, {0, 1}, batch, &mean, &stddev);
  const auto s = static_cast<float>(std::sqrt(1.25));
  EXPECT_FLOAT_EQ(batch.x[0], -1.5f / s);  // t 0, b 0, d 0
  EXPECT_FLOAT_EQ(batch.x[1], 0.f);
  EXPECT_FLOAT_EQ(batch.x[2], 1.5f / s);  // t 0, b 1, d 0
  EXPECT_FLOAT_EQ(batch.x[6], 0.f);       // t 1, b 1: padding stays 0
}

TEST_F(TsData, BatchErrors) {
  const std::string p = toy("1,2:3,4:a\n");
  const TsDataset ds = load_ts(p);
  bptt::Batch<double> batch;
  expect_error([&] { fill_ts_batch(ds, {}, batch); }, p, "no sequences");
  expect_error([&] { fill_ts_batch(ds, {1}, batch); }, p, "sequence index 1 is outside [0, 1)",
               bptt::ErrorKind::value);
  expect_error([&] { fill_ts_batch(ds, {-1}, batch); }, p, "sequence index -1");
  std::vector<double> mean = {0, 0}, stddev = {1, 1}, short_ = {1}, zero = {1, 0};
  expect_error([&] { fill_ts_batch(ds, {0}, batch, &mean, &short_); }, p,
               "normalization for 2 and 1");
  expect_error([&] { fill_ts_batch(ds, {0}, batch, &mean, &zero); }, p,
               "normalization of dimension 2");
  expect_error([&] { fill_ts_batch(ds, {0}, batch, &mean, nullptr); }, p, "without");
  TsDataset empty;
  empty.path = "e.ts";
  empty.dims = 2;
  expect_error([&] { ts_channel_stats(empty, mean, stddev); }, "e.ts", "no values");
}

}  // namespace
