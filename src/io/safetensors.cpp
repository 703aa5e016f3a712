// The safetensors element types and the writer; the reader is in safetensors_read.cpp.
//
// The writer lays the file out as the reference implementation does: an 8-byte little-endian
// header length, the header JSON padded with spaces to a multiple of 8 bytes (so the data
// section starts 8-byte aligned), then the tensors back to back. The header lists
// "__metadata__" first (only when there is metadata), then the tensors in insertion order.
#include "bptt/safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "io/temp_files.hpp"

namespace bptt::safetensors {

namespace detail {

std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(u));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace detail

std::size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::F64: return 8;
    case ElemType::F32: return 4;
    case ElemType::F16: return 2;
    case ElemType::BF16: return 2;
    case ElemType::I64: return 8;
    case ElemType::I32: return 4;
    case ElemType::I16: return 2;
    case ElemType::I8: return 1;
    case ElemType::U8: return 1;
    case ElemType::BOOL: return 1;
  }
  return 0;
}

const char* elem_name(ElemType t) {
  switch (t) {
    case ElemType::F64: return "F64";
    case ElemType::F32: return "F32";
    case ElemType::F16: return "F16";
    case ElemType::BF16: return "BF16";
    case ElemType::I64: return "I64";
    case ElemType::I32: return "I32";
    case ElemType::I16: return "I16";
    case ElemType::I8: return "I8";
    case ElemType::U8: return "U8";
    case ElemType::BOOL: return "BOOL";
  }
  return "?";
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

using ojson = nlohmann::ordered_json;

[[noreturn]] void fail(ErrorKind kind, const std::string& where, const std::string& what,
                       const std::string& hint = {}) {
  throw Error(kind, detail::one_line(where), detail::one_line(what), detail::one_line(hint));
}

std::string writer_where(const std::string& name) { return "safetensors writer: " + name; }

// Number of bytes a tensor of this dtype and shape takes; throws on negative dims or overflow.
std::size_t checked_nbytes(const std::string& name, ElemType dtype,
                           const std::vector<std::int64_t>& shape) {
  std::size_t n = elem_size(dtype);
  for (std::int64_t d : shape) {
    if (d < 0)
      fail(ErrorKind::value, writer_where(name), "negative dim " + std::to_string(d),
           "dims must be >= 0");
    const auto ud = static_cast<std::size_t>(d);
    if (ud != 0 && n > std::numeric_limits<std::size_t>::max() / ud)
      fail(ErrorKind::resource, writer_where(name), "shape too large", "the byte count overflows");
    n *= ud;
  }
  return n;
}

template <class T>
Tensor make_tensor(const std::string& name, ElemType dtype,
                   const std::vector<std::int64_t>& shape, const T* data) {
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  const std::size_t n = checked_nbytes(name, dtype, shape);
  if (n != 0 && data == nullptr)
    fail(ErrorKind::usage, writer_where(name), "null data for a non-empty tensor",
         "pass a pointer to the values");
  t.bytes.resize(n);
  if (n != 0) std::memcpy(t.bytes.data(), data, n);
  return t;
}

}  // namespace

void Writer::add(const std::string& name, const std::vector<std::int64_t>& shape,
                 const double* data) {
  add(name, make_tensor(name, ElemType::F64, shape, data));
}

void Writer::add(const std::string& name, const std::vector<std::int64_t>& shape,
                 const float* data) {
  add(name, make_tensor(name, ElemType::F32, shape, data));
}

void Writer::add(const std::string& name, const std::vector<std::int64_t>& shape,
                 const std::int64_t* data) {
  add(name, make_tensor(name, ElemType::I64, shape, data));
}

void Writer::add(const std::string& name, Tensor tensor) {
  if (name == "__metadata__")
    fail(ErrorKind::usage, writer_where(name), "reserved tensor name",
         "use set_metadata() for metadata");
  for (const auto& [n, t] : tensors_)
    if (n == name)
      fail(ErrorKind::usage, writer_where(name), "duplicate tensor name",
           "give each tensor its own name");
  const std::size_t n = checked_nbytes(name, tensor.dtype, tensor.shape);
  if (tensor.bytes.size() != n)
    fail(ErrorKind::shape, writer_where(name),
         "has " + std::to_string(tensor.bytes.size()) + " bytes but " + elem_name(tensor.dtype) +
             " of this shape needs " + std::to_string(n),
         "fill Tensor::bytes with numel * elem_size bytes");
  tensors_.emplace_back(name, std::move(tensor));
}

void Writer::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void Writer::write(const std::string& path) const {
  // Header: metadata first (if any), then the tensors in insertion order, contiguous.
  ojson header = ojson::object();
  if (!metadata_.empty()) {
    ojson meta = ojson::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors_) {
    ojson entry = ojson::object();
    entry["dtype"] = elem_name(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = ojson::array({offset, offset + t.bytes.size()});
    header[name] = std::move(entry);
    offset += t.bytes.size();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const ojson::exception&) {
    fail(ErrorKind::format, path,
         "cannot write: a tensor name or metadata string is not valid UTF-8",
         "names and metadata must be UTF-8 text");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len_bytes[8];
  for (std::size_t i = 0; i < 8; ++i)
    len_bytes[i] = static_cast<unsigned char>((std::uint64_t{text.size()} >> (8 * i)) & 0xffu);

  // Temporary file, flushed to disk, then renamed over `path`.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    fail(ErrorKind::io, path, std::string("cannot write (") + std::strerror(errno) + ")",
         "check that the directory exists and is writable");
  int err = 0;  // first errno seen
  auto put = [&](const void* p, std::size_t n) {
    if (err == 0 && n != 0 && std::fwrite(p, 1, n, f) != n) err = errno != 0 ? errno : EIO;
  };
  put(len_bytes, sizeof len_bytes);
  put(text.data(), text.size());
  for (const auto& [name, t] : tensors_) put(t.bytes.data(), t.bytes.size());
  if (err == 0 && std::fflush(f) != 0) err = errno;
  if (err == 0 && ::fsync(::fileno(f)) != 0) err = errno;
  if (std::fclose(f) != 0 && err == 0) err = errno;
  std::error_code ec;
  if (err != 0) {
    std::filesystem::remove(tmp, ec);
    fail(ErrorKind::io, path, std::string("cannot write (") + std::strerror(err) + ")",
         "check free disk space and permissions");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    fail(ErrorKind::io, path, "cannot write (rename from " + tmp + " failed: " + ec.message() + ")",
         "check that the path is not a directory and that its directory is writable");
  }
  bptt::remove_stale_temporaries(path);
  // Make the rename itself durable; failing here does not lose data, so it is best effort.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace bptt::safetensors
