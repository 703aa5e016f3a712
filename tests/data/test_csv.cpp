// Tests of the CSV series source: the three real series, the formats it must accept (quotes,
// CRLF, no final newline, blank lines at the end, a BOM) and every error, each naming the file,
// the line and the column on one line; and the seasonal period guessed from the labels.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/shared_data.hpp"
#include "support/temp_dir.hpp"
#include "bptt/data.hpp"
#include "bptt/error.hpp"

namespace fs = std::filesystem;
using bptt::Error;
using namespace bptt::data;

namespace {

// Runs `f`, expects a bptt::Error whose where() equals `where`, whose problem() contains
// `what`, with a hint, on one line. Returns the hint.
template <class F>
std::string expect_error(F&& f, const std::string& where, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one at '" << where << "': " << what;
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), where) << e.what();
    EXPECT_NE(e.problem().find(what), std::string::npos) << "what: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    return e.hint();
  }
  return {};
}

class CsvData : public bptt::test::TempDirTest {
 protected:
  CsvData() : TempDirTest("bptt_csv_") {}
  std::string write(const std::string& content, const std::string& name = "s.csv") const {
    return write_file(name, content);
  }
};

// ---- the real series ------------------------------------------------------------------------

TEST(CsvShared, AirlinePassengers) {
  const std::string p = bptt::test::shared_data("airline-passengers.csv");
  BPTT_REQUIRE_SHARED_DATA(p);
  const Series s = load_csv_column(p, "Passengers");
  EXPECT_EQ(s.path, p);
  EXPECT_EQ(s.column, "Passengers");
  ASSERT_EQ(s.values.size(), 144u);
  ASSERT_EQ(s.labels.size(), 144u);
  EXPECT_EQ(s.labels.front(), "1949-01");
  EXPECT_EQ(s.labels.back(), "1960-12");
  EXPECT_EQ(s.values.front(), 112);
  EXPECT_EQ(s.values.back(), 432);  // the last row has no line terminator
  EXPECT_EQ(*std::min_element(s.values.begin(), s.values.end()), 104);
  EXPECT_EQ(*std::max_element(s.values.begin(), s.values.end()), 622);
  EXPECT_EQ(seasonal_period(s), 12);
}

TEST(CsvShared, DailyMinTemperatures) {
  const std::string p = bptt::test::shared_data("daily-min-temperatures.csv");
  BPTT_REQUIRE_SHARED_DATA(p);
  const Series s = load_csv_column(p, "Temp");
  ASSERT_EQ(s.values.size(), 3650u);
  EXPECT_EQ(s.labels.front(), "1981-01-01");
  EXPECT_EQ(s.labels.back(), "1990-12-31");
  EXPECT_DOUBLE_EQ(s.values.front(), 20.7);
  EXPECT_EQ(*std::min_element(s.values.begin(), s.values.end()), 0.0);
  EXPECT_DOUBLE_EQ(*std::max_element(s.values.begin(), s.values.end()), 26.3);
  EXPECT_EQ(seasonal_period(s), 365);
}

TEST(CsvShared, MonthlySunspots) {
  const std::string p = bptt::test::shared_data("monthly-sunspots.csv");
  BPTT_REQUIRE_SHARED_DATA(p);
  const Series s = load_csv_column(p, "Sunspots");
  ASSERT_EQ(s.values.size(), 2820u);
  EXPECT_EQ(s.labels.front(), "1749-01");
  EXPECT_EQ(s.labels.back(), "1983-12");
  EXPECT_DOUBLE_EQ(s.values.front(), 58.0);
  EXPECT_DOUBLE_EQ(s.values.back(), 33.4);
  EXPECT_DOUBLE_EQ(*std::max_element(s.values.begin(), s.values.end()), 253.8);
  EXPECT_EQ(seasonal_period(s), 12);
}

TEST(CsvShared, UnknownColumnListsTheColumns) {
  const std::string p = bptt::test::shared_data("monthly-sunspots.csv");
  BPTT_REQUIRE_SHARED_DATA(p);
  const std::string hint =
      expect_error([&] { load_csv_column(p, "sunspots"); }, p + ":1: sunspots", "no column named");
  EXPECT_NE(hint.find("'Month', 'Sunspots'"), std::string::npos) << hint;
  EXPECT_NE(hint.find("did you mean 'Sunspots'"), std::string::npos) << hint;
}

// ---- formats accepted -----------------------------------------------------------------------

TEST_F(CsvData, QuotesSpacesCrlfAndNoFinalNewline) {
  const std::string p = write(
      "\xEF\xBB\xBF \"Date\" , Value ,\"Note, with comma\"\r\n"
      "\"2001-01\", 1.5 ,\"a, b\"\r\n"
      "2001-02,+2,\"say \"\"hi\"\"\"\r\n"
      "\"2001-03\",\"-3e2\",x\r\n"
      "2001-04,.25,y");
  const Series s = load_csv_column(p, "Value");
  EXPECT_EQ(s.labels, (std::vector<std::string>{"2001-01", "2001-02", "2001-03", "2001-04"}));
  EXPECT_EQ(s.values, (std::vector<double>{1.5, 2, -300, 0.25}));
  expect_error([&] { load_csv_column(p, "Date"); }, p + ":2: Date", "'2001-01' is not a number");
  expect_error([&] { load_csv_column(p, "Note, with comma"); }, p + ":2: Note, with comma",
               "'a, b' is not a number");
}

TEST_F(CsvData, BlankLinesAtTheEndAreIgnored) {
  const std::string p = write("t,v\n1,10\n2,20\n3,30\n\n  \r\n\n");
  EXPECT_EQ(load_csv_column(p, "v").values, (std::vector<double>{10, 20, 30}));
}

TEST_F(CsvData, FirstColumnAsValue) {
  const std::string p = write("v\n1\n2\n3\n");
  const Series s = load_csv_column(p, "v");
  EXPECT_EQ(s.values, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(s.labels, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(seasonal_period(s), 1);
}

// ---- errors ---------------------------------------------------------------------------------

TEST_F(CsvData, MissingFile) {
  const std::string p = (dir_ / "none.csv").string();
  expect_error([&] { load_csv_column(p, "v"); }, p, "cannot open");
}

TEST_F(CsvData, EmptyFile) {
  const std::string p = write("");
  expect_error([&] { load_csv_column(p, "v"); }, p, "empty");
  const std::string blank = write("\r\n\n", "blank.csv");
  expect_error([&] { load_csv_column(blank, "v"); }, blank, "empty");
}

TEST_F(CsvData, UnknownColumn) {
  const std::string p = write("date,a,b\n1,2,3\n");
  const std::string hint =
      expect_error([&] { load_csv_column(p, "c"); }, p + ":1: c", "no column named 'c'");
  EXPECT_NE(hint.find("'date', 'a', 'b'"), std::string::npos) << hint;
}

TEST_F(CsvData, ColumnNamedTwice) {
  const std::string p = write("t,v,v\n1,2,3\n");
  expect_error([&] { load_csv_column(p, "v"); }, p + ":1: v", "appears twice");
}

TEST_F(CsvData, TooFewAndTooManyFields) {
  const std::string p = write("t,v,w\n1,2,3\n4,5\n6,7,8\n");
  expect_error([&] { load_csv_column(p, "v"); }, p + ":3", "row has 2 fields but the header has 3");
  const std::string q = write("t,v\n1,2\n3,4\n5,6,7\n", "q.csv");
  expect_error([&] { load_csv_column(q, "v"); }, q + ":4", "row has 3 fields but the header has 2");
}

TEST_F(CsvData, MissingValues) {
  for (const char* v : {"", "\"\"", "  ", "NA", "n/a", "null", "?"}) {
    SCOPED_TRACE(v);
    const std::string p = write(std::string("t,v\r\n1,2\r\n2,3\r\n3,") + v + "\r\n4,5\r\n");
    expect_error([&] { load_csv_column(p, "v"); }, p + ":4: v", "missing value");
  }
}

TEST_F(CsvData, NonNumericValues) {
  for (const char* v : {"abc", "1,5", "1.5.2", "12abc", "0x10", "--1", "+-1", "1 2", "\"1e\""}) {
    SCOPED_TRACE(v);
    const std::string p = write(std::string("t,v\n1,2\n2,") + v + "\n3,4\n");
    const std::string line = std::string(v) == "1,5" ? p + ":3" : p + ":3: v";
    if (std::string(v) == "1,5")
      expect_error([&] { load_csv_column(p, "v"); }, line, "row has 3 fields");
    else
      expect_error([&] { load_csv_column(p, "v"); }, line, "is not a number");
  }
  const std::string p = write("t,v\n1,2\n2,abc\n");
  expect_error([&] { load_csv_column(p, "v"); }, p + ":3: v", "'abc' is not a number");
}

TEST_F(CsvData, NonFiniteValues) {
  for (const char* v : {"nan", "NaN", "inf", "-inf", "infinity", "1e999"}) {
    SCOPED_TRACE(v);
    const std::string p = write(std::string("t,v\n1,2\n2,") + v + "\n3,4\n");
    expect_error([&] { load_csv_column(p, "v"); }, p + ":3: v", "");
    try {
      load_csv_column(p, "v");
    } catch (const Error& e) {
      const std::string what = e.problem();
      EXPECT_TRUE(what.find("not finite") != std::string::npos ||
                  what.find("out of the range") != std::string::npos)
          << what;
    }
  }
}

TEST_F(CsvData, ControlBytesAreEscapedAndLongValuesCut) {
  const std::string p = write(std::string("t,v\n1,2\n2,1\r8\x00\n3,4\n", 19));
  expect_error([&] { load_csv_column(p, "v"); }, p + ":3: v", "'1\\x0d8\\x00' is not a number");
  const std::string q = write("t,v\n1,2\n2," + std::string(1000, 'x') + "\n3,4\n", "q.csv");
  expect_error([&] { load_csv_column(q, "v"); }, q + ":3: v",
               "'" + std::string(60, 'x') + "...' is not a number");
}

TEST(Printable, EscapesAndCuts) {
  EXPECT_EQ(printable("abc"), "abc");
  EXPECT_EQ(printable(std::string("a\n\0\x7f\xc3\xa9", 6)), "a\\x0a\\x00\\x7f\xc3\xa9");
  EXPECT_EQ(printable("abcdef", 3), "abc...");
}

TEST_F(CsvData, FewerThanThreeRows) {
  const std::string p = write("t,v\n1,2\n2,3\n");
  expect_error([&] { load_csv_column(p, "v"); }, p + ": v", "only 2 data rows; at least 3");
  const std::string h = write("t,v\n", "h.csv");
  expect_error([&] { load_csv_column(h, "v"); }, h + ": v", "only 0 data rows");
}

TEST_F(CsvData, BlankLineBetweenRows) {
  const std::string p = write("t,v\n1,2\n\n2,3\n3,4\n");
  expect_error([&] { load_csv_column(p, "v"); }, p + ":3", "blank line");
}

TEST_F(CsvData, UnterminatedQuote) {
  const std::string p = write("t,v\n1,2\n\"2,3\n3,4\n");
  expect_error([&] { load_csv_column(p, "v"); }, p + ":3", "unterminated quote");
  const std::string h = write("\"t,v\n1,2\n", "h.csv");
  expect_error([&] { load_csv_column(h, "v"); }, h + ":1", "unterminated quote");
}

TEST_F(CsvData, NotAFileAtAll) {
  // Binary junk never crashes: it is some kind of error.
  std::string junk;
  for (int k = 0; k < 4096; ++k) junk += static_cast<char>((k * 131 + 7) % 256);
  const std::string p = write(junk);
  EXPECT_THROW(load_csv_column(p, "v"), Error);
  expect_error([&] { load_csv_column(dir_.string(), "v"); }, dir_.string(), "directory");
}

// ---- seasonal period ------------------------------------------------------------------------

Series with_labels(std::vector<std::string> labels) {
  Series s;
  s.values.assign(labels.size(), 0.0);
  s.labels = std::move(labels);
  return s;
}

TEST(SeasonalPeriod, FromTheLabels) {
  EXPECT_EQ(seasonal_period(with_labels({"2000-01", "2000-02", "2000-03"})), 12);
  EXPECT_EQ(seasonal_period(with_labels({"2000-01-01", "2000-01-02", "2001-12-31"})), 7);
  EXPECT_EQ(seasonal_period(with_labels({"2000-03-05", "2001-01-01", "2002-03-04"})), 7);
  EXPECT_EQ(seasonal_period(with_labels({"2000-03-05", "2001-01-01", "2002-03-05"})), 365);
  EXPECT_EQ(seasonal_period(with_labels({"2000-01", "2000-02-01", "2000-03"})), 1);  // mixed
  EXPECT_EQ(seasonal_period(with_labels({"2000-13", "2000-02", "2000-03"})), 1);     // month 13
  EXPECT_EQ(seasonal_period(with_labels({"2000-01-01 00:00", "2003-01-01 00:00"})), 1);
  EXPECT_EQ(seasonal_period(with_labels({"1", "2", "3"})), 1);
  EXPECT_EQ(seasonal_period(with_labels({"2000-01"})), 1);
  EXPECT_EQ(seasonal_period(with_labels({})), 1);
}

}  // namespace
