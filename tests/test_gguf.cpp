// GGUF reader/writer: byte-exact round trips of every shared file, strict validation of
// hand-built bad files, and no crash on truncated or bit-flipped real files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "formats/gguf.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;
using testutil::read_bytes;
using testutil::shared;

namespace {

std::vector<std::string> shared_ggufs() {
  std::vector<std::string> out;
  for (const char* dir : {"models", "models/fixtures", "conformance/tokenizer"})
    for (const auto& e : std::filesystem::directory_iterator(shared(dir)))
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

gguf::File parse_bytes(const std::vector<uint8_t>& b) {
  return gguf::File::parse(MappedFile::borrow(b.data(), b.size(), "mem.gguf"));
}

std::string parse_error(const std::vector<uint8_t>& b) {
  try {
    parse_bytes(b);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Minimal GGUF image builder for hand-made bad files.
struct Builder {
  std::vector<uint8_t> b;
  template <typename T>
  Builder& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
    return *this;
  }
  Builder& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
  }
  Builder& kv_u32(const std::string& k, uint32_t v) { return str(k).put<uint32_t>(4).put<uint32_t>(v); }
  Builder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t off) {
    str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (auto d : dims) put<uint64_t>(d);
    return put<uint32_t>(type).put<uint64_t>(off);
  }
  Builder& pad(size_t align = 32) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  Builder& data(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

}  // namespace

TEST(Gguf, ReadsStories260K) {
  auto f = gguf::File::open(shared("models/stories260K.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 48u);
  EXPECT_EQ(f.get_string("general.architecture").value(), "llama");
  EXPECT_EQ(f.get_int("llama.embedding_length").value(), 64);
  ASSERT_NE(f.get_string_array("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens")->size(), 512u);
  const auto* t = f.tensor("blk.0.attn_k.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dims, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(t->size, 64u * 32u * 4u);
  // A typed getter refuses a value of the wrong type.
  EXPECT_THROW(f.get_int("general.architecture"), Error);
}

TEST(Gguf, WriterRoundTripsEverySharedFileByteForByte) {
  const auto files = shared_ggufs();
  ASSERT_GE(files.size(), 15u);
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    auto f = gguf::File::open(path);
    std::vector<gguf::WriterTensor> ts;
    for (const auto& t : f.tensors()) ts.push_back({t.name, t.dims, t.type, t.data, t.size});
    const std::string out = testutil::temp_path("roundtrip.gguf");
    gguf::write_file(out, f.kvs(), ts, f.version());
    const auto a = read_bytes(path), b = read_bytes(out);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_TRUE(a == b);
    std::filesystem::remove(out);
  }
}

TEST(Gguf, RejectsHandBuiltBadFiles) {
  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
    const char* expect;  // substring of the error
  };
  std::vector<Case> cases;
  cases.push_back({"bad magic", Builder().put<uint32_t>(0x12345678).put<uint32_t>(3).b, "bad magic"});
  cases.push_back({"version 1", Builder().header(0, 0, 1).b, "unsupported GGUF version 1"});
  cases.push_back({"version 4", Builder().header(0, 0, 4).b, "unsupported GGUF version 4"});
  cases.push_back({"huge kv count", Builder().header(0, 1ull << 60).b, "metadata count"});
  cases.push_back({"huge tensor count", Builder().header(1ull << 60, 0).b, "tensor count"});
  cases.push_back({"string length beyond file",
                   Builder().header(0, 1).put<uint64_t>(1ull << 40).data(64).b, "string length"});
  cases.push_back({"unknown value type",
                   Builder().header(0, 1).str("a.key").put<uint32_t>(99).b, "unknown value type 99"});
  cases.push_back({"array longer than file",
                   Builder().header(0, 1).str("a").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 50).b,
                   "exceeds"});
  cases.push_back({"duplicate key", Builder().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).b,
                   "duplicate metadata key 'k'"});
  cases.push_back({"zero dimension", Builder().header(1, 0).tensor("t", {0}, 0, 0).pad().b, "is zero"});
  cases.push_back({"five dimensions",
                   Builder().header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad().b, "5 dimensions"});
  cases.push_back({"unknown tensor type", Builder().header(1, 0).tensor("t", {4}, 77, 0).pad().data(16).b,
                   "unsupported tensor type 77"});
  cases.push_back({"overflowing shape",
                   Builder().header(1, 0).tensor("t", {1ull << 40, 1ull << 40}, 0, 0).pad().b, "overflows"});
  cases.push_back({"negative dimension",
                   Builder().header(1, 0).tensor("t", {~0ull}, 0, 0).pad().b, "dimension 0 is -1"});
  cases.push_back({"row not multiple of block", Builder().header(1, 0).tensor("t", {31}, 2, 0).pad().data(64).b,
                   "not a multiple"});
  cases.push_back({"misaligned offset", Builder().header(1, 0).tensor("t", {4}, 0, 3).pad().data(64).b,
                   "not aligned"});
  cases.push_back({"duplicate tensor",
                   Builder().header(2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).pad().data(64).b,
                   "duplicate tensor name 't'"});
  cases.push_back({"data beyond end", Builder().header(1, 0).tensor("w", {64}, 0, 0).pad().data(100).b,
                   "tensor 'w': data offset 0 + size 256 beyond end"});
  cases.push_back({"bad alignment",
                   Builder().header(0, 1).kv_u32("general.alignment", 3).b, "power of two"});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string err = parse_error(c.bytes);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "error was: " << err;
    EXPECT_NE(err.find("[gguf] mem.gguf"), std::string::npos) << err;
  }
}

TEST(Gguf, TruncatedFilesFailCleanly) {
  const auto full = read_bytes(shared("models/stories260K.gguf"));
  auto f = gguf::File::open(shared("models/stories260K.gguf"));
  // Every prefix length through the header in steps, then a spread over the data section.
  std::vector<size_t> cuts;
  for (size_t n = 0; n < f.data_offset() + 64; n += 7) cuts.push_back(n);
  for (size_t n = f.data_offset(); n < full.size(); n += full.size() / 97) cuts.push_back(n);
  cuts.push_back(full.size() - 1);
  for (size_t n : cuts) {
    std::vector<uint8_t> part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(parse_error(part).empty()) << "a file truncated to " << n << " bytes was accepted";
  }
}

TEST(Gguf, BitFlipsNeverCrash) {
  // Parsing must either succeed or throw coppice::Error; ASan/UBSan builds catch the rest.
  std::mt19937_64 rng(1234);
  for (const char* name : {"models/stories260K.gguf", "models/fixtures/llama-d256-q4_k.gguf"}) {
    const auto full = read_bytes(shared(name));
    auto f = gguf::File::open(shared(name));
    const size_t header = f.data_offset();
    int rejected = 0;
    for (int trial = 0; trial < 3000; ++trial) {
      auto b = full;
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < flips; ++k) {
        const size_t off = rng() % header;
        b[off] ^= static_cast<uint8_t>(1u << (rng() % 8));
      }
      try {
        auto g = parse_bytes(b);
        for (const auto& t : g.tensors()) {  // accepted files must be internally consistent
          ASSERT_LE(t.data + t.size, b.data() + b.size());
          ASSERT_GE(t.data, b.data());
        }
      } catch (const Error&) {
        ++rejected;
      }
    }
    EXPECT_GT(rejected, 100);
  }
}

TEST(Gguf, WriterRefusesUnwritablePathWithoutLeavingFiles) {
  EXPECT_THROW(gguf::write_file("/nonexistent-dir/x.gguf", {}, {}), Error);
}
