// The kinds of training data `bptt train` understands, as Tasks (see train.hpp), and sampling.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "bptt/data.hpp"
#include "bptt/train.hpp"

namespace bptt {

// Character language model (char-rnn): B contiguous streams of the training part, windows of T
// steps, one-hot input, xent at every step; the state is carried from window to window.
// Evaluation runs the validation part the same way and reports bits_per_char = loss / ln 2.
// The corpus must outlive the task.
template <class Real>
std::unique_ptr<Task<Real>> make_text_task(const data::TextCorpus& corpus, int B, int T);

// Validation metrics of a trained language model on ids[begin, end) of the corpus.
template <class Real>
Metrics evaluate_text(const Model<Real>& model, const data::TextCorpus& corpus, std::size_t begin,
                      std::size_t end, int B, int T);

struct SampleOptions {
  std::int64_t length = 500;
  double temperature = 1.0;  // > 0; logits are divided by it
  int top_k = 0;             // 0: off; else keep the k most likely symbols
  double top_p = 1.0;        // nucleus: keep the smallest set with probability >= top_p
  std::string prime;         // text fed first (and printed); default: a newline
  std::uint64_t seed = 1;
};

// Generates text from a character model, calling emit for each piece as soon as it exists
// (the prime first). Throws bptt::Error for options out of range or a prime byte outside the
// vocabulary.
template <class Real>
void sample_text(const Model<Real>& model, const data::Vocab& vocab, const SampleOptions& opt,
                 const std::function<void(std::string_view)>& emit);

}  // namespace bptt
