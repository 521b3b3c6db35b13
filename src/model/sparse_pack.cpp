#include "model/sparse_pack.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/dispatch.h"
#include "kernels/sparse24.h"
#include "model/pack.h"
#include "util/error.h"

namespace coppice {
namespace {

namespace sp = kernels::sparse24;

const kernels::PackedKernels* layout_for(const WeightView& v) {
  if (!v.valid() || v.packed != nullptr || v.n_in % sp::kChunk != 0) return nullptr;
  const kernels::PackedKernels* pk = sp::best(v.type);
  if (pk == nullptr || v.n_out % pk->row_panel != 0) return nullptr;
  // A 2:4 panel layout (q8_0x16s) is integer like the dense panels and reads 384 bytes per 16
  // rows x 32 instead of 544: it is taken even where the type has a dense panel layout. The
  // f32 2:4 row kernels lose to the dense panels (bench/RESULTS.md): those run only where the
  // type would otherwise run from the file's rows.
  if (pk->row_panel == 1 && dense_packing_enabled() && kernels::kernels().packed[static_cast<uint32_t>(v.type)] != nullptr)
    return nullptr;
  return pk;
}

bool all_2of4(const WeightView& v, ThreadPool& pool) {
  std::atomic<bool> ok{true};
  pool.parallel_for(v.n_out, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e && ok.load(std::memory_order_relaxed); ++r)
      if (!sp::row_is_2of4(v.type, v.row(r), v.n_in)) ok = false;
  });
  return ok;
}

}  // namespace

int pack_sparse24(ModelWeights& w, const gguf::File& file, ThreadPool& pool, PackedStore& store) {
  if (const char* env = std::getenv("COPPICE_SPARSE"); env != nullptr && std::strcmp(env, "0") == 0) return 0;
  std::vector<PackJob> jobs;
  for (LayerWeights& l : w.layers) {
    for (WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wqkv, &l.wo, &l.w_gate, &l.w_up, &l.w_down,
                          &l.gate_shexp, &l.up_shexp, &l.down_shexp}) {
      if (const kernels::PackedKernels* pk = layout_for(*v); pk != nullptr && all_2of4(*v, pool)) jobs.push_back({v, pk});
    }
  }
  pack_views(jobs, file, pool, store);  // model/pack.cpp: the same huge-page arena
  return static_cast<int>(jobs.size());
}

}  // namespace coppice
