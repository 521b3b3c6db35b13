#include "engine/search_scorer.h"

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <sys/wait.h>

#include "engine/generate.h"
#include "engine/sampling.h"
#include "util/error.h"

namespace coppice {

// ---- Scorers ----

namespace {

class LogprobScorer : public Scorer {
 public:
  double score(const ScoreInput& c) override {
    return c.tokens.empty() ? 0.0 : c.logprob_sum / static_cast<double>(c.tokens.size());
  }
  std::string name() const override { return "logprob"; }
};

class RulesScorer : public Scorer {
 public:
  explicit RulesScorer(const std::vector<Rule>& rules) {
    if (rules.empty()) fail("search", "the rules scorer needs at least one rule (--rule or --keyword)");
    for (const Rule& r : rules) rules_.push_back({std::make_unique<Regex>(r.pattern), r.weight});
  }
  double score(const ScoreInput& c) override {
    double s = 0;
    for (const auto& r : rules_)
      if (r.rx->matches(c.text)) s += r.weight;
    return s;
  }
  std::string name() const override { return "rules"; }

 private:
  struct Compiled {
    std::unique_ptr<Regex> rx;
    double weight;
  };
  std::vector<Compiled> rules_;
};

class CommandScorer : public Scorer {
 public:
  explicit CommandScorer(std::string cmd) : cmd_(std::move(cmd)) {
    if (cmd_.empty()) fail("search", "the command scorer needs a command");
    const auto dir = std::filesystem::temp_directory_path();
    input_ = (dir / ("coppice-score-" + std::to_string(::getpid()) + ".txt")).string();
  }
  ~CommandScorer() override {
    std::error_code ec;
    std::filesystem::remove(input_, ec);
  }
  double score(const ScoreInput& c) override {
    {
      std::ofstream f(input_, std::ios::binary | std::ios::trunc);
      f.write(c.text.data(), static_cast<std::streamsize>(c.text.size()));
      if (!f) fail("search", "cannot write the candidate to " + input_);
    }
    const std::string full = "(" + cmd_ + ") < '" + input_ + "'";
    FILE* p = popen(full.c_str(), "r");
    if (!p) fail("search", "cannot run scorer command '" + cmd_ + "'");
    std::string out;
    std::array<char, 256> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0 && out.size() < 4096) out.append(buf.data(), n);
    const int st = pclose(p);
    if (st != 0)
      fail("search", "scorer command '" + cmd_ + "' exited with status " +
                         std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)));
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(out.c_str(), &end);
    while (end && *end && std::isspace(static_cast<unsigned char>(*end))) ++end;
    if (end == out.c_str() || (end && *end) || errno != 0 || !std::isfinite(v))
      fail("search", "scorer command '" + cmd_ + "' printed '" + out.substr(0, 80) + "', expected one number");
    return v;
  }
  std::string name() const override { return "command"; }

 private:
  std::string cmd_;
  std::string input_;  // temporary file holding the candidate (the command's stdin)
};

class RewardModelScorer : public Scorer {
 public:
  RewardModelScorer(const std::string& path, const RewardModelOptions& o) : o_(o) {
    ModelOptions mo;
    mo.n_threads = o.n_threads;
    model_ = Model::load(path, mo);
    tok_ = Tokenizer::from_gguf(model_->file());
    head_ = read_value_head(*model_, bias_);
    if (!head_.empty()) return;  // a value head scores; no judgement token needed
    judge_ = tok_->find_token(o.judge);
    if (judge_ < 0) {
      const auto ids = tok_->encode(o.judge, false, false);
      if (ids.size() != 1)
        fail("search", "judgement text '" + o.judge + "' is " + std::to_string(ids.size()) +
                           " tokens for the reward model, expected exactly one");
      judge_ = ids[0];
    }
  }
  double score(const ScoreInput& c) override {
    std::string text = o_.templ;
    replace(text, "{prompt}", c.prompt);
    replace(text, "{response}", c.text);
    const std::vector<int32_t> ids = tok_->encode(text, true, false);
    if (ids.empty()) fail("search", "the reward model's input tokenized to nothing");
    KvCache cache = model_->make_cache(static_cast<int64_t>(ids.size()) + 1);
    cache.add_sequence(0);
    if (!head_.empty()) return value_head_score(*model_, cache, 0, ids, head_, bias_);
    prefill(*model_, cache, 0, ids, 512, false, logits_);
    return Sampler::logprob_of(logits_, judge_);
  }
  std::string name() const override { return head_.empty() ? "reward-model" : "reward-value-head"; }

 private:
  static void replace(std::string& s, std::string_view key, std::string_view with) {
    for (size_t p = 0; (p = s.find(key, p)) != std::string::npos; p += with.size()) s.replace(p, key.size(), with);
  }
  RewardModelOptions o_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  int32_t judge_ = -1;
  std::vector<float> logits_;  // [n_vocab] of the reward model
  std::vector<float> head_;    // [n_embd] value head (cls.output.weight), empty: none
  float bias_ = 0;             // cls.output.bias
};

}  // namespace

std::unique_ptr<Scorer> make_logprob_scorer() { return std::make_unique<LogprobScorer>(); }
std::unique_ptr<Scorer> make_rules_scorer(const std::vector<Rule>& rules) { return std::make_unique<RulesScorer>(rules); }
std::unique_ptr<Scorer> make_command_scorer(const std::string& command) {
  return std::make_unique<CommandScorer>(command);
}
std::unique_ptr<Scorer> make_reward_model_scorer(const std::string& gguf_path, const RewardModelOptions& o) {
  return std::make_unique<RewardModelScorer>(gguf_path, o);
}

}  // namespace coppice
