#include "apps/spec_cli.h"

#include "util/error.h"

#include <cstdio>

namespace coppice::cli {

void add_spec_options(CLI::App* app, SpecArgs& a) {
  app->add_option("--spec", a.spec,
                  "speculative decoding: ngram[:N] (prompt lookup), recycle[:K] (Token Recycling), "
                  "layerskip[:EXIT] (self-speculation), draft:PATH (draft model), none");
  app->add_option("--spec-max", a.max_nodes, "largest draft tree (tokens verified per step)")
      ->check(CLI::Range(1, 64));
  app->add_flag("--spec-fixed", a.fixed, "always draft --spec-max tokens (no adaptive size, no fallback)");
}

std::unique_ptr<SpecDecoder> make_spec_decoder(const SpecArgs& a, const Loaded& l, KvCache& cache,
                                               SeqId seq, Sampler& sampler, int n_threads) {
  SpecConfig cfg = parse_spec(a.spec);
  if (cfg.kind == SpecConfig::Kind::None) return nullptr;
  if (l.policy) fail("cli", "--spec cannot be combined with --kv-policy (eviction would compact the cells being verified)");
  cfg.max_nodes = a.max_nodes;
  cfg.adaptive = !a.fixed;
  auto d = make_drafter(cfg, *l.model, cache, seq, n_threads, l.n_ctx);
  return std::make_unique<SpecDecoder>(*l.model, cache, seq, sampler, std::move(d), cfg);
}

void print_spec_stats(const std::string& spec, const SpecStats& s) {
  std::fprintf(stderr,
               "spec %s: %lld verify steps, %lld plain steps, acceptance %.1f%% (%lld of %lld drafted), "
               "%.2f tokens per verify step",
               spec.c_str(), static_cast<long long>(s.spec_steps), static_cast<long long>(s.plain_steps),
               100.0 * s.acceptance_rate(), static_cast<long long>(s.accepted),
               static_cast<long long>(s.drafted), s.mean_accepted());
  if (s.pruned > 0) std::fprintf(stderr, ", %lld drafts pruned by the grammar", static_cast<long long>(s.pruned));
  if (s.speedup() > 0) std::fprintf(stderr, ", speed-up %.2fx over this run's plain steps", s.speedup());
  std::fputc('\n', stderr);
}

}  // namespace coppice::cli
