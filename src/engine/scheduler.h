// The serving engine: iteration-level continuous batching of many sequences through one
// Model::step per iteration, Sarathi-style stall-free chunked prefill (running decodes go
// first, prompt chunks fill the rest of a per-step token budget), a prefix cache over the
// paged KV cache, `n` choices forked from one prefill, admission control against the KV
// budget, preemption by recompute, and cancellation. Events are delivered on the engine thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/grammar_sampling.h"
#include "engine/sampling.h"
#include "engine/search.h"
#include "engine/step_budget.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace coppice {

class DraftModelHost;  // engine/spec_draft_model.h

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);  // "stop", "length", ...

struct GenRequest {
  std::vector<int32_t> prompt;
  int n = 1;                 // choices sharing one prefill; choice i samples with seed + i
  int max_tokens = 256;      // per choice
  SamplingParams sampling;
  int top_logprobs = -1;     // -1: no logprobs; 0..20: the chosen token's plus this many
  bool ignore_eos = false;
  grammar::GrammarPtr grammar;  // structured output: null = unconstrained
  GrammarOptions grammar_options;
  std::string spec;          // speculative decoding (engine/spec.h syntax); empty: engine default
};

struct TokenEvent {
  int choice = 0;
  int32_t token = -1;        // -1 on a pure finish event
  float logprob = 0;
  std::vector<TokenLogprob> top;
  FinishReason finish = FinishReason::None;  // set on the choice's last event
  int prompt_tokens = 0;     // usage, on finish events
  int cached_tokens = 0;     // prompt tokens served from the prefix cache
  int completion_tokens = 0;
};

// Called on the engine thread; return false to finish this choice now (e.g. a stop string).
using EventSink = std::function<bool(const TokenEvent&)>;

class RequestHandle {
 public:
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::atomic<bool> cancelled_{false};
};

struct EngineOptions {
  int64_t kv_blocks = 0;      // pool size; 0: n_ctx_per_seq * n_parallel cells
  int block_size = 16;
  DType kv_type = DType::F16;
  std::optional<DType> kv_type_v = std::nullopt;  // V type when it differs
  std::vector<KvLayerTypes> kv_layer_types = {};  // per-layer overrides (empty: none)
  KvPolicyOptions kv_policy;                   // eviction per sequence (disables the prefix cache)
  int n_ctx = 4096;           // max tokens (prompt + completion) of one sequence
  int n_parallel = 16;        // max running sequences
  int step_tokens = 256;      // per-step token budget (decodes + prefill chunks)
  // Time-per-output-token target (ms) while sequences decode: prompt chunks shrink so that a
  // step's predicted time stays within it (engine/step_budget.h); 0: off (step_tokens only).
  double tpot_ms = 0;
  int min_chunk = 16;         // prompt tokens a step carries at least, whatever the target
  int max_queue = 256;        // waiting requests beyond this are refused
  bool prefix_cache = true;
  std::string spec = "none";  // default drafter (engine/spec.h); used while one sequence decodes
  int spec_max_nodes = 16;
  bool spec_adaptive = true;  // adaptive draft size and fallback to plain decoding
  // Draft models loaded at start besides the default's (requests may name any loaded one).
  std::vector<std::string> draft_models = {};
};

struct EngineStats {
  int64_t queued = 0, running = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0;
  int64_t kv_bytes_total = 0, kv_bytes_used = 0, kv_cells_evicted = 0;
  uint64_t prompt_tokens = 0, cached_prompt_tokens = 0, generated_tokens = 0;
  uint64_t steps = 0, preemptions = 0, requests_done = 0;
  // Step-time model t(n) = fixed + per_token * n (ms), fitted over the steps run so far.
  double step_fixed_ms = 0, step_token_ms = 0;
  int64_t last_step_tokens = 0;
  // Speculative decoding.
  uint64_t spec_steps = 0, spec_drafted = 0, spec_accepted = 0, spec_tokens = 0;
  int64_t spec_draft_kv_blocks = 0;  // draft models' KV blocks in use (all loaded drafts)
  // Search jobs (engine/scheduler_search.cpp).
  int64_t searches_queued = 0, searches_running = 0;
  uint64_t searches_done = 0, search_tokens = 0;
};

// A test-time search (engine/search.h) run by the engine between its scheduler iterations.
struct SearchJob {
  std::vector<int32_t> prompt;
  std::string prompt_text;  // what the scorer sees as the prompt
  SearchOptions opts;       // opts.branch.first_seq / between_steps are set by the engine
  std::shared_ptr<Scorer> scorer;  // used on the engine thread only
  std::function<void()> started;   // engine thread, once: the prompt is in and branches run
};
// Called once on the engine thread: the result, or the error (result null) with the HTTP
// status it maps to (400 bad options, 503 no KV room, 499 cancelled).
using SearchDone = std::function<void(const SearchResult* result, const std::string& error, int http_status)>;

// Thrown by submit(): `http_status` says how the server should answer (400, 503).
struct AdmissionError : Error {
  AdmissionError(int status, const std::string& msg, std::string field = "")
      : Error(msg), http_status(status), param(std::move(field)) {}
  int http_status;
  std::string param;  // the request field at fault, "" when none
};

class Engine {
 public:
  Engine(Model& model, const Tokenizer& tok, EngineOptions opts);
  ~Engine();  // cancels what is left and joins the loop
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  std::shared_ptr<RequestHandle> submit(GenRequest req, EventSink sink);
  // Queues a search; one runs at a time, its forward steps interleaved with scheduler
  // iterations over the same KV pool. Cancelling the handle ends it and frees its blocks.
  std::shared_ptr<RequestHandle> submit_search(SearchJob job, SearchDone done);
  EngineStats stats() const;
  // Stops admitting; waits for running requests to finish (or cancels them when !drain).
  void shutdown(bool drain);
  const EngineOptions& options() const { return opts_; }

 private:
  struct Request;
  struct Seq;
  void loop();
  void admit();
  bool start(const std::shared_ptr<Request>& r);
  std::unique_ptr<Sampler> make_sampler(const GenRequest& q, const SamplingParams& sp);  // with its grammar
  void iterate();
  // Ends a choice: frees its KV, then emits `last` (or a finish event saying why).
  void finish(Seq& s, FinishReason why, const TokenEvent* last = nullptr);
  void publish_blocks(Seq& s);
  bool preempt_one();
  bool attach_prefix(Seq& s, int extra_blocks);
  void sample_and_emit(Seq& s, const float* logits);
  // Speculative decoding (end of scheduler.cpp): a drafter for a new sequence, and one
  // verify step for a sequence that decodes alone (batches of several decode plainly).
  void attach_spec(Seq& s);
  void check_spec(const std::string& text) const;  // throws coppice::Error
  void spec_step(Seq& s);
  void load_drafts();  // every draft model of opts_, once
  std::shared_ptr<DraftModelHost> find_draft(const std::string& name) const;  // null: not loaded
  SeqId next_seq_id();
  struct SearchTask;
  void run_search_job(SearchTask& t);  // engine/scheduler_search.cpp
  void iterate_guarded();              // iterate(), failing the running sequences on an error
  void drop_searches();                // at shutdown: queued searches end with 503

  Model& model_;
  const Tokenizer& tok_;
  std::shared_ptr<const GrammarVocab> grammar_vocab_;  // built on the first grammar request
  EngineOptions opts_;
  KvCache cache_;
  StepBudget budget_;
  std::unique_ptr<KvPolicy> policy_;  // null: no eviction
  std::vector<std::shared_ptr<DraftModelHost>> drafts_;  // loaded draft models (engine thread uses them)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> waiting_;  // guarded by mu_
  std::deque<std::shared_ptr<SearchTask>> searches_;  // guarded by mu_
  bool stopping_ = false, drain_ = true;          // guarded by mu_
  EngineStats stats_;                             // guarded by mu_ (copied out)

  std::vector<std::unique_ptr<Seq>> running_;     // engine thread only
  SeqId next_id_ = 1;
  std::vector<BatchToken> batch_;
  std::vector<float> logits_;
  std::thread thread_;
};

}  // namespace coppice
