#include "model/pack.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/dispatch.h"
#include "util/error.h"

namespace coppice {

void PackedStore::Free::operator()(uint8_t* p) const { std::free(p); }

namespace {

const kernels::PackedKernels* layout_for(const WeightView& v) {
  if (!v.valid() || v.packed != nullptr) return nullptr;
  const kernels::PackedKernels* pk = kernels::kernels().packed[static_cast<uint32_t>(v.type)];
  return pk != nullptr && v.n_in % pk->k_multiple == 0 && v.n_out % pk->row_panel == 0 ? pk : nullptr;
}

// Row bytes in the arena: the layout's, or the file's for a relocated view (pk == nullptr).
size_t arena_row_bytes(const WeightView& v, const kernels::PackedKernels* pk) {
  return pk != nullptr ? pk->row_bytes(v.n_in) : v.row_bytes;
}

size_t packed_bytes(const WeightView& v, const kernels::PackedKernels* pk) {
  return (arena_row_bytes(v, pk) * static_cast<size_t>(v.n_out) + 63) / 64 * 64;
}

// MemAvailable from /proc/meminfo (bytes), or SIZE_MAX where unknown.
size_t available_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return SIZE_MAX;
  char line[256];
  size_t kb = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f) != nullptr)
    found = std::sscanf(line, "MemAvailable: %zu kB", &kb) == 1;
  std::fclose(f);
  return found ? kb * 1024 : SIZE_MAX;
}

bool relocate_enabled() {
  const char* env = std::getenv("COPPICE_RELOCATE");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

}  // namespace

bool dense_packing_enabled() {
  const char* env = std::getenv("COPPICE_PACK");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

void pack_weights(ModelWeights& w, const gguf::File& file, ThreadPool& pool, PackedStore& store) {
  if (!dense_packing_enabled()) return;
  std::vector<PackJob> jobs;
  auto add = [&](WeightView* v) {
    if (const kernels::PackedKernels* pk = layout_for(*v)) jobs.push_back({v, pk});
    else if (v->valid() && v->packed == nullptr && relocate_enabled()) jobs.push_back({v, nullptr});
  };
  for (LayerWeights& l : w.layers)
    for (WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wqkv, &l.wo, &l.w_gate, &l.w_up, &l.w_down,
                          &l.gate_shexp, &l.up_shexp, &l.down_shexp})
      add(v);
  if (!w.tied_output) add(&w.output);
  // Relocation only speeds things up: where its copies would not fit the memory available
  // now (a model larger than RAM streams from the page cache), the matrices stay mapped.
  size_t relocated = 0;
  for (const auto& [v, pk] : jobs) relocated += pk == nullptr ? packed_bytes(*v, pk) : 0;
  if (relocated > 0 && relocated > available_memory() / 10 * 9)
    std::erase_if(jobs, [](const PackJob& j) { return j.second == nullptr; });
  pack_views(jobs, file, pool, store);
}

void pack_views(std::span<const PackJob> jobs, const gguf::File& file, ThreadPool& pool, PackedStore& store) {
  size_t total = 0;
  for (const auto& [v, pk] : jobs) total += packed_bytes(*v, pk);
  if (total == 0) return;

  // One arena, 2 MiB aligned and advised as huge pages: decode streams every byte once per
  // token, and with 4 KiB pages the TLB misses cost a good part of the read bandwidth.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = (total + kHuge - 1) / kHuge * kHuge;
  std::unique_ptr<uint8_t[], PackedStore::Free> buf(static_cast<uint8_t*>(std::aligned_alloc(kHuge, bytes)));
  CP_ASSERT(buf != nullptr);
  madvise(buf.get(), bytes, MADV_HUGEPAGE);
  uint8_t* dst = buf.get();
  for (const auto& [v, pk] : jobs) {
    const size_t row = arena_row_bytes(*v, pk);
    const WeightView src = *v;
    const int64_t rp = pk != nullptr ? pk->row_panel : 1;  // whole panels per work item
    pool.parallel_for(src.n_out / rp, [&, pk = pk](int64_t b, int64_t e) {
      uint8_t* out = dst + static_cast<size_t>(b * rp) * row;
      if (pk != nullptr) pk->pack_rows(src.row(b * rp), out, src.n_in, (e - b) * rp);
      else std::memcpy(out, src.row(b), static_cast<size_t>(e - b) * row);
    });
    file.mapping()->release(src.data, src.row_bytes * static_cast<size_t>(src.n_out));
    v->data = dst;
    v->row_bytes = row;
    v->packed = pk;
    dst += packed_bytes(src, pk);
    ++store.n_packed;
  }
  store.bytes += bytes;
  store.buffers.push_back(std::move(buf));
}

}  // namespace coppice
