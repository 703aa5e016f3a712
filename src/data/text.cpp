// Text as a character language model: a byte vocabulary, loading and splitting a text file, and
// char-rnn streams (B contiguous streams cut into windows of T steps, the state carried across).
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "bptt/data.hpp"
#include "bptt/error.hpp"

namespace bptt::data {

namespace {

// "0x7a ('z')", "0x0a ('\n')" with the escape written out, or "0x01" for other bytes.
std::string describe_byte(std::uint8_t b) {
  switch (b) {
    case '\t': return "0x09 ('\\t')";
    case '\n': return "0x0a ('\\n')";
    case '\r': return "0x0d ('\\r')";
    case '\f': return "0x0c ('\\f')";
    case '\v': return "0x0b ('\\v')";
    default: break;
  }
  if (b >= 0x20 && b < 0x7f) return fmt::format("0x{:02x} ('{}')", b, static_cast<char>(b));
  return fmt::format("0x{:02x}", b);
}

// 1-based line of byte `offset`.
std::size_t line_of(std::string_view text, std::size_t offset) {
  return 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
}

bool is_bad_control(std::uint8_t b) {
  if (b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v') return false;
  return b < 0x20 || b == 0x7f;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  const std::size_t n = std::min(text.size(), max_bytes);
  for (std::size_t k = 0; k < n; ++k) {
    const auto b = static_cast<std::uint8_t>(text[k]);
    if (b < 0x20 || b == 0x7f)
      out += fmt::format("\\x{:02x}", b);
    else
      out += text[k];
  }
  if (n < text.size()) out += "...";
  return out;
}

// ---- Vocab ----------------------------------------------------------------------------------

void Vocab::set_bytes(std::vector<std::uint8_t> bytes) {
  bytes_ = std::move(bytes);
  index_ = no_index();
  for (std::size_t k = 0; k < bytes_.size(); ++k) index_[bytes_[k]] = static_cast<int>(k);
}

std::uint8_t Vocab::decode(int id) const {
  if (id < 0 || id >= size())
    throw Error(ErrorKind::value, "vocabulary",
                fmt::format("symbol id {} is outside [0, {})", id, size()),
                "the model's output size must equal its vocabulary size");
  return bytes_[static_cast<std::size_t>(id)];
}

std::string Vocab::to_metadata() const {
  std::string s = "[";
  for (std::size_t k = 0; k < bytes_.size(); ++k) {
    if (k) s += ',';
    s += std::to_string(bytes_[k]);
  }
  s += ']';
  return s;
}

Vocab Vocab::from_metadata(const std::string& text, const std::string& where) {
  const std::string hint = "expected a JSON array of increasing byte values such as [10,32,65]";
  std::size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
  };
  auto fail = [&](const std::string& what) -> Error {
    return Error(ErrorKind::format, where,
                 fmt::format("bad vocabulary at character {}: {}", i, what), hint);
  };
  skip_spaces();
  if (i >= text.size() || text[i] != '[') throw fail("no '['");
  ++i;
  std::vector<std::uint8_t> bytes;
  skip_spaces();
  if (i < text.size() && text[i] == ']')
    throw Error(ErrorKind::format, where, "empty vocabulary", hint);
  for (;;) {
    skip_spaces();
    const std::size_t start = i;
    int value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 4)
      value = value * 10 + (text[i++] - '0');
    if (i == start) throw fail("expected a number");
    if (i - start > 3 || value > 255) throw fail("value is not a byte (0..255)");
    if (!bytes.empty() && value <= bytes.back())
      throw fail(fmt::format("{} does not follow {} in increasing order", value, bytes.back()));
    bytes.push_back(static_cast<std::uint8_t>(value));
    skip_spaces();
    if (i < text.size() && text[i] == ',') {
      ++i;
      continue;
    }
    if (i < text.size() && text[i] == ']') break;
    throw fail("expected ',' or ']'");
  }
  ++i;
  skip_spaces();
  if (i != text.size()) throw fail("text after ']'");
  Vocab v;
  v.set_bytes(std::move(bytes));
  return v;
}

Vocab Vocab::of(std::string_view text) {
  std::array<bool, 256> seen{};
  for (char c : text) seen[static_cast<std::uint8_t>(c)] = true;
  std::vector<std::uint8_t> bytes;
  for (int b = 0; b < 256; ++b)
    if (seen[static_cast<std::size_t>(b)]) bytes.push_back(static_cast<std::uint8_t>(b));
  Vocab v;
  v.set_bytes(std::move(bytes));
  return v;
}

// ---- files ----------------------------------------------------------------------------------

std::string read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorKind::io, path, "is a directory, not a file", "give the path of a data file");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorKind::io, path, fmt::format("cannot open the file ({})", std::strerror(errno)),
                "check the path and the file's permissions");
  // Read in chunks: memory grows with the bytes actually read, whatever the file claims to be.
  std::string data;
  char chunk[1 << 16];
  while (in) {
    in.read(chunk, sizeof chunk);
    data.append(chunk, static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad())
    throw Error(ErrorKind::io, path, "read error",
                "check that the file is readable and not truncated");
  return data;
}

TextCorpus load_text(const std::string& path, double val_fraction) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    throw Error(ErrorKind::value, path,
                fmt::format("validation fraction {} is not in [0, 1)", val_fraction),
                "use e.g. 0.1 for the last 10% of the text, or 0 for no validation");
  TextCorpus c;
  c.path = path;
  const std::string text = read_file_bytes(path);
  if (text.empty())
    throw Error(ErrorKind::format, path, "the file is empty", "give a text file with some text");

  std::size_t controls = 0, first_control = text.size();
  for (std::size_t k = 0; k < text.size(); ++k) {
    const auto b = static_cast<std::uint8_t>(text[k]);
    if (b == 0)
      throw Error(ErrorKind::format, fmt::format("{}:{}: byte {}", path, line_of(text, k), k),
                  "NUL byte: this looks like a binary file, not text",
                  "train on a plain text file (any encoding without NUL bytes)");
    if (is_bad_control(b)) {
      if (controls == 0) first_control = k;
      ++controls;
    }
  }
  if (controls * 10 > text.size())
    throw Error(ErrorKind::format,
                fmt::format("{}:{}: byte {}", path, line_of(text, first_control), first_control),
                fmt::format("{} of {} bytes are control characters (first: {}); this looks like a "
                            "binary file, not text",
                            controls, text.size(),
                            describe_byte(static_cast<std::uint8_t>(text[first_control]))),
                "train on a plain text file");

  c.vocab = Vocab::of(text);
  c.ids.resize(text.size());
  for (std::size_t k = 0; k < text.size(); ++k)
    c.ids[k] = c.vocab.encode(static_cast<std::uint8_t>(text[k]));

  const double n = static_cast<double>(text.size());
  c.train_end = static_cast<std::size_t>(std::floor(n * (1.0 - val_fraction)));
  c.train_end = std::min(c.train_end, text.size());
  const std::size_t n_val = text.size() - c.train_end;
  if (c.train_end < 2)
    throw Error(ErrorKind::shape, path,
                fmt::format("with validation fraction {} only {} of {} symbols are left for "
                            "training (at least 2 are needed)",
                            val_fraction, c.train_end, text.size()),
                "use a longer text or a smaller validation fraction");
  if (val_fraction > 0 && n_val < 2)
    throw Error(ErrorKind::shape, path,
                fmt::format("validation fraction {} of {} symbols gives {} validation symbols (at "
                            "least 2 are needed)",
                            val_fraction, text.size(), n_val),
                "use a longer text, a larger validation fraction, or 0 for no validation");
  return c;
}

TextCorpus encode_text(const std::string& path, std::string_view text, const Vocab& vocab) {
  TextCorpus c;
  c.path = path;
  c.vocab = vocab;
  c.ids.resize(text.size());
  for (std::size_t k = 0; k < text.size(); ++k) {
    const auto b = static_cast<std::uint8_t>(text[k]);
    const int id = vocab.encode(b);
    if (id < 0)
      throw Error(ErrorKind::value, path,
                  fmt::format("byte {} at offset {} (line {}) is not in the model's vocabulary",
                              describe_byte(b), k, line_of(text, k)),
                  fmt::format("the model knows {} symbols; use text made of the same characters "
                              "as its training text",
                              vocab.size()));
    c.ids[k] = id;
  }
  c.train_end = c.ids.size();
  return c;
}

// ---- streams --------------------------------------------------------------------------------

TextStreams::TextStreams(const std::vector<std::int32_t>& ids, std::size_t begin, std::size_t end,
                         int B, int T, const std::string& where)
    : ids_(&ids), begin_(begin), B_(B), T_(T), where_(where) {
  if (B < 1)
    throw Error(ErrorKind::value, where, fmt::format("batch size {} is not positive", B),
                "use --batch >= 1");
  if (T < 1)
    throw Error(ErrorKind::value, where, fmt::format("sequence length {} is not positive", T),
                "use --seq-len >= 1");
  if (begin > end || end > ids.size())
    throw Error(ErrorKind::value, where,
                fmt::format("range [{}, {}) is not inside the {} symbols", begin, end, ids.size()),
                "use 0 <= begin <= end <= ids.size()");
  const std::size_t symbols = end - begin;
  n_ = symbols < 2 ? 0 : static_cast<std::int64_t>((symbols - 1) / static_cast<std::size_t>(B));
  windows_ = n_ / T;
  if (windows_ == 0)
    throw Error(ErrorKind::shape, where,
                fmt::format("{} symbols give no window of {} streams x {} steps (each stream has "
                            "{} steps; at least --seq-len are needed)",
                            symbols, B, T, n_),
                fmt::format("lower --batch ({}) or --seq-len ({}) so that batch x seq-len + 1 <= "
                            "{}",
                            B, T, symbols));
}

template <class Real>
void TextStreams::fill(std::int64_t window, int vocab_size, Batch<Real>& batch) const {
  if (window < 0 || window >= windows_)
    throw Error(ErrorKind::value, where_,
                fmt::format("window {} is outside [0, {})", window, windows_),
                "windows are numbered from 0 to windows() - 1");
  if (vocab_size < 1)
    throw Error(ErrorKind::value, where_,
                fmt::format("vocabulary size {} is not positive", vocab_size),
                "pass the model's vocabulary size (its input size)");
  const auto V = static_cast<std::size_t>(vocab_size);
  const auto T = static_cast<std::size_t>(T_), B = static_cast<std::size_t>(B_);
  constexpr std::size_t max_elems = std::size_t(1) << 34;
  if (T * B > max_elems / V)
    throw Error(ErrorKind::resource, where_,
                fmt::format("a window of [{}, {}, {}] one-hot values is too large", T, B, V),
                "lower --batch or --seq-len");
  batch.T = T_;
  batch.B = B_;
  batch.x.resize(T * B * V);
  std::fill(batch.x.begin(), batch.x.end(), Real(0));
  batch.classes.resize(T * B);
  batch.y.clear();
  batch.lengths.clear();
  batch.mask.clear();
  batch.h0.clear();
  batch.c0.clear();
  const std::vector<std::int32_t>& ids = *ids_;
  for (std::size_t b = 0; b < B; ++b) {
    const std::size_t start =
        begin_ + b * static_cast<std::size_t>(n_) + static_cast<std::size_t>(window) * T;
    for (std::size_t t = 0; t < T; ++t) {
      const std::int32_t in = ids[start + t], next = ids[start + t + 1];
      if (in < 0 || in >= vocab_size || next < 0 || next >= vocab_size)
        throw Error(
            ErrorKind::value, where_,
            fmt::format("symbol id {} at position {} is outside the vocabulary [0, {})",
                        (in < 0 || in >= vocab_size) ? in : next,
                        (in < 0 || in >= vocab_size) ? start + t : start + t + 1, vocab_size),
            "the model's input size must equal the vocabulary size");
      batch.x[(t * B + b) * V + static_cast<std::size_t>(in)] = Real(1);
      batch.classes[t * B + b] = next;
    }
  }
}

template void TextStreams::fill<float>(std::int64_t, int, Batch<float>&) const;
template void TextStreams::fill<double>(std::int64_t, int, Batch<double>&) const;

}  // namespace bptt::data
