// One numeric column of a CSV file as a univariate series, and a guess of its seasonal period.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string_view>
#include <system_error>

#include "bptt/data.hpp"
#include "bptt/error.hpp"

namespace bptt::data {

namespace {

struct Field {
  std::string text;  // unquoted, surrounding spaces stripped
  bool quoted = false;
};

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_space(s.front()) || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (is_space(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Splits one line into fields. Quoted fields may hold commas and "" for a quote. Returns false for
// an unterminated quote.
bool split_fields(std::string_view line, std::vector<Field>& fields) {
  fields.clear();
  std::size_t i = 0;
  for (;;) {
    Field f;
    while (i < line.size() && is_space(line[i])) ++i;
    if (i < line.size() && line[i] == '"') {
      f.quoted = true;
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            f.text += '"';
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        f.text += line[i++];
      }
      if (!closed) return false;
      // Anything after the closing quote up to the separator is kept (as Python's csv does).
      const std::size_t rest = std::min(line.find(',', i), line.size());
      f.text += std::string(trim(line.substr(i, rest - i)));
      i = rest;
    } else {
      const std::size_t rest = std::min(line.find(',', i), line.size());
      f.text = std::string(trim(line.substr(i, rest - i)));
      i = rest;
    }
    fields.push_back(std::move(f));
    if (i >= line.size()) return true;
    ++i;  // the ','
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

enum class Parse { ok, not_a_number, out_of_range };

// The whole of `s` as a double (std::from_chars, locale-independent; a leading '+' is accepted).
Parse parse_double(std::string_view s, double& value) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  if (s.empty()) return Parse::not_a_number;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec == std::errc::result_out_of_range) return Parse::out_of_range;
  if (ec != std::errc() || ptr != s.data() + s.size()) return Parse::not_a_number;
  return Parse::ok;
}

std::string quoted_list(const std::vector<Field>& header) {
  std::string s;
  const std::size_t shown = std::min<std::size_t>(header.size(), 20);
  for (std::size_t k = 0; k < shown; ++k) {
    if (k) s += ", ";
    s += fmt::format("'{}'", printable(header[k].text));
  }
  if (shown < header.size()) s += fmt::format(" and {} more", header.size() - shown);
  return s;
}

}  // namespace

Series load_csv_column(const std::string& path, const std::string& column) {
  std::string text = read_file_bytes(path);
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // UTF-8 BOM
  const char eol = (text.find('\n') == std::string::npos && text.find('\r') != std::string::npos)
                       ? '\r'  // old Mac line endings
                       : '\n';
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= text.size();) {
    const std::size_t stop = std::min(text.find(eol, start), text.size());
    lines.push_back(std::string_view(text).substr(start, stop - start));
    start = stop + 1;
  }
  while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();  // blank lines at the end
  if (lines.empty())
    throw Error(ErrorKind::format, path, "the file is empty",
                "a CSV file starts with a header row of column names");

  const std::string hint_format = "a CSV file has a header row, then one row per line";
  std::vector<Field> header, fields;
  if (!split_fields(lines[0], header))
    throw Error(ErrorKind::format, fmt::format("{}:1", path), "unterminated quote in the header",
                hint_format);
  std::size_t col = header.size();
  for (std::size_t k = 0; k < header.size(); ++k) {
    if (header[k].text != column) continue;
    if (col != header.size())
      throw Error(ErrorKind::format, fmt::format("{}:1: {}", path, printable(column)),
                  fmt::format("column '{}' appears twice (columns {} and {})", printable(column),
                              col + 1, k + 1),
                  "rename one of the columns");
    col = k;
  }
  if (col == header.size()) {
    std::string hint = "the columns are " + quoted_list(header);
    for (const Field& f : header)
      if (iequals(f.text, column)) {
        hint += fmt::format("; did you mean '{}'?", printable(f.text));
        break;
      }
    throw Error(ErrorKind::usage, fmt::format("{}:1: {}", path, printable(column)),
                fmt::format("no column named '{}' in the header", printable(column)), hint);
  }

  Series s;
  s.path = path;
  s.column = column;
  s.labels.reserve(lines.size() - 1);
  s.values.reserve(lines.size() - 1);
  for (std::size_t ln = 1; ln < lines.size(); ++ln) {
    const std::string where_line = fmt::format("{}:{}", path, ln + 1);
    if (trim(lines[ln]).empty())
      throw Error(ErrorKind::format, where_line, "blank line between rows",
                  "remove the blank line");
    if (!split_fields(lines[ln], fields))
      throw Error(ErrorKind::format, where_line, "unterminated quote",
                  "close the quote or remove it");
    if (fields.size() != header.size())
      throw Error(ErrorKind::shape, where_line,
                  fmt::format("row has {} field{} but the header has {}", fields.size(),
                              fields.size() == 1 ? "" : "s", header.size()),
                  fields.size() < header.size() ? "fill in the missing fields"
                                                : "remove the extra fields or quote the commas");
    const std::string where = fmt::format("{}: {}", where_line, printable(column));
    const std::string& v = fields[col].text;
    if (v.empty() || v == "?" || iequals(v, "NA") || iequals(v, "N/A") || iequals(v, "null"))
      throw Error(ErrorKind::value, where,
                  v.empty() ? "missing value" : fmt::format("missing value ('{}')", printable(v)),
                  "fill in or remove the rows with missing values");
    double value = 0;
    switch (parse_double(v, value)) {
      case Parse::ok: break;
      case Parse::not_a_number:
        throw Error(ErrorKind::format, where, fmt::format("'{}' is not a number", printable(v)),
                    "values are decimal numbers such as 12, -0.5 or 1e3 (with '.' as the point)");
      case Parse::out_of_range:
        throw Error(ErrorKind::value, where,
                    fmt::format("'{}' is out of the range of a double", printable(v)),
                    "rescale the series");
    }
    if (!std::isfinite(value))
      throw Error(ErrorKind::value, where, fmt::format("'{}' is not finite", printable(v)),
                  "fill in or remove the rows with missing or infinite values");
    s.labels.push_back(fields[0].text);
    s.values.push_back(value);
  }
  if (s.values.size() < 3)
    throw Error(ErrorKind::shape, fmt::format("{}: {}", path, printable(column)),
                fmt::format("only {} data row{}; at least 3 are needed", s.values.size(),
                            s.values.size() == 1 ? "" : "s"),
                "give a longer series");
  return s;
}

namespace {

struct Date {
  int year = 0, month = 0, day = 0;  // day 0 for "YYYY-MM"
};

bool digits(std::string_view s, std::size_t from, std::size_t count, int& out) {
  out = 0;
  for (std::size_t k = from; k < from + count; ++k) {
    if (k >= s.size() || s[k] < '0' || s[k] > '9') return false;
    out = out * 10 + (s[k] - '0');
  }
  return true;
}

// "YYYY-MM" (with_day false) or "YYYY-MM-DD" (with_day true), with a valid month and day.
bool parse_date(std::string_view s, bool with_day, Date& d) {
  if (s.size() != (with_day ? 10u : 7u) || s[4] != '-') return false;
  if (!digits(s, 0, 4, d.year) || !digits(s, 5, 2, d.month) || d.month < 1 || d.month > 12)
    return false;
  if (!with_day) return true;
  return s[7] == '-' && digits(s, 8, 2, d.day) && d.day >= 1 && d.day <= 31;
}

bool all_dates(const std::vector<std::string>& labels, bool with_day) {
  Date d;
  return std::all_of(labels.begin(), labels.end(),
                     [&](const std::string& l) { return parse_date(l, with_day, d); });
}

}  // namespace

int seasonal_period(const Series& series) {
  const std::vector<std::string>& labels = series.labels;
  if (labels.size() < 2) return 1;
  if (all_dates(labels, false)) return 12;
  if (all_dates(labels, true)) {
    Date first, last;
    parse_date(labels.front(), true, first);
    parse_date(labels.back(), true, last);
    const auto key = [](const Date& d) { return (d.year * 100 + d.month) * 100 + d.day; };
    const Date two_years{first.year + 2, first.month, first.day};
    return key(last) >= key(two_years) ? 365 : 7;
  }
  return 1;
}

}  // namespace bptt::data
