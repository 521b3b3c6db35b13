#include "model/pack.h"

#include <cstdlib>
#include <cstring>

#include "kernels/dispatch.h"
#include "util/error.h"

namespace coppice {

void PackedStore::Free::operator()(uint8_t* p) const { std::free(p); }

namespace {

void pack_one(WeightView& v, const gguf::File& file, ThreadPool& pool, PackedStore& store) {
  const kernels::PackedKernels* pk = kernels::kernels().packed[static_cast<uint32_t>(v.type)];
  if (!v.valid() || pk == nullptr || v.packed != nullptr || v.n_in % pk->k_multiple != 0) return;
  const size_t row = pk->row_bytes(v.n_in);
  const size_t bytes = (row * static_cast<size_t>(v.n_out) + 63) / 64 * 64;
  std::unique_ptr<uint8_t[], PackedStore::Free> buf(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
  CP_ASSERT(buf != nullptr);
  const WeightView src = v;
  uint8_t* dst = buf.get();
  pool.parallel_for(v.n_out, [&](int64_t b, int64_t e) {
    pk->pack_rows(src.row(b), dst + static_cast<size_t>(b) * row, src.n_in, e - b);
  });
  file.mapping()->release(src.data, src.row_bytes * static_cast<size_t>(src.n_out));
  v.data = dst;
  v.row_bytes = row;
  v.packed = pk;
  store.bytes += bytes;
  ++store.n_packed;
  store.buffers.push_back(std::move(buf));
}

}  // namespace

PackedStore pack_weights(ModelWeights& w, const gguf::File& file, ThreadPool& pool) {
  PackedStore store;
  if (const char* env = std::getenv("COPPICE_PACK"); env != nullptr && std::strcmp(env, "0") == 0) {
    return store;
  }
  for (LayerWeights& l : w.layers) {
    for (WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wqkv, &l.wo, &l.w_gate, &l.w_up, &l.w_down,
                          &l.gate_shexp, &l.up_shexp, &l.down_shexp}) {
      pack_one(*v, file, pool, store);
    }
  }
  if (!w.tied_output) pack_one(w.output, file, pool, store);
  return store;
}

}  // namespace coppice
