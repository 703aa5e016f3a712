// Lean inference (bptt/infer.hpp): forward() a chunk of steps at a time, each unit's state
// carried from one chunk to the next as the chunk's h0/c0.
#include "bptt/infer.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "bptt/error.hpp"
#include "bptt/threads.hpp"
#include "bptt/unroll.hpp"
#include "kernels/matmul.hpp"
#include "unroll/chunks.hpp"
#include "unroll/forward_packs.hpp"
#include "unroll/x_product.hpp"

namespace bptt {

namespace {

// What a chunk's workspace may hold: enough steps that its input GEMM has many rows, few enough
// that it stays a small part of a process (shape b: 16 steps of B = 64; H = 256, B = 1: 2700).
constexpr std::size_t kChunkBytes = std::size_t(16) << 20;

template <class Real>
void expect_size(std::span<Real> s, std::size_t n, const char* name, const char* dims) {
  if (s.size() != n)
    throw Error(ErrorKind::shape, std::string("inference: ") + name,
                fmt::format("has {} elements, expected {} = {}", s.size(), dims, n));
}

}  // namespace

template <class Real>
Inference<Real>::Inference(const ModelConfig& cfg, int B, int threads, int chunk_steps)
    : cfg_(cfg), B_(B), threads_(threads > 0 ? threads : ThreadCount::current()), chunk_(0),
      matmul_(MatmulScope::current()) {
  cfg.validate("inference");
  kernels::Products::of<Real>(matmul_, "inference");  // refuses bf16 for a double model
  if (B < 1)
    throw Error(ErrorKind::value, "inference", fmt::format("B = {}: at least one sequence", B));
  if (threads < 0)
    throw Error(ErrorKind::value, "inference",
                fmt::format("threads = {} (0: the calling thread's count, else at least 1)",
                            threads));
  if (chunk_steps < 0)
    throw Error(ErrorKind::value, "inference",
                fmt::format("chunk_steps = {} (0: chosen from the sizes, else at least 1)",
                            chunk_steps));
  packs_ = std::make_unique<unroll::ForwardPacks<Real>>();
  if (cfg.directions() == 2) {  // whole sequences
    chunk_ = 0;
  } else if (chunk_steps > 0) {
    chunk_ = chunk_steps;
  } else {
    const std::size_t one = Workspace<Real>::bytes_for_forward(cfg, 1, B, threads_),
                      step = Workspace<Real>::bytes_for_forward(cfg, 2, B, threads_) - one;
    const std::size_t room = kChunkBytes > one ? kChunkBytes - one : 0;
    std::size_t steps = room / std::max<std::size_t>(step, 1);
    // No more steps than the unroller's ring of a forward-only pass (unroll/chunks.hpp) where a
    // layer's input product is hoisted, so that every chunk reuses the same cached lines of a
    // small workspace (docs/benchmarks.md, issue 19 part 10: with 16 steps of shape b, the
    // gates, h and c of each chunk went out to L3).
    bool hoisted = false;
    for (int k = 0; k < cfg.num_layers; ++k)
      hoisted = hoisted || !unroll::x_product_in_step<Real>(cfg, cfg.layer_input_size(k));
    if (hoisted)  // (a left-to-right model here: its rows' parts are the cores')
      steps = std::size_t(unroll::ring_steps<Real>(cfg, int(std::min<std::size_t>(steps, 1 << 20)),
                                                   B, unroll::row_parts(B, threads_)));
    chunk_ = int(std::clamp<std::size_t>(steps, 1, 1 << 20));
  }
}

template <class Real>
Inference<Real>::~Inference() = default;
template <class Real>
Inference<Real>::Inference(Inference&&) noexcept = default;
template <class Real>
Inference<Real>& Inference<Real>::operator=(Inference&&) noexcept = default;

template <class Real>
void Inference<Real>::set_threads(int threads) {
  if (threads < 1)
    throw Error(ErrorKind::value, "inference", fmt::format("threads = {}: at least 1", threads));
  threads_ = threads;
  if (ws_) ws_->set_threads(threads);
}

template <class Real>
std::size_t Inference<Real>::bytes() const {
  const std::size_t reals = (packs_ ? packs_->buf.capacity() : 0) + h_n_.capacity() +
                            c_n_.capacity() + steps_h_.capacity() + steps_c_.capacity() +
                            yhat_.capacity() + z_.capacity();
  return (ws_ ? ws_->bytes() : 0) + reals * sizeof(Real) +
         lengths_.capacity() * sizeof(std::int64_t);
}

template <class Real>
void Inference<Real>::run(const Model<Real>& model, const BatchArg<Real>& batch,
                          const Outputs& out) {
  const ModelConfig& cfg = model.cfg;
  if (batch.B != B_)
    throw Error(ErrorKind::shape, "inference",
                fmt::format("sized for B = {} sequences but the batch has B = {}", B_, batch.B),
                "construct the Inference for the batch's B");
  if (cfg.input_size != cfg_.input_size || cfg.hidden_size != cfg_.hidden_size ||
      cfg.num_layers != cfg_.num_layers || cfg.directions() != cfg_.directions() ||
      cfg.cell != cfg_.cell || cfg.output_size != cfg_.output_size)
    throw Error(ErrorKind::shape, "inference", "the model's sizes differ from the configuration "
                "the Inference was built for", "construct it from this model's cfg");
  batch.check_shapes(cfg, "inference");
  const int T = batch.T, B = batch.B, U = cfg.units(), HO = cfg.state_size(),
            H = cfg.hidden_size, O = cfg.output_size;
  const bool lstm = cfg.cell == CellKind::lstm;
  const std::size_t TB = std::size_t(T) * B;
  expect_size(out.yhat, TB * O, "yhat", "T·B·O");
  if (!out.z.empty()) expect_size(out.z, TB * O, "z", "T·B·O");
  if (!out.h.empty()) expect_size(out.h, std::size_t(U) * TB * HO, "h", "L·D·T·B·H_out");
  if (!out.c.empty()) expect_size(out.c, lstm ? std::size_t(U) * TB * H : 0, "c", "L·D·T·B·H");

  const int C = chunk_ > 0 ? std::min(T, chunk_) : T;
  if (!ws_ || ws_->T() < C) {
    ws_.reset();  // the old one first: two never live at once
    ws_.reset(new Workspace<Real>(cfg, C, B, threads_, typename Workspace<Real>::ForwardOnly{}));
    ws_->set_matmul(matmul_);
  }
  Workspace<Real>& ws = *ws_;
  ws.set_threads(threads_);
  const bool final_state = cfg.readout == Readout::final_state;

  packs_->pack(model, batch, ws.matmul());  // once for all chunks
  BatchView<Real> part = batch;  // masks whole; x, lengths, zoneout flags and h0/c0 per chunk
  part.y = {}, part.classes = {}, part.mask = {};  // no loss here
  const std::size_t zh = batch.zoneout_h.size() / std::max<std::size_t>(TB, 1),
                    zc = batch.zoneout_c.size() / std::max<std::size_t>(TB, 1);
  for (int s = 0; s < T; s += C) {
    const int n = std::min(C, T - s);
    const std::size_t rows = std::size_t(n) * B, first = std::size_t(s) * B;
    part.T = n;
    part.x = batch.x.subspan(first * cfg.input_size, rows * cfg.input_size);
    if (!batch.zoneout_h.empty()) part.zoneout_h = batch.zoneout_h.subspan(first * zh, rows * zh);
    if (!batch.zoneout_c.empty()) part.zoneout_c = batch.zoneout_c.subspan(first * zc, rows * zc);
    if (!batch.lengths.empty()) {
      lengths_.resize(std::size_t(B));
      for (int b = 0; b < B; ++b)
        lengths_[std::size_t(b)] = std::clamp<std::int64_t>(batch.lengths[std::size_t(b)] - s, 0, n);
      part.lengths = lengths_;
    }
    if (s > 0) {  // carry on from the last chunk's final states
      part.h0 = h_n_;
      part.c0 = c_n_;
    }
    // A final-state readout reads h_n: only the last chunk has it. The readout writes the
    // chunk's rows of ŷ (and z) in place.
    const bool last = s + n == T;
    unroll::forward_packed(model, part, ws, *packs_, nullptr, /*head=*/!final_state || last,
                           {.yhat = out.yhat.data() + first * O,
                            .z = out.z.empty() ? nullptr : out.z.data() + first * O});
    ws.state_at(n, h_n_, c_n_);
    if (!out.h.empty()) {  // this chunk's steps of every unit, in data order
      ws.step_states(steps_h_, steps_c_);
      const auto scatter = [&](const std::vector<Real>& from, std::span<Real> to, int width) {
        const std::size_t per = rows * width, whole = TB * width;
        for (int u = 0; u < U; ++u)
          std::copy(from.begin() + std::ptrdiff_t(u * per), from.begin() + std::ptrdiff_t((u + 1) * per),
                    to.begin() + std::ptrdiff_t(u * whole + first * width));
      };
      scatter(steps_h_, out.h, HO);
      if (lstm && !out.c.empty()) scatter(steps_c_, out.c, H);
    }
  }
  if (final_state && T > C) {  // every step's output is the last chunk's (the same at each step)
    const std::size_t from = std::size_t((T - 1) / C * C) * B * O, row = std::size_t(B) * O;
    for (std::size_t at = 0; at < from; at += row) {
      std::copy(out.yhat.begin() + std::ptrdiff_t(from), out.yhat.begin() + std::ptrdiff_t(from + row),
                out.yhat.begin() + std::ptrdiff_t(at));
      if (!out.z.empty())
        std::copy(out.z.begin() + std::ptrdiff_t(from), out.z.begin() + std::ptrdiff_t(from + row),
                  out.z.begin() + std::ptrdiff_t(at));
    }
  }
}

template <class Real>
void Inference<Real>::run(const Model<Real>& model, const BatchArg<Real>& batch) {
  const std::size_t n = std::size_t(batch.T) * std::size_t(batch.B) * std::size_t(model.cfg.output_size);
  yhat_.resize(n);
  z_.resize(n);
  run(model, batch, {.yhat = yhat_, .z = z_});
}

template class Inference<float>;
template class Inference<double>;

}  // namespace bptt
