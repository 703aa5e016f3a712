// sktime / UEA `.ts` classification files: the header tags, one series per data line
// (channels separated by ':', values by ',', the class label last), and batches of them.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <set>
#include <string_view>
#include <system_error>

#include "bptt/data.hpp"
#include "bptt/error.hpp"

namespace bptt::data {

namespace {

constexpr int max_dims = 1 << 20;
constexpr std::size_t max_batch_elems = std::size_t(1) << 34;

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits on `sep`; always at least one part.
void split(std::string_view s, char sep, std::vector<std::string_view>& parts) {
  parts.clear();
  for (std::size_t start = 0;;) {
    const std::size_t stop = s.find(sep, start);
    if (stop == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return;
    }
    parts.push_back(s.substr(start, stop - start));
    start = stop + 1;
  }
}

// Whitespace-separated tokens.
std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    const std::size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string label_list(const std::vector<std::string>& names) {
  std::string s;
  const std::size_t shown = std::min<std::size_t>(names.size(), 30);
  for (std::size_t k = 0; k < shown; ++k) {
    if (k) s += ' ';
    s += printable(names[k]);
  }
  if (shown < names.size()) s += fmt::format(" ... ({} in all)", names.size());
  return s;
}

// The header seen so far.
struct Header {
  int dims = 0;  // 0 until known
  bool univariate = false, univariate_given = false;
  bool equal_length = false;
  int series_length = 0;  // 0 when not given
  bool has_class_label = false;
  std::vector<std::string> labels;
};

bool parse_bool(std::string_view value, const std::string& where, const std::string& tag) {
  const std::string v = lower(trim(value));
  if (v == "true") return true;
  if (v == "false") return false;
  throw Error(ErrorKind::format, where,
              fmt::format("{} expects true or false, not '{}'", tag, printable(trim(value))),
              fmt::format("write '{} true' or '{} false'", tag, tag));
}

int parse_count(std::string_view value, const std::string& where, const std::string& tag, int max) {
  const std::string_view v = trim(value);
  int n = 0;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size() || n < 1 || n > max)
    throw Error(
        ErrorKind::format, where,
        fmt::format("{} expects a whole number in [1, {}], not '{}'", tag, max, printable(v)),
        fmt::format("write e.g. '{} 3'", tag));
  return n;
}

void parse_tag(std::string_view line, const std::string& where, Header& h,
               std::set<std::string>& seen) {
  const std::size_t cut = std::min(line.find_first_of(" \t"), line.size());
  const std::string name = lower(line.substr(0, cut));
  const std::string tag = printable(line.substr(0, cut));  // as written, for messages
  const std::string_view value = trim(line.substr(cut));
  if (!seen.insert(name).second)
    throw Error(ErrorKind::format, where, fmt::format("{} is given twice", tag),
                "keep one of the two lines");
  if (name == "@problemname") return;
  if (name == "@timestamps") {
    if (parse_bool(value, where, tag))
      throw Error(ErrorKind::format, where,
                  "series with time stamps (@timeStamps true) are not supported",
                  "write the file without time stamps (@timeStamps false, values only)");
    return;
  }
  if (name == "@missing") {
    parse_bool(value, where, tag);  // missing values are rejected where they occur either way
    return;
  }
  if (name == "@univariate") {
    h.univariate = parse_bool(value, where, tag);
    h.univariate_given = true;
  } else if (name == "@dimensions") {
    h.dims = parse_count(value, where, tag, max_dims);
  } else if (name == "@equallength") {
    h.equal_length = parse_bool(value, where, tag);
    return;
  } else if (name == "@serieslength") {
    h.series_length = parse_count(value, where, tag, INT_MAX);
    return;
  } else if (name == "@classlabel") {
    const std::vector<std::string_view> t = tokens(value);
    if (t.empty() || lower(t[0]) != "true")
      throw Error(ErrorKind::format, where,
                  "only classification files (@classLabel true <labels>) are supported",
                  "bptt reads .ts classification files; regression targets are not supported");
    if (t.size() < 2)
      throw Error(ErrorKind::format, where, "@classLabel true lists no labels",
                  "write '@classLabel true 1 2 3'");
    for (std::size_t k = 1; k < t.size(); ++k) {
      const std::string l(t[k]);
      if (std::find(h.labels.begin(), h.labels.end(), l) != h.labels.end())
        throw Error(ErrorKind::format, where,
                    fmt::format("class label '{}' is listed twice", printable(l)),
                    "list each class once");
      h.labels.push_back(l);
    }
    h.has_class_label = true;
    return;
  } else if (name == "@targetlabel") {
    throw Error(ErrorKind::format, where, "regression files (@targetLabel) are not supported",
                "bptt reads .ts classification files (@classLabel true <labels>)");
  } else {
    throw Error(ErrorKind::format, where, fmt::format("unknown tag '{}'", tag),
                "known tags: @problemName @timeStamps @missing @univariate @dimensions "
                "@equalLength @seriesLength @classLabel @data");
  }
  if (h.univariate_given && h.univariate && h.dims > 1)
    throw Error(ErrorKind::format, where,
                fmt::format("@univariate true but @dimensions {}", h.dims),
                "write '@univariate false' for several dimensions");
}

// Parses the dims channels of one data line (fields[0, dims)) into `values` ([len, dims],
// time-major) and returns len.
int parse_series(const std::string& where_line, int dims, std::vector<std::string_view>& fields,
                 std::vector<std::string_view>& items, std::vector<double>& channel_major,
                 std::vector<double>& values) {
  int len = 0;
  channel_major.clear();
  for (int d = 0; d < dims; ++d) {
    const std::string where = fmt::format("{}: dimension {}", where_line, d + 1);
    const std::string_view channel = trim(fields[static_cast<std::size_t>(d)]);
    if (channel.empty())
      throw Error(ErrorKind::format, where, "no values",
                  "every dimension needs at least one value");
    split(channel, ',', items);
    if (items.size() > static_cast<std::size_t>(INT_MAX))
      throw Error(ErrorKind::resource, where, "too many values", "split the series");
    if (d == 0)
      len = static_cast<int>(items.size());
    else if (items.size() != static_cast<std::size_t>(len))
      throw Error(ErrorKind::shape, where,
                  fmt::format("{} values but dimension 1 has {}", items.size(), len),
                  "all dimensions of a series must have the same length");
    for (std::size_t k = 0; k < items.size(); ++k) {
      const std::string_view v = trim(items[k]);
      if (v == "?" || lower(v) == "nan")
        throw Error(ErrorKind::value, where,
                    fmt::format("value {} is missing ('{}')", k + 1, printable(v)),
                    "fill in the missing values (e.g. by interpolation) before training");
      double x = 0;
      std::string_view num = v;
      if (num.size() > 1 && num[0] == '+' && num[1] != '-' && num[1] != '+') num.remove_prefix(1);
      const auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), x);
      if (ec == std::errc::result_out_of_range ||
          (ec == std::errc() && !std::isfinite(x) && ptr == num.data() + num.size()))
        throw Error(ErrorKind::value, where,
                    fmt::format("value {} ('{}') is not a finite number", k + 1, printable(v)),
                    "rescale or remove the series");
      if (ec != std::errc() || ptr != num.data() + num.size() || num.empty())
        throw Error(ErrorKind::format, where,
                    fmt::format("value {} ('{}') is not a number", k + 1, printable(v)),
                    v.find('(') != std::string_view::npos
                        ? "time-stamped values '(t,x)' are not supported; write values only"
                        : "values are decimal numbers separated by ',' and dimensions by ':'");
      channel_major.push_back(x);
    }
  }
  const auto L = static_cast<std::size_t>(len), D = static_cast<std::size_t>(dims);
  values.resize(L * D);
  for (std::size_t d = 0; d < D; ++d)
    for (std::size_t t = 0; t < L; ++t) values[t * D + d] = channel_major[d * L + t];
  return len;
}

}  // namespace

TsDataset load_ts(const std::string& path, const std::vector<std::string>* class_names) {
  const std::string text = read_file_bytes(path);
  TsDataset ds;
  ds.path = path;
  Header h;
  std::set<std::string> seen;
  bool in_data = false;
  std::size_t data_line = 0;
  std::vector<std::string_view> fields, items;
  std::vector<double> channel_major, values;

  std::size_t line_no = 0;
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t stop = std::min(text.find('\n', start), text.size());
    const std::string_view line = trim(std::string_view(text).substr(start, stop - start));
    start = stop + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const std::string where_line = fmt::format("{}:{}", path, line_no);
    if (line[0] == '@') {
      if (in_data)
        throw Error(ErrorKind::format, where_line, "a header tag after @data",
                    "put all tags before @data");
      if (lower(line.substr(0, std::min(line.find_first_of(" \t"), line.size()))) != "@data") {
        parse_tag(line, where_line, h, seen);
        continue;
      }
      if (!h.has_class_label)
        throw Error(ErrorKind::format, where_line, "no '@classLabel true <labels>' before @data",
                    "bptt reads .ts classification files; list the classes in the header");
      if (h.univariate_given && h.univariate && h.dims == 0) h.dims = 1;
      in_data = true;
      data_line = line_no;
      ds.class_names = class_names ? *class_names : h.labels;
      continue;
    }
    if (!in_data)
      throw Error(ErrorKind::format, where_line, "a data line before @data",
                  "the header (@dimensions, @classLabel, ...) must end with a line '@data'");

    split(line, ':', fields);
    if (h.dims == 0) {  // no @dimensions: taken from the first series
      if (fields.size() < 2 || fields.size() - 1 > static_cast<std::size_t>(max_dims))
        throw Error(ErrorKind::format, where_line,
                    "expected dimensions separated by ':' and the class label last",
                    "add '@dimensions N' to the header");
      h.dims = static_cast<int>(fields.size() - 1);
    }
    if (fields.size() != static_cast<std::size_t>(h.dims) + 1)
      throw Error(ErrorKind::shape, where_line,
                  fields.size() < 2
                      ? fmt::format("no ':' before the class label (expected {} dimension{} and a "
                                    "label)",
                                    h.dims, h.dims == 1 ? "" : "s")
                      : fmt::format("{} dimension{} but the header says {}", fields.size() - 1,
                                    fields.size() == 2 ? "" : "s", h.dims),
                  "a data line is the dimensions separated by ':', then ':' and the class label");

    const std::string where_label = fmt::format("{}: class label", where_line);
    const std::string label(trim(fields.back()));
    if (label.empty())
      throw Error(ErrorKind::format, where_label, "missing class label",
                  "end the line with ':<label>'");
    if (std::find(h.labels.begin(), h.labels.end(), label) == h.labels.end())
      throw Error(ErrorKind::format, where_label,
                  fmt::format("'{}' is not one of the @classLabel labels", printable(label)),
                  fmt::format("the header lists: {}", label_list(h.labels)));
    const auto it = std::find(ds.class_names.begin(), ds.class_names.end(), label);
    if (it == ds.class_names.end())
      throw Error(
          ErrorKind::value, where_label,
          fmt::format("class '{}' is unknown to the model", printable(label)),
          fmt::format("the model was trained on the classes: {}", label_list(ds.class_names)));

    const int len = parse_series(where_line, h.dims, fields, items, channel_major, values);
    if (h.equal_length && h.series_length > 0 && len != h.series_length)
      throw Error(ErrorKind::shape, where_line,
                  fmt::format("series has {} steps but @seriesLength is {}", len, h.series_length),
                  "fix the series or the header (@equalLength false for varying lengths)");
    ds.series.push_back(values);
    ds.lengths.push_back(len);
    ds.labels.push_back(static_cast<int>(it - ds.class_names.begin()));
  }
  if (!in_data)
    throw Error(ErrorKind::format, path, "no @data line",
                "a .ts file is a header, '@data', then the series");
  if (ds.series.empty())
    throw Error(ErrorKind::format, fmt::format("{}:{}", path, data_line), "no series after @data",
                "add one series per line after @data");
  ds.dims = h.dims;
  return ds;
}

void ts_channel_stats(const TsDataset& ds, std::vector<double>& mean, std::vector<double>& stddev) {
  const auto D = static_cast<std::size_t>(std::max(ds.dims, 0));
  mean.assign(D, 0.0);
  stddev.assign(D, 0.0);
  const std::size_t N = std::min(ds.series.size(), ds.lengths.size());
  // Valid steps of series s (never more than its values hold).
  auto steps = [&](std::size_t s) {
    return std::min(static_cast<std::size_t>(std::max(ds.lengths[s], 0)), ds.series[s].size() / D);
  };
  if (D == 0)
    throw Error(ErrorKind::usage, ds.path, "no dimensions to compute channel statistics for",
                "load the dataset with load_ts");
  double count = 0;
  for (std::size_t s = 0; s < N; ++s) {
    for (std::size_t t = 0; t < steps(s); ++t)
      for (std::size_t d = 0; d < D; ++d) mean[d] += ds.series[s][t * D + d];
    count += static_cast<double>(steps(s));
  }
  if (count == 0)
    throw Error(ErrorKind::usage, ds.path, "no values to compute channel statistics from",
                "the dataset needs at least one series");
  for (double& m : mean) m /= count;
  for (std::size_t s = 0; s < N; ++s)
    for (std::size_t t = 0; t < steps(s); ++t)
      for (std::size_t d = 0; d < D; ++d) {
        const double e = ds.series[s][t * D + d] - mean[d];
        stddev[d] += e * e;
      }
  for (double& v : stddev) {
    v = std::sqrt(v / count);
    if (!(v > 0) || !std::isfinite(v)) v = 1.0;  // a constant channel is only centered
  }
}

template <class Real>
void fill_ts_batch(const TsDataset& ds, const std::vector<int>& indices, Batch<Real>& batch,
                   const std::vector<double>* mean, const std::vector<double>* stddev) {
  if (indices.empty())
    throw Error(ErrorKind::value, ds.path, "a batch of no sequences",
                "choose at least one sequence");
  if (indices.size() > static_cast<std::size_t>(INT_MAX))
    throw Error(ErrorKind::resource, ds.path,
                fmt::format("a batch of {} sequences is too large", indices.size()),
                "use a smaller batch");
  const auto D = static_cast<std::size_t>(std::max(ds.dims, 0));
  if (D == 0)
    throw Error(ErrorKind::usage, ds.path, "the dataset has no dimensions",
                "load the dataset with load_ts");
  if ((mean == nullptr) != (stddev == nullptr))
    throw Error(ErrorKind::usage, ds.path, "a mean without a standard deviation, or the reverse",
                "give both the mean and the standard deviation, or neither");
  if (mean && (mean->size() != D || stddev->size() != D))
    throw Error(ErrorKind::shape, ds.path,
                fmt::format("normalization for {} and {} dimensions, but the data has {}",
                            mean->size(), stddev->size(), D),
                "use the statistics the model was trained with on data of the same dimensions");
  if (stddev)
    for (std::size_t d = 0; d < D; ++d)
      if (!((*stddev)[d] > 0) || !std::isfinite((*stddev)[d]) || !std::isfinite((*mean)[d]))
        throw Error(ErrorKind::value, ds.path,
                    fmt::format("normalization of dimension {}: mean {}, stddev {}", d + 1,
                                (*mean)[d], (*stddev)[d]),
                    "the standard deviation must be finite and > 0");
  int T = 0;
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const int i = indices[b];
    if (i < 0 || static_cast<std::size_t>(i) >= ds.series.size() ||
        static_cast<std::size_t>(i) >= ds.lengths.size() ||
        static_cast<std::size_t>(i) >= ds.labels.size())
      throw Error(ErrorKind::value, ds.path,
                  fmt::format("sequence index {} is outside [0, {})", i, ds.series.size()),
                  "indices number the series of the dataset from 0");
    const auto si = static_cast<std::size_t>(i);
    if (ds.lengths[si] < 1 || ds.series[si].size() != static_cast<std::size_t>(ds.lengths[si]) * D)
      throw Error(ErrorKind::shape, ds.path,
                  fmt::format("sequence {} has {} values for length {} and {} dimensions", i,
                              ds.series[si].size(), ds.lengths[si], D),
                  "each series holds lengths[i] x dims values (load the dataset with load_ts)");
    T = std::max(T, ds.lengths[si]);
  }
  const auto B = indices.size(), TT = static_cast<std::size_t>(T);
  if (TT * B > max_batch_elems / D)
    throw Error(ErrorKind::resource, ds.path,
                fmt::format("a batch of [{}, {}, {}] values is too large", T, B, D),
                "use a smaller batch");
  batch.T = T;
  batch.B = static_cast<int>(B);
  batch.x.resize(TT * B * D);
  std::fill(batch.x.begin(), batch.x.end(), Real(0));
  batch.classes.resize(TT * B);
  batch.lengths.resize(B);
  batch.mask.resize(TT * B);
  std::fill(batch.mask.begin(), batch.mask.end(), Real(0));
  batch.y.clear();
  batch.h0.clear();
  batch.c0.clear();
  for (std::size_t b = 0; b < B; ++b) {
    const auto si = static_cast<std::size_t>(indices[b]);
    const auto len = static_cast<std::size_t>(ds.lengths[si]);
    const std::vector<double>& s = ds.series[si];
    batch.lengths[b] = static_cast<std::int64_t>(len);
    for (std::size_t t = 0; t < TT; ++t) batch.classes[t * B + b] = ds.labels[si];
    batch.mask[(len - 1) * B + b] = Real(1);
    for (std::size_t t = 0; t < len; ++t)
      for (std::size_t d = 0; d < D; ++d) {
        double v = s[t * D + d];
        if (mean) v = (v - (*mean)[d]) / (*stddev)[d];
        batch.x[(t * B + b) * D + d] = static_cast<Real>(v);
      }
  }
}

template void fill_ts_batch<float>(const TsDataset&, const std::vector<int>&, Batch<float>&,
                                   const std::vector<double>*, const std::vector<double>*);
template void fill_ts_batch<double>(const TsDataset&, const std::vector<int>&, Batch<double>&,
                                    const std::vector<double>*, const std::vector<double>*);

}  // namespace bptt::data
