#include "model/sparse_pack.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/sparse24.h"
#include "util/error.h"

namespace coppice {
namespace {

namespace sp = kernels::sparse24;

const kernels::PackedKernels* layout_for(const WeightView& v) {
  if (!v.valid() || v.packed != nullptr || v.n_in % sp::kChunk != 0) return nullptr;
  return sp::best(v.type);
}

size_t padded(size_t b) { return (b + 63) / 64 * 64; }

bool all_2of4(const WeightView& v, ThreadPool& pool) {
  std::atomic<bool> ok{true};
  pool.parallel_for(v.n_out, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e && ok.load(std::memory_order_relaxed); ++r)
      if (!sp::is_2of4(reinterpret_cast<const uint16_t*>(v.row(r)), v.n_in, 1)) ok = false;
  });
  return ok;
}

}  // namespace

int pack_sparse24(ModelWeights& w, const gguf::File& file, ThreadPool& pool, PackedStore& store) {
  if (const char* env = std::getenv("COPPICE_SPARSE"); env != nullptr && std::strcmp(env, "0") == 0) return 0;
  std::vector<WeightView*> views;
  for (LayerWeights& l : w.layers) {
    for (WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wqkv, &l.wo, &l.w_gate, &l.w_up, &l.w_down,
                          &l.gate_shexp, &l.up_shexp, &l.down_shexp}) {
      if (layout_for(*v) != nullptr && all_2of4(*v, pool)) views.push_back(v);
    }
  }
  size_t total = 0;
  for (const WeightView* v : views) total += padded(sp::row_bytes(v->n_in) * static_cast<size_t>(v->n_out));
  if (total == 0) return 0;

  constexpr size_t kHuge = size_t{2} << 20;  // one huge-page arena, as model/pack.cpp
  const size_t bytes = (total + kHuge - 1) / kHuge * kHuge;
  std::unique_ptr<uint8_t[], PackedStore::Free> buf(static_cast<uint8_t*>(std::aligned_alloc(kHuge, bytes)));
  CP_ASSERT(buf != nullptr);
  madvise(buf.get(), bytes, MADV_HUGEPAGE);
  uint8_t* dst = buf.get();
  for (WeightView* v : views) {
    const kernels::PackedKernels* pk = layout_for(*v);
    const size_t row = pk->row_bytes(v->n_in);
    const WeightView src = *v;
    pool.parallel_for(src.n_out, [&](int64_t b, int64_t e) {
      pk->pack_rows(src.row(b), dst + static_cast<size_t>(b) * row, src.n_in, e - b);
    });
    file.mapping()->release(src.data, src.row_bytes * static_cast<size_t>(src.n_out));
    v->data = dst;
    v->row_bytes = row;
    v->packed = pk;
    dst += padded(row * static_cast<size_t>(src.n_out));
    ++store.n_packed;
  }
  store.bytes += bytes;
  store.buffers.push_back(std::move(buf));
  return static_cast<int>(views.size());
}

}  // namespace coppice
