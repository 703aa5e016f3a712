// BatchView: a batch in memory the caller owns (the Python module's NumPy arrays) is read where
// it is. Every computation given a view of foreign buffers equals, bit for bit, the same call
// given the Batch those buffers were copied from; the checks refuse a view of the wrong size as
// they refuse a Batch.
#include <gtest/gtest.h>

#include <vector>

#include "bptt/error.hpp"
#include "bptt/methods.hpp"
#include "bptt/unroll.hpp"
#include "unroll/test_util.hpp"

namespace bptt::test {
namespace {

class BatchViews : public testing::TestWithParam<Case> {};

// The batch's arrays copied into buffers of their own, and a view of those.
struct Foreign {
  std::vector<double> x, y, mask, h0, c0;
  std::vector<std::int64_t> classes, lengths;
  std::vector<double> mi, mr, mo, mw, zh, zc;  // the regularization's masks and flags
  BatchView<double> view;
  explicit Foreign(const Batch<double>& b)
      : x(b.x), y(b.y), mask(b.mask), h0(b.h0), c0(b.c0), classes(b.classes), lengths(b.lengths),
        mi(b.mask_input), mr(b.mask_recurrent), mo(b.mask_output), mw(b.mask_weight_hh),
        zh(b.zoneout_h), zc(b.zoneout_c) {
    view.T = b.T;
    view.B = b.B;
    view.x = x;
    view.y = y;
    view.mask = mask;
    view.h0 = h0;
    view.c0 = c0;
    view.classes = classes;
    view.lengths = lengths;
    view.mask_input = mi;
    view.mask_recurrent = mr;
    view.mask_output = mo;
    view.mask_weight_hh = mw;
    view.zoneout_h = zh;
    view.zoneout_c = zc;
  }
};

std::vector<double> flat(const Gradients<double>& g) {
  std::vector<double> v;
  for (const auto* p : {&g.params, &g.x, &g.h0, &g.c0}) v.insert(v.end(), p->begin(), p->end());
  return v;
}

TEST_P(BatchViews, EveryMethodReadsAViewAsItsBatch) {
  const Case& c = GetParam();
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  const Foreign foreign(batch);
  const BatchView<double>& view = foreign.view;
  ASSERT_NE(view.x.data(), batch.x.data());
  const LossKind loss = c.loss.loss;

  auto full = [&](const BatchView<double>& b, std::vector<double>& yhat) {
    Workspace<double> ws(model.cfg, b.T, b.B);
    Gradients<double> g(model.cfg, b.T, b.B);
    g.zero();
    const double L = loss_and_gradients(model, b, loss, ws, g);
    yhat.assign(ws.yhat(), ws.yhat() + std::size_t(b.T) * b.B * model.cfg.output_size);
    std::vector<double> v = flat(g);
    v.push_back(L);
    return v;
  };
  std::vector<double> yhat_batch, yhat_view;
  EXPECT_EQ(full(batch, yhat_batch), full(view, yhat_view));
  EXPECT_EQ(yhat_batch, yhat_view);

  auto recompute = [&](const BatchView<double>& b) {
    Recompute<double> r(model.cfg, b.T, b.B, 2);
    Gradients<double> g(model.cfg, b.T, b.B);
    g.zero();
    std::vector<double> v;
    v.push_back(r.loss_and_gradients(model, b, loss, g));
    const std::vector<double> rest = flat(g);
    v.insert(v.end(), rest.begin(), rest.end());
    return v;
  };
  EXPECT_EQ(recompute(batch), recompute(view));

  if (!c.opt.bi && model.cfg.readout == Readout::steps) {
    auto truncated = [&](const BatchView<double>& b) {
      Gradients<double> g(model.cfg, b.T, b.B);
      g.zero();
      std::vector<double> v{truncated_loss_and_gradients(model, b, loss, 2, g)};
      const std::vector<double> rest = flat(g);
      v.insert(v.end(), rest.begin(), rest.end());
      return v;
    };
    EXPECT_EQ(truncated(batch), truncated(view));
  }
  // A copy of the view is the batch again.
  const Batch<double> back(view);
  EXPECT_EQ(back.x, batch.x);
  EXPECT_EQ(back.lengths, batch.lengths);
  EXPECT_EQ(back.h0, batch.h0);
}

INSTANTIATE_TEST_SUITE_P(Options, BatchViews, testing::ValuesIn(option_cases()), case_name);

TEST(BatchView, ChecksRefuseAViewOfTheWrongSize) {
  Case c;
  c.T = 3;
  const Model<double> model = make_model<double>(c);
  const Batch<double> batch = make_batch<double>(c);
  BatchView<double> view = batch;
  view.x = view.x.first(view.x.size() - 1);
  Workspace<double> ws(model.cfg, batch.T, batch.B);
  try {
    forward(model, view, ws);
    FAIL() << "a short x was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape) << e.what();
  }
  EXPECT_THROW(view.validate(model.cfg, "data"), Error);
}

}  // namespace
}  // namespace bptt::test
