// Value-head reward models: a classifier head over the last token's final-normed hidden state
// (HF *ForSequenceClassification / reward models; llama.cpp calls the tensor cls.output).
#include "engine/search_scorer.h"
#include "util/error.h"

namespace coppice {

namespace {
constexpr const char* kHead = "cls.output.weight";
constexpr const char* kBias = "cls.output.bias";

// Dequantized copy of a whole (small) tensor.
std::vector<float> to_floats(const gguf::TensorInfo& t) {
  const TypeTraits* tt = type_traits(t.type);
  if (!tt || t.n_elements() % tt->block_size != 0)
    fail("search", std::string(t.name) + ": unsupported type for a value head");
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  tt->to_float(t.data, out.data(), t.n_elements());
  return out;
}
}  // namespace

std::vector<float> read_value_head(const Model& m, float& bias) {
  bias = 0;
  const gguf::TensorInfo* h = m.file().tensor(kHead);
  if (!h) return {};
  const int64_t E = m.config().n_embd;
  if (h->ne(0) != E || h->n_elements() != E)
    fail("search", std::string(kHead) + ": shape [" + std::to_string(h->ne(0)) + " x " + std::to_string(h->ne(1)) +
                       "], expected [" + std::to_string(E) + "] or [" + std::to_string(E) + " x 1] (one output)");
  if (const gguf::TensorInfo* b = m.file().tensor(kBias)) {
    if (b->n_elements() != 1)
      fail("search", std::string(kBias) + ": " + std::to_string(b->n_elements()) + " elements, expected 1");
    bias = to_floats(*b)[0];
  }
  return to_floats(*h);
}

double value_head_score(Model& m, KvCache& cache, SeqId seq, std::span<const int32_t> ids,
                        std::span<const float> head, float bias) {
  if (ids.empty()) fail("search", "the value head needs at least one token");
  constexpr size_t kChunk = 512;
  std::vector<BatchToken> batch;
  std::vector<float> logits;  // [1][n_vocab] of the last chunk (unused)
  std::vector<float> hidden;  // [1][n_embd] final-normed hidden of the last token
  StepOptions so;
  so.hidden = &hidden;
  for (size_t at = 0; at < ids.size(); at += kChunk) {
    const size_t end = std::min(ids.size(), at + kChunk);
    batch.clear();
    for (size_t i = at; i < end; ++i)
      batch.push_back({ids[i], static_cast<int32_t>(i), seq, i + 1 == ids.size()});
    m.step(batch, cache, logits, so);
  }
  CP_ASSERT(hidden.size() == head.size());
  double s = bias;
  for (size_t i = 0; i < head.size(); ++i) s += static_cast<double>(head[i]) * hidden[i];
  return s;
}

}  // namespace coppice
