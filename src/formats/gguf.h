// GGUF v2/v3 reader and writer. Every count, length, offset and shape is validated against
// the file size before use; a bad file gives one coppice::Error:
//   [gguf] FILE: tensor 'blk.3.attn_q.weight': data offset 123 + size 456 beyond end (789)
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/types.h"
#include "util/mmap.h"

namespace coppice::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* value_type_name(ValueType t);
size_t value_type_size(ValueType t);  // 0 for STRING/ARRAY

// One metadata value. Numeric data is kept as raw little-endian bytes so that a file
// round-trips byte for byte; typed accessors convert.
struct Value {
  ValueType type = ValueType::U8;
  ValueType elem_type = ValueType::U8;  // arrays only
  uint64_t n = 0;                       // arrays only: element count
  std::vector<uint8_t> raw;             // scalar bytes, or numeric array elements
  std::string str;                      // STRING
  std::vector<std::string> strs;        // ARRAY of STRING
  std::vector<Value> items;             // ARRAY of ARRAY

  std::optional<int64_t> as_int() const;   // any integer or bool scalar
  std::optional<double> as_float() const;  // any numeric scalar
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;
  bool is_array_of(ValueType t) const { return type == ValueType::ARRAY && elem_type == t; }
  // Numeric array element i converted to double (caller checks bounds and numeric type).
  double array_number(uint64_t i) const;
  std::string to_display(size_t max_items = 8) const;

  static Value make_u32(uint32_t v);
  static Value make_i32(int32_t v);
  static Value make_u64(uint64_t v);
  static Value make_f32(float v);
  static Value make_bool(bool v);
  static Value make_string(std::string s);
  static Value make_string_array(std::vector<std::string> v);
  static Value make_f32_array(const std::vector<float>& v);
  static Value make_i32_array(const std::vector<int32_t>& v);
};

struct KV {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ne[0] is the contiguous (row) dimension, as in ggml
  DType type = DType::F32;
  uint64_t offset = 0;        // relative to the data section
  uint64_t size = 0;          // bytes
  const uint8_t* data = nullptr;  // into the mapping
  int64_t n_elements() const;
  int64_t ne(size_t i) const { return i < dims.size() ? dims[i] : 1; }
};

class File {
 public:
  // Opens and fully validates; throws coppice::Error on any problem.
  static File open(const std::string& path);
  // Parses an in-memory image (the fuzz target and corruption tests use this).
  static File parse(std::shared_ptr<MappedFile> mapping);
  // An in-memory file (Hugging Face folders): `name` for messages, tensor data pointing into
  // memory that `owners` keep alive (mappings, converted copies). Names must be unique.
  static File from_parts(std::string name, std::vector<KV> kvs, std::vector<TensorInfo> tensors,
                         std::vector<std::shared_ptr<const void>> owners);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return mapping_->path(); }
  const std::vector<KV>& kvs() const { return kvs_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::shared_ptr<MappedFile>& mapping() const { return mapping_; }

  const Value* find(std::string_view key) const;
  const TensorInfo* tensor(std::string_view name) const;

  // Typed getters: nullopt when absent; throw when present with an incompatible type.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  const std::vector<std::string>* get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_f32_array(std::string_view key) const;
  std::optional<std::vector<int32_t>> get_i32_array(std::string_view key) const;

 private:
  std::shared_ptr<MappedFile> mapping_;
  std::vector<std::shared_ptr<const void>> owners_;  // from_parts: what tensor data points into
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<KV> kvs_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Writes a GGUF v3 file: metadata in the given order, tensor data aligned to `alignment`
// (taken from general.alignment when present). Tensor data is copied from `data`.
struct WriterTensor {
  std::string name;
  std::vector<int64_t> dims;
  DType type = DType::F32;
  const void* data = nullptr;  // row_size * rows bytes
  uint64_t size = 0;
};
// Throws coppice::Error on I/O failure; writes to PATH.tmp and renames, so a failure never
// leaves a half-written file under the final name.
void write_file(const std::string& path, const std::vector<KV>& kvs,
                const std::vector<WriterTensor>& tensors, uint32_t version = 3);

}  // namespace coppice::gguf
