// Safetensors reader: valid files, each header rule broken on purpose (named errors), sharded
// folders, and fuzz-style truncations and bit flips that must give errors, never crashes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/safetensors.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;
using nlohmann::json;

namespace {

std::vector<uint8_t> image(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) b[8 + header.size() + i] = static_cast<uint8_t>(i * 7);
  return b;
}

const std::string kGood =
    R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[3],"data_offsets":[24,30]},)"
    R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";

safetensors::File parse(const std::vector<uint8_t>& b, const std::string& name = "model-00001.safetensors") {
  return safetensors::File::parse(MappedFile::borrow(b.data(), b.size(), name));
}

std::string error_of(const std::string& header, size_t data) {
  const auto b = image(header, data);
  try {
    parse(b);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Safetensors, ParsesValidFile) {
  const auto b = image(kGood, 30);
  const auto f = parse(b);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "a");  // data order
  const auto* t = f.find("b");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, "F16");
  EXPECT_EQ(t->shape, std::vector<int64_t>{3});
  EXPECT_EQ(t->data, b.data() + 8 + kGood.size() + 24);
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, NamedErrors) {
  EXPECT_EQ(error_of(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
            "[safetensors] model-00001.safetensors: tensor 'x': data_offsets [0,16] beyond end of data (8)");
  EXPECT_NE(error_of(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 12).find("hold 12 bytes but shape [4] x F32 needs 16"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"Q9","shape":[4],"data_offsets":[0,4]}})", 4).find("tensor 'x': unknown dtype 'Q9'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"x":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8)
                .find("duplicate tensor name 'x'"), std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"y":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6)
                .find("overlap tensor 'x' [0,4]"), std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6).find("leave a gap"), std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 9).find("data section holds 9"), std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})", 4).find("negative"), std::string::npos);
  EXPECT_NE(error_of(R"({"x": )", 0).find("header is not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"([1,2])", 0).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"x":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4).find("overflows"),
            std::string::npos);
  // Header length beyond the file and above the limit.
  auto b = image(kGood, 30);
  const uint64_t big = b.size();
  std::memcpy(b.data(), &big, 8);
  try { parse(b); FAIL(); } catch (const Error& e) { EXPECT_NE(std::string(e.what()).find("beyond end of file"), std::string::npos); }
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(b.data(), &huge, 8);
  try { parse(b); FAIL(); } catch (const Error& e) { EXPECT_NE(std::string(e.what()).find("exceeds the limit"), std::string::npos); }
}

TEST(Safetensors, TruncationsAndBitFlipsNeverCrash) {
  const auto good = image(kGood, 30);
  int errors = 0, ok = 0;
  for (size_t n = 0; n < good.size(); ++n) {  // every truncation is an error
    std::vector<uint8_t> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    try { parse(b); ADD_FAILURE() << "truncation to " << n << " accepted"; } catch (const Error&) { ++errors; }
  }
  std::mt19937 rng(7);
  for (int it = 0; it < 20000; ++it) {
    auto b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const auto f = parse(b);
      for (const auto& t : f.tensors()) {  // accepted files must describe in-bounds data
        ASSERT_GE(t.data, b.data() + 8);
        ASSERT_LE(t.data + (t.end - t.begin), b.data() + b.size());
      }
      ++ok;
    } catch (const Error&) {
      ++errors;
    }
  }
  std::printf("[fuzz] %d rejected, %d accepted (flips inside tensor data)\n", errors, ok);
}

TEST(Safetensors, ShardedFolder) {
  namespace fs = std::filesystem;
  const fs::path dir = testutil::temp_path("st_sharded");
  fs::create_directories(dir);
  testutil::write_bytes((dir / "model-00001-of-00002.safetensors").string(),
                        image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
  testutil::write_bytes((dir / "model-00002-of-00002.safetensors").string(),
                        image(R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4));
  json idx = {{"metadata", json::object()},
              {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  testutil::write_bytes((dir / "model.safetensors.index.json").string(), [&] {
    const std::string s = idx.dump();
    return std::vector<uint8_t>(s.begin(), s.end());
  }());
  const auto f = safetensors::Folder::open(dir.string());
  EXPECT_EQ(f.files().size(), 2u);
  ASSERT_NE(f.find("b"), nullptr);
  EXPECT_EQ(f.find("b")->dtype, "BF16");
  EXPECT_EQ(f.tensors().size(), 2u);
  // The index names a tensor its shard lacks.
  idx["weight_map"]["c"] = "model-00002-of-00002.safetensors";
  const std::string s = idx.dump();
  testutil::write_bytes((dir / "model.safetensors.index.json").string(), std::vector<uint8_t>(s.begin(), s.end()));
  try {
    safetensors::Folder::open(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'c' listed in model.safetensors.index.json is missing"), std::string::npos) << e.what();
  }
}

}  // namespace
