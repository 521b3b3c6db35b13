// Metadata values: type table, typed views of the raw little-endian bytes, constructors.
#include <cstring>
#include <sstream>

#include "formats/gguf.h"

namespace coppice::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "?";
}

size_t value_type_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    default: return 0;
  }
}

namespace {
template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element at p of numeric type t as double; ints also returned exactly via *as_int when set.
bool number_at(ValueType t, const uint8_t* p, double* d, int64_t* i) {
  switch (t) {
    case ValueType::U8: *i = load<uint8_t>(p); break;
    case ValueType::I8: *i = load<int8_t>(p); break;
    case ValueType::U16: *i = load<uint16_t>(p); break;
    case ValueType::I16: *i = load<int16_t>(p); break;
    case ValueType::U32: *i = load<uint32_t>(p); break;
    case ValueType::I32: *i = load<int32_t>(p); break;
    case ValueType::U64: *i = static_cast<int64_t>(load<uint64_t>(p)); break;
    case ValueType::I64: *i = load<int64_t>(p); break;
    case ValueType::BOOL: *i = load<uint8_t>(p) != 0; break;
    case ValueType::F32: *d = load<float>(p); return false;
    case ValueType::F64: *d = load<double>(p); return false;
    default: return false;
  }
  *d = static_cast<double>(*i);
  return true;
}
}  // namespace

std::optional<int64_t> Value::as_int() const {
  if (value_type_size(type) == 0 || raw.size() != value_type_size(type)) return std::nullopt;
  double d = 0;
  int64_t i = 0;
  if (!number_at(type, raw.data(), &d, &i)) return std::nullopt;
  return i;
}

std::optional<double> Value::as_float() const {
  if (value_type_size(type) == 0 || raw.size() != value_type_size(type)) return std::nullopt;
  double d = 0;
  int64_t i = 0;
  number_at(type, raw.data(), &d, &i);
  return d;
}

std::optional<bool> Value::as_bool() const {
  if (type != ValueType::BOOL || raw.size() != 1) return std::nullopt;
  return raw[0] != 0;
}

const std::string* Value::as_string() const { return type == ValueType::STRING ? &str : nullptr; }

double Value::array_number(uint64_t i) const {
  const size_t esz = value_type_size(elem_type);
  double d = 0;
  int64_t iv = 0;
  number_at(elem_type, raw.data() + i * esz, &d, &iv);
  return d;
}

std::string Value::to_display(size_t max_items) const {
  std::ostringstream os;
  if (type == ValueType::STRING) {
    os << '"' << (str.size() > 80 ? str.substr(0, 77) + "..." : str) << '"';
  } else if (type == ValueType::ARRAY) {
    os << value_type_name(elem_type) << "[" << n << "] [";
    const uint64_t show = n < max_items ? n : max_items;
    for (uint64_t i = 0; i < show; ++i) {
      if (i) os << ", ";
      if (elem_type == ValueType::STRING) os << '"' << strs[i] << '"';
      else if (elem_type == ValueType::ARRAY) os << items[i].to_display(max_items);
      else os << array_number(i);
    }
    if (show < n) os << ", ...";
    os << "]";
  } else if (type == ValueType::BOOL) {
    os << (raw.size() == 1 && raw[0] ? "true" : "false");
  } else if (type == ValueType::F32 || type == ValueType::F64) {
    os << *as_float();
  } else {
    os << *as_int();
  }
  return os.str();
}

namespace {
template <typename T>
Value scalar(ValueType t, T v) {
  Value out;
  out.type = t;
  out.raw.resize(sizeof(T));
  std::memcpy(out.raw.data(), &v, sizeof(T));
  return out;
}
template <typename T>
Value numeric_array(ValueType t, const std::vector<T>& v) {
  Value out;
  out.type = ValueType::ARRAY;
  out.elem_type = t;
  out.n = v.size();
  out.raw.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.raw.data(), v.data(), out.raw.size());
  return out;
}
}  // namespace

Value Value::make_u32(uint32_t v) { return scalar(ValueType::U32, v); }
Value Value::make_i32(int32_t v) { return scalar(ValueType::I32, v); }
Value Value::make_u64(uint64_t v) { return scalar(ValueType::U64, v); }
Value Value::make_f32(float v) { return scalar(ValueType::F32, v); }
Value Value::make_bool(bool v) { return scalar(ValueType::BOOL, static_cast<uint8_t>(v)); }
Value Value::make_string(std::string s) {
  Value out;
  out.type = ValueType::STRING;
  out.str = std::move(s);
  return out;
}
Value Value::make_string_array(std::vector<std::string> v) {
  Value out;
  out.type = ValueType::ARRAY;
  out.elem_type = ValueType::STRING;
  out.n = v.size();
  out.strs = std::move(v);
  return out;
}
Value Value::make_f32_array(const std::vector<float>& v) { return numeric_array(ValueType::F32, v); }
Value Value::make_i32_array(const std::vector<int32_t>& v) { return numeric_array(ValueType::I32, v); }

}  // namespace coppice::gguf
