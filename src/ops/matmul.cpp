// Matrix multiplication over any weight type with the kernels chosen at start-up
// (kernels/dispatch.h). Activations are converted once to the weight type's dot format; then
//  - one token (decode): rows are handed out in chunks to the threads, one fast vec_dot each;
//  - many tokens (prefill): (token block x row chunk) work items go through the gemm tiles;
//    a token block's activations stay in cache while the weight rows stream past once per block.
#include <algorithm>
#include <atomic>

#include "kernels/dispatch.h"
#include "ops/ops.h"
#include "util/error.h"

namespace coppice::ops {
namespace {

constexpr int64_t kDecodeChunkRows = 64;      // at least this many rows per item when n_tok == 1
constexpr int64_t kDecodeItemsPerThread = 4;  // decode work items per thread (load balance)
constexpr int64_t kGemmChunkRows = 16;        // rows per work item when n_tok > 1
// Activations of one token block. Every block streams the whole weight matrix again, so bigger
// blocks read the weights fewer times: 1 MiB (the dev machine's L2) against the former 256 KiB
// ran pp512 of the 1.1B bench models 4-10 % faster (bench/RESULTS.md); 2 MiB helped q8_0 a
// little more and f16 (f16 activations overflowing L2) less.
constexpr size_t kTokenBlockBytes = 1 << 20;

// Hands out [0, n_items) to the pool's threads one item at a time (balanced under noise).
template <typename F>
void for_each_item(ThreadPool& pool, int64_t n_items, F&& fn) {
  if (pool.size() == 1 || n_items == 1) {
    for (int64_t i = 0; i < n_items; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n_items;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(i);
    }
  });
}

}  // namespace

void matmul(const WeightView& w, const float* x, int n_tok, float* y, ThreadPool& pool,
            std::vector<uint8_t>& scratch) {
  const kernels::KernelSet& ks = kernels::kernels();
  const int64_t K = w.n_in, N = w.n_out;
  // The kernels and activation format: the packed layout's, or the weight type's own.
  const kernels::PackedKernels* pk = w.packed;
  VecDotFn vec_dot = nullptr;
  kernels::GemmFn gemm = nullptr;
  FromFloatFn quant = nullptr;  // nullptr: activations stay f32
  size_t act_row = static_cast<size_t>(K) * sizeof(float);
  if (pk != nullptr) {
    CP_ASSERT(K % pk->k_multiple == 0);
    vec_dot = pk->vec_dot;
    gemm = pk->gemm;
    quant = pk->quantize_act;
    act_row = pk->act_row_bytes(K);
  } else {
    const TypeTraits& tt = *type_traits(w.type);
    const TypeTraits& vt = *type_traits(tt.vec_dot_type);
    CP_ASSERT(K % tt.block_size == 0 && K % vt.block_size == 0);
    const kernels::WeightKernels& wk = ks.for_weight(w.type);
    vec_dot = wk.vec_dot;
    gemm = wk.gemm;
    if (vt.type != DType::F32) {
      quant = ks.quantizer(vt.type);
      act_row = row_size(vt, K);
    }
  }

  // Activations in the dot format: [n_tok][act_row bytes]
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  if (quant != nullptr) {
    const size_t need = act_row * static_cast<size_t>(n_tok);
    if (scratch.size() < need) scratch.resize(need);
    uint8_t* q = scratch.data();
    if (n_tok == 1) {
      quant(x, q, K);  // a few hundred ns: cheaper than waking the pool
    } else {
      pool.parallel_for(n_tok, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) quant(x + t * K, q + t * act_row, K);
      });
    }
    act = q;
  }

  const int64_t panel = pk != nullptr ? pk->row_panel : 1;  // rows per work item are a multiple
  CP_ASSERT(N % panel == 0 && kGemmChunkRows % panel == 0);
  if (n_tok == 1) {
    // Few long contiguous runs per thread: each is one sequential stream for the hardware
    // prefetcher (short interleaved chunks cost ~25% of the read bandwidth here).
    int64_t chunk = std::max<int64_t>(kDecodeChunkRows, N / (kDecodeItemsPerThread * pool.size()));
    chunk = (chunk + panel - 1) / panel * panel;
    const int64_t n_items = (N + chunk - 1) / chunk;
    for_each_item(pool, n_items, [&](int64_t i) {
      const int64_t r0 = i * chunk, r1 = std::min(N, r0 + chunk);
      if (panel > 1) {  // panel layouts decode through their gemm (no per-row vec_dot)
        gemm(K, static_cast<int>(r1 - r0), 1, w.row(r0), w.row_bytes, act, act_row, y + r0, static_cast<size_t>(N));
        return;
      }
      for (int64_t r = r0; r < r1; ++r) vec_dot(K, y + r, w.row(r), act);
    });
    return;
  }

  const int tc = ks.tile_cols;
  int64_t tb = std::max<int64_t>(tc, static_cast<int64_t>(kTokenBlockBytes / act_row) / tc * tc);
  tb = std::min<int64_t>(tb, n_tok);
  const int64_t n_tb = (n_tok + tb - 1) / tb;
  const int64_t n_rc = (N + kGemmChunkRows - 1) / kGemmChunkRows;
  for_each_item(pool, n_tb * n_rc, [&](int64_t i) {
    const int64_t t0 = (i / n_rc) * tb, r0 = (i % n_rc) * kGemmChunkRows;
    const int nc = static_cast<int>(std::min<int64_t>(tb, n_tok - t0));
    const int nr = static_cast<int>(std::min<int64_t>(kGemmChunkRows, N - r0));
    gemm(K, nr, nc, w.row(r0), w.row_bytes, act + t0 * act_row, act_row, y + t0 * N + r0,
         static_cast<size_t>(N));
  });
}

}  // namespace coppice::ops
