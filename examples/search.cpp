// Test-time search in a few lines, and a measurement of what branch sharing buys:
//   example_search MODEL [N=16] [PROMPT_TOKENS=512] [GEN=32] [THREADS=1]
// draws N samples of GEN tokens after one long prompt twice: (1) as N branches forked from
// one prefill and decoded in the same batched steps (run_search, best-of-n), (2) as N
// independent requests, one after another, each with its own prefill and KV. The tokens must
// be identical (sample i uses seed + i either way); it prints KV blocks and time for both.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/generate.h"
#include "engine/search.h"
#include "util/error.h"

using namespace coppice;

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [N=16] [PROMPT_TOKENS=512] [GEN=32] [THREADS=1]\n", argv[0]);
    return 2;
  }
  const int n = argc > 2 ? std::atoi(argv[2]) : 16;
  const int n_prompt = argc > 3 ? std::atoi(argv[3]) : 512;
  const int gen = argc > 4 ? std::atoi(argv[4]) : 32;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
  if (n < 1 || n_prompt < 1 || gen < 1 || threads < 1) {
    std::fprintf(stderr, "N, PROMPT_TOKENS, GEN and THREADS must be >= 1\n");
    return 2;
  }
  try {
    ModelOptions mo;
    mo.n_threads = threads;
    auto model = Model::load(argv[1], mo);
    auto tok = Tokenizer::from_gguf(model->file());
    // A long prompt: a story paragraph repeated until it has n_prompt tokens.
    std::vector<int32_t> prompt;
    while (static_cast<int>(prompt.size()) < n_prompt) {
      const auto ids = tok->encode("The little dog ran to the park and played with a red ball all day long. ",
                                   prompt.empty(), false);
      prompt.insert(prompt.end(), ids.begin(), ids.end());
    }
    prompt.resize(n_prompt);
    const std::string prompt_text = tok->decode(prompt);

    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.seed = 7;
    const int bs = 16;
    const int64_t per_seq = (n_prompt + gen + bs - 1) / bs + 1;

    // (1) Branches: one prefill, N forks, batched decode.
    SearchOptions o;
    o.kind = SearchKind::BestOfN;
    o.n = n;
    o.budget = static_cast<int64_t>(n) * gen;
    o.max_tokens = gen;
    o.sampling = sp;
    o.branch.stop_at_eog = false;
    KvCache shared = model->make_cache(per_seq * bs * (n + 1), DType::F16, bs);
    auto scorer = make_logprob_scorer();
    auto t0 = std::chrono::steady_clock::now();
    SearchResult r = run_search(*model, shared, *tok, prompt, prompt_text, *scorer, o);
    const double branch_ms = ms_since(t0);

    // (2) Independent requests: each its own sequence, prefill and decode.
    KvCache own = model->make_cache(per_seq * bs * (n + 1), DType::F16, bs);
    std::vector<std::vector<int32_t>> outs(n);
    int64_t independent_blocks = 0;
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      own.add_sequence(i);
      SamplingParams spi = sp;
      spi.seed = sp.seed + i;
      Sampler s(spi);
      GenerateOptions go;
      go.n_predict = gen;
      go.stop_at_eog = false;
      generate(*model, own, i, *tok, s, prompt, go, [&](int32_t id) {
        outs[i].push_back(id);
        return true;
      });
      independent_blocks += own.blocks_used();  // as if all N were held at once
      own.remove_sequence(i);
    }
    const double indep_ms = ms_since(t0);

    int same = 0;
    for (const SearchCandidate& c : r.candidates)
      for (const auto& o2 : outs) same += c.tokens == o2;
    const double kv_mib = static_cast<double>(shared.bytes_total()) / static_cast<double>(shared.n_blocks()) / (1 << 20);
    std::printf("%d branches x %d tokens after a %d-token prompt (%d threads)\n", n, gen, n_prompt, threads);
    std::printf("identical samples: %d of %d\n", same, n);
    std::printf("KV blocks: branches peak %lld (%.1f MiB), independent %lld (%.1f MiB): %.2fx less\n",
                static_cast<long long>(r.kv_blocks_peak), static_cast<double>(r.kv_blocks_peak) * kv_mib,
                static_cast<long long>(independent_blocks), static_cast<double>(independent_blocks) * kv_mib,
                static_cast<double>(independent_blocks) / static_cast<double>(r.kv_blocks_peak));
    std::printf("time: branches %.0f ms, independent %.0f ms: %.2fx faster; generated tok/s %.1f vs %.1f\n",
                branch_ms, indep_ms, indep_ms / branch_ms, 1000.0 * n * gen / branch_ms, 1000.0 * n * gen / indep_ms);
    return same == n ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
