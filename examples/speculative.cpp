// Speculative decoding, end to end, and the two measurements of bench/RESULTS.md.
//   example_speculative compare MODEL PROMPT_FILE N_TOKENS REPS SPEC...
//     plain greedy decoding and each --spec value (SPEC@N: fixed budget N), interleaved REPS
//     times (a busy machine slows every variant alike); prints decode tokens/s, the ratio to
//     plain, acceptance. Fails if any output differs from plain greedy decoding.
//   example_speculative verify MODEL N_CTX REPS K...
//     after N_CTX prompt tokens: time of one verify step of a K-token chain (the pending token
//     plus K - 1 drafts) relative to one plain decode step, median of REPS.
// Threads: COPPICE_THREADS (default: physical cores).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/spec_decode.h"
#include "util/error.h"

using namespace coppice;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Run {
  double tok_per_s = 0;
  std::vector<int32_t> tokens;
  SpecStats stats;
};

Run decode(Model& m, const Tokenizer& tok, const std::vector<int32_t>& prompt, int n, const std::string& spec) {
  KvCache cache = m.make_cache(static_cast<int64_t>(prompt.size()) + n + 128);
  cache.add_sequence(0);
  SamplingParams sp;
  sp.temperature = 0;
  Sampler sampler(sp);
  GenerateOptions go;
  go.n_predict = n;
  go.stop_at_eog = false;
  Run r;
  const auto sink = [&](int32_t t) {
    r.tokens.push_back(t);
    return true;
  };
  GenerateStats st;
  if (spec == "none") {
    st = generate(m, cache, 0, tok, sampler, prompt, go, sink);
  } else {
    // "SPEC@N": a fixed draft budget of N (no adaptive size, no fallback).
    const size_t at = spec.find('@');
    SpecConfig cfg = parse_spec(spec.substr(0, at));
    if (at != std::string::npos) cfg.max_nodes = std::atoi(spec.c_str() + at + 1), cfg.adaptive = false;
    auto d = make_drafter(cfg, m, cache, 0, 0, static_cast<int64_t>(prompt.size()) + n + 128);
    SpecDecoder dec(m, cache, 0, sampler, std::move(d), cfg);
    st = generate_spec(m, cache, 0, tok, sampler, prompt, go, dec, sink);
    r.stats = dec.stats();
  }
  r.tok_per_s = 1000.0 * st.n_generated / st.gen_ms;
  return r;
}

int compare(Model& m, const Tokenizer& tok, const std::string& file, int n, int reps,
            const std::vector<std::string>& specs) {
  FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) fail("example", "cannot open " + file);
  std::string text;
  char buf[4096];
  for (size_t k; (k = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, k);
  std::fclose(f);
  const std::vector<int32_t> prompt = tok.encode(text, true, true);
  std::vector<std::string> all{"none"};
  all.insert(all.end(), specs.begin(), specs.end());
  std::vector<std::vector<double>> speed(all.size());
  std::vector<SpecStats> stats(all.size());
  std::vector<int32_t> ref;
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < all.size(); ++i) {
      Run run = decode(m, tok, prompt, n, all[i]);
      if (i == 0 && r == 0) ref = run.tokens;
      if (run.tokens != ref) fail("example", all[i] + ": output differs from plain greedy decoding");
      speed[i].push_back(run.tok_per_s);
      stats[i].add(run.stats);
    }
  std::printf("| spec | decode tok/s (median of %d) | vs plain | acceptance | tokens / verify step | verify / plain steps |\n|---|---|---|---|---|---|\n", reps);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double base = median(speed[0]);
  for (size_t i = 0; i < all.size(); ++i)
    std::printf("| %s | %.0f | %.2fx | %.1f%% | %.2f | %lld / %lld |\n", all[i].c_str(), median(speed[i]),
                median(speed[i]) / base, 100 * stats[i].acceptance_rate(), i ? stats[i].mean_accepted() : 1.0,
                static_cast<long long>(stats[i].spec_steps), static_cast<long long>(stats[i].plain_steps));
  return 0;
}

int verify(Model& m, int n_ctx, int reps, const std::vector<int>& ks) {
  KvCache cache = m.make_cache(n_ctx + 256);
  cache.add_sequence(0);
  std::vector<int32_t> prompt(static_cast<size_t>(n_ctx));
  for (int i = 0; i < n_ctx; ++i) prompt[i] = 1 + (i * 7919) % static_cast<int>(m.n_vocab() - 1);
  std::vector<float> lg;
  prefill(m, cache, 0, prompt, 256, false, lg);
  auto time_step = [&](int k) {  // a chain of k tree tokens after the committed prompt
    std::vector<BatchToken> b;
    for (int i = 0; i < k; ++i) b.push_back({3 + i, n_ctx + i, 0, true, k > 1, i - 1});
    const double t0 = now_ms();
    m.step(b, cache, lg);
    const double t = now_ms() - t0;
    cache.truncate(0, n_ctx);
    return t;
  };
  time_step(1), time_step(ks.back());  // warm the scratch buffers
  // Pairs in alternating order (ABBA); the minimum is the run least disturbed by other load.
  std::printf("| k | verify ms (min) | decode ms (min) | ratio of minima | ratio of medians |\n|---|---|---|---|---|\n");
  for (int k : ks) {
    std::vector<double> tk, t1;
    for (int r = 0; r < reps; ++r) {
      if (r % 2 == 0) t1.push_back(time_step(1)), tk.push_back(time_step(k));
      else tk.push_back(time_step(k)), t1.push_back(time_step(1));
    }
    std::sort(tk.begin(), tk.end());
    std::sort(t1.begin(), t1.end());
    std::printf("| %d | %.2f | %.2f | %.2f | %.2f |\n", k, tk[0], t1[0], tk[0] / t1[0],
                tk[tk.size() / 2] / t1[t1.size() / 2]);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::fprintf(stderr, "usage: %s compare MODEL PROMPT_FILE N REPS SPEC... | verify MODEL N_CTX REPS K...\n", argv[0]);
      return 2;
    }
    const std::string mode = argv[1];
    ModelOptions mo;
    if (const char* t = std::getenv("COPPICE_THREADS")) mo.n_threads = std::atoi(t);
    auto m = Model::load(argv[2], mo);
    if (mode == "compare" && argc >= 6) {
      auto tok = Tokenizer::from_gguf(m->file());
      return compare(*m, *tok, argv[3], std::atoi(argv[4]), std::atoi(argv[5]),
                     std::vector<std::string>(argv + 6, argv + argc));
    }
    if (mode == "verify" && argc >= 5) {
      std::vector<int> ks;
      for (int i = 5; i < argc; ++i) ks.push_back(std::atoi(argv[i]));
      if (ks.empty()) ks = {1, 2, 4, 8, 16, 32, 64};
      return verify(*m, std::atoi(argv[3]), std::atoi(argv[4]), ks);
    }
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
