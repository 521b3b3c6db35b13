// Load-time relocation (model/pack.h): matrices without a packed layout on this ISA (F16, BF16,
// F32, K-quants without panels) are copied unchanged into the huge-page arena. The rows must be
// byte copies (same logits, bit for bit) and the views must really point into the arena.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/synth.h"
#include "model/model.h"
#include "test_util.h"

using namespace coppice;

namespace {

struct Loaded {
  std::vector<float> logits;
  int in_arena = 0, outside = 0, with_layout = 0;
};

Loaded load_and_run(const std::string& path, bool relocate) {
  setenv("COPPICE_RELOCATE", relocate ? "1" : "0", 1);
  std::unique_ptr<Model> m = Model::load(path);
  unsetenv("COPPICE_RELOCATE");
  Loaded out;
  const auto& bufs = m->packed().buffers;
  auto in_arena = [&](const void* p) {
    for (const auto& b : bufs) {
      const auto* lo = b.get();
      if (p >= lo && p < lo + m->packed().bytes) return true;
    }
    return false;
  };
  for (const LayerWeights& l : m->weights().layers)
    for (const WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      if (v->packed != nullptr) ++out.with_layout;
      else if (in_arena(v->data)) ++out.in_arena;
      else ++out.outside;
    }
  KvCache cache = m->make_cache(32);
  cache.add_sequence(0);
  std::vector<BatchToken> batch;
  for (int i = 0; i < 5; ++i) batch.push_back({static_cast<int32_t>(2 + 13 * i), i, 0, true});
  std::vector<float> step;
  m->step(batch, cache, out.logits);  // prefill
  const BatchToken next{17, 5, 0, true};
  m->step(std::span<const BatchToken>(&next, 1), cache, step);  // decode
  out.logits.insert(out.logits.end(), step.begin(), step.end());
  return out;
}

class Relocate : public ::testing::TestWithParam<const char*> {};

TEST_P(Relocate, RowsMoveIntoTheArenaAndTheLogitsStayBitIdentical) {
  SynthOptions so;
  so.dim = 128; so.layers = 2; so.heads = 4; so.kv_heads = 2; so.ffn = 256; so.vocab = 300;
  so.ctx = 64; so.type = GetParam(); so.pure = true; so.n_threads = 1;
  const std::string path = testutil::temp_path(std::string("reloc-") + GetParam() + ".gguf");
  synth_model(path, so);
  const Loaded off = load_and_run(path, false), on = load_and_run(path, true);
  EXPECT_EQ(off.in_arena, 0);
  EXPECT_EQ(on.outside, 0) << "every matrix without a layout is relocated";
  EXPECT_EQ(on.with_layout, off.with_layout);
  EXPECT_EQ(on.in_arena, off.outside) << "the matrices left on the mapping without relocation";
  ASSERT_EQ(on.logits.size(), off.logits.size());
  for (size_t i = 0; i < on.logits.size(); ++i) ASSERT_EQ(on.logits[i], off.logits[i]) << "logit " << i;
}

// f16 / f32 / q6_k have no panel layout (relocated); q8_0 has one on AVX2 and AVX-512 (packed).
INSTANTIATE_TEST_SUITE_P(Types, Relocate, ::testing::Values("f16", "f32", "q6_k", "q8_0"));

}  // namespace
