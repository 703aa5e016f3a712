// The safetensors reader (File); the layout is described in include/bptt/safetensors.hpp and
// docs/file_format.md. Element types and the writer are in safetensors.cpp.
//
// Reading is done in three steps, so that no size taken from the file is trusted before it has
// been checked against the file's real size:
//   1. the 8-byte header length N is checked against the file size (8 + N <= size);
//   2. the header JSON is parsed and every entry validated (dtype, shape, offsets, byte count,
//      overlaps) using only integer arithmetic guarded against overflow;
//   3. only then are the tensors' bytes copied out of the data section.
// Every error is a bptt::Error whose where() is "<path>" or "<path>: <tensor or header field>",
// on one line (names taken from the file are escaped by detail::one_line()).
#include "bptt/safetensors.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "bptt/error.hpp"
#include "bptt/limits.hpp"

namespace bptt::safetensors {

static_assert(std::endian::native == std::endian::little,
              "the safetensors reader assumes a little-endian host");

namespace {

using json = nlohmann::json;
using u64 = std::uint64_t;

constexpr int kMaxDepth = 8;
constexpr const char* kAllDtypes = "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL";
constexpr ElemType kAllTypes[] = {ElemType::F64, ElemType::F32, ElemType::F16, ElemType::BF16,
                                  ElemType::I64, ElemType::I32, ElemType::I16, ElemType::I8,
                                  ElemType::U8,  ElemType::BOOL};

[[noreturn]] void fail(ErrorKind kind, const std::string& where, const std::string& what,
                       const std::string& hint = {}) {
  throw Error(kind, detail::one_line(where), detail::one_line(what), detail::one_line(hint));
}

std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// `s` cut to at most `n` characters, so that a huge JSON value cannot flood a message.
std::string clip(std::string s, std::size_t n = 80) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

// a * b, or false when it does not fit in u64.
bool mul_ok(u64 a, u64 b, u64& out) {
  if (a != 0 && b > std::numeric_limits<u64>::max() / a) return false;
  out = a * b;
  return true;
}

template <class T>
T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// IEEE 754 binary16 -> binary32, exact (every half value is representable as a float).
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) >> 15) & 1u;
  const std::uint32_t exp = (static_cast<std::uint32_t>(h) >> 10) & 0x1fu;
  const std::uint32_t mant = static_cast<std::uint32_t>(h) & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float mag = std::ldexp(static_cast<float>(mant), -24);
    return sign != 0 ? -mag : mag;
  }
  std::uint32_t bits = sign << 31;
  if (exp == 31) {
    bits |= 0x7f800000u | (mant << 13);  // inf, or NaN keeping its payload
  } else {
    bits |= ((exp + 112u) << 23) | (mant << 13);  // rebias 15 -> 127
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// The tensor's values as F (double or float); F16 and BF16 are widened exactly.
template <class F>
std::vector<F> to_floats(const Tensor& t, const std::string& where) {
  const std::size_t n = static_cast<std::size_t>(t.numel());
  const std::byte* p = t.bytes.data();
  std::vector<F> out(n);
  switch (t.dtype) {
    case ElemType::F64:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<F>(load_le<double>(p + 8 * i));
      return out;
    case ElemType::F32:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_le<float>(p + 4 * i);
      return out;
    case ElemType::F16:
      for (std::size_t i = 0; i < n; ++i) out[i] = half_to_float(load_le<std::uint16_t>(p + 2 * i));
      return out;
    case ElemType::BF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_float(load_le<std::uint16_t>(p + 2 * i));
      return out;
    case ElemType::I64:
    case ElemType::I32:
    case ElemType::I16:
    case ElemType::I8:
    case ElemType::U8:
    case ElemType::BOOL:
      break;
  }
  fail(ErrorKind::format, where,
       std::string("dtype ") + elem_name(t.dtype) + " is not floating point",
       "accepted dtypes are F64, F32, F16, BF16");
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// Parses a dtype string of the format; false when it is not one.
bool parse_elem(const std::string& s, ElemType& out) {
  for (ElemType t : kAllTypes) {
    if (s == elem_name(t)) {
      out = t;
      return true;
    }
  }
  return false;
}

// One validated header entry, before its bytes are copied.
struct Entry {
  std::string name;
  Tensor tensor;  // dtype and shape filled in; bytes still empty
  u64 begin = 0, end = 0;
};

// Reads a non-negative JSON integer; false for anything else (negative, float, other types).
bool json_u64(const json& j, u64& out) {
  if (j.is_number_unsigned()) {
    out = j.get<u64>();
    return true;
  }
  if (j.is_number_integer() && j.get<std::int64_t>() >= 0) {
    out = static_cast<u64>(j.get<std::int64_t>());
    return true;
  }
  return false;
}

Entry parse_entry(const std::string& where, const std::string& name, const json& j,
                  u64 data_size) {
  const char* layout = "each tensor needs {\"dtype\": str, \"shape\": [int, ...], "
                       "\"data_offsets\": [begin, end]}";
  if (!j.is_object()) fail(ErrorKind::format, where, "tensor entry is not a JSON object", layout);
  // Keys other than these three are ignored, as the reference implementation does.
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key))
      fail(ErrorKind::format, where, std::string("tensor entry has no \"") + key + "\"", layout);

  Entry e;
  e.name = name;
  const json& dtype = j["dtype"];
  if (!dtype.is_string()) fail(ErrorKind::format, where, "\"dtype\" is not a string", layout);
  if (!parse_elem(dtype.get<std::string>(), e.tensor.dtype))
    fail(ErrorKind::format, where, "unknown dtype '" + clip(dtype.get<std::string>()) + "'",
         std::string("supported dtypes are ") + kAllDtypes);

  const json& shape = j["shape"];
  if (!shape.is_array()) fail(ErrorKind::format, where, "\"shape\" is not an array", layout);
  u64 numel = 1;
  for (const json& d : shape) {
    if (!d.is_number_integer())
      fail(ErrorKind::format, where, "\"shape\" has a non-integer dim " + clip(d.dump()),
           "dims are integers >= 0");
    if (!d.is_number_unsigned() && d.get<std::int64_t>() < 0)
      fail(ErrorKind::format, where,
           "negative dim " + clip(d.dump()) + " in shape " + clip(shape.dump()),
           "dims are integers >= 0");
    const u64 dim = d.is_number_unsigned() ? d.get<u64>() : static_cast<u64>(d.get<std::int64_t>());
    // Checked in the order Tensor::numel() multiplies, so that it cannot overflow later.
    if (!mul_ok(numel, dim, numel) || dim > u64{std::numeric_limits<std::int64_t>::max()} ||
        numel > u64{std::numeric_limits<std::int64_t>::max()})
      fail(ErrorKind::format, where, "shape " + clip(shape.dump()) + " is too large",
           "the file is corrupt or not a safetensors file");
    e.tensor.shape.push_back(static_cast<std::int64_t>(dim));
  }

  const json& off = j["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !json_u64(off[0], e.begin) ||
      !json_u64(off[1], e.end))
    fail(ErrorKind::format, where,
         "\"data_offsets\" " + clip(off.dump()) + " is not two non-negative integers",
         "expected [begin, end] relative to the start of the data section");
  if (e.begin > e.end)
    fail(ErrorKind::format, where,
         "data_offsets begin " + std::to_string(e.begin) + " > end " + std::to_string(e.end),
         "expected [begin, end] with begin <= end");
  if (e.end > data_size)
    fail(ErrorKind::format, where,
         "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
             "] out of range: the data section has " + std::to_string(data_size) + " bytes",
         "the file is truncated or the header is wrong");

  u64 nbytes = 0;
  const bool fits = mul_ok(numel, elem_size(e.tensor.dtype), nbytes);
  if (!fits || nbytes != e.end - e.begin)
    fail(ErrorKind::format, where,
         "data_offsets span " + std::to_string(e.end - e.begin) + " bytes but " +
             elem_name(e.tensor.dtype) + " " + clip(shape.dump()) + " needs " +
             (fits ? std::to_string(nbytes) : std::string("more than 2^64")) + " bytes",
         "the dtype, shape and data_offsets disagree; the file is corrupt");
  return e;
}

}  // namespace

File File::read(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f)
    fail(ErrorKind::io, path, std::string("cannot open: ") + std::strerror(errno),
         "check the path");
  struct stat st {};
  if (::fstat(::fileno(f.get()), &st) != 0 || !S_ISREG(st.st_mode))
    fail(ErrorKind::io, path, "cannot open: not a regular file", "check the path");
  return parse(path, static_cast<u64>(st.st_size), [&](u64 offset, void* dst, u64 n) {
    if (n == 0) return;
    if (::fseeko(f.get(), static_cast<off_t>(offset), SEEK_SET) != 0 ||
        std::fread(dst, 1, n, f.get()) != n)
      fail(ErrorKind::io, path,
           "cannot read " + std::to_string(n) + " bytes at offset " + std::to_string(offset),
           "the file changed while reading or the disk failed");
  });
}

File File::from_memory(const void* data, std::size_t size, const std::string& name) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  return parse(name, size, [&](u64 offset, void* dst, u64 n) {
    if (n != 0) std::memcpy(dst, bytes + offset, n);  // parse reads only inside [0, size)
  });
}

File File::parse(const std::string& path, std::uint64_t size, const ReadAt& read_at) {
  if (size < 8)
    fail(ErrorKind::format, path,
         "file is " + std::to_string(size) + " bytes, too short for a safetensors file",
         "a safetensors file starts with an 8-byte header length; the file is truncated");
  u64 position = 0;
  auto read_exact = [&](void* dst, u64 n) {
    read_at(position, dst, n);
    position += n;
  };
  unsigned char len_bytes[8];
  read_exact(len_bytes, 8);
  u64 header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > size - 8)
    fail(ErrorKind::format, path + ": header",
         "length " + std::to_string(header_len) + " runs past the end of the " +
             std::to_string(size) + "-byte file",
         "the file is truncated or not a safetensors file");

  // The reference implementation's limit: a longer header is damage, not a model.
  constexpr u64 kMaxHeader = 100'000'000;
  if (header_len > kMaxHeader)
    fail(ErrorKind::format, path + ": header",
         "length " + std::to_string(header_len) + " bytes exceeds the format's limit of " +
             std::to_string(kMaxHeader),
         "the file is corrupt or not a safetensors file");
  // Every tensor is copied into memory: the file must fit before anything is read.
  check_memory(double(size), path, "reading this " + std::to_string(size) + "-byte file",
               "the tensors of a safetensors file are held in memory");
  std::string header(static_cast<std::size_t>(header_len), '\0');
  read_exact(header.data(), header_len);
  const u64 data_size = size - 8 - header_len;

  // nlohmann::json stops at a NUL byte as if the input ended there; JSON cannot contain one.
  if (const auto nul = header.find('\0'); nul != header.npos)
    fail(ErrorKind::format, path + ": header",
         "not valid JSON (NUL byte at offset " + std::to_string(nul) + ")",
         "the file is corrupt or not a safetensors file");
  // A safetensors header nests three levels deep (header, entry, shape). Reject deep nesting
  // before parsing: recursive JSON values could otherwise exhaust the stack.
  {
    int depth = 0;
    bool in_string = false, escaped = false;
    std::string key, last_key;  // the entry being scanned: the last string at depth 1
    for (char ch : header) {
      if (in_string) {
        if (escaped) {
          escaped = false;
        } else if (ch == '\\') {
          escaped = true;
        } else if (ch == '"') {
          in_string = false;
          if (depth == 1) last_key = key;
          continue;
        }
        if (depth == 1 && key.size() < 200) key += ch;
      } else if (ch == '"') {
        in_string = true;
        key.clear();
      } else if (ch == '{' || ch == '[') {
        if (++depth > kMaxDepth)
          fail(ErrorKind::format,
               path + ": " + (last_key.empty() ? std::string("header") : last_key),
               "JSON nests deeper than " + std::to_string(kMaxDepth) + " levels",
               "a safetensors header is an object of tensor entries; the file is corrupt");
      } else if (ch == '}' || ch == ']') {
        --depth;
      }
    }
  }
  json j;
  try {
    j = json::parse(header);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    if (const auto p = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && p != msg.npos)
      msg = msg.substr(p + 2);
    fail(ErrorKind::format, path + ": header", "not valid JSON (" + clip(msg, 200) + ")",
         "the file is corrupt or not a safetensors file");
  }
  if (!j.is_object())
    fail(ErrorKind::format, path + ": header",
         std::string("is a JSON ") + j.type_name() + ", not an object",
         "the file is corrupt or not a safetensors file");

  File out;
  out.path_ = path;
  std::vector<Entry> entries;
  for (const auto& [key, value] : j.items()) {
    const std::string where = path + ": " + key;
    if (key == "__metadata__") {
      if (!value.is_object())
        fail(ErrorKind::format, where,
             std::string("is a JSON ") + value.type_name() + ", not an object",
             "__metadata__ maps strings to strings");
      for (const auto& [mk, mv] : value.items()) {
        // Lenient on purpose: some writers store numbers or booleans in the metadata; they are
        // kept as their JSON text ("3", "true"). Null, arrays and objects are rejected.
        if (mv.is_string()) {
          out.metadata_[mk] = mv.get<std::string>();
        } else if (mv.is_number() || mv.is_boolean()) {
          out.metadata_[mk] = mv.dump();
        } else {
          fail(ErrorKind::format, where + "." + mk,
               std::string("metadata value is a JSON ") + mv.type_name(),
               "__metadata__ maps strings to strings");
        }
      }
      continue;
    }
    entries.push_back(parse_entry(where, key, value, data_size));
  }

  // Overlaps: sort the non-empty byte ranges; with no overlap so far, ends are increasing, so
  // comparing neighbours is enough. Empty tensors occupy no bytes and cannot overlap.
  std::vector<const Entry*> by_begin;
  for (const Entry& e : entries)
    if (e.begin != e.end) by_begin.push_back(&e);
  std::sort(by_begin.begin(), by_begin.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  for (std::size_t i = 1; i < by_begin.size(); ++i) {
    const Entry& prev = *by_begin[i - 1];
    const Entry& cur = *by_begin[i];
    if (cur.begin < prev.end)
      fail(ErrorKind::format, path + ": " + cur.name,
           "byte range [" + std::to_string(cur.begin) + ", " + std::to_string(cur.end) +
               ") overlaps tensor " + prev.name + " [" + std::to_string(prev.begin) + ", " +
               std::to_string(prev.end) + ")",
           "the file is corrupt: each tensor needs its own byte range");
  }

  // Everything is validated: copy the bytes. Total size <= data_size since ranges are disjoint.
  const u64 data_start = 8 + header_len;
  for (Entry& e : entries) {
    const u64 n = e.end - e.begin;
    e.tensor.bytes.resize(static_cast<std::size_t>(n));
    if (n != 0) read_at(data_start + e.begin, e.tensor.bytes.data(), n);
    out.tensors_.emplace(e.name, std::move(e.tensor));
  }
  return out;
}

const Tensor& File::at(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string have;
    for (const auto& [n, t] : tensors_) {
      if (have.size() > 200) {
        have += ", ...";
        break;
      }
      have += (have.empty() ? "" : ", ") + n;
    }
    fail(ErrorKind::format, path_ + ": " + name, "missing tensor",
         have.empty() ? "the file has no tensors" : "the file has: " + have);
  }
  return it->second;
}

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [n, t] : tensors_) out.push_back(n);
  return out;
}

std::vector<double> File::as_f64(const std::string& name) const {
  return to_floats<double>(at(name), path_ + ": " + name);
}

std::vector<float> File::as_f32(const std::string& name) const {
  return to_floats<float>(at(name), path_ + ": " + name);
}

std::vector<std::int64_t> File::as_i64(const std::string& name) const {
  const Tensor& t = at(name);
  const std::size_t n = static_cast<std::size_t>(t.numel());
  const std::byte* p = t.bytes.data();
  std::vector<std::int64_t> out(n);
  switch (t.dtype) {
    case ElemType::I64:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int64_t>(p + 8 * i);
      return out;
    case ElemType::I32:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int32_t>(p + 4 * i);
      return out;
    case ElemType::I16:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int16_t>(p + 2 * i);
      return out;
    case ElemType::I8:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int8_t>(p + i);
      return out;
    case ElemType::U8:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::uint8_t>(p + i);
      return out;
    case ElemType::F64:
    case ElemType::F32:
    case ElemType::F16:
    case ElemType::BF16:
    case ElemType::BOOL:
      break;
  }
  fail(ErrorKind::format, path_ + ": " + name,
       std::string("dtype ") + elem_name(t.dtype) + " is not an integer type",
       "accepted dtypes are I64, I32, I16, I8, U8");
}

void File::expect_shape(const std::string& name, const std::vector<std::int64_t>& shape,
                        const std::string& what) const {
  const Tensor& t = at(name);
  if (t.shape != shape)
    fail(ErrorKind::shape, path_ + ": " + name,
         "shape " + shape_str(t.shape) + ", expected " + (what.empty() ? shape_str(shape) : what),
         "the file was written for a different model configuration");
}

}  // namespace bptt::safetensors
