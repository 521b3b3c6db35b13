// Safetensors: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then data.
// Every tensor's range is checked against its shape and dtype, and the ranges must tile the
// data section exactly (sorted, no gaps, no overlaps), as the reference implementation requires.
#include "formats/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "util/error.h"

namespace coppice::safetensors {
namespace {

using Json = nlohmann::json;

[[noreturn]] void file_fail(const std::string& file, const std::string& what) { fail("safetensors", file + ": " + what); }

std::string range_str(uint64_t a, uint64_t b) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "[%llu,%llu]", static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  return buf;
}

}  // namespace

size_t dtype_size(std::string_view d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

int64_t Tensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

File File::open(const std::string& path) { return parse(MappedFile::open(path)); }

File File::parse(std::shared_ptr<MappedFile> mapping) {
  File f;
  f.mapping_ = std::move(mapping);
  const std::string& name = f.mapping_->path();
  const uint64_t size = f.mapping_->size();
  if (size < 8) file_fail(name, "file of " + std::to_string(size) + " bytes is too short for the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, f.mapping_->data(), 8);
  if (n > kMaxHeader) file_fail(name, "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeader));
  if (n > size - 8)
    file_fail(name, "header length " + std::to_string(n) + " beyond end of file (" + std::to_string(size - 8) + " bytes after the length)");
  const char* hdr = reinterpret_cast<const char*>(f.mapping_->data() + 8);
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = f.mapping_->data() + 8 + n;

  // Duplicate names are invisible after parsing, so top-level keys are collected on the way.
  std::set<std::string> seen;
  std::string dup;
  Json j;
  try {
    j = Json::parse(hdr, hdr + n, [&](int depth, Json::parse_event_t ev, Json& parsed) {
      if (depth == 1 && ev == Json::parse_event_t::key && dup.empty()) {
        const std::string k = parsed.get<std::string>();
        if (!seen.insert(k).second) dup = k;
      }
      return true;
    });
  } catch (const Json::exception& e) {
    file_fail(name, std::string("header is not valid JSON: ") + e.what());
  }
  if (!dup.empty()) file_fail(name, "duplicate tensor name '" + dup + "'");
  if (!j.is_object()) file_fail(name, "header is not a JSON object");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) file_fail(name, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) file_fail(name, "__metadata__ '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + key + "'";
    if (!v.is_object()) file_fail(name, what + ": entry is not an object");
    Tensor t;
    t.name = key;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) file_fail(name, what + ": missing dtype");
    t.dtype = dt->get<std::string>();
    t.elem_size = dtype_size(t.dtype);
    if (t.elem_size == 0) file_fail(name, what + ": unknown dtype '" + t.dtype + "'");
    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) file_fail(name, what + ": missing shape");
    uint64_t n_el = 1;
    for (const Json& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        file_fail(name, what + ": shape " + sh->dump() + " has a non-integer or negative dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > 0 && n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim)
        file_fail(name, what + ": shape " + sh->dump() + " overflows 64 bits");
      n_el *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      file_fail(name, what + ": data_offsets must be two non-negative integers");
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.end < t.begin) file_fail(name, what + ": data_offsets " + range_str(t.begin, t.end) + " end before they begin");
    if (n_el > std::numeric_limits<uint64_t>::max() / t.elem_size) file_fail(name, what + ": byte size overflows 64 bits");
    if (t.end - t.begin != n_el * t.elem_size)
      file_fail(name, what + ": data_offsets " + range_str(t.begin, t.end) + " hold " + std::to_string(t.end - t.begin) +
                          " bytes but shape " + sh->dump() + " x " + t.dtype + " needs " + std::to_string(n_el * t.elem_size));
    if (t.end > data_size)
      file_fail(name, what + ": data_offsets " + range_str(t.begin, t.end) + " beyond end of data (" + std::to_string(data_size) + ")");
    t.data = data + t.begin;
    f.tensors_.push_back(std::move(t));
  }
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const Tensor& a, const Tensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const Tensor* prev = nullptr;
  for (const Tensor& t : f.tensors_) {
    if (t.begin < pos)
      file_fail(name, "tensor '" + t.name + "': data_offsets " + range_str(t.begin, t.end) + " overlap tensor '" +
                          prev->name + "' " + range_str(prev->begin, prev->end));
    if (t.begin > pos)
      file_fail(name, "tensor '" + t.name + "': data_offsets " + range_str(t.begin, t.end) + " leave a gap after offset " +
                          std::to_string(pos));
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size)
    file_fail(name, "tensors cover " + std::to_string(pos) + " bytes but the data section holds " + std::to_string(data_size));
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const Tensor* File::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Folder Folder::open(const std::string& dir) {
  namespace fs = std::filesystem;
  Folder f;
  const fs::path d(dir);
  const fs::path index = d / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream in(index, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    Json j;
    try {
      j = Json::parse(ss.str());
    } catch (const Json::exception& e) {
      file_fail(index.string(), std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      file_fail(index.string(), "no \"weight_map\" object");
    std::map<std::string, size_t> shard_of;  // shard file -> index in files_
    std::vector<std::pair<std::string, std::string>> wanted;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) file_fail(index.string(), "weight_map '" + it.key() + "' is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        file_fail(index.string(), "weight_map '" + it.key() + "' names a file outside the folder: " + shard);
      if (!shard_of.count(shard)) {
        shard_of.emplace(shard, f.files_.size());
        f.files_.push_back(File::open((d / shard).string()));
      }
      wanted.emplace_back(it.key(), shard);
    }
    for (const auto& [name, shard] : wanted) {
      const File& sf = f.files_[shard_of.at(shard)];
      const Tensor* t = sf.find(name);
      if (!t) file_fail(sf.path(), "tensor '" + name + "' listed in model.safetensors.index.json is missing");
    }
  } else if (fs::exists(d / "model.safetensors")) {
    f.files_.push_back(File::open((d / "model.safetensors").string()));
  } else {
    fail("safetensors", dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const File& sf : f.files_) {
    for (const Tensor& t : sf.tensors()) {
      if (!f.by_name_.emplace(t.name, &t).second)
        file_fail(sf.path(), "tensor '" + t.name + "' also appears in another shard");
    }
  }
  return f;
}

const Tensor* Folder::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const Tensor*> Folder::tensors() const {
  std::vector<const Tensor*> out;
  for (const File& sf : files_)
    for (const Tensor& t : sf.tensors()) out.push_back(&t);
  return out;
}

}  // namespace coppice::safetensors
