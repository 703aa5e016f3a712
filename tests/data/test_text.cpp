// Tests of the text data source: the byte vocabulary and its metadata string, load_text's split
// and every file it must reject, encode_text against a model's vocabulary, and the char-rnn
// streams (windows, targets shifted by one, windows continuing each other, one-hot inputs).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "support/shared_data.hpp"
#include "support/temp_dir.hpp"
#include "bptt/batch.hpp"
#include "bptt/data.hpp"
#include "bptt/error.hpp"

namespace fs = std::filesystem;
using bptt::Error;
using namespace bptt::data;

namespace {

// Runs `f`, expects a bptt::Error whose where() contains `where`, whose problem() contains
// `what`, and whose message is one line (and, when given, of that kind).
template <class F>
void expect_error(F&& f, const std::string& where, const std::string& what,
                  std::optional<bptt::ErrorKind> kind = std::nullopt) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one at '" << where << "': " << what;
  } catch (const Error& e) {
    EXPECT_NE(e.where().find(where), std::string::npos) << "where: " << e.where();
    EXPECT_NE(e.problem().find(what), std::string::npos) << "what: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
    if (kind) {
      EXPECT_EQ(e.kind(), *kind) << to_string(e.kind()) << ": " << e.what();
    }
  }
}

class TextData : public bptt::test::TempDirTest {
 protected:
  TextData() : TempDirTest("bptt_text_") {}
  std::string write(const std::string& name, const std::string& content) const {
    return write_file(name, content);
  }
};

// ---- Vocab ----------------------------------------------------------------------------------

TEST(Vocab, SortedDistinctBytes) {
  const Vocab v = Vocab::of("hello, world\n");
  EXPECT_EQ(v.to_metadata(), "[10,32,44,100,101,104,108,111,114,119]");
  EXPECT_EQ(v.size(), 10);
  EXPECT_EQ(v.encode('\n'), 0);
  EXPECT_EQ(v.encode('w'), 9);
  EXPECT_EQ(v.encode('z'), -1);
  for (int id = 0; id < v.size(); ++id) EXPECT_EQ(v.encode(v.decode(id)), id);
  EXPECT_EQ(Vocab::of("").size(), 0);
  EXPECT_EQ(Vocab::of("").encode('a'), -1);
}

TEST(Vocab, AllBytesRoundTrip) {
  std::string all;
  for (int b = 255; b >= 0; --b) all += static_cast<char>(b);
  const Vocab v = Vocab::of(all);
  ASSERT_EQ(v.size(), 256);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(v.encode(static_cast<std::uint8_t>(b)), b);
  const Vocab back = Vocab::from_metadata(v.to_metadata(), "m");
  EXPECT_EQ(back, v);
  EXPECT_EQ(back.encode(200), 200);
}

TEST(Vocab, MetadataRoundTripAndSpaces) {
  const Vocab v = Vocab::of("The quick brown fox\tjumps.");
  EXPECT_EQ(Vocab::from_metadata(v.to_metadata(), "m"), v);
  const Vocab spaced = Vocab::from_metadata(" [ 10 , 32,65 ] ", "m");
  EXPECT_EQ(spaced.to_metadata(), "[10,32,65]");
  EXPECT_EQ(spaced.encode('A'), 2);
}

TEST(Vocab, BadMetadata) {
  for (const char* bad :
       {"", "[]", "[ ]", "10,32", "[10,32", "[10,,32]", "[10 32]", "[32,10]", "[10,10]", "[256]",
        "[1000]", "[-1]", "[1.5]", "[10]x", "[a]", "[0001]"}) {
    SCOPED_TRACE(bad);
    expect_error([&] { Vocab::from_metadata(bad, "model.safetensors: vocab"); },
                 "model.safetensors: vocab", "vocabulary");
  }
}

TEST(Vocab, DecodeOutOfRange) {
  const Vocab v = Vocab::of("ab");
  expect_error([&] { v.decode(2); }, "vocabulary", "symbol id 2 is outside [0, 2)");
  expect_error([&] { v.decode(-1); }, "vocabulary", "outside");
}

// ---- load_text ------------------------------------------------------------------------------

TEST_F(TextData, LoadAndSplit) {
  const std::string text = "abcabcabcd\n";  // 11 bytes
  const std::string p = write("t.txt", text);
  const TextCorpus c = load_text(p, 0.25);
  EXPECT_EQ(c.path, p);
  EXPECT_EQ(c.vocab.to_metadata(), "[10,97,98,99,100]");  // over the whole file, 'd' included
  ASSERT_EQ(c.ids.size(), text.size());
  for (std::size_t k = 0; k < text.size(); ++k)
    EXPECT_EQ(c.vocab.decode(c.ids[k]), static_cast<std::uint8_t>(text[k]));
  EXPECT_EQ(c.train_end, 8u);  // floor(11 · 0.75)
  EXPECT_EQ(load_text(p, 0.0).train_end, text.size());
}

TEST_F(TextData, Utf8AndFewControlsAreText) {
  // 1 control byte in 12 (10% would be 1.2): accepted; UTF-8 bytes are ordinary symbols.
  const std::string text = "caf\xc3\xa9 \x1b[0mxy";
  ASSERT_EQ(text.size(), 12u);
  const TextCorpus c = load_text(write("u.txt", text), 0);
  EXPECT_EQ(c.vocab.encode(0xc3), c.vocab.size() - 1);
  EXPECT_EQ(c.vocab.encode(0x1b), 0);
}

TEST_F(TextData, TinyShakespeare) {
  const std::string p = bptt::test::shared_data("tinyshakespeare.txt");
  BPTT_REQUIRE_SHARED_DATA(p);
  const TextCorpus c = load_text(p, 0.1);
  EXPECT_EQ(c.ids.size(), 1115394u);
  EXPECT_EQ(c.vocab.size(), 65);
  EXPECT_EQ(c.train_end, 1003854u);  // nanoGPT's shakespeare_char split
  EXPECT_EQ(c.vocab.decode(c.ids[0]), 'F');
}

TEST_F(TextData, MissingFileAndDirectory) {
  const std::string p = (dir_ / "nope.txt").string();
  expect_error([&] { load_text(p, 0.1); }, p, "cannot open", bptt::ErrorKind::io);
  expect_error([&] { load_text(dir_.string(), 0.1); }, dir_.string(), "directory");
}

TEST_F(TextData, EmptyFile) {
  const std::string p = write("empty.txt", "");
  expect_error([&] { load_text(p, 0.1); }, p, "empty");
}

TEST_F(TextData, NulByteIsBinary) {
  const std::string p = write("nul.txt", std::string("line one\nline two\nab\0cd\n", 24));
  expect_error([&] { load_text(p, 0); }, p + ":3: byte 20", "NUL", bptt::ErrorKind::format);
}

TEST_F(TextData, ManyControlCharactersAreBinary) {
  std::string text = "hello\nworld\n";
  text += "\x01\x02";  // 2 of 14 bytes > 10%; the first is at offset 12, line 3
  const std::string p = write("ctl.bin", text);
  expect_error([&] { load_text(p, 0); }, p + ":3: byte 12", "control characters (first: 0x01)");
}

TEST_F(TextData, AllowedControlsAreNotCounted) {
  const TextCorpus c = load_text(write("ws.txt", "a\t\n\r\f\vb\t\n\r\f\v"), 0);
  EXPECT_EQ(c.vocab.size(), 7);
}

TEST_F(TextData, BadValidationFraction) {
  const std::string p = write("t.txt", "abcdefghij");
  for (double f : {-0.1, 1.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    SCOPED_TRACE(f);
    expect_error([&] { load_text(p, f); }, p, "validation fraction");
  }
}

TEST_F(TextData, TooFewTrainingSymbols) {
  const std::string p = write("t.txt", "abc");
  expect_error([&] { load_text(p, 0.5); }, p, "validation fraction 0.5");  // train 1
  const std::string one = write("one.txt", "a");
  expect_error([&] { load_text(one, 0); }, one, "only 1 of 1 symbols are left for training",
               bptt::ErrorKind::shape);
}

TEST_F(TextData, TooFewValidationSymbols) {
  const std::string p = write("t.txt", "abcdefghij");
  expect_error([&] { load_text(p, 0.05); }, p, "validation fraction 0.05 of 10 symbols gives 1");
  EXPECT_EQ(load_text(p, 0.2).train_end, 8u);
}

// ---- encode_text ----------------------------------------------------------------------------

TEST(EncodeText, UsesTheModelsVocabulary) {
  const Vocab v = Vocab::of("abcdef\n");
  const TextCorpus c = encode_text("prompt", "fade\n", v);
  EXPECT_EQ(c.ids, (std::vector<std::int32_t>{6, 1, 4, 5, 0}));
  EXPECT_EQ(c.train_end, 5u);
  EXPECT_EQ(c.vocab, v);
  EXPECT_TRUE(encode_text("e", "", v).ids.empty());
}

TEST(EncodeText, ByteNotInVocabulary) {
  const Vocab v = Vocab::of("abc\n");
  expect_error([&] { encode_text("eval.txt", "ab\nabz", v); }, "eval.txt",
               "byte 0x7a ('z') at offset 5 (line 2) is not in the model's vocabulary");
  const Vocab no_newline = Vocab::of("abc");
  expect_error([&] { encode_text("eval.txt", "a\n", no_newline); }, "eval.txt",
               "byte 0x0a ('\\n') at offset 1");
  expect_error([&] { encode_text("eval.txt", std::string("a\xff", 2), v); }, "eval.txt",
               "byte 0xff at offset 1");
}

// ---- TextStreams ----------------------------------------------------------------------------

// ids[p] = p mod V, so every position of a short range is identified by its id.
std::vector<std::int32_t> counting_ids(std::size_t n, int V) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t p = 0; p < n; ++p) ids[p] = static_cast<std::int32_t>(p % V);
  return ids;
}

// The id one-hot encoded at (t, b) of x, or -1 when the row is not exactly one-hot.
template <class Real>
int one_hot_at(const bptt::Batch<Real>& batch, int V, int t, int b) {
  int found = -1;
  for (int v = 0; v < V; ++v) {
    const Real x = batch.x[(static_cast<std::size_t>(t) * batch.B + b) * V + v];
    if (x == Real(1) && found == -1)
      found = v;
    else if (x != Real(0))
      return -1;
  }
  return found;
}

TEST(TextStreams, WindowCount) {
  const auto ids = counting_ids(100, 100);
  EXPECT_EQ(TextStreams(ids, 0, 100, 3, 5).windows(), 6);  // n = 99 / 3 = 33, 33 / 5
  EXPECT_EQ(TextStreams(ids, 0, 100, 3, 5).stream_length(), 33);
  EXPECT_EQ(TextStreams(ids, 10, 51, 4, 10).windows(), 1);  // n = 40 / 4 = 10
  EXPECT_EQ(TextStreams(ids, 0, 100, 1, 99).windows(), 1);
  EXPECT_EQ(TextStreams(ids, 0, 100, 99, 1).windows(), 1);
}

TEST(TextStreams, NoWindowNamesBatchAndSeqLen) {
  const auto ids = counting_ids(100, 100);
  try {
    TextStreams(ids, 0, 100, 10, 10, "input.txt: train");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "input.txt: train");
    EXPECT_NE(e.hint().find("--batch (10)"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("--seq-len (10)"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  expect_error([&] { TextStreams(ids, 0, 1, 1, 1, "v"); }, "v", "no window");
  expect_error([&] { TextStreams(ids, 5, 5, 1, 1, "v"); }, "v", "no window");
}

TEST(TextStreams, BadArguments) {
  const auto ids = counting_ids(100, 100);
  expect_error([&] { TextStreams(ids, 0, 100, 0, 5, "s"); }, "s", "batch size 0",
               bptt::ErrorKind::value);
  expect_error([&] { TextStreams(ids, 0, 100, 2, -1, "s"); }, "s", "sequence length -1");
  EXPECT_THROW(TextStreams(ids, 0, 101, 2, 2, "s"), Error);
  EXPECT_THROW(TextStreams(ids, 50, 40, 2, 2, "s"), Error);
}

TEST(TextStreams, InputsTargetsAndContinuity) {
  const int V = 1000, B = 3, T = 4;
  const auto ids = counting_ids(200, V);
  const std::size_t begin = 7, end = 150;  // n = 142 / 3 = 47, windows = 11
  const TextStreams s(ids, begin, end, B, T);
  ASSERT_EQ(s.windows(), 11);
  const std::int64_t n = s.stream_length();
  bptt::Batch<double> batch;
  std::vector<std::int64_t> last_target(B, -1);
  for (std::int64_t w = 0; w < s.windows(); ++w) {
    s.fill(w, V, batch);
    ASSERT_EQ(batch.T, T);
    ASSERT_EQ(batch.B, B);
    ASSERT_EQ(batch.x.size(), std::size_t(T) * B * V);
    ASSERT_EQ(batch.classes.size(), std::size_t(T) * B);
    EXPECT_TRUE(batch.lengths.empty() && batch.mask.empty() && batch.h0.empty() &&
                batch.c0.empty() && batch.y.empty());
    for (int b = 0; b < B; ++b) {
      for (int t = 0; t < T; ++t) {
        const int in = one_hot_at(batch, V, t, b);
        const std::int64_t p = std::int64_t(begin) + b * n + w * T + t;
        ASSERT_EQ(in, ids[static_cast<std::size_t>(p)]) << "w " << w << " b " << b << " t " << t;
        const std::int64_t target = batch.classes[std::size_t(t) * B + b];
        EXPECT_EQ(target, ids[static_cast<std::size_t>(p + 1)]);  // targets = inputs shifted
        EXPECT_LT(p + 1, std::int64_t(end));
        if (t + 1 < T) {
          EXPECT_EQ(target, one_hot_at(batch, V, t + 1, b));
        }
      }
      // Window w of stream b starts with the symbol that was window w−1's last target.
      if (w > 0) {
        EXPECT_EQ(one_hot_at(batch, V, 0, b), last_target[b]) << "w " << w << " b " << b;
      }
      last_target[b] = batch.classes[std::size_t(T - 1) * B + b];
    }
  }
  // Streams are contiguous and disjoint: stream b starts where stream b−1's n symbols end.
  s.fill(0, V, batch);
  for (int b = 0; b < B; ++b) EXPECT_EQ(one_hot_at(batch, V, 0, b), std::int64_t(begin) + b * n);
}

TEST(TextStreams, ReusesTheBatchBuffers) {
  const auto ids = counting_ids(500, 7);
  const TextStreams s(ids, 0, 500, 4, 8);
  bptt::Batch<float> batch;
  batch.mask = {1.f, 2.f};
  batch.lengths = {3};
  s.fill(0, 7, batch);
  EXPECT_TRUE(batch.mask.empty() && batch.lengths.empty());
  const float* x = batch.x.data();
  const std::int64_t* c = batch.classes.data();
  for (std::int64_t w = 1; w < s.windows(); ++w) {
    s.fill(w, 7, batch);
    EXPECT_EQ(batch.x.data(), x);
    EXPECT_EQ(batch.classes.data(), c);
    for (int t = 0; t < 8; ++t)
      for (int b = 0; b < 4; ++b) EXPECT_GE(one_hot_at(batch, 7, t, b), 0);
  }
}

TEST(TextStreams, FillErrors) {
  const auto ids = counting_ids(100, 10);
  const TextStreams s(ids, 0, 100, 2, 5, "corpus");
  bptt::Batch<double> batch;
  expect_error([&] { s.fill(s.windows(), 10, batch); }, "corpus", "window 9 is outside [0, 9)");
  expect_error([&] { s.fill(-1, 10, batch); }, "corpus", "window -1");
  expect_error([&] { s.fill(0, 0, batch); }, "corpus", "vocabulary size 0");
  expect_error([&] { s.fill(0, 5, batch); }, "corpus", "outside the vocabulary [0, 5)");
}

TEST_F(TextData, EndToEndWindowsOfAFile) {
  const std::string text = "the cat sat on the mat. the dog sat on the log.\n";
  const TextCorpus c = load_text(write("cat.txt", text), 0.2);
  const TextStreams train(c.ids, 0, c.train_end, 2, 4, c.path);
  const TextStreams val(c.ids, c.train_end, c.ids.size(), 1, 3, c.path);
  bptt::Batch<float> batch;
  train.fill(train.windows() - 1, c.vocab.size(), batch);
  val.fill(0, c.vocab.size(), batch);
  EXPECT_EQ(c.vocab.decode(one_hot_at(batch, c.vocab.size(), 0, 0)),
            static_cast<std::uint8_t>(text[c.train_end]));
}

}  // namespace
