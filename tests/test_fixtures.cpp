// Dequantization checked on real files: every tensor of llama-d256-<type>.gguf (written by
// llama.cpp's quantizer) dequantized against the same tensor of llama-d256-f32.gguf.
#include <gtest/gtest.h>

#include <cmath>

#include "formats/gguf.h"
#include "test_util.h"

using namespace coppice;

namespace {
// Relative RMS error bounds: about 1.5x what each format's bits allow for N(0, s) weights
// (a misplaced scale or nibble gives errors of order 1).
const std::vector<std::pair<const char*, double>> kBounds = {
    {"f16", 1e-3}, {"bf16", 6e-3}, {"q8_0", 1.2e-2}, {"q6_k", 3.5e-2}, {"q5_1", 6e-2},
    {"q5_0", 7e-2}, {"q5_k", 6e-2}, {"q4_1", 1.2e-1}, {"q4_0", 1.4e-1}, {"q4_k", 1.2e-1},
    {"q3_k", 2.4e-1}, {"q2_k", 4.5e-1}};
}  // namespace

TEST(Fixtures, EveryTensorDequantizesCloseToF32) {
  auto ref = gguf::File::open(testutil::shared("models/fixtures/llama-d256-f32.gguf"));
  for (const auto& [type, bound] : kBounds) {
    SCOPED_TRACE(type);
    auto f = gguf::File::open(testutil::shared(std::string("models/fixtures/llama-d256-") + type + ".gguf"));
    ASSERT_EQ(f.tensors().size(), ref.tensors().size());
    for (const auto& t : f.tensors()) {
      const auto* r = ref.tensor(t.name);
      ASSERT_NE(r, nullptr) << t.name;
      ASSERT_EQ(t.dims, r->dims) << t.name;
      const int64_t n = t.n_elements();
      std::vector<float> got(static_cast<size_t>(n)), want(static_cast<size_t>(n));
      type_traits(t.type)->to_float(t.data, got.data(), n);
      type_traits(r->type)->to_float(r->data, want.data(), n);
      double num = 0, den = 0;
      for (int64_t i = 0; i < n; ++i) {
        num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
        den += static_cast<double>(want[i]) * want[i];
      }
      const double rel = std::sqrt(num / den);
      if (t.dims.size() == 1) EXPECT_EQ(rel, 0.0) << t.name;  // norms stay F32
      else EXPECT_LT(rel, bound) << t.name << " (" << dtype_name(t.type) << ")";
    }
  }
}
