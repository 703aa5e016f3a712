// bptt._bptt: the engine on NumPy arrays (docs/python.md). python/bptt/__init__.py is the public
// face: it checks keywords and their types, then calls these. Every failure is a bptt::Error,
// raised as bptt.Error (a ValueError) with the message the command prints and the error's kind.
//
// Threads: the GIL is released while the engine runs. A Model may be used from several Python
// threads at once (readers share it; load_state_dict waits for them); a Stream takes one caller
// at a time.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "bptt/bptt.hpp"
#include "bptt/version.hpp"
#include "embed.hpp"
#include "diagnose_methods.hpp"

namespace py = pybind11;

namespace bptt::python {

namespace {

// ---------------------------------------------------------------------------------------------
// Arrays in
// ---------------------------------------------------------------------------------------------

std::string shape_text(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + "]";
}

// Any object numpy.asarray takes, as an array of numbers (bool, integer or floating point).
py::array numeric_array(py::handle obj, const std::string& where) {
  py::array a = py::array::ensure(obj);
  if (!a) {
    PyErr_Clear();
    throw Error(ErrorKind::value, where, "is not an array of numbers",
                "pass a numpy array (or a nested list of numbers)");
  }
  const char kind = a.dtype().kind();
  if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f')
    throw Error(ErrorKind::value, where,
                "holds " + std::string(py::str(a.dtype())) + ", not real numbers",
                "pass float32 or float64 values");
  return a;
}

// `obj` as a C-contiguous array of T: the same array when it already is one (no copy), else
// converted once. `dims` are the expected sizes (-1: any), `names` their letters for messages.
template <class T>
py::array_t<T, py::array::c_style> typed_array(
    py::handle obj, const std::string& where, const std::vector<py::ssize_t>& dims,
    const char* names,
    const char* shape_hint = "arrays are time-major, as everywhere in bptt (docs/python.md)") {
  py::array a = numeric_array(obj, where);
  if constexpr (std::is_integral_v<T>) {
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u')
      throw Error(ErrorKind::value, where,
                  "holds " + std::string(py::str(a.dtype())) + ", not integers",
                  "pass an integer array, e.g. a.astype(numpy.int64)");
  }
  std::string want = "[";
  for (std::size_t d = 0; d < dims.size(); ++d)
    want += (d ? ", " : "") + std::string(1, names[d]) +
            (dims[d] >= 0 ? " = " + std::to_string(dims[d]) : "");
  want += "]";
  bool fits = a.ndim() == py::ssize_t(dims.size());
  for (std::size_t d = 0; fits && d < dims.size(); ++d)
    fits = dims[d] < 0 || a.shape(py::ssize_t(d)) == dims[d];
  if (!fits)
    throw Error(ErrorKind::shape, where, "has shape " + shape_text(a) + ", expected " + want,
                shape_hint);
  auto out = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!out) {
    PyErr_Clear();
    throw Error(ErrorKind::value, where, "cannot be converted to " + std::string(py::str(py::dtype::of<T>())));
  }
  return out;
}

// A batch of NumPy arrays: the view points into them (no copies for C-contiguous arrays of the
// model's dtype), and `arrays` keeps them alive. Destroy it with the GIL held.
template <class Real>
struct ArrayBatch {
  BatchView<Real> view;
  std::vector<py::object> arrays;

  template <class T>
  std::span<const T> keep(py::array_t<T, py::array::c_style> a) {
    const std::span<const T> s(a.data(), std::size_t(a.size()));
    arrays.push_back(std::move(a));
    return s;
  }
};

template <class Real>
std::unique_ptr<ArrayBatch<Real>> make_batch(const ModelConfig& c, const std::string& verb,
                                             py::handle x, py::handle y,
                                             std::optional<LossKind> loss, py::handle mask,
                                             py::handle lengths, py::handle h0, py::handle c0) {
  auto ab = std::make_unique<ArrayBatch<Real>>();
  BatchView<Real>& b = ab->view;
  auto xa = typed_array<Real>(x, verb + ": x", {-1, -1, c.input_size}, "TBI");
  b.T = int(xa.shape(0));
  b.B = int(xa.shape(1));
  if (b.T < 1 || b.B < 1)
    throw Error(ErrorKind::shape, verb + ": x", "has shape " + shape_text(xa) +
                "; needs at least one time step and one sequence");
  const py::ssize_t T = b.T, B = b.B;
  b.x = ab->keep(std::move(xa));
  if (loss) {
    if (y.is_none())
      throw Error(ErrorKind::usage, verb + ": y", "is required", "pass the targets");
    if (*loss == LossKind::xent)
      b.classes = ab->keep(typed_array<std::int64_t>(y, verb + ": y", {T, B}, "TB"));
    else
      b.y = ab->keep(typed_array<Real>(y, verb + ": y", {T, B, c.output_size}, "TBO"));
  }
  if (!mask.is_none()) b.mask = ab->keep(typed_array<Real>(mask, verb + ": mask", {T, B}, "TB"));
  if (!lengths.is_none())
    b.lengths = ab->keep(typed_array<std::int64_t>(lengths, verb + ": lengths", {B}, "B"));
  if (!h0.is_none())
    b.h0 = ab->keep(
        typed_array<Real>(h0, verb + ": h0", {c.units(), B, c.state_size()}, "LBH"));
  if (!c0.is_none()) {
    if (c.cell != CellKind::lstm)
      throw Error(ErrorKind::usage, verb + ": c0", "only an LSTM has a cell state",
                  "leave c0 out");
    b.c0 = ab->keep(typed_array<Real>(c0, verb + ": c0", {c.units(), B, c.hidden_size}, "LBH"));
  }
  if (loss)
    b.validate(c, *loss, verb);
  else
    b.validate(c, verb);
  return ab;
}

// The training-mode masks of a pass (Model.grad/predict's masks=, a data file's tensors of the
// same names, docs/file_format.md) into the batch's view.
template <class Real>
void add_masks(const ModelConfig& c, const std::string& verb, py::handle masks,
               ArrayBatch<Real>& ab, std::optional<LossKind> loss) {
  if (masks.is_none()) return;
  if (!py::isinstance<py::dict>(masks))
    throw Error(ErrorKind::usage, verb + ": masks", "is not a dict",
                "pass {name: array} with the data file's names (mask_input, ...)");
  BatchView<Real>& b = ab.view;
  const py::ssize_t T = b.T, B = b.B, I = c.input_size, U = c.units(), HO = c.state_size(),
                    H = c.hidden_size, W = c.output_width(), GH = py::ssize_t(c.gates()) * H;
  std::vector<std::string> weight_names;
  for (const ParamInfo& p : param_layout(c))
    if (p.name.rfind("rnn.weight_hh_l", 0) == 0) weight_names.push_back("mask_" + p.name.substr(4));
  std::vector<py::array_t<Real, py::array::c_style>> weights(weight_names.size());
  std::size_t given_weights = 0;
  const py::dict d = py::reinterpret_borrow<py::dict>(masks);
  for (auto item : d) {
    const std::string key = py::str(item.first);
    const std::string where = verb + ": masks[" + key + "]";
    const py::handle v = item.second;
    if (key == "mask_input")
      b.mask_input = ab.keep(typed_array<Real>(v, where, {B, I}, "BI"));
    else if (key == "mask_recurrent")
      b.mask_recurrent = ab.keep(typed_array<Real>(v, where, {U, B, HO}, "LBH"));
    else if (key == "mask_output")
      b.mask_output = ab.keep(typed_array<Real>(v, where, {B, W}, "BW"));
    else if (key == "zoneout_h")
      b.zoneout_h = ab.keep(typed_array<Real>(v, where, {T, U, B, HO}, "TLBH"));
    else if (key == "zoneout_c") {
      if (c.cell != CellKind::lstm)
        throw Error(ErrorKind::usage, where, "only an LSTM has a cell state", "leave it out");
      b.zoneout_c = ab.keep(typed_array<Real>(v, where, {T, U, B, H}, "TLBH"));
    } else {
      const auto it = std::find(weight_names.begin(), weight_names.end(), key);
      if (it == weight_names.end())
        throw Error(ErrorKind::usage, where, "is not a mask of this model",
                    "the names are mask_input, mask_recurrent, mask_output, zoneout_h, "
                    "zoneout_c (LSTM) and mask_weight_hh_l{k}[_reverse]");
      weights[std::size_t(it - weight_names.begin())] = typed_array<Real>(v, where, {GH, HO}, "GH");
      ++given_weights;
    }
  }
  if (given_weights > 0) {  // all of them, one after the other ([L·D, G·H, H_out])
    if (given_weights != weight_names.size())
      throw Error(ErrorKind::usage, verb + ": masks",
                  "holds some weight-drop masks but not all",
                  "give mask_weight_hh_l{k}[_reverse] for every W_hh, or none");
    py::array_t<Real> all({py::ssize_t(weights.size()) * GH * HO});
    Real* out = all.mutable_data();
    for (const auto& w : weights) out = std::copy(w.data(), w.data() + w.size(), out);
    b.mask_weight_hh = ab.keep(py::array_t<Real, py::array::c_style>(std::move(all)));
  }
  if (loss)
    b.validate(c, *loss, verb);
  else
    b.validate(c, verb);
}

// ---------------------------------------------------------------------------------------------
// Arrays out
// ---------------------------------------------------------------------------------------------

template <class Real>
py::array_t<Real> new_array(const std::vector<std::int64_t>& shape, const Real* data) {
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  py::array_t<Real> a(dims);
  if (a.size() > 0) std::memcpy(a.mutable_data(), data, std::size_t(a.size()) * sizeof(Real));
  return a;
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

// What a call reuses from the last one of the same size (the C++ API's callers keep their
// Workspace too): taken by one call at a time, a concurrent call allocates its own.
template <class Real>
struct Scratch {
  std::mutex busy;
  std::unique_ptr<Workspace<Real>> ws;
  std::unique_ptr<Inference<Real>> inference;  // predict's (bptt/infer.hpp)
};

template <class Real>
struct Engine {
  Model<Real> model;
  mutable std::shared_mutex lock;  // readers: every call; writer: load_state_dict
  Scratch<Real> scratch;
};

class PyModel {
 public:
  // bf16: a float model whose calls run with bfloat16 products (bptt/precision.hpp).
  template <class Real>
  explicit PyModel(Model<Real> m, bool bf16 = false) : bf16_(bf16) {
    auto e = std::make_unique<Engine<Real>>();
    e->model = std::move(m);
    engine_ = std::move(e);
  }

  // Runs f on the engine, at the model's precision (objects f builds keep it).
  template <class F>
  decltype(auto) visit(F&& f) {
    const MatmulScope precision(bf16_ ? Matmul::bf16 : MatmulScope::current());
    return std::visit([&](auto& e) -> decltype(auto) { return f(*e); }, engine_);
  }
  const ModelConfig& cfg() const {
    return std::visit([](const auto& e) -> const ModelConfig& { return e->model.cfg; }, engine_);
  }
  DType dtype() const {
    return bf16_ ? DType::bf16 : engine_.index() == 0 ? DType::f32 : DType::f64;
  }

 private:
  bool bf16_ = false;
  std::variant<std::unique_ptr<Engine<float>>, std::unique_ptr<Engine<double>>> engine_;
};

template <class Real>
Model<Real> make_model(const ModelConfig& cfg, std::uint64_t seed, double forget_bias) {
  Model<Real> m(cfg);
  init_model(m, seed, forget_bias);
  return m;
}

PyModel new_model(const std::string& cell, int input_size, int hidden_size, int num_layers,
                  int output_size, const std::string& output_activation,
                  const std::string& nonlinearity, bool bidirectional, int proj_size, bool bias,
                  const std::string& initial_state, const std::string& readout, bool head,
                  const std::string& dtype, std::uint64_t seed, double forget_bias,
                  bool layer_norm, double zoneout_h, double zoneout_c) {
  ModelConfig c;
  c.cell = parse_cell(cell, "Model: cell");
  c.nonlinearity = parse_activation(nonlinearity, "Model: nonlinearity");
  c.output_activation = parse_activation(output_activation, "Model: output_activation");
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  c.num_layers = num_layers;
  c.output_size = output_size;
  c.bidirectional = bidirectional;
  c.proj_size = proj_size;
  c.bias = bias;
  c.initial_state = parse_initial_state(initial_state, "Model: initial_state");
  c.readout = parse_readout(readout, "Model: readout");
  c.head = head;
  c.layer_norm = layer_norm;
  c.zoneout_h = zoneout_h;
  c.zoneout_c = zoneout_c;
  c.validate("Model");
  if (forget_bias != 0 && c.cell != CellKind::lstm)
    throw Error(ErrorKind::usage, "Model: forget_bias", "only an LSTM has a forget gate",
                "leave forget_bias out, or use cell=\"lstm\"");
  const DType d = parse_dtype(dtype, "Model: dtype");
  if (d == DType::f64) return PyModel(make_model<double>(c, seed, forget_bias));
  return PyModel(make_model<float>(c, seed, forget_bias), d == DType::bf16);
}

PyModel load(const std::string& path, const std::string& dtype) {
  const auto file = safetensors::File::read(path);
  const DType d = dtype.empty() ? stored_dtype(file) : parse_dtype(dtype, "load: dtype");
  if (d == DType::f64) return PyModel(load_model<double>(file));
  return PyModel(load_model<float>(file), d == DType::bf16);
}

// What a training task stored beside the network, as strings (bytes that are not UTF-8 are
// replaced).
py::dict metadata_dict(PyModel& m) {
  return m.visit([](auto& e) {
    py::dict d;
    for (const auto& [k, v] : e.model.metadata)
      d[py::str(k)] = py::bytes(v).attr("decode")("utf-8", "replace");
    return d;
  });
}

// The metadata keys of a model file, typed: the configuration's ints and bools as such, its
// strings (cell, activations, ...) and the task's own keys (task, vocab, ...) as strings.
py::dict config_dict(PyModel& m) {
  py::dict d = metadata_dict(m);
  for (const auto& [key, value] : config_metadata(m.cfg())) {
    if (value == "true" || value == "false")
      d[py::str(key)] = py::bool_(value == "true");
    else if (key == "zoneout_h" || key == "zoneout_c")
      d[py::str(key)] = py::float_(std::stod(value));
    else if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos)
      d[py::str(key)] = py::int_(std::stoll(value));
    else
      d[py::str(key)] = py::str(value);
  }
  return d;
}

py::dict state_dict(PyModel& m) {
  return m.visit([](auto& e) {
    std::shared_lock l(e.lock);
    py::dict d;
    for (const ParamInfo& p : param_layout(e.model.cfg))
      d[py::str(p.name)] = new_array(p.shape, e.model.params.data() + p.offset);
    return d;
  });
}

void load_state_dict(PyModel& m, const py::dict& sd) {
  m.visit([&](auto& e) {
    using Real = typename std::decay_t<decltype(e.model.params)>::value_type;
    const std::vector<ParamInfo> layout = param_layout(e.model.cfg);
    std::vector<Real> params(e.model.params.size());
    std::string expected;
    for (const ParamInfo& p : layout) expected += (expected.empty() ? "" : ", ") + p.name;
    for (auto item : sd) {
      const std::string key = py::str(item.first);
      bool known = false;
      for (const ParamInfo& p : layout) known = known || p.name == key;
      if (!known)
        throw Error(ErrorKind::format, "load_state_dict: " + key,
                    "is not a tensor of this model", "the model's tensors are " + expected);
    }
    for (const ParamInfo& p : layout) {
      const py::str key(p.name);
      if (!sd.contains(key))
        throw Error(ErrorKind::format, "load_state_dict: " + p.name, "is missing",
                    "a state_dict holds every tensor of m.state_dict()");
      const std::vector<py::ssize_t> dims(p.shape.begin(), p.shape.end());
      const auto a = typed_array<Real>(sd[key], "load_state_dict: " + p.name, dims, "ABCD",
                                       "each tensor has the shape m.state_dict() gives it");
      for (py::ssize_t i = 0; i < a.size(); ++i)
        if (!std::isfinite(a.data()[i]))
          throw Error(ErrorKind::value, "load_state_dict: " + p.name,
                      "element " + std::to_string(i) + " is not finite",
                      "parameters must be finite");
      std::memcpy(params.data() + p.offset, a.data(), p.size * sizeof(Real));
    }
    py::gil_scoped_release release;
    std::unique_lock l(e.lock);
    e.model.params = std::move(params);
  });
}

// Checks `threads` the way the command's --threads does.
int thread_count(int threads, const std::string& where) {
  if (threads < 1 || threads > 1024)
    throw Error(ErrorKind::value, where + ": threads",
                "is " + std::to_string(threads) + ", outside [1, 1024]", "pass threads=1 or more");
  return threads;
}

// The workspace for (T, B): the cached one when it is free and fits, else a new one.
template <class Real, class F>
void with_workspace(Engine<Real>& e, int T, int B, int threads, F&& f) {
  std::unique_lock busy(e.scratch.busy, std::try_to_lock);
  if (busy.owns_lock()) {
    auto& ws = e.scratch.ws;
    if (!ws || ws->T() != T || ws->B() != B)  // the model's configuration never changes
      ws = std::make_unique<Workspace<Real>>(e.model.cfg, T, B, false, threads);
    ws->set_threads(threads);
    f(*ws);
  } else {
    Workspace<Real> ws(e.model.cfg, T, B, false, threads);
    f(ws);
  }
}

// The inference for B sequences: the cached one when it is free and fits, else a new one.
template <class Real, class F>
void with_inference(Engine<Real>& e, int B, int threads, F&& f) {
  std::unique_lock busy(e.scratch.busy, std::try_to_lock);
  if (busy.owns_lock()) {
    auto& inf = e.scratch.inference;
    if (!inf || inf->B() != B) inf = std::make_unique<Inference<Real>>(e.model.cfg, B, threads);
    inf->set_threads(threads);
    f(*inf);
  } else {
    Inference<Real> inf(e.model.cfg, B, threads);
    f(inf);
  }
}

py::tuple predict(PyModel& m, py::handle x, py::handle lengths, py::handle h0, py::handle c0,
                  py::handle masks, int threads) {
  thread_count(threads, "predict");
  return m.visit([&](auto& e) -> py::tuple {
    using Real = typename std::decay_t<decltype(e.model.params)>::value_type;
    const ModelConfig& c = e.model.cfg;
    const auto arrays =
        make_batch<Real>(c, "predict", x, py::none(), std::nullopt, py::none(), lengths, h0, c0);
    add_masks<Real>(c, "predict", masks, *arrays, std::nullopt);
    const BatchView<Real>& batch = arrays->view;
    const std::int64_t T = batch.T, B = batch.B;
    py::array_t<Real> y_hat({py::ssize_t(T), py::ssize_t(B), py::ssize_t(c.output_size)});
    std::vector<Real> hn, cn;
    {
      Real* out = y_hat.mutable_data();
      py::gil_scoped_release release;
      std::shared_lock l(e.lock);
      with_inference(e, batch.B, threads, [&](Inference<Real>& inf) {
        inf.run(e.model, batch, {.yhat = {out, std::size_t(T * B * c.output_size)}});
        hn.assign(inf.h_n().begin(), inf.h_n().end());
        cn.assign(inf.c_n().begin(), inf.c_n().end());
      });
    }
    py::object c_n = py::none();
    if (c.cell == CellKind::lstm) c_n = new_array<Real>({c.units(), B, c.hidden_size}, cn.data());
    return py::make_tuple(y_hat, new_array<Real>({c.units(), B, c.state_size()}, hn.data()), c_n);
  });
}

template <class Real>
double run_method(const Model<Real>& model, const BatchView<Real>& batch, LossKind loss,
                  const GradMethodSpec& method, Gradients<Real>& g, Engine<Real>* e,
                  int threads, std::uint64_t seed) {
  switch (method.method) {
    case GradMethod::uoro:
    case GradMethod::kf_rtrl:
    case GradMethod::snap1:
    case GradMethod::eprop:
      return online_loss_and_gradients(online_method(method.method), seed, model, batch, loss, g);
    case GradMethod::recompute: {
      const int K = method.K ? method.K : default_recompute_interval(batch.T);
      Recompute<Real> r(model.cfg, batch.T, batch.B, K, false, threads);
      return r.loss_and_gradients(model, batch, loss, g);
    }
    case GradMethod::truncated:
      return truncated_loss_and_gradients(model, batch, loss, method.K, g);
    case GradMethod::rtrl:
      return rtrl_loss_and_gradients(model, batch, loss, g);
    case GradMethod::numeric:
      if constexpr (std::is_same_v<Real, double>) {
        const std::size_t n = numeric_gradient_count(model.cfg, batch.T, batch.B);
        if (n > cli::kNumericLimit)
          throw Error(ErrorKind::resource, "grad: method",
                      "numeric would perturb " + std::to_string(n) +
                          " numbers (2 forward passes each); the limit is " +
                          std::to_string(cli::kNumericLimit),
                      "check a smaller model or batch, or use method=\"bptt\"");
        return numeric_loss_and_gradients(model, batch, loss, g);
      }
      break;
    case GradMethod::bptt:
      break;
  }
  double L = 0;
  if (e) {
    with_workspace(*e, batch.T, batch.B, threads,
                   [&](Workspace<Real>& ws) { L = loss_and_gradients(model, batch, loss, ws, g); });
  } else {
    Workspace<Real> ws(model.cfg, batch.T, batch.B, false, threads);
    L = loss_and_gradients(model, batch, loss, ws, g);
  }
  return L;
}

// The gradients under the names of `bptt grad`'s file, as arrays of Out.
template <class Out, class Real>
py::dict grad_dict(const ModelConfig& c, const Gradients<Real>& g, std::int64_t T,
                   std::int64_t B, bool params_only = false) {
  auto array = [](const std::vector<std::int64_t>& shape, const Real* data) {
    if constexpr (std::is_same_v<Out, Real>) {
      return new_array<Real>(shape, data);
    } else {
      std::size_t n = 1;
      for (auto s : shape) n *= std::size_t(s);
      std::vector<Out> v(data, data + n);
      return new_array<Out>(shape, v.data());
    }
  };
  py::dict d;
  for (const ParamInfo& p : param_layout(c)) d[py::str(p.name)] = array(p.shape, g.params.data() + p.offset);
  if (params_only) return d;  // the online methods estimate ∂L/∂θ only
  d["x"] = array({T, B, c.input_size}, g.x.data());
  d["h0"] = array({c.units(), B, c.state_size()}, g.h0.data());
  if (c.cell == CellKind::lstm) d["c0"] = array({c.units(), B, c.hidden_size}, g.c0.data());
  return d;
}

py::tuple grad(PyModel& m, py::handle x, py::handle y, const std::string& loss_name,
               py::handle mask, py::handle lengths, py::handle h0, py::handle c0,
               py::handle masks, const std::string& method_name, int threads,
               std::uint64_t seed) {
  thread_count(threads, "grad");
  const LossKind loss = parse_loss(loss_name, "grad: loss");
  const GradMethodSpec method = parse_grad_method(method_name, "grad: method");
  return m.visit([&](auto& e) -> py::tuple {
    using Real = typename std::decay_t<decltype(e.model.params)>::value_type;
    const ModelConfig& c = e.model.cfg;
    // Central differences are taken in f64: an f32 model's values are read into double (as
    // `bptt grad` reads an F32 file), and the gradients returned in the model's precision.
    auto compute = [&]<class W>() -> py::tuple {
      const auto arrays = make_batch<W>(c, "grad", x, y, loss, mask, lengths, h0, c0);
      add_masks<W>(c, "grad", masks, *arrays, loss);
      const BatchView<W>& batch = arrays->view;
      Gradients<W> g(c, batch.T, batch.B);
      g.zero();
      double L = 0;
      {
        py::gil_scoped_release release;
        std::shared_lock l(e.lock);
        const ThreadCount on(threads);
        if constexpr (std::is_same_v<W, Real>) {
          L = run_method<W>(e.model, batch, loss, method, g, &e, threads, seed);
        } else {
          Model<W> wide(c);
          wide.params.assign(e.model.params.begin(), e.model.params.end());
          L = run_method<W>(wide, batch, loss, method, g, nullptr, threads, seed);
        }
      }
      return py::make_tuple(Real(L), grad_dict<Real>(c, g, batch.T, batch.B,
                                                     is_online(method.method)));
    };
    if (method.method == GradMethod::numeric && std::is_same_v<Real, float>)
      return compute.template operator()<double>();
    return compute.template operator()<Real>();
  });
}

std::string diagnose_json(PyModel& m, py::handle x, py::handle y, const std::string& loss_name,
                     py::handle mask, py::handle lengths, py::handle h0, py::handle c0,
                     int probes, int max_k, int threads, const std::vector<std::string>& methods,
                     int samples, std::uint64_t seed) {
  thread_count(threads, "diagnose");
  const LossKind loss = parse_loss(loss_name, "diagnose: loss");
  if (probes < 1 || probes > 4096)
    throw Error(ErrorKind::value, "diagnose: probes", "is " + std::to_string(probes) +
                ", outside [1, 4096]");
  if (max_k < 0)
    throw Error(ErrorKind::value, "diagnose: max_k", "is " + std::to_string(max_k) +
                ", must be >= 0 (0: every power of two below T)");
  return m.visit([&](auto& e) -> std::string {
    using Real = typename std::decay_t<decltype(e.model.params)>::value_type;
    const auto arrays =
        make_batch<Real>(e.model.cfg, "diagnose", x, y, loss, mask, lengths, h0, c0);
    const BatchView<Real>& batch = arrays->view;
    DiagnoseOptions o;
    o.probes = probes;
    o.max_truncation = max_k;
    py::gil_scoped_release release;
    std::shared_lock l(e.lock);
    const ThreadCount on(threads);
    if (!methods.empty())
      return cli::methods_json(e.model, batch, loss,
                               cli::MethodsRun{methods, samples, seed, "", true, loss_name,
                                               std::is_same_v<Real, float> ? "f32" : "f64"});
    return cli::diagnose_json(e.model, batch, loss, o);
  });
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

// The Real of a std::unique_ptr<Stream<Real>>.
template <class P>
struct RealOfT;
template <class R>
struct RealOfT<std::unique_ptr<Stream<R>>> {
  using type = R;
};
template <class P>
using RealOf = typename RealOfT<std::decay_t<P>>::type;

class PyStream {
 public:
  PyStream(PyModel& m, int n, int threads) {
    thread_count(threads, "stream");
    m.visit([&](auto& e) {
      using Real = typename std::decay_t<decltype(e.model.params)>::value_type;
      std::shared_lock l(e.lock);
      stream_ = std::make_unique<Stream<Real>>(e.model, n, threads);
    });
    const ModelConfig& c = m.cfg();
    n_ = n;
    I_ = c.input_size;
    O_ = c.output_size;
  }

  py::array step(py::handle x, py::handle out) {
    return std::visit(
        [&](auto& s) -> py::array {
          using Real = RealOf<decltype(s)>;
          // The fast path: already a C-contiguous [N, I] array of Real, used as it is.
          py::array_t<Real, py::array::c_style> xa;
          if (py::isinstance<py::array_t<Real, py::array::c_style>>(x)) {
            xa = py::reinterpret_borrow<py::array_t<Real, py::array::c_style>>(x);
            if (xa.ndim() != 2 || xa.shape(0) != n_ || xa.shape(1) != I_)
              xa = typed_array<Real>(x, "step: x", {n_, I_}, "NI");
          } else {
            xa = typed_array<Real>(x, "step: x", {n_, I_}, "NI");
          }
          py::array_t<Real, py::array::c_style> ya;
          if (out.is_none()) {
            ya = py::array_t<Real, py::array::c_style>({n_, O_});
          } else {
            if (!py::isinstance<py::array_t<Real, py::array::c_style>>(out))
              throw Error(ErrorKind::value, "step: out",
                          "must be a C-contiguous array of the model's dtype",
                          "allocate it with numpy.empty((n, O), dtype)");
            ya = py::reinterpret_borrow<py::array_t<Real, py::array::c_style>>(out);
            if (ya.ndim() != 2 || ya.shape(0) != n_ || ya.shape(1) != O_ || !ya.writeable())
              throw Error(ErrorKind::shape, "step: out",
                          "has shape " + shape_text(ya) + ", expected a writable [N = " +
                              std::to_string(n_) + ", O = " + std::to_string(O_) + "]");
            if (ya.data() == xa.data())
              throw Error(ErrorKind::usage, "step: out", "is x itself", "pass another array");
          }
          const Real* xp = xa.data();
          Real* yp = ya.mutable_data();
          {
            py::gil_scoped_release release;
            std::lock_guard g(busy_);
            s->step(xp, yp);
          }
          return ya;
        },
        stream_);
  }

  void reset_all() {
    std::lock_guard g(busy_);
    std::visit([](auto& s) { s->reset(); }, stream_);
  }
  void reset(int n) {
    if (n < 0 || n >= n_)
      throw Error(ErrorKind::value, "reset", "stream " + std::to_string(n) + " is outside [0, " +
                  std::to_string(n_) + ")");
    std::lock_guard g(busy_);
    std::visit([n](auto& s) { s->reset(n); }, stream_);
  }

  // The states as arrays that share the stream's memory (writing them sets where the next step
  // starts from), kept alive by `self`.
  py::object state(py::handle self, bool cell) {
    return std::visit(
        [&](auto& s) -> py::object {
          using Real = RealOf<decltype(s)>;
          const ModelConfig& c = s->config();
          std::span<Real> v = cell ? s->c() : s->h();
          if (v.empty()) return py::none();
          const py::ssize_t w = cell ? c.hidden_size : c.state_size();
          return py::array_t<Real>({py::ssize_t(c.units()), py::ssize_t(n_), w}, v.data(), self);
        },
        stream_);
  }
  py::object logits(py::handle self) {
    return std::visit(
        [&](auto& s) -> py::object {
          using Real = RealOf<decltype(s)>;
          std::span<const Real> z = s->logits();
          py::array_t<Real> a({py::ssize_t(n_), py::ssize_t(O_)}, z.data(), self);
          py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
          return a;
        },
        stream_);
  }
  int streams() const { return int(n_); }
  int threads() const {
    return std::visit([](const auto& s) { return s->threads(); }, stream_);
  }

 private:
  std::variant<std::unique_ptr<Stream<float>>, std::unique_ptr<Stream<double>>> stream_;
  std::mutex busy_;
  py::ssize_t n_ = 0, I_ = 0, O_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The verbs
// ---------------------------------------------------------------------------------------------

py::list train(const std::vector<std::string>& args, py::object on_progress) {
  py::list rows;
  std::optional<py::error_already_set> pending;  // KeyboardInterrupt, or on_progress's error
  cli::TrainHooks hooks;
  hooks.on_row = [&](const cli::TrainRow& r) {
    py::gil_scoped_acquire gil;
    py::dict d;
    d["step"] = r.step;
    d["elapsed_s"] = r.elapsed_s;
    d["train_loss"] = r.train_loss;
    d["val_loss"] = r.has_val_loss ? py::object(py::float_(r.val_loss)) : py::object(py::none());
    d["lr"] = r.lr;
    d["grad_norm"] = r.grad_norm;
    d["throughput"] = r.throughput;
    if (r.skipped_nonfinite >= 0) d["skipped_nonfinite"] = r.skipped_nonfinite;
    rows.append(d);
    if (!on_progress.is_none() && !pending) {
      try {
        on_progress(d);
      } catch (py::error_already_set& err) {
        pending.emplace(std::move(err));
      }
    }
  };
  hooks.stop = [&] {
    if (pending) return true;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {  // a signal's Python handler raised (Ctrl-C: KeyboardInterrupt)
      pending.emplace();
      return true;
    }
    return false;
  };
  {
    py::gil_scoped_release release;
    const cli::WithTrainHooks with(hooks);
    cli::run_verb(args);
  }
  if (pending) throw std::move(*pending);
  return rows;
}

std::string run_verb_output(const std::vector<std::string>& args) {
  std::string out;
  py::gil_scoped_release release;
  const cli::CaptureOutput capture(out);
  cli::run_verb(args);
  return out;
}

// bench/python_overhead.py: the seconds of each of `reps` calls of the same computation
// through the C++ API, with the batch, the workspace, the gradients (or the stream and its
// output) built once before the timing, as a C++ program that calls it repeatedly keeps them:
// "grad" (loss_and_gradients), "predict" (forward and the final state) or "step" (Stream::step
// of x[0] on a stream of B sequences).
py::list cpp_timings(PyModel& m, py::handle x, py::handle y, const std::string& loss_name,
                     const std::string& what, int reps, int threads) {
  thread_count(threads, "cpp_timings");
  const LossKind loss = parse_loss(loss_name, "cpp_timings: loss");
  std::vector<double> seconds;
  m.visit([&](auto& e) {
    using Real = typename std::decay_t<decltype(e.model.params)>::value_type;
    const ModelConfig& c = e.model.cfg;
    // The C++ side owns its batch (a copy, made before the timing).
    const auto arrays = make_batch<Real>(c, "cpp_timings", x, y, loss, py::none(), py::none(),
                                         py::none(), py::none());
    const Batch<Real> batch(arrays->view);
    py::gil_scoped_release release;
    const ThreadCount on(threads);
    using clock = std::chrono::steady_clock;
    auto timed = [&](auto&& call) {
      for (int r = 0; r < reps; ++r) {
        const auto t0 = clock::now();
        call();
        seconds.push_back(std::chrono::duration<double>(clock::now() - t0).count());
      }
    };
    if (what == "grad") {
      Workspace<Real> ws(c, batch.T, batch.B, false, threads);
      Gradients<Real> g(c, batch.T, batch.B);
      timed([&] {
        g.zero();
        loss_and_gradients(e.model, batch, loss, ws, g);
      });
    } else if (what == "predict") {
      Inference<Real> inf(c, batch.B, threads);
      std::vector<Real> out(std::size_t(batch.T) * batch.B * c.output_size);
      timed([&] { inf.run(e.model, batch, {.yhat = out}); });
    } else if (what == "step") {
      Stream<Real> s(e.model, batch.B, threads);
      std::vector<Real> out(std::size_t(batch.B) * c.output_size);
      timed([&] { s.step(batch.x.data(), out.data()); });
    } else {
      throw Error(ErrorKind::usage, "cpp_timings", "unknown computation '" + what + "'",
                  "use grad, predict or step");
    }
  });
  return py::cast(seconds);
}

[[noreturn]] void raise_error(const std::string& kind, const std::string& where,
                              const std::string& what, const std::string& hint) {
  for (ErrorKind k : {ErrorKind::usage, ErrorKind::io, ErrorKind::format, ErrorKind::shape,
                      ErrorKind::value, ErrorKind::resource})
    if (to_string(k) == kind) throw Error(k, where, what, hint);
  throw Error(ErrorKind::usage, where, what, hint);
}

}  // namespace

}  // namespace bptt::python

PYBIND11_MODULE(_bptt, m) {
  using namespace bptt;
  using namespace bptt::python;
  m.doc() = "bptt's engine on NumPy arrays; use the package bptt (docs/python.md)";
  m.attr("__version__") = BPTT_VERSION_STRING;

  // bptt.Error: a ValueError carrying kind, where, problem and hint. Created once and kept for
  // the interpreter's life (a static py::object would be released after the interpreter).
  static PyObject* error_type =
      PyErr_NewException("bptt.Error", PyExc_ValueError, nullptr);
  m.attr("Error") = py::handle(error_type);
  // Messages may name files whose names are not UTF-8: undecodable bytes are replaced.
  static auto text = [](const std::string& s) {
    return py::reinterpret_steal<py::object>(
        PyUnicode_DecodeUTF8(s.data(), py::ssize_t(s.size()), "replace"));
  };
  static auto raise = [](const std::string& message, std::string_view kind,
                         const std::string& where, const std::string& problem,
                         const std::string& hint) {
    py::object err = py::reinterpret_steal<py::object>(
        PyObject_CallFunctionObjArgs(error_type, text(message).ptr(), nullptr));
    if (!err) return;  // the call set its own exception
    err.attr("kind") = text(std::string(kind));
    err.attr("where") = text(where);
    err.attr("problem") = text(problem);
    err.attr("hint") = text(hint);
    PyErr_SetObject(error_type, err.ptr());
  };
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::bad_alloc&) {  // as the command reports it
      raise("out of memory (hint: use smaller B, T or H)", to_string(ErrorKind::resource), "",
            "out of memory", "use smaller B, T or H");
    } catch (const Error& e) {
      raise(e.what(), to_string(e.kind()), e.where(), e.problem(), e.hint());
    }
  });

  py::class_<PyModel>(m, "_Model")
      .def_property_readonly("config", &config_dict)
      .def_property_readonly("metadata", &metadata_dict)
      .def_property_readonly("dtype",
                             [](const PyModel& self) { return std::string(to_string(self.dtype())); })
      .def_property_readonly("param_count",
                             [](const PyModel& self) { return param_count(self.cfg()); })
      .def("save",
           [](PyModel& self, const std::string& path) {
             self.visit([&](auto& e) {
               py::gil_scoped_release release;
               std::shared_lock l(e.lock);
               save_model(e.model, path);
             });
           })
      .def("state_dict", &state_dict)
      .def("load_state_dict", &load_state_dict)
      .def("predict", &predict)
      .def("grad", &grad)
      .def("diagnose", &diagnose_json);

  py::class_<PyStream>(m, "Stream")
      .def("step", &PyStream::step, py::arg("x"), py::arg("out") = py::none(),
           "Advances every stream by one step: x [N, I] -> y [N, O] (a new array, or `out`)")
      .def("reset", &PyStream::reset_all, "Every stream back to the model's initial state")
      .def("reset", &PyStream::reset, py::arg("n"), "Stream n back to the model's initial state")
      .def_property_readonly("h", [](py::object self) {
        return self.cast<PyStream&>().state(self, false);
      }, "The states h [L, N, H_out] (writable: sets where the next step starts)")
      .def_property_readonly("c", [](py::object self) {
        return self.cast<PyStream&>().state(self, true);
      }, "The LSTM cell states c [L, N, H] (writable), or None")
      .def_property_readonly("logits", [](py::object self) {
        return self.cast<PyStream&>().logits(self);
      }, "The head's logits z [N, O] of the last step (read-only)")
      .def_property_readonly("streams", &PyStream::streams)
      .def_property_readonly("threads", &PyStream::threads);

  m.def("_new_model", &new_model);
  m.def("_load", &load);
  m.def("_stream", [](PyModel& model, int n, int threads) {
    return std::make_unique<PyStream>(model, n, threads);
  }, py::keep_alive<0, 1>());
  m.def("_train", &train);
  m.def("_run_verb_output", &run_verb_output);
  m.def("_verb_options", &cli::verb_options);
  m.def("_raise", &raise_error);
  m.def("_cpp_timings", &cpp_timings);
}
