// GGUF parsing with every length, count and offset checked against the bytes that remain.
#include <cstring>
#include <limits>

#include "formats/gguf.h"
#include "util/error.h"

namespace coppice::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 2;

// Bounds-checked little-endian reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& file)
      : data_(data), size_(size), file_(file) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  [[noreturn]] void error(const std::string& what) const {
    fail("gguf", file_ + ": " + what);
  }
  void need(size_t n, const std::string& what) const {
    if (n > remaining())
      error(what + ": needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
            " but the file has only " + std::to_string(remaining()) + " left (size " +
            std::to_string(size_) + ")");
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const uint8_t* take(size_t n, const std::string& what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  std::string read_string(const std::string& what) {
    const uint64_t len = read<uint64_t>(what + " length");
    if (len > remaining())
      error(what + ": string length " + std::to_string(len) + " at offset " +
            std::to_string(pos_ - 8) + " exceeds the " + std::to_string(remaining()) +
            " bytes left");
    const uint8_t* p = take(static_cast<size_t>(len), what);
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
};

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

Value read_value(Cursor& c, ValueType type, const std::string& what, int depth);

Value read_array(Cursor& c, const std::string& what, int depth) {
  if (depth >= kMaxArrayDepth) c.error(what + ": arrays nested deeper than " +
                                       std::to_string(kMaxArrayDepth));
  Value v;
  v.type = ValueType::ARRAY;
  const uint32_t et = c.read<uint32_t>(what + " array type");
  if (!valid_value_type(et)) c.error(what + ": unknown array element type " + std::to_string(et));
  v.elem_type = static_cast<ValueType>(et);
  v.n = c.read<uint64_t>(what + " array length");
  const size_t esz = value_type_size(v.elem_type);
  if (esz > 0) {
    if (v.n > c.remaining() / esz)
      c.error(what + ": array of " + std::to_string(v.n) + " x " + value_type_name(v.elem_type) +
              " exceeds the " + std::to_string(c.remaining()) + " bytes left");
    const uint8_t* p = c.take(static_cast<size_t>(v.n) * esz, what);
    v.raw.assign(p, p + v.n * esz);
  } else if (v.elem_type == ValueType::STRING) {
    // Each string needs at least its 8-byte length: bounds the count before reserving.
    if (v.n > c.remaining() / 8)
      c.error(what + ": array of " + std::to_string(v.n) + " strings exceeds the " +
              std::to_string(c.remaining()) + " bytes left");
    v.strs.reserve(static_cast<size_t>(v.n));
    for (uint64_t i = 0; i < v.n; ++i) v.strs.push_back(c.read_string(what + "[" + std::to_string(i) + "]"));
  } else {  // array of arrays
    if (v.n > c.remaining() / 12)
      c.error(what + ": array of " + std::to_string(v.n) + " arrays exceeds the bytes left");
    for (uint64_t i = 0; i < v.n; ++i)
      v.items.push_back(read_value(c, ValueType::ARRAY, what + "[" + std::to_string(i) + "]", depth + 1));
  }
  return v;
}

Value read_value(Cursor& c, ValueType type, const std::string& what, int depth) {
  if (type == ValueType::ARRAY) return read_array(c, what, depth);
  Value v;
  v.type = type;
  if (type == ValueType::STRING) {
    v.str = c.read_string(what);
  } else {
    const size_t n = value_type_size(type);
    const uint8_t* p = c.take(n, what);
    v.raw.assign(p, p + n);
  }
  return v;
}

}  // namespace

File File::open(const std::string& path) { return parse(MappedFile::open(path)); }

File File::from_parts(std::string name, std::vector<KV> kvs, std::vector<TensorInfo> tensors,
                      std::vector<std::shared_ptr<const void>> owners) {
  File f;
  f.mapping_ = MappedFile::borrow(nullptr, 0, std::move(name));
  f.version_ = 3;
  f.owners_ = std::move(owners);
  f.kvs_ = std::move(kvs);
  f.tensors_ = std::move(tensors);
  for (size_t i = 0; i < f.kvs_.size(); ++i)
    if (!f.kv_index_.emplace(f.kvs_[i].key, i).second) fail("gguf", f.path() + ": duplicate metadata key '" + f.kvs_[i].key + "'");
  for (size_t i = 0; i < f.tensors_.size(); ++i)
    if (!f.tensor_index_.emplace(f.tensors_[i].name, i).second)
      fail("gguf", f.path() + ": duplicate tensor name '" + f.tensors_[i].name + "'");
  return f;
}

File File::parse(std::shared_ptr<MappedFile> mapping) {
  File f;
  f.mapping_ = std::move(mapping);
  const std::string& name = f.mapping_->path();
  Cursor c(f.mapping_->data(), f.mapping_->size(), name);

  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bad magic 0x%08x (expected 0x%08x \"GGUF\")", magic, kMagic);
    c.error(buf);
  }
  f.version_ = c.read<uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3)
    c.error("unsupported GGUF version " + std::to_string(f.version_) + " (supported: 2, 3)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Minimum encoded sizes bound the counts by the file size before anything is reserved.
  if (n_kv > c.remaining() / 13)
    c.error("metadata count " + std::to_string(n_kv) + " is impossible for a file of " +
            std::to_string(f.mapping_->size()) + " bytes");
  if (n_tensors > c.remaining() / 28)
    c.error("tensor count " + std::to_string(n_tensors) + " is impossible for a file of " +
            std::to_string(f.mapping_->size()) + " bytes");

  f.kvs_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string where = "metadata #" + std::to_string(i);
    KV kv;
    kv.key = c.read_string(where + " key");
    const uint32_t t = c.read<uint32_t>(where + " '" + kv.key + "' type");
    if (!valid_value_type(t))
      c.error("metadata '" + kv.key + "': unknown value type " + std::to_string(t));
    kv.value = read_value(c, static_cast<ValueType>(t), "metadata '" + kv.key + "'", 0);
    if (f.kv_index_.count(kv.key)) c.error("duplicate metadata key '" + kv.key + "'");
    f.kv_index_.emplace(kv.key, f.kvs_.size());
    f.kvs_.push_back(std::move(kv));
  }

  if (const Value* a = f.find("general.alignment")) {
    auto al = a->as_int();
    if (!al || *al <= 0 || (*al & (*al - 1)) != 0 || *al > (1 << 20))
      c.error("general.alignment must be a power of two up to 1 MiB, got " + a->to_display());
    f.alignment_ = static_cast<uint64_t>(*al);
  }

  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = c.read_string("tensor #" + std::to_string(i) + " name");
    const std::string what = "tensor '" + ti.name + "'";
    const uint32_t nd = c.read<uint32_t>(what + " dimension count");
    if (nd == 0 || nd > kMaxDims)
      c.error(what + ": " + std::to_string(nd) + " dimensions (1 to 4 supported)");
    int64_t n_el = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t ne = c.read<uint64_t>(what + " dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.error(what + ": dimension " + std::to_string(d) + " is " +
                (ne == 0 ? std::string("zero") : std::to_string(static_cast<int64_t>(ne))));
      if (n_el > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(ne))
        c.error(what + ": element count overflows 64 bits");
      n_el *= static_cast<int64_t>(ne);
      ti.dims.push_back(static_cast<int64_t>(ne));
    }
    const uint32_t t = c.read<uint32_t>(what + " type");
    const TypeTraits* tt = type_traits(t);
    if (!tt) c.error(what + ": unknown or unsupported tensor type " + std::to_string(t));
    ti.type = tt->type;
    if (ti.dims[0] % tt->block_size != 0)
      c.error(what + ": row length " + std::to_string(ti.dims[0]) + " is not a multiple of " +
              tt->name + "'s block size " + std::to_string(tt->block_size));
    const uint64_t blocks = static_cast<uint64_t>(n_el / tt->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / tt->type_size)
      c.error(what + ": byte size overflows 64 bits");
    ti.size = blocks * tt->type_size;
    ti.offset = c.read<uint64_t>(what + " offset");
    if (ti.offset % f.alignment_ != 0)
      c.error(what + ": data offset " + std::to_string(ti.offset) + " is not aligned to " +
              std::to_string(f.alignment_));
    if (f.tensor_index_.count(ti.name)) c.error("duplicate tensor name '" + ti.name + "'");
    f.tensor_index_.emplace(ti.name, f.tensors_.size());
    f.tensors_.push_back(std::move(ti));
  }

  const uint64_t header_end = c.pos();
  f.data_offset_ = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  const uint64_t file_size = f.mapping_->size();
  if (!f.tensors_.empty() && f.data_offset_ > file_size)
    c.error("data section at " + std::to_string(f.data_offset_) + " starts beyond end of file (" +
            std::to_string(file_size) + ")");
  const uint64_t data_size = file_size > f.data_offset_ ? file_size - f.data_offset_ : 0;
  for (TensorInfo& ti : f.tensors_) {
    if (ti.offset > data_size || ti.size > data_size - ti.offset)
      c.error("tensor '" + ti.name + "': data offset " + std::to_string(ti.offset) + " + size " +
              std::to_string(ti.size) + " beyond end of data section (" + std::to_string(data_size) +
              " bytes)");
    ti.data = f.mapping_->data() + f.data_offset_ + ti.offset;
  }
  return f;
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

const Value* File::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const TensorInfo* File::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void type_error(const File& f, std::string_view key, const Value& v, const char* want) {
  fail("gguf", f.path() + ": metadata '" + std::string(key) + "' has type " +
                   value_type_name(v.type) + ", expected " + want);
}
}  // namespace

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  auto r = v->as_int();
  if (!r) type_error(*this, key, *v, "an integer");
  return r;
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  auto r = v->as_float();
  if (!r) type_error(*this, key, *v, "a number");
  return r;
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  auto r = v->as_bool();
  if (!r) type_error(*this, key, *v, "a bool");
  return r;
}

std::optional<std::string> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (!v->as_string()) type_error(*this, key, *v, "a string");
  return *v->as_string();
}

const std::vector<std::string>* File::get_string_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return nullptr;
  if (!v->is_array_of(ValueType::STRING)) type_error(*this, key, *v, "an array of strings");
  return &v->strs;
}

std::optional<std::vector<float>> File::get_f32_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::ARRAY || value_type_size(v->elem_type) == 0)
    type_error(*this, key, *v, "a numeric array");
  std::vector<float> out(static_cast<size_t>(v->n));
  for (uint64_t i = 0; i < v->n; ++i) out[i] = static_cast<float>(v->array_number(i));
  return out;
}

std::optional<std::vector<int32_t>> File::get_i32_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::ARRAY || value_type_size(v->elem_type) == 0 ||
      v->elem_type == ValueType::F32 || v->elem_type == ValueType::F64)
    type_error(*this, key, *v, "an integer array");
  std::vector<int32_t> out(static_cast<size_t>(v->n));
  for (uint64_t i = 0; i < v->n; ++i) out[i] = static_cast<int32_t>(v->array_number(i));
  return out;
}

}  // namespace coppice::gguf
