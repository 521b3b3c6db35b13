// `coppice prune IN OUT --method magnitude|wanda|nm|structured|experts [--sparsity S] [--nm 2:4]
// [--experts-keep K] [--calib FILE]`: sparsify the layer matrices of a GGUF, or remove FFN
// channels / heads / MoE experts (engine/prune.h). Progress on stderr when a terminal.

#include <cstdio>

#include "apps/commands.h"
#include "apps/common.h"
#include "engine/prune.h"
#include "engine/prune_eval.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct PruneArgs {
  std::string in, out, method = "wanda", nm = "2:4", calib, eval;
  int eval_ctx = 128, eval_chunks = 8;
  double sparsity = 0.5;
  int calib_tokens = 2048, calib_ctx = 256, threads = 0, experts_keep = 0;
  uint64_t seed = 42;
  bool nm_magnitude = false;
  bool no_bias_comp = false;
  bool ffn_global = false;
};

int prune(const PruneArgs& a) {
  PruneOptions o;
  if (a.method == "magnitude") o.method = PruneMethod::Magnitude;
  else if (a.method == "wanda") o.method = PruneMethod::Wanda;
  else if (a.method == "nm") o.method = PruneMethod::NM;
  else if (a.method == "structured") o.method = PruneMethod::Structured;
  else if (a.method == "experts") o.method = PruneMethod::Experts;
  else fail("prune", "unknown method '" + a.method + "'; valid: magnitude, wanda, nm, structured, experts");
  if (a.experts_keep > 0 && o.method != PruneMethod::Experts)
    fail("prune", "--experts-keep needs --method experts");
  if (o.method == PruneMethod::NM) {
    int n = 0, m = 0;
    char tail = 0;
    if (std::sscanf(a.nm.c_str(), "%d:%d%c", &n, &m, &tail) != 2 || n < 0 || m < 1 || n > m)
      fail("prune", "--nm wants N:M with 0 <= N <= M, e.g. 2:4 (got '" + a.nm + "')");
    o.nm_n = n;
    o.nm_m = m;
  }
  o.sparsity = a.sparsity;
  o.experts_keep = a.experts_keep;
  o.nm_magnitude = a.nm_magnitude;
  if (a.no_bias_comp && o.method != PruneMethod::Structured)
    fail("prune", "--no-bias-comp applies to --method structured only");
  o.bias_compensation = !a.no_bias_comp;
  if (a.ffn_global && o.method != PruneMethod::Structured)
    fail("prune", "--ffn-global applies to --method structured only");
  o.ffn_global = a.ffn_global;
  o.calib_file = a.calib;
  o.calib_tokens = a.calib_tokens;
  o.calib_ctx = a.calib_ctx;
  o.seed = a.seed;
  o.n_threads = a.threads;
  ProgressLine bar("prune");
  o.on_note = [&](const std::string& s) { bar.note(s); };
  if (bar.enabled()) {
    o.on_progress = [&](size_t i, size_t n, const std::string& name) {
      const int width = 30, done = static_cast<int>(width * i / n);
      bar.show("[%.*s%*s] %4zu/%zu %-28s", done, "==============================", width - done, "", i, n, name.c_str());
    };
  }
  const PruneReport r = prune_file(a.in, a.out, o);
  bar.finish();
  std::printf("pruned %s -> %s (%s", a.in.c_str(), a.out.c_str(), a.method.c_str());
  if (o.method == PruneMethod::NM) std::printf(" %d:%d", o.nm_n, o.nm_m);
  else if (o.method == PruneMethod::Experts) std::printf(", %lld of %lld experts kept", static_cast<long long>(r.experts_after), static_cast<long long>(r.experts_before));
  else std::printf(", sparsity %.2f", o.sparsity);
  std::printf(") in %.2f s\n", r.seconds);
  if (r.calib_tokens > 0) std::printf("  calibration: %lld tokens\n", static_cast<long long>(r.calib_tokens));
  if (o.method == PruneMethod::Experts) {
    std::printf("  experts per layer: %lld -> %lld (used per token: %lld)\n", static_cast<long long>(r.experts_before),
                static_cast<long long>(r.experts_after), static_cast<long long>(r.experts_used));
    for (size_t il = 0; il < r.experts_kept.size(); ++il) {
      std::printf("  layer %zu kept:", il);
      for (int e : r.experts_kept[il]) std::printf(" %d", e);
      std::printf("\n");
    }
  }
  if (!r.ffn_kept.empty()) {
    std::printf("  FFN channels kept per layer:");
    for (int64_t k : r.ffn_kept) std::printf(" %lld", static_cast<long long>(k));
    std::printf("\n");
  }
  std::printf("  matrices: %zu of %zu tensors, %lld of %lld weights %s (%.2f%%)\n", r.n_pruned,
              r.n_tensors, static_cast<long long>(r.n_zeros), static_cast<long long>(r.n_weights),
              o.method == PruneMethod::Structured || o.method == PruneMethod::Experts ? "removed" : "zero",
              r.n_weights > 0 ? 100.0 * static_cast<double>(r.n_zeros) / static_cast<double>(r.n_weights) : 0.0);
  std::printf("  file: %.2f MiB -> %.2f MiB\n", static_cast<double>(r.in_file_bytes) / 1048576.0,
              static_cast<double>(r.out_file_bytes) / 1048576.0);
  if (!a.eval.empty()) {
    PruneEvalOptions eo;
    eo.n_ctx = a.eval_ctx;
    eo.max_chunks = a.eval_chunks;
    eo.n_threads = a.threads;
    const PruneEval e = evaluate_pruned(a.in, a.out, a.eval, eo);
    std::printf("eval on %s (%lld tokens scored):\n", a.eval.c_str(), static_cast<long long>(e.n_scored));
    std::printf("  perplexity: base %.4f, pruned %.4f\n", e.ppl_base, e.ppl_pruned);
    std::printf("  KL(base || pruned): mean %.6f; top-1 agreement %.2f%%\n", e.mean_kl, 100.0 * e.top1_agree);
    std::printf("  file: base %.2f MiB, pruned %.2f MiB\n", static_cast<double>(e.bytes_base) / 1048576.0,
                static_cast<double>(e.bytes_pruned) / 1048576.0);
    std::printf("  prefill: base %.1f tok/s, pruned %.1f tok/s (x%.2f)\n", e.prefill_tps_base,
                e.prefill_tps_pruned, e.prefill_tps_pruned / e.prefill_tps_base);
    std::printf("  decode:  base %.1f tok/s, pruned %.1f tok/s (x%.2f)\n", e.decode_tps_base,
                e.decode_tps_pruned, e.decode_tps_pruned / e.decode_tps_base);
  }
  return 0;
}

}  // namespace

Action register_prune(CLI::App& app) {
  auto a = std::make_shared<PruneArgs>();
  CLI::App* sub = app.add_subcommand("prune", "sparsify a GGUF's layer matrices (magnitude, wanda, N:M) or remove channels, heads, MoE experts");
  sub->add_option("IN", a->in, "input GGUF (F32/F16/BF16/Q8_0 matrices)")->required();
  sub->add_option("OUT", a->out, "output GGUF")->required();
  sub->add_option("--method", a->method, "magnitude, wanda (|W| x ||X||), nm (N:M by the Wanda score), structured (FLAP: FFN channels + KV groups), experts (MoE: drop the least used experts)");
  sub->add_option("--sparsity", a->sparsity, "fraction of each row zeroed (magnitude, wanda); of FFN channels and KV groups removed (structured); of each layer's experts removed (experts)")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--experts-keep", a->experts_keep, "experts: keep this many experts per layer (instead of --sparsity)")->check(CLI::Range(1, 1 << 16));
  sub->add_option("--nm", a->nm, "N:M pattern for --method nm (default 2:4)");
  sub->add_flag("--no-bias-comp", a->no_bias_comp, "structured: do not fold the removed channels' calibration mean output into ffn_down / attn_output biases (FLAP bias compensation, on by default)");
  sub->add_flag("--ffn-global", a->ffn_global, "structured: rank FFN channels across layers (FLAP adaptive structure: standardized scores; per-layer feed_forward_length, multiples of 32) instead of the same fraction per layer");
  sub->add_flag("--nm-magnitude", a->nm_magnitude, "nm: score by |W| only (no calibration run)");
  sub->add_option("--calib", a->calib, "calibration text file (default: sampled from the model)");
  sub->add_option("--calib-tokens", a->calib_tokens, "calibration tokens (default 2048)")->check(CLI::Range(1, 1 << 24));
  sub->add_option("--calib-ctx", a->calib_ctx, "tokens per calibration sequence (default 256)")->check(CLI::Range(8, 1 << 20));
  sub->add_option("--seed", a->seed, "seed of the self-generated calibration");
  sub->add_option("--eval", a->eval, "text file: perplexity, KL and top-1 agreement vs IN, size, speed");
  sub->add_option("--eval-ctx", a->eval_ctx, "tokens per evaluation chunk (default 128)")->check(CLI::Range(8, 1 << 20));
  sub->add_option("--eval-chunks", a->eval_chunks, "at most this many chunks (default 8)")->check(CLI::Range(1, 1 << 20));
  sub->add_option("-t,--threads", a->threads, "threads (default: physical cores)")->check(CLI::Range(0, 1024));
  return [a] { return prune(*a); };
}

}  // namespace coppice::cli
