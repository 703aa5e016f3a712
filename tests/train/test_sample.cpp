// Sampling from a character model (sample_symbol and sample_text in src/train/text_task.cpp)
// checked against what the options mean, not only the length of the output:
//   - top-k 1 is greedy: always the arg max of the model's distribution (the lower index of
//     equal ones);
//   - top-p draws only from the nucleus as tasks.hpp defines it (the shortest prefix of the
//     symbols by probability whose probabilities, normalized over all of them, reach top_p;
//     top-k first, temperature before both), and from every symbol of it in proportion;
//   - temperature 1 with neither truncation draws the softmax of the logits, and temperature τ
//     the softmax of logits / τ: counts over 20000 draws from a fixed seed within 5 binomial
//     standard deviations of N·p (the bound sits next to each check);
//   - sample_text does the same with the logits the model gives after the prime and the text
//     before each character (checked against one forward pass over the whole output).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bptt/data.hpp"
#include "bptt/tasks.hpp"
#include "bptt/unroll.hpp"

namespace bptt {
namespace {

constexpr int kDraws = 20000;
constexpr double kSd = 5;  // counts must lie within 5 standard deviations of the expectation

// softmax(z / temperature), in long double.
std::vector<double> softmax(const std::vector<double>& z, double temperature) {
  const double zmax = *std::max_element(z.begin(), z.end());
  std::vector<long double> e(z.size());
  long double sum = 0;
  for (std::size_t i = 0; i < z.size(); ++i)
    sum += e[i] = std::exp((static_cast<long double>(z[i]) - zmax) / temperature);
  std::vector<double> p(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) p[i] = double(e[i] / sum);
  return p;
}

std::vector<double> logits_of(const std::vector<double>& p) {
  std::vector<double> z;
  for (double v : p) z.push_back(std::log(v));
  return z;
}

// How often each symbol comes out of n draws of sample_symbol from one generator.
std::vector<int> counts(const std::vector<double>& z, const SampleOptions& opt, int n,
                        std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> c(z.size());
  for (int i = 0; i < n; ++i) {
    const int s = sample_symbol(z.data(), int(z.size()), opt, rng);
    if (s < 0 || s >= int(z.size())) {
      ADD_FAILURE() << "symbol " << s << " outside [0, " << z.size() << ")";
      continue;
    }
    ++c[std::size_t(s)];
  }
  return c;
}

// EXPECTs every count within kSd binomial standard deviations of n · p_i:
//   |c_i − n p_i| ≤ 5 · sqrt(n p_i (1 − p_i)).
// (A symbol with p_i = 0 must never come out.)
void expect_counts_match(const std::vector<int>& c, const std::vector<double>& p, int n,
                         const std::string& what) {
  ASSERT_EQ(c.size(), p.size()) << what;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double mean = n * p[i], sd = std::sqrt(n * p[i] * (1 - p[i]));
    EXPECT_LE(std::abs(c[i] - mean), kSd * sd)
        << what << ": symbol " << i << " drawn " << c[i] << " times in " << n << ", expected "
        << mean << " ± " << sd << " (p = " << p[i] << ")";
  }
}

// The largest difference between two distributions' counts in units of the binomial standard
// deviation under p: how clearly n draws tell q from p (for checking that a test can fail).
double separation(const std::vector<double>& p, const std::vector<double>& q, int n) {
  double worst = 0;
  for (std::size_t i = 0; i < p.size(); ++i)
    worst = std::max(worst, n * std::abs(q[i] - p[i]) / std::sqrt(n * p[i] * (1 - p[i])));
  return worst;
}

// The nucleus by tasks.hpp's definition, written independently of the sampler: symbols by
// probability under softmax(z / temperature), most probable first (ties: lower index), the
// first top_k (when > 0), then the shortest prefix whose probabilities reach top_p. Fails the
// test when some prefix sum lies within 1e-9 of top_p (rounding could then go either way).
std::vector<int> nucleus(const std::vector<double>& z, const SampleOptions& opt) {
  const std::vector<double> p = softmax(z, opt.temperature);
  std::vector<int> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return p[std::size_t(a)] > p[std::size_t(b)]; });
  std::size_t keep = opt.top_k > 0 ? std::min(order.size(), std::size_t(opt.top_k)) : order.size();
  double mass = 0;
  for (std::size_t i = 0; i < keep && opt.top_p < 1; ++i) {
    mass += p[std::size_t(order[i])];
    EXPECT_GT(std::abs(mass - opt.top_p), 1e-9) << "an ambiguous case: top_p is a prefix sum";
    if (mass >= opt.top_p) keep = i + 1;
  }
  order.resize(keep);
  return order;
}

// ---------------------------------------------------------------------------------------------
// sample_symbol

TEST(SampleSymbol, TopK1IsTheArgmax) {
  std::mt19937_64 gen(17);
  std::normal_distribution<double> normal(0, 3);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<double> z(7);
    for (double& v : z) v = normal(gen);
    const int argmax = int(std::max_element(z.begin(), z.end()) - z.begin());
    for (double temperature : {0.3, 1.0, 4.0}) {
      SampleOptions opt;
      opt.top_k = 1;
      opt.temperature = temperature;
      const std::vector<int> c = counts(z, opt, 20, std::uint64_t(trial));
      EXPECT_EQ(c[std::size_t(argmax)], 20) << "trial " << trial << ", temperature " << temperature;
    }
  }
  // Near ties still go to the larger logit; an exact tie to the lower index.
  SampleOptions opt;
  opt.top_k = 1;
  EXPECT_EQ(counts({1, 1 + 1e-9, 1, 0}, opt, 200, 1)[1], 200);
  EXPECT_EQ(counts({2, 5, 5, 1}, opt, 200, 1)[1], 200);
}

TEST(SampleSymbol, TemperatureOneDrawsTheSoftmax) {
  const std::vector<double> z = {0.5, -1, 2, 0, 1.2, -0.3};
  const std::vector<double> p = softmax(z, 1);
  expect_counts_match(counts(z, SampleOptions{}, kDraws, 11), p, kDraws, "temperature 1");
  // The same holds for float logits.
  const std::vector<float> zf(z.begin(), z.end());
  std::mt19937_64 rng(12);
  std::vector<int> c(z.size());
  for (int i = 0; i < kDraws; ++i) ++c.at(std::size_t(sample_symbol(zf.data(), 6, {}, rng)));
  expect_counts_match(c, p, kDraws, "temperature 1, float logits");
}

TEST(SampleSymbol, TemperatureDividesTheLogits) {
  const std::vector<double> z = {0.5, -1, 2, 0, 1.2, -0.3};
  for (double temperature : {0.5, 2.0}) {
    SampleOptions opt;
    opt.temperature = temperature;
    const std::vector<double> p = softmax(z, temperature);
    // The test can tell: softmax(z) itself lies far outside the bound.
    ASSERT_GT(separation(p, softmax(z, 1), kDraws), 4 * kSd);
    expect_counts_match(counts(z, opt, kDraws, 21), p, kDraws,
                        "temperature " + std::to_string(temperature));
  }
}

TEST(SampleSymbol, TopPDrawsOnlyFromTheNucleus) {
  // Probabilities 0.05, 0.4, 0.1, 0.3, 0.15: by probability the order is 1, 3, 4, 2, 0 with
  // prefix sums 0.4, 0.7, 0.85, 0.95, 1.
  const std::vector<double> z = logits_of({0.05, 0.4, 0.1, 0.3, 0.15});
  struct Case {
    double top_p, temperature;
    int top_k;
    std::vector<int> want;  // the nucleus, written out by hand
  };
  const std::vector<Case> cases = {
      {0.3, 1, 0, {1}},
      {0.65, 1, 0, {1, 3}},
      {0.71, 1, 0, {1, 3, 4}},
      {0.9, 1, 0, {1, 3, 4, 2}},
      {0.99, 1, 0, {1, 3, 4, 2, 0}},
      // Temperature 0.5 first: p ∝ p², 0.561 and 0.316 for symbols 1 and 3, which reach 0.8
      // (untempered they would need symbol 4 as well).
      {0.8, 0.5, 0, {1, 3}},
      // top-k 3 keeps 1, 3, 4 (0.85 of the mass); top-p 0.8 is reached by the third: the
      // probabilities are those of all five symbols (renormalized over the three, 0.4 / 0.85
      // + 0.3 / 0.85 = 0.82 would already reach it with two).
      {0.8, 1, 3, {1, 3, 4}},
      // top-k cuts before top-p is reached: the top-k set.
      {0.9, 1, 2, {1, 3}},
  };
  for (const Case& k : cases) {
    SampleOptions opt;
    opt.top_p = k.top_p;
    opt.temperature = k.temperature;
    opt.top_k = k.top_k;
    const std::string what = "top_p " + std::to_string(k.top_p) + ", temperature " +
                             std::to_string(k.temperature) + ", top_k " + std::to_string(k.top_k);
    ASSERT_EQ(nucleus(z, opt), k.want) << what << ": the test's own nucleus";
    // Inside the nucleus, in proportion to p; outside, never (probability 0 there).
    const std::vector<double> p = softmax(z, k.temperature);
    std::vector<double> q(p.size(), 0.0);
    double mass = 0;
    for (int i : k.want) mass += p[std::size_t(i)];
    for (int i : k.want) q[std::size_t(i)] = p[std::size_t(i)] / mass;
    const std::vector<int> c = counts(z, opt, kDraws, 31);
    for (std::size_t i = 0; i < c.size(); ++i)
      if (q[i] == 0) {
        EXPECT_EQ(c[i], 0) << what << ": symbol " << i << " is outside the nucleus";
      }
    expect_counts_match(c, q, kDraws, what);
  }
}

// ---------------------------------------------------------------------------------------------
// sample_text: the model's distribution at every step

class SampleText : public ::testing::Test {
 protected:
  SampleText() : vocab_(data::Vocab::of("abcde")), model_(config()) {
    model_.init_uniform(5);
    // Input weights 4 times and head weights 6 times the initial ones, and no head bias: the
    // logits lie a few units apart (the distributions differ clearly from uniform and from
    // each other's temperatures) and depend on the text so far (the most likely symbol
    // changes with it).
    auto v = model_.views();
    for (int i = 0; i < 4 * 8 * 5; ++i) v.layers[0].w_ih[i] *= 4;
    for (int i = 0; i < 5 * 8; ++i) v.w_o[i] *= 6;
    for (int i = 0; i < 5; ++i) v.b_o[i] = 0;
  }
  static ModelConfig config() {
    ModelConfig c;
    c.cell = CellKind::lstm;
    c.input_size = c.output_size = 5;
    c.hidden_size = 8;
    c.output_activation = Activation::softmax;
    return c;
  }

  // sample_text's output (the prime "a", then opt.length characters) as symbols.
  std::vector<int> sample(const SampleOptions& opt) const {
    std::string text;
    sample_text(model_, vocab_, opt, [&](std::string_view piece) { text += piece; });
    EXPECT_EQ(text.size(), opt.prime.size() + std::size_t(opt.length));
    std::vector<int> ids;
    for (char ch : text) ids.push_back(vocab_.encode(std::uint8_t(ch)));
    return ids;
  }

  // The logits after each prefix of `ids`: one forward pass over the whole sequence from the
  // zero state; row t ([O]) is the distribution of ids[t + 1].
  std::vector<std::vector<double>> logits(const std::vector<int>& ids) const {
    const int T = int(ids.size()) - 1;
    Batch<double> b;
    b.T = T;
    b.B = 1;
    b.x.assign(std::size_t(T) * 5, 0.0);
    for (int t = 0; t < T; ++t) b.x[std::size_t(t) * 5 + std::size_t(ids[std::size_t(t)])] = 1;
    Workspace<double> ws(model_.cfg, T, 1);
    forward(model_, b, ws);
    std::vector<std::vector<double>> z;
    for (int t = 0; t < T; ++t) z.emplace_back(ws.z() + t * 5, ws.z() + (t + 1) * 5);
    return z;
  }

  data::Vocab vocab_;
  Model<double> model_;
};

// Greedy after 300 random primes of 1 to 8 characters (so that the most likely symbol varies),
// 3 characters each.
TEST_F(SampleText, TopK1IsGreedy) {
  std::mt19937 gen(3);
  std::set<int> argmaxes;
  for (int k = 0; k < 300; ++k) {
    SampleOptions opt;
    opt.top_k = 1;
    opt.length = 3;
    opt.seed = std::uint64_t(k);
    const int n = 1 + int(gen() % 8);
    for (int i = 0; i < n; ++i) opt.prime += char('a' + gen() % 5);
    const std::vector<int> ids = sample(opt);
    ASSERT_EQ(ids.size(), opt.prime.size() + 3);
    const auto z = logits(ids);
    for (std::size_t t = opt.prime.size() - 1; t + 1 < ids.size(); ++t) {
      const auto top = std::max_element(z[t].begin(), z[t].end());
      argmaxes.insert(int(top - z[t].begin()));
      // The step-by-step pass of sample_text and this one round differently (1e-15).
      EXPECT_GE(z[t][std::size_t(ids[t + 1])], *top - 1e-9)
          << "prime '" << opt.prime << "', step " << t << ": symbol " << ids[t + 1]
          << " is not the most likely, " << top - z[t].begin() << " is";
    }
  }
  // The most likely symbol was not the same every time (which would make the check weak).
  EXPECT_GE(argmaxes.size(), 3u);
}

// Over a long sample the distribution changes from step to step; symbol i's count is then a
// sum of independent Bernoulli(p_t(i)) draws, with mean Σ_t p_t(i) and variance
// Σ_t p_t(i)(1 − p_t(i)). Both the count and the bound come from the model's own logits.
TEST_F(SampleText, FollowsTheModelsDistributionAtEveryTemperature) {
  for (double temperature : {1.0, 0.5}) {
    SampleOptions opt;
    opt.temperature = temperature;
    opt.length = kDraws;
    opt.prime = "a";
    opt.seed = 41;
    const std::vector<int> ids = sample(opt);
    ASSERT_EQ(ids.size(), std::size_t(kDraws) + 1);
    const auto z = logits(ids);
    std::vector<double> mean(5), var(5), untempered(5);
    std::vector<int> c(5);
    for (std::size_t t = 0; t + 1 < ids.size(); ++t) {
      const std::vector<double> p = softmax(z[t], temperature), p1 = softmax(z[t], 1);
      for (std::size_t i = 0; i < 5; ++i) {
        mean[i] += p[i];
        var[i] += p[i] * (1 - p[i]);
        untempered[i] += p1[i];
      }
      ++c[std::size_t(ids[t + 1])];
    }
    double far = 0;  // how far temperature 1 would be, in standard deviations
    for (std::size_t i = 0; i < 5; ++i) {
      // |count − Σ p_t(i)| ≤ 5 · sqrt(Σ p_t(i)(1 − p_t(i))).
      EXPECT_LE(std::abs(c[i] - mean[i]), kSd * std::sqrt(var[i]))
          << "temperature " << temperature << ": symbol " << i << " drawn " << c[i]
          << " times, expected " << mean[i] << " ± " << std::sqrt(var[i]);
      far = std::max(far, std::abs(untempered[i] - mean[i]) / std::sqrt(var[i]));
    }
    if (temperature != 1) {
      EXPECT_GT(far, 4 * kSd) << "the test could not tell";
    }
  }
}

TEST_F(SampleText, TopPStaysInTheNucleusOfEveryStep) {
  SampleOptions opt;
  opt.top_p = 0.7;
  opt.length = 2000;
  opt.prime = "a";
  opt.seed = 8;
  const std::vector<int> ids = sample(opt);
  ASSERT_EQ(ids.size(), 2001u);
  const auto z = logits(ids);
  int outside_top1 = 0;
  for (std::size_t t = 0; t + 1 < ids.size(); ++t) {
    const std::vector<int> n = nucleus(z[t], opt);
    EXPECT_NE(std::find(n.begin(), n.end(), ids[t + 1]), n.end())
        << "step " << t << ": symbol " << ids[t + 1] << " is outside the nucleus";
    outside_top1 += ids[t + 1] != n.front();
  }
  // Not greedy either: the nucleus often holds more than one symbol, and they are drawn.
  EXPECT_GT(outside_top1, 100);
}

}  // namespace
}  // namespace bptt
