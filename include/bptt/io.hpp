// Model and data files (safetensors; the layout is specified in docs/file_format.md).
// Every loader validates names, shapes, dtypes and metadata and throws bptt::Error whose where()
// names the file and the tensor or metadata field. Writers are atomic (temporary file + rename).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bptt/batch.hpp"
#include "bptt/model.hpp"
#include "bptt/safetensors.hpp"

namespace bptt {

// The model's configuration from a file's __metadata__ (cell, nonlinearity, input_size,
// hidden_size, num_layers, output_size, output_activation), checked against its tensors.
ModelConfig read_model_config(const safetensors::File& file);
// The precision the parameters are stored in (F32 → f32, F64 → f64).
DType stored_dtype(const safetensors::File& file);

// Loads a model, converting its parameters to Real.
template <class Real>
Model<Real> load_model(const safetensors::File& file);
template <class Real>
Model<Real> load_model(const std::string& path) { return load_model<Real>(safetensors::File::read(path)); }

// Throws bptt::Error(ErrorKind::value, "<path>: <name>", "element [i, j] is nan", ...) for the
// first non-finite value of tensor `name` (v: its values as read). load_model checks every
// parameter with it.
template <class Real>
void require_finite(const safetensors::File& f, const std::string& name, const std::vector<Real>& v);

// The configuration's __metadata__ keys and values, in the order files carry them.
std::vector<std::pair<std::string, std::string>> config_metadata(const ModelConfig& cfg);

// Writes the configuration keys above and the task metadata into w's __metadata__ (shared by
// model files and snapshots), and the parameters under their state_dict names.
template <class Real>
void add_model(const Model<Real>& model, safetensors::Writer& w);

// Saves a model (tensors in state_dict order, metadata as above) in Real's precision, or in
// `stored`: f32, f64, or bf16 (every parameter rounded to bfloat16, nearest even, through float
// for a double model: half the bytes of F32; load_model widens it exactly, and stored_dtype
// reads it as f32). Throws bptt::Error as safetensors::Writer::write.
template <class Real>
void save_model(const Model<Real>& model, const std::string& path);
template <class Real>
void save_model(const Model<Real>& model, const std::string& path, DType stored);

// Loads a data file for `cfg`: x [T, B, I]; y ([T, B, O] values, or [T, B] integer classes);
// optional lengths [B], mask [T, B], h0 and c0 [L, B, H]. With a loss, y is required and checked
// for it; without one (prediction) y is ignored. Throws on unknown tensors.
template <class Real>
Batch<Real> load_batch(const safetensors::File& file, const ModelConfig& cfg,
                       std::optional<LossKind> loss);

}  // namespace bptt
