// The one sampling pipeline: ordered logit processors over a candidate list, then a sampler
// with its own seeded PRNG (portable: no std::*_distribution). Grammar masks, speculative
// acceptance and search scorers plug in as further processors (Sampler::add_processor) or read
// the processed distribution (Sampler::process); nothing else re-implements sampling.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace coppice {

struct SamplingParams {
  float temperature = 0.8f;     // <= 0: greedy (argmax, ties to the lowest id); < 0 fails validate()
  int top_k = 40;               // <= 0: off
  float top_p = 0.95f;          // 1: off
  float min_p = 0.05f;          // 0: off
  float typical_p = 1.0f;       // 1: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp rule: logit / p if > 0 else logit * p)
  int repeat_last_n = 64;       // tokens of history the penalties look at (0: none, -1: all)
  float presence_penalty = 0.0f;   // OpenAI: logit -= presence * (count > 0)
  float frequency_penalty = 0.0f;  // OpenAI: logit -= frequency * count
  std::map<int32_t, float> logit_bias;  // token id -> added to its logit; -inf bans the token
  // Fixed by default so runs reproduce; kRandomSeed asks for a seed from the clock.
  uint64_t seed = 0xC0FFEE;
  static constexpr uint64_t kRandomSeed = ~uint64_t{0};
};

// Empty when valid, else a message naming the parameter, its value and the allowed range.
// Rejects NaN anywhere, temperature < 0, top_p/typical_p outside (0, 1], min_p outside [0, 1],
// repeat_penalty <= 0 or inf, repeat_last_n < -1, |presence|/|frequency| > 100 or inf,
// negative bias ids and +inf biases.
std::string validate(const SamplingParams& p);

struct Candidate {
  int32_t id;
  float logit;
  float p;  // probability; valid only after softmax()
};

// The working set processors narrow. `sorted`: items are in descending logit order, ties by
// ascending id. Before any truncation, items[i].id == i (processors may rely on it to index).
struct Candidates {
  std::vector<Candidate> items;
  bool sorted = false;

  void assign(std::span<const float> logits);  // items = all ids, in id order (reuses storage)
  void sort_desc();                            // full sort; a no-op when already sorted
  void softmax();                              // fills p from logits; order unchanged
  Candidate* find(int32_t id);                 // O(1) before truncation, else a scan
};

struct SamplingContext {
  std::span<const int32_t> history;  // accepted tokens so far, oldest first
};

class LogitProcessor {
 public:
  virtual ~LogitProcessor() = default;
  virtual void apply(Candidates& c, const SamplingContext& ctx) = 0;
  virtual const char* name() const { return "custom"; }

  // Hooks for stateful hard constraints (grammars), used through Sampler::set_constraint:
  // apply() only bans tokens (sets -inf), allows(id) checks one token without a full mask,
  // accept(id) advances the state with each generated token, reset() starts over.
  virtual bool is_constraint() const { return false; }
  virtual bool allows(int32_t /*id*/) { return true; }
  // Whether the tokens can follow the current state in this order (without changing it); for
  // pruning speculative drafts. May answer true for a path it cannot rule out.
  virtual bool allows_path(std::span<const int32_t> /*ids*/) { return true; }
  virtual void accept(int32_t /*id*/) {}
  virtual void reset() {}
};

// The built-in processors, each doing exactly one rule (all keep at least one candidate).
std::unique_ptr<LogitProcessor> make_logit_bias(std::map<int32_t, float> bias);
// Over the last `last_n` history tokens (-1: all): repetition (llama.cpp), then presence and
// frequency (OpenAI).
std::unique_ptr<LogitProcessor> make_penalties(float repeat, int last_n, float presence, float frequency);
std::unique_ptr<LogitProcessor> make_top_k(int k);
// Locally typical sampling (Meister et al. 2022, "Locally Typical Sampling").
std::unique_ptr<LogitProcessor> make_typical(float p);
std::unique_ptr<LogitProcessor> make_top_p(float p);
std::unique_ptr<LogitProcessor> make_min_p(float p);
std::unique_ptr<LogitProcessor> make_temperature(float t);

// The default chain for p (llama.cpp's order): bias, penalties, top-k, typical, top-p, min-p,
// temperature. Processors that are off are left out; greedy keeps only bias and penalties,
// since truncation never removes the argmax.
std::vector<std::unique_ptr<LogitProcessor>> default_processors(const SamplingParams& p);

// xoshiro256** (Blackman & Vigna) seeded through splitmix64: identical streams on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) from the top 53 bits
 private:
  uint64_t s_[4];
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct Logprobs {
  float chosen;                    // log p(chosen)
  std::vector<TokenLogprob> top;  // the n most likely, descending, ties by id
};

class Sampler {
 public:
  explicit Sampler(SamplingParams p);

  // Picks the next token from raw logits [n_vocab]. Greedy with no processors is a plain argmax
  // (no candidate list). Throws coppice::Error when the processors left no token possible
  // (every candidate at -inf, e.g. all banned).
  int32_t sample(std::span<const float> logits);
  void accept(int32_t token);         // a generated token: history, and advances the constraint
  void accept_prompt(int32_t token);  // a prompt token: history only
  void reset();                       // clears history, reseeds, resets the constraint

  // Runs the chain without drawing and returns the distribution sample() draws from: the
  // surviving candidates with p filled (greedy: one-hot on the argmax). Valid until the next
  // call. For speculative acceptance and search scorers.
  const Candidates& process(std::span<const float> logits);

  // Inserts a processor (e.g. a grammar mask) after bias and penalties and before truncation
  // (front), or at the end of the chain, after temperature.
  void add_processor(std::unique_ptr<LogitProcessor> p, bool front = true);

  // A hard constraint (e.g. make_grammar_constraint) masks the chain's output: sample() and
  // process() draw from the chain's distribution restricted to allowed tokens, renormalized.
  // If truncation left no allowed token, the mask is applied before truncation instead.
  // adaptive: draw first and check only the drawn token; build the full mask only when it is
  // rejected, then redraw from the masked distribution. P(draw y) = P(y) + P(rejected) *
  // P(y)/P(allowed) = P(y)/P(allowed): exactly the masked distribution, usually far cheaper.
  void set_constraint(std::unique_ptr<LogitProcessor> c, bool adaptive = true);
  bool has_constraint() const { return constraint_ != nullptr; }
  // The constraint's allows_path (true without a constraint).
  bool allows_path(std::span<const int32_t> ids) { return !constraint_ || constraint_->allows_path(ids); }
  const SamplingParams& params() const { return p_; }
  const std::vector<int32_t>& history() const { return history_; }

  // OpenAI semantics for logprobs/top_logprobs: log-softmax of the raw model logits, before any
  // processor (no bias, penalty, truncation or temperature), so they describe the model, not
  // the sampler settings.
  static Logprobs logprobs(std::span<const float> logits, int32_t chosen, int n_top);
  static float logprob_of(std::span<const float> logits, int32_t id);
  static std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n);

 private:
  void run_chain(std::span<const float> logits, bool constraint_first = false);
  void apply_constraint(std::span<const float> logits);  // masks cand_ (see set_constraint)
  int32_t draw();                                         // from cand_ after the chain
  bool greedy() const { return p_.temperature <= 0; }
  SamplingParams p_;
  Rng rng_;
  std::vector<std::unique_ptr<LogitProcessor>> procs_;
  std::unique_ptr<LogitProcessor> constraint_;  // applied after procs_
  bool adaptive_ = true;
  std::vector<int32_t> history_;
  Candidates cand_;  // [<= n_vocab], reused between calls
};

}  // namespace coppice
