// `coppice synth OUT [shape options]`: write a random-weight llama GGUF (engine/synth.h) so
// benchmarks and tests need no download.
#include <unistd.h>

#include <cstdio>

#include "apps/commands.h"
#include "engine/synth.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct SynthArgs {
  std::string out;
  SynthOptions o;
};

int synth(SynthArgs& a) {
  const bool tty = isatty(2) != 0;
  bool bar_open = false;
  a.o.on_note = [&](const std::string& s) {
    if (bar_open) std::fputc('\n', stderr);
    bar_open = false;
    std::fprintf(stderr, "[synth] %s\n", s.c_str());
  };
  if (tty) {
    a.o.on_progress = [&](size_t i, size_t n, const std::string& name, uint64_t bytes, double secs) {
      std::fprintf(stderr, "\r[%4zu/%4zu] %-32s %8.1f MB/s\x1b[K", i, n, name.c_str(),
                   secs > 0 ? static_cast<double>(bytes) / 1e6 / secs : 0.0);
      bar_open = true;
    };
  }
  const SynthReport r = synth_model(a.out, a.o);
  if (bar_open) std::fputc('\n', stderr);
  std::printf("wrote %s: %.3fB parameters, %.2f MiB, %zu tensors (", a.out.c_str(),
              static_cast<double>(r.n_params) / 1e9, static_cast<double>(r.file_bytes) / 1048576.0,
              r.n_tensors);
  bool first = true;
  for (const auto& [type, count] : r.type_counts) {
    std::printf("%s%s x%d", first ? "" : ", ", type.c_str(), count);
    first = false;
  }
  std::printf(") in %.2f s\n", r.seconds);
  return 0;
}

}  // namespace

Action register_synth(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  SynthOptions& o = a->o;
  CLI::App* sub = app.add_subcommand("synth", "write a random-weight llama GGUF of any shape");
  sub->add_option("OUT", a->out, "output GGUF")->required();
  sub->add_option("--dim", o.dim, "embedding size")->capture_default_str();
  sub->add_option("--layers", o.layers, "blocks")->capture_default_str();
  sub->add_option("--heads", o.heads, "attention heads")->capture_default_str();
  sub->add_option("--kv-heads", o.kv_heads, "KV heads (GQA)")->capture_default_str();
  sub->add_option("--ffn", o.ffn, "feed-forward size")->capture_default_str();
  sub->add_option("--vocab", o.vocab, "vocabulary size (>= 259)")->capture_default_str();
  sub->add_option("--ctx", o.ctx, "training context length")->capture_default_str();
  sub->add_option("--rope-base", o.rope_base, "RoPE frequency base")->capture_default_str();
  sub->add_option("--type", o.type, "weight type or preset, as for quantize")->capture_default_str();
  sub->add_flag("--pure", o.pure, "every 2-D tensor in --type (no per-tensor mix)");
  sub->add_option("--seed", o.seed, "PRNG seed (same seed, same file)")->capture_default_str();
  sub->add_option("--std", o.std_dev, "weight standard deviation")->capture_default_str();
  sub->add_flag("--tied", o.tied, "no output.weight (output reuses token_embd)");
  sub->add_option("-t,--threads", o.n_threads, "threads (default: physical cores)")->check(CLI::Range(0, 1024));
  return [a] { return synth(*a); };
}

}  // namespace coppice::cli
