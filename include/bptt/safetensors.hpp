// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
//   8 bytes   little-endian u64 N, the length of the header
//   N bytes   UTF-8 JSON: {"__metadata__": {str: str}, NAME: {"dtype": D, "shape": [..],
//             "data_offsets": [begin, end]}, ...}; offsets are relative to the data section
//   rest      the data section; tensors are row-major, little-endian.
// The reader validates everything before any tensor is used (see docs/file_format.md) and throws
// bptt::Error whose where() starts with the file path and names the tensor or field at fault.
// The writer writes to "<path>.tmp-<pid>" and renames it into place, so a failed or interrupted
// write never leaves a partial file under the final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace bptt::safetensors {

// Element types of the format. Parsing a dtype string that is not one of these is an error.
enum class ElemType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

std::size_t elem_size(ElemType t);
const char* elem_name(ElemType t);

struct Tensor {
  ElemType dtype = ElemType::F32;
  std::vector<std::int64_t> shape;  // empty shape = scalar (1 element)
  std::vector<std::byte> bytes;     // numel * elem_size bytes, little-endian
  std::int64_t numel() const;
};

class File {
 public:
  // Reads and validates the whole file. Throws bptt::Error naming `path` (and the tensor or
  // header field) for: a missing/unreadable file, a file shorter than 8 bytes, a header length
  // past the end of the file, a header that is not a JSON object, a tensor entry without valid
  // dtype/shape/data_offsets, an unknown dtype, negative dims, offsets out of range, begin > end,
  // a byte count that does not match dtype and shape, and overlapping tensors.
  static File read(const std::string& path);
  // The same from `size` bytes in memory (e.g. a model embedded in a program or received over a
  // network); `name` stands for the path in errors. The bytes are copied: the buffer may go away
  // after the call.
  static File from_memory(const void* data, std::size_t size, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws bptt::Error(ErrorKind::format, "<path>: <name>", "missing tensor ...") when absent.
  const Tensor& at(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted

  // The tensor's values converted to double / float. Accepts F64 and F32 (and F16, BF16);
  // any other dtype throws bptt::Error naming the tensor and the dtypes accepted.
  std::vector<double> as_f64(const std::string& name) const;
  std::vector<float> as_f32(const std::string& name) const;
  // as_f32 or as_f64, whichever matches Real.
  template <class Real>
  std::vector<Real> as_real(const std::string& name) const {
    if constexpr (sizeof(Real) == sizeof(float))
      return as_f32(name);
    else
      return as_f64(name);
  }
  // The tensor's values as int64. Accepts I64, I32, I16, I8, U8; other dtypes throw.
  std::vector<std::int64_t> as_i64(const std::string& name) const;

  // Throws bptt::Error naming the tensor when its shape differs from `shape`; `what` describes
  // the expected shape in the vocabulary, e.g. "[T, B, I] = [7, 2, 3]".
  void expect_shape(const std::string& name, const std::vector<std::int64_t>& shape,
                    const std::string& what) const;

 private:
  // Reads n bytes at offset into dst, or throws bptt::Error.
  using ReadAt = std::function<void(std::uint64_t offset, void* dst, std::uint64_t n)>;
  static File parse(const std::string& path, std::uint64_t size, const ReadAt& read_at);
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, Tensor> tensors_;
};

// Builds a file in memory and writes it atomically. Tensors are written in insertion order.
class Writer {
 public:
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const double* data);
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const float* data);
  void add(const std::string& name, const std::vector<std::int64_t>& shape,
           const std::int64_t* data);
  void add(const std::string& name, Tensor tensor);
  void set_metadata(const std::string& key, const std::string& value);
  // Writes "<path>.tmp-<pid>", flushes, renames it to `path`. On failure removes the temporary
  // file and throws bptt::Error naming `path`. After a success it also removes the
  // "<path>.tmp-<pid>" files of writers of `path` that died mid-write (their pid no longer runs).
  void write(const std::string& path) const;

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::map<std::string, std::string> metadata_;
};

namespace detail {
// `s` with control characters written as C escapes (a newline becomes backslash-n), so that
// names and paths taken from a file or the command line keep an error message on one line.
std::string one_line(const std::string& s);
}  // namespace detail

}  // namespace bptt::safetensors
