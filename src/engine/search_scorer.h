// Scorers for test-time search: one number per (partial or finished) candidate, higher is
// better. Built-in: mean token log-probability, regex/keyword rules (pcre2), an external
// command (candidate text on stdin, a number on stdout) and a reward model given as a second
// GGUF (log-probability of a judgement token after the candidate).
#pragma once
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace coppice {

// What a scorer sees of one candidate.
struct ScoreInput {
  std::string_view prompt;          // the prompt text
  std::string_view text;            // generated text so far
  std::span<const int32_t> tokens;  // generated tokens so far
  double logprob_sum = 0;           // sum of the model's raw log p of those tokens
  bool finished = false;            // ended (end of generation or max tokens)
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual double score(const ScoreInput& c) = 0;
  virtual std::string name() const = 0;
};

// A compiled pcre2 pattern (UTF-8). Never std::regex (GCC 12 warnings, no UTF support).
class Regex {
 public:
  // Throws coppice::Error naming the pattern and the offset of the problem.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  bool matches(std::string_view s) const;
  // Capture group 1 of the LAST match if the pattern has a group, else the whole last match;
  // false when nothing matches. The last match is where answers usually are ("the answer is").
  bool extract_last(std::string_view s, std::string& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code*
};

// Mean of the model's raw token log-probabilities (0 for an empty candidate).
std::unique_ptr<Scorer> make_logprob_scorer();

struct Rule {
  std::string pattern;  // pcre2; a keyword rule is the escaped literal
  double weight = 1;
};
// Sum of the weights of the rules whose pattern matches the text.
std::unique_ptr<Scorer> make_rules_scorer(const std::vector<Rule>& rules);
// The pcre2 pattern that matches `word` literally.
std::string keyword_pattern(const std::string& word);

// Runs `command` through /bin/sh with the candidate text on stdin; its stdout must be one
// number. A failing command or non-numeric output throws coppice::Error.
std::unique_ptr<Scorer> make_command_scorer(const std::string& command);

struct RewardModelOptions {
  // The text the reward model reads; {prompt} and {response} are replaced.
  std::string templ = "{prompt}{response}";
  std::string judge = ".";  // judgement token (its text; must be one token of the reward model)
  int n_threads = 0;
};
// Score = the reward model's log p(judge | templ(prompt, candidate)), or, when the GGUF has a
// value head (`cls.output.weight` [n_embd] or [n_embd][1], optional `cls.output.bias` [1]: the
// names llama.cpp gives classifier heads), head . final-normed hidden state of the last token
// + bias. The reward model owns its own KV cache; each call evaluates the whole text.
std::unique_ptr<Scorer> make_reward_model_scorer(const std::string& gguf_path, const RewardModelOptions& o);

// Value heads (engine/search_value_head.cpp). The head as floats ([n_embd]) and its bias, or
// an empty vector when the model has none; a mis-shaped head throws coppice::Error.
std::vector<float> read_value_head(const Model& m, float& bias);
// Prefills `ids` into sequence `seq` and returns head . (final-normed hidden of the last token) + bias.
double value_head_score(Model& m, KvCache& cache, SeqId seq, std::span<const int32_t> ids,
                        std::span<const float> head, float bias);

}  // namespace coppice
