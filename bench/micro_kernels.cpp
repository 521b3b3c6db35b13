// Kernel micro-benchmarks: vec_dot per type and ISA (one 4096-element row against one
// activation row, L1-resident), ops::matmul at 2048x2048 / 2048x8192 with 1 to 256 tokens on
// the file's rows (matmul/) and as load packs them (matmul_packed/, the panel layouts; also
// 2048x65536, a matrix that streams from DRAM as a model's do), and one
// decode step of ops::attention per KV type (attention/K/V/keys/head_dim/kv_heads, start-up ISA:
// lower it with COPPICE_ISA; 8 query heads, keys in 256-cell chunks, one call per kv-head group
// as the model makes them), the machine's read bandwidth (read_bandwidth/, the decode limit),
// and matmul on 2:4 F16/BF16/Q8_0 matrices as load packs them (matmul_2of4/).
//   micro_kernels --benchmark_filter=matmul   (threads: COPPICE_BENCH_THREADS, default 2)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/sparse24.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "util/cpu.h"
#include "util/threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace coppice;

namespace {

constexpr DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                            DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                            DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Quantizes n_rows rows of n elements with the reference quantizer (one random row reused).
std::vector<uint8_t> make_rows(const TypeTraits& tt, int64_t n, int64_t n_rows) {
  const auto f = randn(static_cast<size_t>(n), 1);
  std::vector<uint8_t> row(row_size(tt, n));
  tt.from_float(f.data(), row.data(), n);
  std::vector<uint8_t> all(row.size() * static_cast<size_t>(n_rows));
  for (int64_t r = 0; r < n_rows; ++r) std::copy(row.begin(), row.end(), all.begin() + r * row.size());
  return all;
}

void bm_vec_dot(benchmark::State& st, kernels::Isa isa, DType t) {
  const kernels::KernelSet* ks = kernels::kernels_for(isa);
  if (ks == nullptr) { st.SkipWithError("ISA not supported"); return; }
  const TypeTraits& tt = *type_traits(t);
  const TypeTraits& vt = *type_traits(tt.vec_dot_type);
  const int64_t n = 4096;
  const auto w = make_rows(tt, n, 1), a = make_rows(vt, n, 1);
  const VecDotFn dot = ks->for_weight(t).vec_dot;
  float s = 0;
  for (auto _ : st) {
    dot(n, &s, w.data(), a.data());
    benchmark::DoNotOptimize(s);
  }
  st.counters["bytes/s"] = benchmark::Counter(double(w.size()), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * n, benchmark::Counter::kIsIterationInvariantRate);
}

int bench_threads() {
  const char* e = std::getenv("COPPICE_BENCH_THREADS");
  return e != nullptr ? std::atoi(e) : 2;
}

// The timed loop: ops::matmul of wv with n_tok random activation rows on the bench's pool.
void run_matmul(benchmark::State& st, const WeightView& wv, int n_tok) {
  const auto x = randn(static_cast<size_t>(wv.n_in * n_tok), 2);
  std::vector<float> y(static_cast<size_t>(wv.n_out * n_tok));
  std::vector<uint8_t> scratch;
  ThreadPool pool(bench_threads());
  for (auto _ : st) {
    ops::matmul(wv, x.data(), n_tok, y.data(), pool, scratch);
    benchmark::DoNotOptimize(y.data());
  }
}

void bm_matmul(benchmark::State& st, DType t, int64_t n_out, int n_tok) {
  const TypeTraits& tt = *type_traits(t);
  const int64_t n_in = 2048;
  const auto w = make_rows(tt, n_in, n_out);
  const WeightView wv{t, w.data(), n_in, n_out, row_size(tt, n_in)};
  run_matmul(st, wv, n_tok);
  st.counters["bytes/s"] = benchmark::Counter(double(w.size()), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * double(n_in) * double(n_out) * n_tok,
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["tok/s"] = benchmark::Counter(double(n_tok), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(kernels::kernel_isa_name());
}

// matmul on the matrix as load would pack it (the ISA's packed layout for the type), with the
// small batches of speculative verification and server decoding.
void bm_matmul_packed(benchmark::State& st, DType t, int64_t n_out, int n_tok) {
  const kernels::PackedKernels* pk = kernels::kernels().packed[static_cast<uint32_t>(t)];
  if (pk == nullptr) { st.SkipWithError("no packed layout for this type on this ISA"); return; }
  const TypeTraits& tt = *type_traits(t);
  const int64_t n_in = 2048;
  const auto src = make_rows(tt, n_in, n_out);
  std::vector<uint8_t> w(pk->row_bytes(n_in) * static_cast<size_t>(n_out));
  pk->pack_rows(src.data(), w.data(), n_in, n_out);
  WeightView wv{t, w.data(), n_in, n_out, pk->row_bytes(n_in)};
  wv.packed = pk;
  run_matmul(st, wv, n_tok);
  st.counters["bytes/s"] = benchmark::Counter(double(w.size()), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["tok/s"] = benchmark::Counter(double(n_tok), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(pk->name);
}

// matmul on a 2:4 F16/BF16/Q8_0 matrix (the 2 largest of every 4 random values kept) in the layout
// load repacks it to (kernels/sparse24.h); compare with matmul/<type>/ on the dense rows.
void bm_matmul_2of4(benchmark::State& st, DType t, int64_t n_out, int n_tok) {
  const kernels::PackedKernels* best = kernels::sparse24::best(t);
  if (best == nullptr) { st.SkipWithError("no 2:4 kernels for this type on this ISA"); return; }
  const kernels::PackedKernels& pk = *best;
  const TypeTraits& tt = *type_traits(t);
  const int64_t n_in = 2048;
  const auto f = randn(static_cast<size_t>(n_in * n_out), 6);
  std::vector<float> pruned(f);
  for (size_t g = 0; g < pruned.size(); g += 4) {  // keep the 2 largest of every 4
    int a = 0, b = 1;
    if (std::fabs(pruned[g + b]) > std::fabs(pruned[g + a])) std::swap(a, b);
    for (int i = 2; i < 4; ++i) {
      if (std::fabs(pruned[g + i]) > std::fabs(pruned[g + a])) { b = a; a = i; }
      else if (std::fabs(pruned[g + i]) > std::fabs(pruned[g + b])) b = i;
    }
    for (int i = 0; i < 4; ++i) if (i != a && i != b) pruned[g + i] = 0.0f;
  }
  std::vector<uint8_t> src(row_size(tt, n_in) * static_cast<size_t>(n_out));
  tt.from_float(pruned.data(), src.data(), n_in * n_out);
  std::vector<uint8_t> w(pk.row_bytes(n_in) * static_cast<size_t>(n_out));
  pk.pack_rows(src.data(), w.data(), n_in, n_out);
  WeightView wv{t, w.data(), n_in, n_out, pk.row_bytes(n_in)};
  wv.packed = &pk;
  run_matmul(st, wv, n_tok);
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * double(n_in) * double(n_out) * n_tok,  // dense-equivalent
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["tok/s"] = benchmark::Counter(double(n_tok), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(pk.name);
}

// Sum of the 64-bit words of [p, p + bytes): a plain read stream (the decode bandwidth limit).
#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t read_sum_avx512(const uint8_t* p, size_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t o = 0; o + 256 <= bytes; o += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + o));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + o + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + o + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + o + 192));
  }
  alignas(64) uint64_t lanes[8];  // (_mm512_reduce_add_epi64 trips GCC 12's -Wuninitialized)
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  return s;
}
#endif
uint64_t read_sum(const uint8_t* p, size_t bytes) {
#if defined(__x86_64__)
  if (cpu_features().avx512f) return read_sum_avx512(p, bytes);
#endif
  uint64_t s[4] = {0, 0, 0, 0};
  for (size_t o = 0; o + 32 <= bytes; o += 32)
    for (int k = 0; k < 4; ++k) { uint64_t v; std::memcpy(&v, p + o + 8 * k, 8); s[k] += v; }
  return s[0] + s[1] + s[2] + s[3];
}

// The machine's read bandwidth: 1 GiB (far beyond the caches) split over the pool's threads in
// contiguous 4 MiB pieces, the way decode streams a model's weights. bench/RESULTS.md relates
// each type's decode GB/s (file bytes per token x tokens/s) to this figure.
void bm_read_bandwidth(benchmark::State& st) {
  constexpr size_t kBytes = size_t{1} << 30, kPiece = size_t{4} << 20;
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(64, kBytes));
  std::memset(buf, 1, kBytes);  // touch every page
  ThreadPool pool(bench_threads());
  for (auto _ : st) {
    std::atomic<uint64_t> total{0};
    pool.parallel_for(static_cast<int64_t>(kBytes / kPiece), [&](int64_t b, int64_t e) {
      total += read_sum(buf + b * kPiece, static_cast<size_t>(e - b) * kPiece);
    });
    benchmark::DoNotOptimize(total.load());
  }
  std::free(buf);
  st.counters["bytes/s"] = benchmark::Counter(double(kBytes), benchmark::Counter::kIsIterationInvariantRate);
}

// One query token over n_keys cached cells of n_kv KV heads: K in kt, V in vt (one thread).
void bm_attention(benchmark::State& st, DType kt, DType vt, int n_keys, int hd, int n_kv) {
  const int n_head = 8, row = n_kv * hd, chunk = 256, group = n_head / n_kv;
  const TypeTraits& ktt = *type_traits(kt);
  const TypeTraits& vtt = *type_traits(vt);
  const size_t kr = row_size(ktt, row), vr = row_size(vtt, row);
  std::vector<uint8_t> k(kr * n_keys), v(vr * n_keys);
  const auto kf = randn(static_cast<size_t>(row) * 64, 3), vf = randn(static_cast<size_t>(row) * 64, 4);
  for (int j = 0; j < n_keys; ++j) {  // 64 distinct rows repeated
    ops::store_kv_row(kf.data() + (j % 64) * row, k.data() + j * kr, row, kt);
    ops::store_kv_row(vf.data() + (j % 64) * row, v.data() + j * vr, row, vt);
  }
  std::vector<ops::KvChunk> chunks;
  for (int j = 0; j < n_keys; j += chunk) {
    chunks.push_back({k.data() + j * kr, v.data() + j * vr, std::min(chunk, n_keys - j)});
  }
  ops::AttentionShape s{n_head, n_kv, hd, kt, 1.0f / std::sqrt(float(hd))};
  s.v_type = vt;
  const auto q = randn(static_cast<size_t>(n_head) * hd, 5);
  std::vector<float> out(static_cast<size_t>(n_head) * hd), scratch(2 * n_head);
  for (auto _ : st) {
    for (int g = 0; g < n_kv; ++g) {
      ops::attention(q.data(), chunks, s, nullptr, out.data(), scratch.data(), g * group, (g + 1) * group);
    }
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["KV bytes/s"] = benchmark::Counter(double(k.size() + v.size()),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(kernels::kernel_isa_name());
}

const int kRegistered = [] {
  benchmark::RegisterBenchmark("read_bandwidth/1GiB", bm_read_bandwidth)->UseRealTime();
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K}) {
    for (int64_t n_out : {2048, 8192, 65536}) {
      for (int n_tok : {1, 2, 4, 8, 16, 64, 256}) {
        const std::string name = std::string("matmul_packed/") + dtype_name(t) + "/2048x" + std::to_string(n_out) +
                                 "/tok" + std::to_string(n_tok);
        benchmark::RegisterBenchmark(name.c_str(), bm_matmul_packed, t, n_out, n_tok)->UseRealTime();
      }
    }
  }
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0}) {
    for (int64_t n_out : {2048, 8192, 65536}) {
      for (int n_tok : {1, 8, 16, 64, 256}) {
        const std::string name = std::string("matmul_2of4/") + dtype_name(t) + "/2048x" + std::to_string(n_out) +
                                 "/tok" + std::to_string(n_tok);
        benchmark::RegisterBenchmark(name.c_str(), bm_matmul_2of4, t, n_out, n_tok)->UseRealTime();
      }
    }
  }
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q5_1, DType::Q5_0,
                  DType::Q4_1, DType::Q4_0}) {
    for (int n_keys : {4096, 32768}) {
      for (int hd : {64, 128}) {
        for (int n_kv : {8, 2}) {
          const std::string name = std::string("attention/") + dtype_name(t) + "/" + dtype_name(t) + "/" +
                                   std::to_string(n_keys) + "/" + std::to_string(hd) + "/" + std::to_string(n_kv);
          benchmark::RegisterBenchmark(name.c_str(), bm_attention, t, t, n_keys, hd, n_kv);
        }
      }
    }
  }
  for (kernels::Isa isa : {kernels::Isa::Scalar, kernels::Isa::Avx2, kernels::Isa::Avx512}) {
    for (DType t : kTypes) {
      const std::string name = std::string("vec_dot/") + kernels::isa_name(isa) + "/" + dtype_name(t);
      benchmark::RegisterBenchmark(name.c_str(), bm_vec_dot, isa, t);
    }
  }
  for (DType t : kTypes) {
    for (int64_t n_out : {2048, 8192}) {
      for (int n_tok : {1, 2, 4, 8, 16, 64, 256}) {
        const std::string name = std::string("matmul/") + dtype_name(t) + "/2048x" +
                                 std::to_string(n_out) + "/tok" + std::to_string(n_tok);
        benchmark::RegisterBenchmark(name.c_str(), bm_matmul, t, n_out, n_tok)->UseRealTime();
      }
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
