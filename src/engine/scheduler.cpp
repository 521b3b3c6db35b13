#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>

#include "engine/spec_decode.h"
#include "engine/spec_draft_model.h"
#include "util/error.h"

namespace coppice {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
    default: return "";
  }
}

struct Engine::Request {
  GenRequest req;
  EventSink sink;
  std::shared_ptr<RequestHandle> handle;
  int choices_left = 0;
  int cached_tokens = 0;
};

// One choice of a request. The KV cache holds tokens[0, n_computed); tokens past that are
// fed in the next steps (a whole prompt, a prompt chunk, or the one sampled token).
struct Engine::Seq {
  std::shared_ptr<Request> req;
  int choice = 0;
  SeqId id = 0;
  std::vector<int32_t> tokens;  // prompt + generated
  int n_prompt = 0;
  int n_computed = 0;
  int n_generated = 0;
  int n_published = 0;          // leading full blocks published to the prefix cache
  uint64_t chain = 0;           // hash of the published prefix
  bool fork_pending = false;    // primary of an n > 1 request, children not yet forked
  bool preempted = false;       // KV dropped; re-attached and recomputed when room returns
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<SpecDecoder> spec;  // speculative decoding, used while decoding alone
  int pending() const { return static_cast<int>(tokens.size()) - n_computed; }
};

namespace {
constexpr uint64_t kHashSeed = 0x6a09e667f3bcc909ull;
uint64_t hash_block(uint64_t parent, const int32_t* t, int n) {
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < n; ++i) {
    h ^= static_cast<uint32_t>(t[i]);
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return h * 0xbf58476d1ce4e5b9ull ^ (h >> 31);
}

KvCacheOptions cache_options(const EngineOptions& o) {
  KvCacheOptions k;
  k.block_size = o.block_size;
  k.type = o.kv_type;
  k.type_v = o.kv_type_v;
  k.layer_types = o.kv_layer_types;
  k.n_blocks = o.kv_blocks > 0 ? o.kv_blocks
                               : (static_cast<int64_t>(o.n_ctx) * o.n_parallel + o.block_size - 1) / o.block_size;
  return k;
}
}  // namespace

Engine::Engine(Model& model, const Tokenizer& tok, EngineOptions opts)
    : model_(model), tok_(tok), opts_(opts),
      cache_(static_cast<int>(model.config().n_layer), static_cast<int>(model.config().n_head_kv),
             static_cast<int>(model.config().head_dim), cache_options(opts)),
      budget_(opts.tpot_ms, opts.step_tokens, opts.min_chunk) {
  if (opts_.n_parallel < 1 || opts_.step_tokens < 1 || opts_.n_ctx < 2 || opts_.min_chunk < 1 || opts_.tpot_ms < 0)
    fail("engine", "n_parallel, step_tokens, min_chunk must be >= 1, n_ctx >= 2 and tpot_ms >= 0");
  load_drafts();
  check_spec(opts_.spec);
  stats_.kv_blocks_total = cache_.n_blocks();
  stats_.kv_bytes_total = static_cast<int64_t>(cache_.bytes_total());
  if (opts_.kv_policy.kind != KvPolicyKind::None && opts_.kv_policy.budget > 0) {
    policy_ = std::make_unique<KvPolicy>(opts_.kv_policy);
    if (policy_->needs_attention()) model_.set_attention_observer(policy_.get());
  }
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  shutdown(false);
  if (policy_ && policy_->needs_attention()) model_.set_attention_observer(nullptr);
}

void Engine::shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    drain_ = drain;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<RequestHandle> Engine::submit(GenRequest req, EventSink sink) {
  if (req.prompt.empty()) throw AdmissionError(400, "the prompt is empty");
  if (req.n < 1 || req.n > 128) throw AdmissionError(400, "n = " + std::to_string(req.n) + " is out of range [1, 128]");
  if (req.max_tokens < 1) throw AdmissionError(400, "max_tokens must be at least 1");
  if (static_cast<int64_t>(req.prompt.size()) >= opts_.n_ctx)
    throw AdmissionError(400, "the prompt has " + std::to_string(req.prompt.size()) +
                                  " tokens; the context size is " + std::to_string(opts_.n_ctx));
  const int64_t min_blocks = (static_cast<int64_t>(req.prompt.size()) + 1 + opts_.block_size - 1) / opts_.block_size + req.n;
  if (min_blocks > cache_.n_blocks())
    throw AdmissionError(400, "the request needs at least " + std::to_string(min_blocks) +
                                  " KV blocks; the server has " + std::to_string(cache_.n_blocks()));
  for (int32_t t : req.prompt)
    if (t < 0 || t >= model_.n_vocab()) throw AdmissionError(400, "token id " + std::to_string(t) + " is out of range");
  const std::string err = validate(req.sampling);
  if (!err.empty()) throw AdmissionError(400, err);
  if (!req.spec.empty()) {
    try {
      check_spec(req.spec);
    } catch (const Error& e) {
      throw AdmissionError(400, e.what(), "spec");
    }
  }
  auto r = std::make_shared<Request>();
  r->req = std::move(req);
  r->sink = std::move(sink);
  r->handle = std::make_shared<RequestHandle>();
  r->choices_left = r->req.n;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw AdmissionError(503, "the server is shutting down");
    if (static_cast<int>(waiting_.size()) >= opts_.max_queue)
      throw AdmissionError(503, "too many queued requests (" + std::to_string(waiting_.size()) + ")");
    waiting_.push_back(r);
    stats_.queued = static_cast<int64_t>(waiting_.size());
  }
  cv_.notify_all();
  return r->handle;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  EngineStats st = stats_;
  for (const auto& d : drafts_) st.spec_draft_kv_blocks += d->kv_blocks_used();
  return st;
}

SeqId Engine::next_seq_id() { return next_id_++; }

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !waiting_.empty() || !running_.empty() || !searches_.empty(); });
      if (stopping_ && (!drain_ || (running_.empty() && waiting_.empty() && searches_.empty()))) break;
    }
    std::shared_ptr<SearchTask> search;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!searches_.empty()) {
        search = searches_.front();
        searches_.pop_front();
        stats_.searches_queued = static_cast<int64_t>(searches_.size());
      }
    }
    if (search) run_search_job(*search);  // runs iterations between its own steps
    else iterate_guarded();
  }
  while (!running_.empty()) finish(*running_.front(), FinishReason::Cancelled);
  std::deque<std::shared_ptr<Request>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left.swap(waiting_);
  }
  for (auto& r : left) {
    TokenEvent ev;
    ev.finish = FinishReason::Cancelled;
    for (int c = 0; c < r->req.n; ++c) {
      ev.choice = c;
      r->sink(ev);
    }
  }
  drop_searches();
}

void Engine::iterate_guarded() {
  try {
    iterate();
  } catch (const Error& e) {
    // A step failed (should not happen: rooms are made before steps). Fail every running
    // sequence rather than the process.
    while (!running_.empty()) finish(*running_.front(), FinishReason::Error);
  }
}

// Attaches the cached blocks covering the sequence's tokens (all but the last, which must
// be computed for logits) if the pool can then also supply the rest; false when it cannot.
bool Engine::attach_prefix(Seq& s, int extra_blocks) {
  const int bs = opts_.block_size;
  std::vector<uint64_t> hashes;
  std::vector<int32_t> blocks;
  const int n = static_cast<int>(s.tokens.size());
  if (opts_.prefix_cache) {
    uint64_t h = kHashSeed;
    for (int b = 0; b < (n - 1) / bs; ++b) hashes.push_back(h = hash_block(h, s.tokens.data() + b * bs, bs));
    cache_.match_prefix(hashes, s.tokens, blocks);
  }
  // Matched blocks that only the cache holds stop being free once attached.
  int64_t pinned = 0;
  for (int32_t b : blocks) pinned += cache_.is_evictable(b);
  const int64_t need = (n + bs - 1) / bs - static_cast<int64_t>(blocks.size()) + extra_blocks;
  if (need + pinned + static_cast<int64_t>(running_.size()) > cache_.blocks_free()) return false;
  cache_.add_sequence(s.id);
  s.n_computed = 0;
  s.n_published = 0;
  s.chain = kHashSeed;
  if (!blocks.empty()) {
    std::vector<int32_t> pos(blocks.size() * bs);
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
    cache_.attach_blocks(s.id, blocks, pos);
    s.n_computed = static_cast<int>(pos.size());
    s.n_published = static_cast<int>(blocks.size());
    s.chain = hashes[blocks.size() - 1];
  }
  return true;
}

std::unique_ptr<Sampler> Engine::make_sampler(const GenRequest& q, const SamplingParams& sp) {
  auto smp = std::make_unique<Sampler>(sp);
  if (q.grammar) {
    if (!grammar_vocab_) grammar_vocab_ = GrammarVocab::from_tokenizer(tok_);
    smp->set_constraint(make_grammar_constraint(q.grammar, grammar_vocab_, q.grammar_options));
  }
  return smp;
}

bool Engine::start(const std::shared_ptr<Request>& r) {
  auto s = std::make_unique<Seq>();
  s->req = r;
  s->id = next_seq_id();
  s->tokens = r->req.prompt;
  s->n_prompt = static_cast<int>(s->tokens.size());
  s->fork_pending = r->req.n > 1;
  s->sampler = make_sampler(r->req, r->req.sampling);
  for (int32_t t : s->tokens) s->sampler->accept_prompt(t);
  if (!attach_prefix(*s, r->req.n)) return false;
  attach_spec(*s);
  r->cached_tokens = s->n_computed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.prompt_tokens += static_cast<uint64_t>(s->n_prompt);
    stats_.cached_prompt_tokens += static_cast<uint64_t>(s->n_computed);
  }
  running_.push_back(std::move(s));
  return true;
}

void Engine::admit() {
  // Preempted sequences come back first, oldest first, when their blocks fit again.
  for (auto& s : running_) {
    if (!s->preempted) continue;
    if (!attach_prefix(*s, 1)) return;
    s->preempted = false;
  }
  for (;;) {
    std::shared_ptr<Request> r;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (waiting_.empty() || stopping_) return;
      if (static_cast<int>(running_.size()) + waiting_.front()->req.n > opts_.n_parallel && !running_.empty()) return;
      r = waiting_.front();
    }
    if (r->handle->cancelled()) {
      std::lock_guard<std::mutex> lk(mu_);
      waiting_.pop_front();
      stats_.queued = static_cast<int64_t>(waiting_.size());
      TokenEvent ev;
      ev.finish = FinishReason::Cancelled;
      for (int c = 0; c < r->req.n; ++c) { ev.choice = c; r->sink(ev); }
      continue;
    }
    if (!start(r)) return;  // not enough KV now: stays queued
    std::lock_guard<std::mutex> lk(mu_);
    waiting_.pop_front();
    stats_.queued = static_cast<int64_t>(waiting_.size());
  }
}

// Preemption by recompute: the most recently admitted active sequence drops its KV (its
// published blocks stay in the prefix cache) and is recomputed when room returns.
bool Engine::preempt_one() {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    Seq& v = **it;
    if (v.preempted || &v == running_.front().get()) continue;
    if (v.fork_pending) continue;  // its children do not exist yet; keep the prompt going
    cache_.remove_sequence(v.id);
    if (policy_) policy_->forget(v.id);
    v.preempted = true;
    v.n_computed = v.n_published = 0;
    v.chain = kHashSeed;
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.preemptions;
    return true;
  }
  return false;
}

void Engine::iterate() {
  // Cancellations first: their blocks go back before anything is scheduled.
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->req->handle->cancelled()) finish(*running_[i], FinishReason::Cancelled);
    else ++i;
  }
  admit();
  if (running_.empty()) return;

  // Decodes first (one token each), then prompt chunks in admission order (Sarathi-Serve);
  // with a TPOT target the chunks shrink to what keeps the step within it.
  struct Entry { Seq* s; int n; };
  std::vector<Entry> plan;
  int n_decode = 0;
  for (auto& s : running_) n_decode += !s->preempted && s->pending() == 1;
  int budget = budget_.tokens_for(n_decode);
  for (auto& s : running_)
    if (!s->preempted && s->pending() == 1 && budget > 0) { plan.push_back({s.get(), 1}); --budget; }
  for (auto& s : running_)
    if (!s->preempted && s->pending() > 1 && budget > 0) {
      const int n = std::min(s->pending(), budget);
      plan.push_back({s.get(), n});
      budget -= n;
    }
  if (plan.empty()) return;  // everything is preempted and waiting for room
  std::vector<std::pair<SeqId, int>> appends;
  for (const Entry& e : plan) appends.emplace_back(e.s->id, e.n);
  const int64_t need = cache_.blocks_needed(appends);
  if (need > cache_.blocks_free()) {
    // Replan after freeing room; when nothing can be preempted the oldest sequence has
    // filled the pool by itself and ends with "length".
    if (!preempt_one()) finish(*running_.front(), FinishReason::Length);
    return;
  }
  if (running_.size() == 1 && plan.size() == 1 && plan[0].n == 1 && plan[0].s->spec) {
    spec_step(*plan[0].s);  // a batch of one: verifying a draft costs about one decode step
    return;
  }

  batch_.clear();
  for (const Entry& e : plan)
    for (int i = 0; i < e.n; ++i) {
      const int at = e.s->n_computed + i;
      batch_.push_back({e.s->tokens[at], at, e.s->id, at == static_cast<int>(e.s->tokens.size()) - 1});
    }
  const auto t0 = std::chrono::steady_clock::now();
  model_.step(batch_, cache_, logits_);
  budget_.observe(static_cast<int>(batch_.size()),
                  std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
    stats_.step_fixed_ms = budget_.fixed_ms();
    stats_.step_token_ms = budget_.per_token_ms();
    stats_.last_step_tokens = static_cast<int64_t>(batch_.size());
  }
  const int64_t V = model_.n_vocab();
  int row = 0;
  std::vector<Seq*> sampled;
  for (const Entry& e : plan) {
    e.s->n_computed += e.n;
    if (policy_) policy_->enforce(cache_, e.s->id);  // positions stay token indices
    publish_blocks(*e.s);
    if (e.s->pending() == 0) sampled.push_back(e.s);
  }
  for (Seq* s : sampled) sample_and_emit(*s, logits_.data() + static_cast<int64_t>(row++) * V);
  std::lock_guard<std::mutex> lk(mu_);
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_blocks_used = cache_.blocks_used();
  stats_.kv_blocks_cached = cache_.cached_blocks();
  stats_.kv_bytes_used = static_cast<int64_t>(cache_.bytes_used());
  stats_.kv_cells_evicted = policy_ ? policy_->cells_evicted() : 0;
}

void Engine::publish_blocks(Seq& s) {
  if (!opts_.prefix_cache || policy_) return;  // evicted cells no longer match token blocks
  const int bs = opts_.block_size;
  while ((s.n_published + 1) * bs <= s.n_computed) {
    s.chain = hash_block(s.chain, s.tokens.data() + s.n_published * bs, bs);
    cache_.publish_block(s.id, s.n_published, s.chain,
                         std::span<const int32_t>(s.tokens.data() + s.n_published * bs, bs));
    ++s.n_published;
  }
}

void Engine::sample_and_emit(Seq& s, const float* logits) {
  const int64_t V = model_.n_vocab();
  std::span<const float> row(logits, static_cast<size_t>(V));
  // The primary of an n > 1 request forks its children from the finished prompt.
  std::vector<Seq*> targets{&s};
  if (s.fork_pending) {
    s.fork_pending = false;
    for (int c = 1; c < s.req->req.n; ++c) {
      auto child = std::make_unique<Seq>();
      child->req = s.req;
      child->choice = c;
      child->id = next_seq_id();
      child->tokens = s.tokens;
      child->n_prompt = s.n_prompt;
      child->n_computed = s.n_computed;
      child->n_published = s.n_published;
      child->chain = s.chain;
      SamplingParams sp = s.req->req.sampling;
      if (sp.seed != SamplingParams::kRandomSeed) sp.seed += static_cast<uint64_t>(c);
      child->sampler = make_sampler(s.req->req, sp);
      for (int32_t t : child->tokens) child->sampler->accept_prompt(t);
      cache_.fork_sequence(s.id, child->id);
      if (policy_) policy_->fork(s.id, child->id);
      targets.push_back(child.get());
      running_.push_back(std::move(child));
    }
  }
  for (Seq* t : targets) {
    const GenRequest& q = t->req->req;
    int32_t id = -1;
    try {
      id = t->sampler->sample(row);
    } catch (const Error&) {
      finish(*t, FinishReason::Error);  // e.g. a logit_bias banning every token: this choice only
      continue;
    }
    t->sampler->accept(id);
    if (!q.ignore_eos && tok_.is_eog(id)) {
      finish(*t, FinishReason::Stop);
      continue;
    }
    TokenEvent ev;
    ev.choice = t->choice;
    ev.token = id;
    if (q.top_logprobs >= 0) {
      ev.logprob = Sampler::logprob_of(row, id);
      if (q.top_logprobs > 0) ev.top = Sampler::top_logprobs(row, q.top_logprobs);
    }
    t->tokens.push_back(id);
    ++t->n_generated;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++stats_.generated_tokens;
    }
    const bool at_limit = t->n_generated >= q.max_tokens || static_cast<int>(t->tokens.size()) >= opts_.n_ctx;
    if (at_limit) {
      ev.finish = FinishReason::Length;
      ev.prompt_tokens = t->n_prompt;
      ev.cached_tokens = t->req->cached_tokens;
      ev.completion_tokens = t->n_generated;
    }
    if (at_limit) {
      finish(*t, FinishReason::Length, &ev);
    } else if (!t->req->sink(ev)) {
      finish(*t, FinishReason::Stop);
    }
  }
}

void Engine::finish(Seq& s, FinishReason why, const TokenEvent* last) {
  // Bookkeeping first, events last: a client that sees its final event sees the KV freed.
  if (!s.preempted) {
    publish_blocks(s);
    cache_.remove_sequence(s.id);
    if (policy_) policy_->forget(s.id);
  }
  std::vector<TokenEvent> events;
  if (last) {
    events.push_back(*last);
  } else if (why != FinishReason::None) {
    TokenEvent ev;
    ev.choice = s.choice;
    ev.finish = why;
    ev.prompt_tokens = s.n_prompt;
    ev.cached_tokens = s.req->cached_tokens;
    ev.completion_tokens = s.n_generated;
    events.push_back(ev);
  }
  // A pending fork never happened (cancelled during prefill): the other choices end too.
  if (s.fork_pending) {
    TokenEvent ev;
    ev.finish = why == FinishReason::None ? FinishReason::Cancelled : why;
    for (int c = 1; c < s.req->req.n; ++c) {
      ev.choice = c;
      events.push_back(ev);
    }
    s.req->choices_left -= s.req->req.n - 1;
  }
  const bool request_done = --s.req->choices_left == 0;
  std::shared_ptr<Request> req = s.req;
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &s; });
  CP_ASSERT(it != running_.end());
  running_.erase(it);  // s is gone from here on
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (request_done) ++stats_.requests_done;
    stats_.running = static_cast<int64_t>(running_.size());
    stats_.kv_blocks_used = cache_.blocks_used();
    stats_.kv_blocks_cached = cache_.cached_blocks();
    stats_.kv_bytes_used = static_cast<int64_t>(cache_.bytes_used());
    stats_.kv_cells_evicted = policy_ ? policy_->cells_evicted() : 0;
  }
  for (const TokenEvent& ev : events) req->sink(ev);
}

// ---- Speculative decoding (engine/spec_decode.h) ----

void Engine::load_drafts() {
  std::vector<std::string> paths = opts_.draft_models;
  const SpecConfig def = parse_spec(opts_.spec);
  if (def.kind == SpecConfig::Kind::DraftModel) paths.push_back(def.draft_path);
  for (const std::string& p : paths) {
    if (find_draft(p)) continue;
    // Draft KV for two sequences: the one speculating alone and the last one that did.
    drafts_.push_back(std::make_shared<DraftModelHost>(p, model_, model_.pool().size(), opts_.n_ctx, 2));
  }
}

std::shared_ptr<DraftModelHost> Engine::find_draft(const std::string& name) const {
  for (const auto& d : drafts_)
    if (d->names(name)) return d;
  return nullptr;
}

void Engine::check_spec(const std::string& text) const {
  const SpecConfig cfg = parse_spec(text);
  if (cfg.kind == SpecConfig::Kind::DraftModel && !find_draft(cfg.draft_path)) {
    std::string loaded;
    for (const auto& d : drafts_) loaded += (loaded.empty() ? "" : ", ") + d->file_name();
    fail("spec", "draft model '" + cfg.draft_path + "' is not loaded by this server (" +
                     (loaded.empty() ? std::string("none is: start it with --spec draft:PATH or --draft-model PATH")
                                     : "loaded: " + loaded) + ")");
  }
  if (cfg.kind == SpecConfig::Kind::LayerSkip && cfg.exit_layer >= model_.config().n_layer)
    fail("spec", "layerskip exit layer " + std::to_string(cfg.exit_layer) + " must be below the model's " +
                     std::to_string(model_.config().n_layer) + " layers");
}

void Engine::attach_spec(Seq& s) {
  const GenRequest& q = s.req->req;
  SpecConfig cfg = parse_spec(q.spec.empty() ? opts_.spec : q.spec);
  // Eviction (--kv-policy) compacts cells under the verifier's feet: those decode plainly.
  if (cfg.kind == SpecConfig::Kind::None || policy_) return;
  cfg.max_nodes = opts_.spec_max_nodes;
  cfg.adaptive = opts_.spec_adaptive;
  // A draft model is shared (loaded once; submit checked the name); the drafter owns this
  // sequence's draft KV.
  std::unique_ptr<Drafter> d;
  if (cfg.kind == SpecConfig::Kind::DraftModel) {
    std::shared_ptr<DraftModelHost> host = find_draft(cfg.draft_path);
    if (!host) return;
    d = make_draft_model_drafter(std::move(host));
  } else {
    d = make_drafter(cfg, model_, cache_, s.id, 0, opts_.n_ctx);
  }
  s.spec = std::make_unique<SpecDecoder>(model_, cache_, s.id, *s.sampler, std::move(d), cfg);
}

void Engine::spec_step(Seq& s) {
  const GenRequest& q = s.req->req;
  const int max_new = std::min(q.max_tokens - s.n_generated, opts_.n_ctx - static_cast<int>(s.tokens.size()));
  const SpecStats before = s.spec->stats();
  std::vector<int32_t> out;
  try {
    s.spec->step(s.tokens, std::max(1, max_new), [&](int32_t t) { return !q.ignore_eos && tok_.is_eog(t); }, out);
  } catch (const Error&) {
    finish(s, FinishReason::Error);  // e.g. a logit_bias banning every token
    return;
  }
  const SpecStats& after = s.spec->stats();
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
    stats_.spec_steps += static_cast<uint64_t>(after.spec_steps - before.spec_steps);
    stats_.spec_drafted += static_cast<uint64_t>(after.drafted - before.drafted);
    stats_.spec_accepted += static_cast<uint64_t>(after.accepted - before.accepted);
    if (after.spec_steps > before.spec_steps) stats_.spec_tokens += out.size();
  }
  // The cache holds the pending token and the accepted drafts: every drawn token but the last.
  const int kv = cache_.length(s.id);
  for (size_t j = 0; j < out.size(); ++j) {
    const int32_t id = out[j];
    s.n_computed = std::min(kv, static_cast<int>(s.tokens.size()));
    if (!q.ignore_eos && tok_.is_eog(id)) {
      finish(s, FinishReason::Stop);
      return;
    }
    TokenEvent ev;
    ev.choice = s.choice;
    ev.token = id;
    if (q.top_logprobs >= 0) {  // the row plain decoding would have sampled from
      const std::span<const float> row = s.spec->drawn_logits(static_cast<int>(j));
      ev.logprob = Sampler::logprob_of(row, id);
      if (q.top_logprobs > 0) ev.top = Sampler::top_logprobs(row, q.top_logprobs);
    }
    s.tokens.push_back(id);
    ++s.n_generated;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++stats_.generated_tokens;
    }
    if (s.n_generated >= q.max_tokens || static_cast<int>(s.tokens.size()) >= opts_.n_ctx) {
      ev.finish = FinishReason::Length;
      ev.prompt_tokens = s.n_prompt;
      ev.cached_tokens = s.req->cached_tokens;
      ev.completion_tokens = s.n_generated;
      s.n_computed = std::min(kv, static_cast<int>(s.tokens.size()));
      finish(s, FinishReason::Length, &ev);
      return;
    }
    if (!s.req->sink(ev)) {
      s.n_computed = std::min(kv, static_cast<int>(s.tokens.size()));
      finish(s, FinishReason::Stop);
      return;
    }
  }
  s.n_computed = kv;
  publish_blocks(s);
}

}  // namespace coppice
