#include <cerrno>
#include <cstring>
#include <filesystem>

#include "formats/gguf_stream.h"
#include "util/error.h"

namespace coppice::gguf {

StreamWriter::StreamWriter(std::string path, const std::vector<KV>& kvs,
                           std::vector<StreamTensor> tensors, uint32_t version)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), tensors_(std::move(tensors)) {
  for (const KV& kv : kvs)
    if (kv.key == "general.alignment" && kv.value.as_int() && *kv.value.as_int() > 0)
      alignment_ = static_cast<uint64_t>(*kv.value.as_int());
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail("gguf", tmp_ + ": cannot open for writing: " + std::strerror(errno));
  try {
    write_header(kvs, version);
  } catch (...) {  // the destructor does not run for a throwing constructor
    std::fclose(f_);
    std::remove(tmp_.c_str());
    throw;
  }
}

void StreamWriter::write_header(const std::vector<KV>& kvs, uint32_t version) {
  put<uint32_t>(0x46554747);
  put<uint32_t>(version);
  put<uint64_t>(tensors_.size());
  put<uint64_t>(kvs.size());
  for (const KV& kv : kvs) {
    str(kv.key);
    put<uint32_t>(static_cast<uint32_t>(kv.value.type));
    value(kv.value);
  }
  uint64_t offset = 0;
  for (const StreamTensor& t : tensors_) {
    str(t.name);
    put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(static_cast<uint64_t>(d));
    put<uint32_t>(static_cast<uint32_t>(t.type));
    put<uint64_t>(offset);
    offset += (t.size + alignment_ - 1) / alignment_ * alignment_;
  }
  if (!tensors_.empty()) pad();  // tokenizer-only files end unpadded, as write_file does
}

StreamWriter::~StreamWriter() {
  if (f_) std::fclose(f_);
  if (!done_) std::remove(tmp_.c_str());
}

void StreamWriter::bytes(const void* p, size_t n) {
  if (n && std::fwrite(p, 1, n, f_) != n) fail("gguf", tmp_ + ": write failed (disk full?)");
  pos_ += n;
}

void StreamWriter::str(const std::string& s) {
  put<uint64_t>(s.size());
  bytes(s.data(), s.size());
}

void StreamWriter::value(const Value& v) {
  if (v.type == ValueType::STRING) {
    str(v.str);
  } else if (v.type == ValueType::ARRAY) {
    put<uint32_t>(static_cast<uint32_t>(v.elem_type));
    put<uint64_t>(v.n);
    if (v.elem_type == ValueType::STRING) {
      for (const auto& s : v.strs) str(s);
    } else if (v.elem_type == ValueType::ARRAY) {
      for (const auto& it : v.items) value(it);
    } else {
      bytes(v.raw.data(), v.raw.size());
    }
  } else {
    bytes(v.raw.data(), v.raw.size());
  }
}

void StreamWriter::pad() {
  static const uint8_t zeros[64] = {};
  while (pos_ % alignment_) bytes(zeros, std::min<uint64_t>(alignment_ - pos_ % alignment_, sizeof zeros));
}

void StreamWriter::write_tensor(const void* data, uint64_t size) {
  CP_ASSERT(next_ < tensors_.size());
  const StreamTensor& t = tensors_[next_];
  if (size != t.size)
    fail("gguf", path_ + ": tensor '" + t.name + "': " + std::to_string(size) +
                     " bytes given, header declared " + std::to_string(t.size));
  bytes(data, size);
  pad();
  ++next_;
}

void StreamWriter::finish() {
  if (next_ != tensors_.size())
    fail("gguf", path_ + ": " + std::to_string(next_) + " of " + std::to_string(tensors_.size()) +
                     " tensors written");
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) fail("gguf", tmp_ + ": close failed (disk full?)");
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) fail("gguf", path_ + ": cannot rename temporary file: " + ec.message());
  done_ = true;
}

}  // namespace coppice::gguf
