// `coppice bench`: llama-bench style prompt processing (ppN) and generation (tgN) tokens/s,
// repeated -r times, mean ± sd. Tokens are fixed pseudo-random ids (content does not matter).
#include <nlohmann/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "apps/commands.h"
#include "apps/common.h"
#include "kernels/dispatch.h"
#include "util/cpu.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct BenchArgs {
  ModelArgs model;
  int n_prompt = 512;
  int n_gen = 128;
  int reps = 5;
  int depth = 0;  // context tokens before the generation test
  bool json = false;
};

struct Result {
  std::string test;
  std::vector<double> tps;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int bench(BenchArgs a) {
  if (a.n_prompt < 0 || a.n_gen < 0 || a.reps < 1) fail("cli", "-p, -n must be >= 0 and -r >= 1");
  if (a.depth < 0) fail("cli", "--depth must be >= 0");
  a.model.ctx = std::max(a.model.ctx, a.n_prompt + a.n_gen + a.depth + 16);
  Loaded l = load(a.model);
  Model& m = *l.model;
  const int64_t V = m.n_vocab();
  KvCache cache = make_kv_cache(l, a.n_prompt + a.n_gen + a.depth + 16);
  KvPolicy* policy = l.policy.get();
  std::vector<float> logits;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  auto next_tok = [&] { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return static_cast<int32_t>(rng % V); };

  std::vector<Result> results;
  int kv_cells = 0;  // cells the sequence held at the end of the last tg run (mean over layers)
  size_t kv_bytes = 0;
  auto run_pp = [&](bool record, Result& r) {
    cache.add_sequence(0);
    std::vector<BatchToken> batch;
    const double t0 = now_s();
    for (int s = 0; s < a.n_prompt; s += a.model.batch) {
      batch.clear();
      const int e = std::min(a.n_prompt, s + a.model.batch);
      for (int i = s; i < e; ++i) batch.push_back({next_tok(), i, 0, i == a.n_prompt - 1});
      m.step(batch, cache, logits);
    }
    const double dt = now_s() - t0;
    cache.remove_sequence(0);
    if (record) r.tps.push_back(a.n_prompt / dt);
  };
  // Generation after --depth context tokens (untimed prefill; --kv-policy evicts throughout).
  auto run_tg = [&](bool record, Result& r) {
    cache.add_sequence(0);
    std::vector<BatchToken> batch;
    for (int s = 0; s < a.depth; s += a.model.batch) {
      batch.clear();
      for (int i = s; i < std::min(a.depth, s + a.model.batch); ++i) batch.push_back({next_tok(), i, 0, false});
      m.step(batch, cache, logits);
      if (policy) policy->enforce(cache, 0);
    }
    BatchToken bt{next_tok(), 0, 0, true};
    const double t0 = now_s();
    for (int i = 0; i < a.n_gen; ++i) {
      bt.pos = a.depth + i;
      bt.token = next_tok();
      m.step({&bt, 1}, cache, logits);
      if (policy) policy->enforce(cache, 0);
    }
    const double dt = now_s() - t0;
    int64_t cells = 0;
    for (int il = 0; il < cache.n_layer(); ++il) cells += cache.layer_length(il, 0);
    kv_cells = static_cast<int>(cells / cache.n_layer());
    kv_bytes = cache.bytes_used();
    cache.remove_sequence(0);
    if (policy) policy->forget(0);
    if (record) r.tps.push_back(a.n_gen / dt);
  };
  if (a.n_prompt > 0) {
    Result r{"pp" + std::to_string(a.n_prompt), {}};
    run_pp(false, r);  // warm-up
    for (int i = 0; i < a.reps; ++i) run_pp(true, r);
    results.push_back(r);
  }
  if (a.n_gen > 0) {
    Result r{"tg" + std::to_string(a.n_gen) + (a.depth > 0 ? "@d" + std::to_string(a.depth) : ""), {}};
    run_tg(false, r);
    for (int i = 0; i < a.reps; ++i) run_tg(true, r);
    results.push_back(r);
  }

  const ModelConfig& c = m.config();
  uint64_t bytes = 0;
  for (const auto& t : m.file().tensors()) bytes += t.size;
  std::string wtype = "f32";
  if (const auto* t = m.file().tensor("blk.0.attn_q.weight")) wtype = dtype_name(t->type);
  nlohmann::json out = nlohmann::json::array();
  if (!a.json)
    std::printf("| model | size | type | threads | isa | test | t/s |\n|---|---:|---|---:|---|---|---:|\n");
  for (const Result& r : results) {
    double mean = 0, sd = 0;
    for (double v : r.tps) mean += v;
    mean /= r.tps.size();
    for (double v : r.tps) sd += (v - mean) * (v - mean);
    sd = r.tps.size() > 1 ? std::sqrt(sd / (r.tps.size() - 1)) : 0.0;
    if (a.json) {
      out.push_back({{"test", r.test}, {"threads", m.pool().size()}, {"tokens_per_second", mean},
                     {"stddev", sd}, {"samples", r.tps}, {"model", c.name.empty() ? c.arch : c.name},
                     {"model_bytes", bytes}, {"n_params_layers", c.n_layer}, {"type", wtype},
                     {"isa", kernels::kernel_isa_name()}, {"repetitions", a.reps},
                     {"kv_type_k", dtype_name(cache.k_type(0))}, {"kv_type_v", dtype_name(cache.v_type(0))},
                     {"kv_cells_after_tg", kv_cells}});
    } else {
      std::printf("| %s | %.2f MiB | %s | %d | %s | %s | %.2f ± %.2f |\n",
                  (c.name.empty() ? c.arch : c.name).c_str(), bytes / 1048576.0, wtype.c_str(),
                  m.pool().size(), kernels::kernel_isa_name(), r.test.c_str(), mean, sd);
    }
  }
  if (a.json) std::cout << out.dump(2) << "\n";
  else if (a.n_gen > 0)
    std::printf("kv after tg: %d cells, %.2f MiB (k %s / v %s)\n", kv_cells,
                static_cast<double>(kv_bytes) / 1048576.0,
                dtype_name(cache.k_type(0)), dtype_name(cache.v_type(0)));
  return 0;
}

}  // namespace

Action register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench", "prompt-processing and generation speed");
  add_model_options(sub, a->model);
  sub->add_option("-p,--n-prompt", a->n_prompt, "prompt tokens (ppN), 0 to skip");
  sub->add_option("-n,--n-gen", a->n_gen, "generated tokens (tgN), 0 to skip");
  sub->add_option("-r,--repetitions", a->reps, "repetitions");
  sub->add_option("-d,--depth", a->depth, "context tokens before the tgN run (KV read per token)");
  sub->add_flag("--json", a->json, "machine-readable output");
  return [a] { return bench(*a); };
}

}  // namespace coppice::cli
