// The data sources of `bptt train`: a text file as a character language model (char-rnn style,
// bytes as symbols), one column of a CSV file as a univariate series, and sktime/UEA `.ts`
// sequence-classification files. Loaders read the whole file, validate it and throw bptt::Error
// whose where() is "<path>:<line>" plus ": <field>" when there is one ("train.ts:12: dimension 3")
// and whose message is one line. No input makes them crash; sizes read from a file are checked
// before anything is allocated for them.
//
// Batches are time-major (docs/conventions.md): x [T, B, I], classes [T, B], mask [T, B].
// The fill functions *assign* every tensor of the batch; vectors are resized in place, so a batch
// reused for windows or mini-batches of the same shape is not reallocated.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bptt/batch.hpp"

namespace bptt::data {

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

// A byte vocabulary: the sorted distinct byte values of a text. Symbol id k is the k-th smallest
// byte value, so the vocabulary of a text does not depend on the order of its bytes.
struct Vocab {
  int size() const { return static_cast<int>(bytes_.size()); }
  // The byte values, strictly increasing ([V]).
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }
  // The id of byte `b`, or -1 when `b` is not in the vocabulary.
  int encode(std::uint8_t b) const { return index_[b]; }
  // The byte of symbol `id`. Throws bptt::Error when id is outside [0, size()).
  std::uint8_t decode(int id) const;

  // The metadata string written into a model file: the JSON array of the byte values in
  // increasing order, in decimal, without spaces, e.g. "[10,32,33,65]" (printable ASCII,
  // unambiguous, readable by any JSON parser).
  std::string to_metadata() const;
  // Parses to_metadata()'s format (spaces around numbers and commas are allowed). Throws
  // bptt::Error (where = `where`) unless it is a non-empty array of integers in [0, 255] in
  // strictly increasing order.
  static Vocab from_metadata(const std::string& text, const std::string& where);
  // The vocabulary of `text` (empty for an empty text).
  static Vocab of(std::string_view text);

  friend bool operator==(const Vocab& a, const Vocab& b) { return a.bytes_ == b.bytes_; }

 private:
  static constexpr std::array<int, 256> no_index() {
    std::array<int, 256> a{};
    for (int& v : a) v = -1;
    return a;
  }
  void set_bytes(std::vector<std::uint8_t> bytes);  // strictly increasing

  std::vector<std::uint8_t> bytes_;          // [V]
  std::array<int, 256> index_ = no_index();  // byte value → id, or -1
};

// A text encoded as symbol ids. ids[0, train_end) is the training part and ids[train_end, size)
// the validation part (empty when there is none).
struct TextCorpus {
  std::string path;
  Vocab vocab;
  std::vector<std::int32_t> ids;  // [N] symbol ids in [0, vocab.size())
  std::size_t train_end = 0;      // <= ids.size()
};

// Reads the whole file as bytes; the vocabulary is taken over the whole file; the last
// `val_fraction` of the ids is validation: train_end = floor(N · (1 − val_fraction)) (as nanoGPT's
// int(0.9·N) split). Throws bptt::Error for: val_fraction not in [0, 1) (or NaN); a missing or
// unreadable file; an empty file; a binary file (a NUL byte, or more than 10% of the bytes are
// control characters other than \t \n \r \f \v; where = "<path>:<line>: byte N" naming the
// first offending byte's 0-based offset); fewer than 2 training symbols; fewer than 2 validation
// symbols when val_fraction > 0.
TextCorpus load_text(const std::string& path, double val_fraction);

// Encodes `text` (read from `path`, or given on the command line) with a model's vocabulary, for
// evaluation or as a sampling prompt. train_end = ids.size(). No length requirement: the caller
// decides how many symbols it needs. Throws bptt::Error (where = path) "byte 0x7a ('z') at
// offset N (line L) is not in the model's vocabulary" for the first such byte.
TextCorpus encode_text(const std::string& path, std::string_view text, const Vocab& vocab);

// Reads a whole file as bytes (no checks on the content). Throws bptt::Error (where = path) when
// it is missing, a directory, or unreadable.
std::string read_file_bytes(const std::string& path);

// char-rnn streams for truncated BPTT with the state carried across windows.
// The range ids[begin, end) is split into B contiguous streams of equal length
// n = (end − begin − 1) / B: stream b holds positions p = begin + b·n + s for s in [0, n), with
// input ids[p] and target ids[p + 1]. Window w covers s in [w·T, (w + 1)·T) of every stream, so
// window w + 1 of stream b continues exactly where window w ended; windows() = n / T (the rest
// of each stream is dropped).
// The streams keep a pointer to `ids`, which must outlive them and not change.
class TextStreams {
 public:
  // Throws bptt::Error (where = `where`) when B < 1, T < 1, the range is not inside ids, or
  // windows() would be 0 (the hint names B, T and the number of symbols).
  TextStreams(const std::vector<std::int32_t>& ids, std::size_t begin, std::size_t end, int B,
              int T, const std::string& where = "text");

  std::int64_t windows() const { return windows_; }
  std::int64_t stream_length() const { return n_; }  // n
  int batch() const { return B_; }
  int seq_len() const { return T_; }

  // Window `window` (in [0, windows())) as a batch for an xent model with I = O = vocab_size:
  // T, B; x [T, B, V] one-hot of the inputs; classes [T, B] the next symbols; y, lengths, mask,
  // h0 and c0 empty. Throws bptt::Error when the window is out of range, vocab_size < 1, or an
  // id of the window is outside [0, vocab_size).
  template <class Real>
  void fill(std::int64_t window, int vocab_size, Batch<Real>& batch) const;

 private:
  const std::vector<std::int32_t>* ids_;
  std::size_t begin_;
  std::int64_t n_ = 0, windows_ = 0;
  int B_, T_;
  std::string where_;
};

// Text from a data file made safe for a one-line error message: control bytes and DEL are
// written as \xNN, and text longer than max_bytes is cut there and "..." appended.
std::string printable(std::string_view text, std::size_t max_bytes = 60);

// ---------------------------------------------------------------------------------------------
// CSV series
// ---------------------------------------------------------------------------------------------

struct Series {
  std::string path, column;
  std::vector<std::string> labels;  // [N] the first column of each row (e.g. dates), unquoted
  std::vector<double> values;       // [N] the chosen column, finite
};

// Reads one numeric column of a CSV file. The first row is the header (names quoted or not;
// quotes and surrounding spaces are stripped); then one row per line, fields separated by ',',
// quoted fields may contain commas ("" is a quote inside quotes). CRLF or LF line endings, a
// missing final newline, and blank lines at the end are accepted. Throws bptt::Error with
// where = "<path>:<line>: <column>" for: an unknown column (the hint lists the available ones),
// a column named twice, a row with a different number of fields than the header, a blank line
// before the last row, an unterminated quote, a missing value ("", empty, or NA / N/A / null /
// ?) "missing value", a non-numeric value "'abc' is not a number", a non-finite or out-of-range
// value, fewer than 3 rows. Numbers are parsed with std::from_chars (locale-independent; a
// leading '+' is accepted; the whole field must be the number).
Series load_csv_column(const std::string& path, const std::string& column);

// The seasonal period guessed from the labels (the first column), for seasonal-naive baselines:
//   every label "YYYY-MM"      (monthly)  → 12;
//   every label "YYYY-MM-DD"   (daily)    → 365 when the last date is at least 2 years after the
//                                          first (same month and day, year + 2), else 7 (weekly);
//   anything else (including times of day, or fewer than 2 labels) → 1 (no season).
int seasonal_period(const Series& series);

// ---------------------------------------------------------------------------------------------
// sktime / UEA .ts classification files
// ---------------------------------------------------------------------------------------------

struct TsDataset {
  std::string path;
  int dims = 0;                             // I: channels per step
  std::vector<std::string> class_names;     // label names, in @classLabel order (or the model's)
  std::vector<std::vector<double>> series;  // each [len, dims] row-major (time-major)
  std::vector<int> lengths;                 // [N] steps of each series, >= 1
  std::vector<int> labels;                  // [N] index into class_names
  std::size_t size() const { return series.size(); }
};

// Reads a .ts file: comment lines (#) and blank lines anywhere; header tags (case-insensitive)
// @problemName, @timeStamps false (true is rejected), @missing, @univariate, @dimensions N,
// @equalLength, @seriesLength N (checked when @equalLength is true), @classLabel true <labels>
// (required; false/@targetLabel, i.e. regression, are rejected), then @data and one series per
// line: the dims channels separated by ':', values within a channel by ',', the class label
// last. Without @dimensions, dims is 1 for @univariate true and otherwise taken from the first
// data line. With `class_names` (a model's), labels are indices into it and class_names is
// copied into the result; otherwise class_names is the file's @classLabel list.
// Throws bptt::Error, where = "<path>:<line>" plus ": dimension d" (1-based) or ": class label",
// for: an unknown or malformed tag, a data line before @data, no @data, an empty data section,
// a wrong number of dimensions, channels of unequal length within a line, an empty channel, a
// non-numeric value ("value k ('abc') is not a number", k 1-based), a missing value ('?' or
// NaN) or a non-finite one, a label not in @classLabel (or not in `class_names`), a series whose
// length differs from @seriesLength.
TsDataset load_ts(const std::string& path, const std::vector<std::string>* class_names = nullptr);

// The mean and population standard deviation of each channel over all steps of all series
// (mean, stddev resized to dims). A constant channel gets stddev 1, so normalizing centers it.
// Throws bptt::Error when the dataset has no steps.
void ts_channel_stats(const TsDataset& ds, std::vector<double>& mean, std::vector<double>& stddev);

// The sequences ds.series[indices[b]], b = 0..B−1, as a batch for an xent model with
// I = ds.dims and O = class_names.size(): T = the longest chosen length, B = indices.size(),
// x [T, B, dims] ((x − mean) / stddev per channel when both are given; zeros after each
// sequence's end), lengths [B], classes [T, B] = the sequence's label at every step, mask [T, B]
// = 1 at t = lengths[b] − 1 and 0 elsewhere (the loss is taken at each sequence's last step);
// y, h0, c0 empty. Throws bptt::Error (where = ds.path) for no indices, an index out of range,
// mean/stddev of the wrong size, or a stddev that is not finite and > 0.
template <class Real>
void fill_ts_batch(const TsDataset& ds, const std::vector<int>& indices, Batch<Real>& batch,
                   const std::vector<double>* mean = nullptr,
                   const std::vector<double>* stddev = nullptr);

}  // namespace bptt::data
