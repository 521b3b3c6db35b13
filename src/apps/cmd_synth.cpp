// `coppice synth OUT [shape options]`: write a random-weight GGUF of any architecture (engine/synth.h) so
// benchmarks and tests need no download.

#include <cstdio>

#include "apps/commands.h"
#include "apps/common.h"
#include "engine/synth.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct SynthArgs {
  std::string out;
  SynthOptions o;
};

int synth(SynthArgs& a) {
  ProgressLine bar("synth");
  a.o.on_note = [&](const std::string& s) { bar.note(s); };
  if (bar.enabled()) {
    a.o.on_progress = [&](size_t i, size_t n, const std::string& name, uint64_t bytes, double secs) {
      bar.show("[%4zu/%4zu] %-32s %8.1f MB/s", i, n, name.c_str(),
               secs > 0 ? static_cast<double>(bytes) / 1e6 / secs : 0.0);
    };
  }
  const SynthReport r = synth_model(a.out, a.o);
  bar.finish();
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
  CLI::App* sub = app.add_subcommand("synth", "write a random-weight GGUF of any architecture and shape");
  sub->add_option("OUT", a->out, "output GGUF")->required();
  sub->add_option("--dim,--n-embd", o.dim, "embedding size")->capture_default_str();
  sub->add_option("--layers,--n-layer", o.layers, "blocks")->capture_default_str();
  sub->add_option("--heads,--n-head", o.heads, "attention heads")->capture_default_str();
  sub->add_option("--kv-heads,--n-head-kv", o.kv_heads, "KV heads (GQA)")->capture_default_str();
  sub->add_option("--ffn,--n-ff", o.ffn, "feed-forward size")->capture_default_str();
  sub->add_option("--vocab,--n-vocab", o.vocab, "vocabulary size (>= 259)")->capture_default_str();
  sub->add_option("--ctx", o.ctx, "training context length")->capture_default_str();
  sub->add_option("--rope-base", o.rope_base, "RoPE frequency base")->capture_default_str();
  sub->add_option("--type", o.type, "weight type or preset, as for quantize")->capture_default_str();
  sub->add_flag("--pure", o.pure, "every 2-D tensor in --type (no per-tensor mix)");
  sub->add_option("--seed", o.seed, "PRNG seed (same seed, same file)")->capture_default_str();
  sub->add_option("--std", o.std_dev, "weight standard deviation")->capture_default_str();
  sub->add_flag("--tied", o.tied, "no output.weight (output reuses token_embd)");
  sub->add_option("--arch", o.arch, "llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3, phi3")->capture_default_str();
  sub->add_option("--head-dim", o.head_dim, "head size (0: dim / heads)")->capture_default_str();
  sub->add_option("--experts,--n-expert", o.experts, "MoE experts (llama = Mixtral, qwen*moe)")->capture_default_str();
  sub->add_option("--experts-used,--n-expert-used", o.experts_used, "experts per token (top-k)")->capture_default_str();
  sub->add_option("--ffn-exp", o.ffn_exp, "expert feed-forward size (0: --ffn)")->capture_default_str();
  sub->add_option("--ffn-shexp", o.ffn_shexp, "qwen2moe shared expert size (0: --ffn)")->capture_default_str();
  sub->add_option("--sliding-window", o.sliding_window, "attention.sliding_window (0: none)")->capture_default_str();
  sub->add_option("--rope-scaling", o.rope_scaling, "none, linear, llama3 (llama), longrope (phi3)")->capture_default_str();
  sub->add_option("--rope-factor", o.rope_factor, "RoPE scaling factor")->capture_default_str();
  sub->add_option("--rope-orig-ctx", o.rope_orig_ctx, "original context length (0: ctx / 4)")->capture_default_str();
  sub->add_flag("!--no-rope-freqs-tensor", o.rope_freqs_tensor, "llama3: metadata only, no rope_freqs.weight");
  sub->add_option("--rope-base-swa", o.rope_base_swa, "gemma3: RoPE base of local layers")->capture_default_str();
  sub->add_option("--attn-softcap", o.attn_softcap, "gemma2: attention logit soft-cap")->capture_default_str();
  sub->add_option("--final-softcap", o.final_softcap, "gemma2: final logit soft-cap")->capture_default_str();
  sub->add_option("--attn-scale", o.attn_scale, "attention.scale (0: not written)")->capture_default_str();
  sub->add_option("--norm-std", o.norm_std, "norm weights = 1 + N(0, this)")->capture_default_str();
  sub->add_option("--rms-eps", o.rms_eps, "RMSNorm epsilon")->capture_default_str();
  sub->add_option("-t,--threads", o.n_threads, "threads (default: physical cores)")->check(CLI::Range(0, 1024));
  return [a] { return synth(*a); };
}

}  // namespace coppice::cli
