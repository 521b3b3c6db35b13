// `coppice prune --eval FILE`: quality and speed of a pruned model against its base on one text,
// chunk by chunk like `coppice perplexity` (BOS first, the second half of each chunk scored):
// perplexity of both, mean KL(base || pruned) and top-1 agreement computed from exact f32
// log-softmax rows (no quantized store), file sizes, prefill and decode throughput.
#pragma once
#include <cstdint>
#include <string>

namespace coppice {

struct PruneEvalOptions {
  int n_ctx = 128;
  int max_chunks = 8;
  int decode_tokens = 16;  // decode speed: greedy steps after the first chunk
  int n_threads = 0;
};

struct PruneEval {
  double ppl_base = 0, ppl_pruned = 0;
  double mean_kl = 0, top1_agree = 0;
  int64_t n_scored = 0;
  uint64_t bytes_base = 0, bytes_pruned = 0;
  double prefill_tps_base = 0, prefill_tps_pruned = 0;  // tokens/s
  double decode_tps_base = 0, decode_tps_pruned = 0;
};

// Throws coppice::Error: unreadable models or text, different vocabularies, text too short.
PruneEval evaluate_pruned(const std::string& base, const std::string& pruned, const std::string& text_file,
                          const PruneEvalOptions& opts);

}  // namespace coppice
