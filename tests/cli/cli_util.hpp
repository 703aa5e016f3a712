// Shared helpers for the tests of the `bptt` command (tests/cli/test_cli*.cpp):
//   - run_cli(): runs the binary (BPTT_CLI_PATH) with posix_spawn and captures its exit status,
//     stdout and stderr separately; a sanitizer report on stderr fails the test
//     (expect_no_sanitizer_report), whatever the exit status;
//   - CliTest: a per-test temporary directory, "work/" for the files a command reads and writes
//     and "io/" for the captured output, so that "the command left no file behind" is a
//     comparison of two listings of work/;
//   - FileSpec: a safetensors file held in memory (metadata + tensors in order) that a test
//     can change one piece of before writing it with bptt::safetensors::Writer;
//   - small_model() / small_data(): a valid model and data file for given sizes;
//   - rejected(): the contract for bad input: exit status 2, nothing on stdout, exactly one line
//     on stderr naming the file and the tensor or field, no output or temporary file left.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bptt/safetensors.hpp"
#include "support/compare.hpp"
#include "support/dead_pid.hpp"

extern char** environ;

namespace bptt::cli_test {

namespace fs = std::filesystem;
namespace st = bptt::safetensors;

inline const std::string kTorchDir = std::string(BPTT_FIXTURE_DIR) + "/torch/";

// ---------------------------------------------------------------------------------------------
// Running the binary

struct RunResult {
  int code = -1;         // exit status; 128 + signal number when killed by a signal
  bool signaled = false;
  std::string out, err;  // captured stdout and stderr
  std::string command;   // for messages
};

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

// The first line of `err` that is part of a sanitizer report, or "" when there is none: UBSan's
// "runtime error:", "AddressSanitizer", "LeakSanitizer", or "ERROR: " followed on its line by
// "Sanitizer" (the header of every sanitizer's report, "==pid==ERROR: ThreadSanitizer: ...").
inline std::string sanitizer_report(const std::string& err) {
  std::stringstream lines(err);
  for (std::string l; std::getline(lines, l);) {
    for (const char* p : {"runtime error:", "AddressSanitizer", "LeakSanitizer"})
      if (l.find(p) != std::string::npos) return l;
    const std::size_t e = l.find("ERROR: ");
    if (e != std::string::npos && l.find("Sanitizer", e) != std::string::npos) return l;
  }
  return "";
}

// Under the asan preset the binaries are built with ASan and UBSan, which report on stderr
// and may still exit with the status a test expects (UBSan goes on after a report; a leak
// report comes at exit): every spawned command's stderr goes through this, which adds a
// non-fatal failure naming the command and showing the report.
inline void expect_no_sanitizer_report(const std::string& err, const std::string& command) {
  const std::string line = sanitizer_report(err);
  if (line.empty()) return;
  ADD_FAILURE() << "sanitizer report in the stderr of " << command << ": " << line
                << "\n  stderr (first 8000 bytes): [" << err.substr(0, 8000) << "]";
}

// Runs `bptt args...` with stdin from `stdin_path` (/dev/null by default) and stdout/stderr into
// files in `capture_dir`. The environment is ours, plus OPENBLAS_NUM_THREADS=1 unless it is set
// already.
inline RunResult run_cli(const std::vector<std::string>& args, const fs::path& capture_dir,
                         const std::string& stdin_path = "/dev/null") {
  RunResult r;
  r.command = "bptt";
  for (const std::string& a : args) r.command += " '" + a + "'";

  const std::string out_path = (capture_dir / "stdout").string();
  const std::string err_path = (capture_dir / "stderr").string();
  std::vector<std::string> argv_s = {BPTT_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  bool has_blas_threads = false;
  for (char** e = environ; e && *e; ++e) {
    env_s.emplace_back(*e);
    has_blas_threads = has_blas_threads || env_s.back().rfind("OPENBLAS_NUM_THREADS=", 0) == 0;
  }
  if (!has_blas_threads) env_s.emplace_back("OPENBLAS_NUM_THREADS=1");
  std::vector<char*> envp;
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    r.err = std::string("posix_spawn failed: ") + std::strerror(rc);
    return r;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    r.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signaled = true;
    r.code = 128 + WTERMSIG(status);
  }
  r.out = read_bytes(out_path);
  r.err = read_bytes(err_path);
  expect_no_sanitizer_report(r.err, r.command);
  return r;
}

inline std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "\n  command: " << r.command << "\n  exit: " << r.code
            << (r.signaled ? " (killed by a signal)" : "") << "\n  stdout: [" << r.out
            << "]\n  stderr: [" << r.err << "]";
}

// ---------------------------------------------------------------------------------------------
// Tensors and files in memory

inline st::Tensor tensor_f64(std::vector<std::int64_t> shape, const std::vector<double>& v) {
  st::Tensor t;
  t.dtype = st::ElemType::F64;
  t.shape = std::move(shape);
  t.bytes.resize(v.size() * sizeof(double));
  if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

inline st::Tensor tensor_f32(std::vector<std::int64_t> shape, const std::vector<double>& v) {
  std::vector<float> f(v.begin(), v.end());
  st::Tensor t;
  t.dtype = st::ElemType::F32;
  t.shape = std::move(shape);
  t.bytes.resize(f.size() * sizeof(float));
  if (!f.empty()) std::memcpy(t.bytes.data(), f.data(), t.bytes.size());
  return t;
}

inline st::Tensor tensor_i64(std::vector<std::int64_t> shape, const std::vector<std::int64_t>& v) {
  st::Tensor t;
  t.dtype = st::ElemType::I64;
  t.shape = std::move(shape);
  t.bytes.resize(v.size() * sizeof(std::int64_t));
  if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

inline st::Tensor tensor_i32(std::vector<std::int64_t> shape, const std::vector<std::int64_t>& v) {
  std::vector<std::int32_t> w(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) w[i] = static_cast<std::int32_t>(v[i]);
  st::Tensor t;
  t.dtype = st::ElemType::I32;
  t.shape = std::move(shape);
  t.bytes.resize(w.size() * sizeof(std::int32_t));
  if (!w.empty()) std::memcpy(t.bytes.data(), w.data(), t.bytes.size());
  return t;
}

inline std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

// `n` deterministic values in (-0.5, 0.5), different for every `seed`.
inline std::vector<double> values(std::int64_t n, int seed) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i)] = 0.5 * std::sin(1.7 * double(i) + 0.9 * seed + 0.3);
  return v;
}

// A safetensors file as data: metadata and tensors in order, editable, written with Writer.
struct FileSpec {
  std::map<std::string, std::string> meta;
  std::vector<std::pair<std::string, st::Tensor>> tensors;

  bool has(const std::string& name) const {
    return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
  }
  st::Tensor& at(const std::string& name) {
    for (auto& [n, t] : tensors)
      if (n == name) return t;
    throw std::runtime_error("FileSpec: no tensor " + name);
  }
  // Replaces the tensor of that name (in place) or appends it.
  void set(const std::string& name, st::Tensor t) {
    for (auto& [n, old] : tensors)
      if (n == name) {
        old = std::move(t);
        return;
      }
    tensors.emplace_back(name, std::move(t));
  }
  void erase(const std::string& name) {
    std::erase_if(tensors, [&](const auto& p) { return p.first == name; });
  }
  std::string write(const fs::path& p) const {
    st::Writer w;
    for (const auto& [k, v] : meta) w.set_metadata(k, v);
    for (const auto& [n, t] : tensors) w.add(n, t);
    w.write(p.string());
    return p.string();
  }
  static FileSpec from(const st::File& f) {
    FileSpec s;
    s.meta = f.metadata();
    for (const std::string& n : f.names()) s.tensors.emplace_back(n, f.at(n));
    return s;
  }
  // Every floating-point tensor converted to F32 (as a model stored in single precision).
  FileSpec to_f32(const st::File& f) const {
    FileSpec s = *this;
    for (auto& [n, t] : s.tensors)
      if (t.dtype == st::ElemType::F64) t = tensor_f32(t.shape, f.as_f64(n));
    return s;
  }
};

// Sizes of the small model and data the error tests start from.
struct Sizes {
  std::string cell = "lstm";  // elman, lstm, gru
  std::string theta = "identity";
  int I = 2, H = 3, L = 1, O = 2, T = 3, B = 2;
  bool bidirectional = false;  // `_reverse` twins; layer k > 0 and the head read 2H
  int gates() const { return cell == "lstm" ? 4 : cell == "gru" ? 3 : 1; }
  int D() const { return bidirectional ? 2 : 1; }
};

inline FileSpec small_model(const Sizes& s) {
  FileSpec m;
  m.meta = {{"cell", s.cell},
            {"nonlinearity", "tanh"},
            {"input_size", std::to_string(s.I)},
            {"hidden_size", std::to_string(s.H)},
            {"num_layers", std::to_string(s.L)},
            {"output_size", std::to_string(s.O)},
            {"output_activation", s.theta}};
  if (s.bidirectional) m.meta["bidirectional"] = "true";
  const std::int64_t GH = std::int64_t(s.gates()) * s.H, W = std::int64_t(s.D()) * s.H;
  int seed = 1;
  for (int k = 0; k < s.L; ++k)
    for (int d = 0; d < s.D(); ++d) {
      const std::string l = "_l" + std::to_string(k) + (d ? "_reverse" : "");
      const std::int64_t in = k == 0 ? s.I : W;
      m.set("rnn.weight_ih" + l, tensor_f64({GH, in}, values(GH * in, seed++)));
      m.set("rnn.weight_hh" + l, tensor_f64({GH, s.H}, values(GH * s.H, seed++)));
      m.set("rnn.bias_ih" + l, tensor_f64({GH}, values(GH, seed++)));
      m.set("rnn.bias_hh" + l, tensor_f64({GH}, values(GH, seed++)));
    }
  m.set("head.weight", tensor_f64({s.O, W}, values(std::int64_t(s.O) * W, seed++)));
  m.set("head.bias", tensor_f64({s.O}, values(s.O, seed++)));
  return m;
}

// x [T, B, I] and targets for `loss`: values in [0, 1] for mse/bce, classes for xent (I64).
inline FileSpec small_data(const Sizes& s, const std::string& loss) {
  FileSpec d;
  d.set("x", tensor_f64({s.T, s.B, s.I}, values(std::int64_t(s.T) * s.B * s.I, 50)));
  if (loss == "xent") {
    std::vector<std::int64_t> cls(std::size_t(s.T) * s.B);
    for (std::size_t i = 0; i < cls.size(); ++i) cls[i] = std::int64_t(i % std::size_t(s.O));
    d.set("y", tensor_i64({s.T, s.B}, cls));
  } else {
    std::vector<double> y = values(std::int64_t(s.T) * s.B * s.O, 60);
    for (double& v : y) v += 0.5;  // in [0, 1]
    d.set("y", tensor_f64({s.T, s.B, s.O}, y));
  }
  return d;
}

// A safetensors file by hand: u64 header length, header text, data bytes.
inline std::string raw_file(const std::string& header, const std::string& data = {}) {
  std::string s(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[std::size_t(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s + header + data;
}

// Tensor `name` of `got` has the dtype given and the reference's shape, and its values are within
// tol · scale of the reference's, one bound for the whole tensor: scale = max(1, max|ref|). Any
// non-finite value, in either file, fails (compare.hpp).
inline ::testing::AssertionResult matches(const st::File& got, const st::File& ref,
                                          const std::string& name, st::ElemType dtype,
                                          double tol) {
  if (!got.has(name)) return ::testing::AssertionFailure() << got.path() << " lacks " << name;
  if (got.at(name).dtype != dtype)
    return ::testing::AssertionFailure() << name << " is " << st::elem_name(got.at(name).dtype)
                                         << ", expected " << st::elem_name(dtype);
  if (got.at(name).shape != ref.at(name).shape)
    return ::testing::AssertionFailure() << name << " has a shape other than the reference's";
  const std::vector<double> a = got.as_f64(name), b = ref.as_f64(name);
  // With the floor at max(1, max|ref|) ≥ |ref_i|, each relative error is |got_i − ref_i| / scale.
  const double scale = std::max(1.0, test::max_abs(b.data(), b.size()));
  const double err = test::max_rel_error(a, b, scale);
  if (!(err <= tol))
    return ::testing::AssertionFailure() << name << ": max|got − ref| / max(1, max|ref|) = "
                                         << err << " > " << tol;
  return ::testing::AssertionSuccess();
}

inline std::set<std::string> names_of(const st::File& f) {
  const std::vector<std::string> v = f.names();
  return {v.begin(), v.end()};
}

// ---------------------------------------------------------------------------------------------
// The fixture

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name)
      if (c == '/' || c == ' ') c = '_';
    root_ = fs::temp_directory_path() / ("bptt_cli_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(root_);
    fs::create_directories(root_ / "work");
    fs::create_directories(root_ / "io");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // A path in the work directory.
  std::string path(const std::string& name) const { return (root_ / "work" / name).string(); }

  RunResult run(const std::vector<std::string>& args) const { return run_cli(args, root_ / "io"); }

  std::set<std::string> work_files() const {
    std::set<std::string> s;
    for (const auto& e : fs::recursive_directory_iterator(root_ / "work"))
      s.insert(fs::relative(e.path(), root_ / "work").string());
    return s;
  }

  // Runs a command that must be refused: exit status 2, no signal, nothing on stdout, exactly
  // one line on stderr that contains every string of `must_name` (an entry "a|b" is satisfied by
  // either), nothing that looks like a crash, and the work directory exactly as before (no
  // output file, no "<out>.tmp-*", an existing --out file untouched).
  ::testing::AssertionResult rejected(const std::vector<std::string>& args,
                                      const std::vector<std::string>& must_name) const {
    const std::set<std::string> before = work_files();
    std::map<std::string, std::string> contents;
    for (const std::string& f : before)
      if (fs::is_regular_file(root_ / "work" / f)) contents[f] = read_bytes(root_ / "work" / f);
    const RunResult r = run(args);
    const std::set<std::string> after = work_files();

    auto fail = [&](const std::string& why) {
      return ::testing::AssertionFailure() << why << r;
    };
    if (r.signaled) return fail("killed by a signal");
    if (r.code != 2) return fail("exit status " + std::to_string(r.code) + ", expected 2");
    for (const char* bad : {"terminate called", "Segmentation", "Aborted", "core dumped",
                            "internal error", "AddressSanitizer", "runtime error:"})
      if (r.err.find(bad) != std::string::npos || r.out.find(bad) != std::string::npos)
        return fail(std::string("output contains '") + bad + "'");
    if (!r.out.empty()) return fail("printed on stdout");
    if (r.err.empty() || r.err.back() != '\n') return fail("stderr is not one terminated line");
    if (std::count(r.err.begin(), r.err.end(), '\n') != 1 ||
        r.err.find('\r') != std::string::npos)
      return fail("stderr has more than one line");
    for (const std::string& want : must_name) {
      bool found = false;
      std::stringstream alternatives(want);
      for (std::string alt; std::getline(alternatives, alt, '|');)
        found = found || r.err.find(alt) != std::string::npos;
      if (!found) return fail("stderr does not name '" + want + "'");
    }
    if (after != before) {
      std::string extra;
      for (const std::string& f : after)
        if (!before.count(f)) extra += " " + f;
      return fail("the work directory changed; new files:" + extra);
    }
    for (const auto& [f, c] : contents)
      if (read_bytes(root_ / "work" / f) != c) return fail("the existing file " + f + " changed");
    return ::testing::AssertionSuccess();
  }

  fs::path root_;
};

}  // namespace bptt::cli_test
