// Safetensors reader (mmap, no copies) with strict header validation, and model folders whose
// weights are one model.safetensors or shards listed in model.safetensors.index.json.
// Errors name the file, the tensor and the numbers:
//   [safetensors] model-00001.safetensors: tensor 'x': data_offsets [a,b] beyond end of data (n)
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/mmap.h"

namespace coppice::safetensors {

struct Tensor {
  std::string name;
  std::string dtype;            // "F32", "F16", "BF16", "I64", ...
  size_t elem_size = 0;         // bytes per element
  std::vector<int64_t> shape;   // row-major, outermost first (PyTorch order)
  uint64_t begin = 0, end = 0;  // data_offsets, relative to the data section
  const uint8_t* data = nullptr;
  int64_t n_elements() const;
};

class File {
 public:
  static constexpr uint64_t kMaxHeader = 100u << 20;  // as the reference implementation

  static File open(const std::string& path);
  // Validates an in-memory image (tests and fuzzing); `mapping` names it in errors.
  static File parse(std::shared_ptr<MappedFile> mapping);

  const std::string& path() const { return mapping_->path(); }
  const std::vector<Tensor>& tensors() const { return tensors_; }  // in data order
  const Tensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::shared_ptr<MappedFile>& mapping() const { return mapping_; }

 private:
  std::shared_ptr<MappedFile> mapping_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// Bytes per element of a dtype name; 0 when unknown.
size_t dtype_size(std::string_view dtype);

// All tensors of a folder: model.safetensors, or the shards named by
// model.safetensors.index.json (each shard opened once; every listed tensor must be in the
// shard the index names, and no name may appear in two shards).
class Folder {
 public:
  static Folder open(const std::string& dir);
  const std::vector<File>& files() const { return files_; }
  const Tensor* find(std::string_view name) const;
  std::vector<const Tensor*> tensors() const;  // every tensor, shard by shard

 private:
  std::vector<File> files_;
  std::map<std::string, const Tensor*, std::less<>> by_name_;
};

}  // namespace coppice::safetensors
