// PyTorch state_dict files without bptt metadata (include/bptt/import.hpp): a bptt model written
// under other attribute paths (a bare module, "encoder.lstm", a head at "decoder.fc") loads back
// as the same model through load_model, for every cell and option; the configuration is inferred;
// ambiguous and unusable files are refused with one line naming what to pick.
// tools/fixtures/check_torch_load.py checks the same against torch.nn itself (ctest torch_load).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "bptt/error.hpp"
#include "bptt/import.hpp"
#include "bptt/io.hpp"

namespace bptt {
namespace {

namespace fs = std::filesystem;

struct Variant {
  CellKind cell;
  int L;
  bool bi;
  int P;
  bool bias;
};

ModelConfig config_of(const Variant& v) {
  ModelConfig c;
  c.cell = v.cell;
  c.input_size = 3;
  c.hidden_size = 5;
  c.num_layers = v.L;
  c.output_size = 2;
  c.bidirectional = v.bi;
  c.proj_size = v.P;
  c.bias = v.bias;
  c.validate("test");
  return c;
}

Model<double> random_model(const ModelConfig& c, unsigned seed) {
  Model<double> m(c);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  for (double& p : m.params) p = u(rng);
  return m;
}

class Import : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bptt_import_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // The model's parameters under `rnn`/`head` paths instead of rnn./head., no metadata;
  // `extra` tensors added as they are.
  std::string write_plain(const Model<double>& m, const std::string& rnn, const std::string& head,
                          bool head_bias = true, bool f32 = false,
                          const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& extra = {}) {
    safetensors::Writer w;
    for (const ParamInfo& p : param_layout(m.cfg)) {
      std::string name = p.name;
      if (name.rfind("rnn.", 0) == 0) name = (rnn.empty() ? "" : rnn + ".") + name.substr(4);
      else if (name == "head.weight") name = head + ".weight";
      else if (name == "head.bias") {
        if (!head_bias) continue;
        name = head + ".bias";
      }
      if (f32) {
        std::vector<float> v(m.params.begin() + std::ptrdiff_t(p.offset),
                             m.params.begin() + std::ptrdiff_t(p.offset + p.size));
        w.add(name, p.shape, v.data());
      } else {
        w.add(name, p.shape, m.params.data() + p.offset);
      }
    }
    for (const auto& [name, shape] : extra) {
      std::int64_t n = 1;
      for (auto d : shape) n *= d;
      std::vector<double> v(std::size_t(n), 0.5);
      w.add(name, shape, v.data());
    }
    const std::string path = (dir_ / ("m" + std::to_string(files_++) + ".safetensors")).string();
    w.write(path);
    return path;
  }
  // The one-line error of loading `path` with `o`.
  std::string refusal(const std::string& path, const ImportOptions& o = {}) {
    try {
      plan_import(safetensors::File::read(path), o);
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      EXPECT_NE(m.find(path), std::string::npos) << m;
      return m;
    }
    ADD_FAILURE() << path << " was accepted";
    return "";
  }
  fs::path dir_;
  int files_ = 0;
};

TEST_F(Import, EveryCellAndOptionLoadsBackAsTheSameModel) {
  const std::vector<Variant> variants = {
      {CellKind::elman, 1, false, 0, true}, {CellKind::elman, 2, true, 0, false},
      {CellKind::lstm, 1, false, 0, true},  {CellKind::lstm, 2, true, 0, true},
      {CellKind::lstm, 2, false, 3, true},  {CellKind::lstm, 3, true, 2, false},
      {CellKind::gru, 1, false, 0, false},  {CellKind::gru, 2, true, 0, true}};
  unsigned seed = 1;
  for (const Variant& v : variants)
    for (const std::string rnn : {"", "encoder.lstm"})
      for (bool head_bias : {true, false}) {
        const ModelConfig cfg = config_of(v);
        Model<double> m = random_model(cfg, seed++);
        const std::string path = write_plain(m, rnn, "decoder.fc", head_bias);
        const auto f = safetensors::File::read(path);
        ASSERT_TRUE(is_plain_state_dict(f));
        EXPECT_EQ(stored_dtype(f), DType::f64);
        const Model<double> got = load_model<double>(f);
        EXPECT_EQ(got.cfg.cell, cfg.cell);
        EXPECT_EQ(got.cfg.input_size, cfg.input_size);
        EXPECT_EQ(got.cfg.hidden_size, cfg.hidden_size);
        EXPECT_EQ(got.cfg.num_layers, cfg.num_layers);
        EXPECT_EQ(got.cfg.output_size, cfg.output_size);
        EXPECT_EQ(got.cfg.bidirectional, cfg.bidirectional);
        EXPECT_EQ(got.cfg.proj_size, cfg.proj_size);
        EXPECT_EQ(got.cfg.bias, cfg.bias);
        if (!head_bias) {  // a Linear without bias: bptt's head.bias is 0
          const ParamViews<double> V(cfg, m.params.data());
          std::fill(V.b_o, V.b_o + cfg.output_size, 0.0);
        }
        EXPECT_EQ(got.params, m.params) << path;
        const ImportPlan plan = plan_import(f);
        EXPECT_EQ(plan.rnn, rnn);
        EXPECT_EQ(plan.head, "decoder.fc");
      }
}

TEST_F(Import, Float32FilesComputeInFloat32AndOptionsApply) {
  const ModelConfig cfg = config_of({CellKind::elman, 1, false, 0, true});
  const Model<double> m = random_model(cfg, 7);
  const std::string path = write_plain(m, "rnn", "head", true, /*f32=*/true);
  const auto f = safetensors::File::read(path);
  EXPECT_EQ(stored_dtype(f), DType::f32);
  ImportOptions o;
  o.nonlinearity = Activation::relu;
  o.output_activation = Activation::sigmoid;
  const ImportPlan plan = plan_import(f, o);
  EXPECT_EQ(plan.cfg.nonlinearity, Activation::relu);
  EXPECT_EQ(plan.cfg.output_activation, Activation::sigmoid);
  const Model<float> got = import_model<float>(f, plan);
  for (std::size_t i = 0; i < m.params.size(); ++i) EXPECT_EQ(got.params[i], float(m.params[i]));
  // An LSTM has no nonlinearity to choose.
  const std::string lstm = write_plain(random_model(config_of({CellKind::lstm, 1, false, 0, true}), 8),
                                       "rnn", "head");
  EXPECT_THROW(plan_import(safetensors::File::read(lstm), o), Error);
}

TEST_F(Import, AmbiguousAndUnusableFilesAreRefusedWithWhatToPick) {
  const ModelConfig cfg = config_of({CellKind::gru, 1, false, 0, true});
  const Model<double> m = random_model(cfg, 3);
  // Two recurrent modules (the second one's tensors as extra, same shapes).
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> second;
  for (const ParamInfo& p : param_layout(cfg))
    if (p.name.rfind("rnn.", 0) == 0) second.push_back({"other." + p.name.substr(4), p.shape});
  const std::string two = write_plain(m, "enc", "fc", true, false, second);
  std::string e = refusal(two);
  EXPECT_NE(e.find("2 recurrent modules"), std::string::npos) << e;
  EXPECT_NE(e.find("enc"), std::string::npos) << e;
  EXPECT_NE(e.find("other"), std::string::npos) << e;
  EXPECT_NE(e.find("--rnn"), std::string::npos) << e;
  ImportOptions pick;
  pick.rnn = "enc";
  e = refusal(two, pick);  // the other module's tensors are left over
  EXPECT_NE(e.find("--head"), std::string::npos) << e;
  pick.head = "fc";
  EXPECT_EQ(plan_import(safetensors::File::read(two), pick).rnn, "enc");
  pick.rnn = "nowhere";
  e = refusal(two, pick);
  EXPECT_NE(e.find("no recurrent module at 'nowhere'"), std::string::npos) << e;

  // Two Linear layers that fit the output width.
  const std::string heads = write_plain(m, "enc", "fc", true, false, {{"fc2.weight", {4, 5}}});
  e = refusal(heads);
  EXPECT_NE(e.find("2 Linear layers"), std::string::npos) << e;
  EXPECT_NE(e.find("--head"), std::string::npos) << e;
  ImportOptions head;
  head.head = "fc2";
  head.rnn = "enc";
  EXPECT_EQ(plan_import(safetensors::File::read(heads), head).cfg.output_size, 4);

  // Unrelated tensors (an embedding).
  const std::string emb = write_plain(m, "enc", "fc", true, false, {{"embedding.weight", {10, 3}}});
  e = refusal(emb);
  EXPECT_NE(e.find("embedding.weight"), std::string::npos) << e;

  // No recurrent module; no head.
  safetensors::Writer w;
  const std::vector<double> v(6, 0.1);
  w.add("fc.weight", {2, 3}, v.data());
  w.write((dir_ / "linear.safetensors").string());
  EXPECT_FALSE(is_plain_state_dict(safetensors::File::read((dir_ / "linear.safetensors").string())));
  e = refusal((dir_ / "linear.safetensors").string());
  EXPECT_NE(e.find("no nn.RNN"), std::string::npos) << e;
  // --head and --no-head together.
  ImportOptions both;
  both.head = "fc";
  both.no_head = true;
  try {
    plan_import(safetensors::File::read(heads), both);
    ADD_FAILURE() << "--head with --no-head accepted";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::usage);
    EXPECT_EQ(err.where(), "--no-head");
  }

  // Gate rows that fit no cell; a layer missing its weight_hh.
  safetensors::Writer w3;
  const std::vector<double> z(100, 0.1);
  w3.add("weight_ih_l0", {10, 3}, z.data());
  w3.add("weight_hh_l0", {10, 5}, z.data());
  w3.add("fc.weight", {2, 5}, z.data());
  w3.write((dir_ / "rows.safetensors").string());
  e = refusal((dir_ / "rows.safetensors").string());
  EXPECT_NE(e.find("not 1, 3 or 4 gates"), std::string::npos) << e;
}

// A file holding only the RNN (a bare module, or one under a path) is a head-less model: its
// output is the top layer's h, D·H_out wide, for every cell and option; so is a file whose Linear
// is left out with no_head.
TEST_F(Import, WithoutALinearTheModelIsHeadless) {
  for (const Variant& v : std::vector<Variant>{{CellKind::elman, 1, false, 0, true},
                                               {CellKind::lstm, 2, true, 3, true},
                                               {CellKind::gru, 2, false, 0, false}}) {
    ModelConfig with_head = config_of(v);
    ModelConfig cfg = with_head;
    cfg.head = false;
    cfg.output_size = cfg.output_width();
    const Model<double> full = random_model(with_head, 5);
    Model<double> m(cfg);  // the same recurrent tensors (they come first in the arena)
    std::copy(full.params.begin(), full.params.begin() + std::ptrdiff_t(m.params.size()),
              m.params.begin());
    for (const std::string& rnn : {std::string(""), std::string("encoder.rnn")}) {
      SCOPED_TRACE(std::string(to_string(v.cell)) + " rnn '" + rnn + "'");
      safetensors::Writer w;
      for (const ParamInfo& p : param_layout(cfg))
        w.add((rnn.empty() ? "" : rnn + ".") + p.name.substr(4), p.shape, m.params.data() + p.offset);
      const std::string path = (dir_ / "headless.safetensors").string();
      w.write(path);
      const ImportPlan plan = plan_import(safetensors::File::read(path));
      EXPECT_FALSE(plan.cfg.head);
      EXPECT_EQ(plan.cfg.output_size, cfg.output_width());
      const Model<double> got = load_model<double>(path);
      EXPECT_EQ(got.params, m.params);
      EXPECT_EQ(got.metadata.at("imported_head"), "(none)");
      // saved as a bptt file and read back: still head-less
      const std::string saved = (dir_ / "headless_bptt.safetensors").string();
      save_model(got, saved);
      const Model<double> again = load_model<double>(saved);
      EXPECT_FALSE(again.cfg.head);
      EXPECT_EQ(again.params, m.params);
    }
    // A file with a Linear, imported without it.
    const std::string plain = write_plain(full, "enc", "fc");
    ImportOptions none;
    none.no_head = true;
    none.rnn = "enc";
    const ImportPlan plan = plan_import(safetensors::File::read(plain), none);
    EXPECT_FALSE(plan.cfg.head);
    EXPECT_EQ(import_model<double>(safetensors::File::read(plain), plan).params, m.params);
  }
}

TEST_F(Import, ModelsLoadFromMemory) {
  const ModelConfig cfg = config_of({CellKind::lstm, 2, true, 0, true});
  const Model<double> m = random_model(cfg, 11);
  const std::string plain = write_plain(m, "enc", "fc");
  const std::string bptt_file = (dir_ / "bptt.safetensors").string();
  save_model(m, bptt_file);
  for (const std::string& path : {plain, bptt_file}) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
    const Model<double> got = load_model<double>(safetensors::File::from_memory(bytes.data(), bytes.size(), "buffer"));
    EXPECT_EQ(got.params, m.params) << path;
    // A truncated buffer is refused with one line naming it, like a truncated file.
    try {
      safetensors::File::from_memory(bytes.data(), bytes.size() - 3, "buffer");
      ADD_FAILURE() << "a truncated buffer was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("buffer"), std::string::npos) << e.what();
    }
    EXPECT_THROW(safetensors::File::from_memory(bytes.data(), 5, "buffer"), Error);
  }
}

}  // namespace
}  // namespace bptt
