// Streaming GGUF v3 writer: the header (metadata and tensor infos) is written first from the
// declared tensor sizes, then each tensor's bytes in order, so a multi-GB model never has to
// sit in memory at once. Same layout as gguf::write_file, and the same PATH.tmp + rename rule.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace coppice::gguf {

struct StreamTensor {
  std::string name;
  std::vector<int64_t> dims;  // ne[0] first
  DType type = DType::F32;
  uint64_t size = 0;          // bytes the caller will hand to write_tensor
};

class StreamWriter {
 public:
  // Opens PATH.tmp and writes the header; throws coppice::Error on I/O failure.
  StreamWriter(std::string path, const std::vector<KV>& kvs, std::vector<StreamTensor> tensors,
               uint32_t version = 3);
  // Removes PATH.tmp unless finish() succeeded.
  ~StreamWriter();
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // The next tensor's data, in declaration order; `size` must be the declared size.
  void write_tensor(const void* data, uint64_t size);
  // Checks every tensor was written, closes and renames PATH.tmp to PATH.
  void finish();

  size_t n_written() const { return next_; }
  uint64_t bytes_written() const { return pos_; }

 private:
  void write_header(const std::vector<KV>& kvs, uint32_t version);
  void bytes(const void* p, size_t n);
  template <typename T>
  void put(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s);
  void value(const Value& v);
  void pad();

  std::string path_, tmp_;
  std::vector<StreamTensor> tensors_;
  uint64_t alignment_ = 32;
  std::FILE* f_ = nullptr;
  uint64_t pos_ = 0;
  size_t next_ = 0;
  bool done_ = false;
};

}  // namespace coppice::gguf
