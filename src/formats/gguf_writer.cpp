// GGUF v3 writer: header, metadata, tensor infos, then aligned tensor data (zero padding),
// the layout every GGUF tool produces, so a read-then-write round trip is byte-identical.
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "formats/gguf.h"
#include "util/error.h"

namespace coppice::gguf {
namespace {

class Out {
 public:
  Out(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) fail("gguf", path + ": cannot open for writing: " + std::strerror(errno));
  }
  ~Out() { if (f_) std::fclose(f_); }
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("gguf", path_ + ": write failed (disk full?)");
    pos_ += n;
  }
  template <typename T>
  void put(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) { put<uint64_t>(s.size()); bytes(s.data(), s.size()); }
  void pad_to(uint64_t alignment) {
    static const uint8_t zeros[64] = {};
    while (pos_ % alignment) {
      const uint64_t n = std::min<uint64_t>(alignment - pos_ % alignment, sizeof zeros);
      bytes(zeros, n);
    }
  }
  void close() {
    if (std::fclose(f_) != 0) { f_ = nullptr; fail("gguf", path_ + ": close failed"); }
    f_ = nullptr;
  }

 private:
  std::string path_;
  FILE* f_;
  uint64_t pos_ = 0;
};

void put_value(Out& o, const Value& v) {
  if (v.type == ValueType::STRING) {
    o.str(v.str);
  } else if (v.type == ValueType::ARRAY) {
    o.put<uint32_t>(static_cast<uint32_t>(v.elem_type));
    o.put<uint64_t>(v.n);
    if (v.elem_type == ValueType::STRING) {
      for (const auto& s : v.strs) o.str(s);
    } else if (v.elem_type == ValueType::ARRAY) {
      for (const auto& it : v.items) put_value(o, it);
    } else {
      o.bytes(v.raw.data(), v.raw.size());
    }
  } else {
    o.bytes(v.raw.data(), v.raw.size());
  }
}

}  // namespace

void write_file(const std::string& path, const std::vector<KV>& kvs,
                const std::vector<WriterTensor>& tensors, uint32_t version) {
  uint64_t alignment = 32;
  for (const KV& kv : kvs)
    if (kv.key == "general.alignment" && kv.value.as_int() && *kv.value.as_int() > 0)
      alignment = static_cast<uint64_t>(*kv.value.as_int());

  const std::string tmp = path + ".tmp";
  try {
    Out o(tmp);
    o.put<uint32_t>(0x46554747);
    o.put<uint32_t>(version);
    o.put<uint64_t>(tensors.size());
    o.put<uint64_t>(kvs.size());
    for (const KV& kv : kvs) {
      o.str(kv.key);
      o.put<uint32_t>(static_cast<uint32_t>(kv.value.type));
      put_value(o, kv.value);
    }
    uint64_t offset = 0;
    for (const WriterTensor& t : tensors) {
      o.str(t.name);
      o.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
      for (int64_t d : t.dims) o.put<uint64_t>(static_cast<uint64_t>(d));
      o.put<uint32_t>(static_cast<uint32_t>(t.type));
      o.put<uint64_t>(offset);
      offset += (t.size + alignment - 1) / alignment * alignment;
    }
    if (!tensors.empty()) o.pad_to(alignment);  // tokenizer-only files end unpadded
    for (const WriterTensor& t : tensors) {
      o.bytes(t.data, t.size);
      o.pad_to(alignment);
    }
    o.close();
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("gguf", path + ": cannot rename temporary file: " + ec.message());
  }
}

}  // namespace coppice::gguf
