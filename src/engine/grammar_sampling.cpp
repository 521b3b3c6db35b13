#include "engine/grammar_sampling.h"

#include <cmath>

#include "grammar/matcher.h"
#include "util/error.h"

namespace coppice {

std::shared_ptr<const GrammarVocab> GrammarVocab::from_tokenizer(const Tokenizer& tok) {
  auto v = std::make_shared<GrammarVocab>();
  const int32_t n = tok.n_vocab();
  v->pieces.resize(static_cast<size_t>(n));
  v->eog.resize(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    v->eog[id] = tok.is_eog(id);
    if (!tok.is_control(id)) v->pieces[id] = tok.token_to_piece(id, false);
  }
  v->trie = std::make_unique<grammar::TokenTrie>(v->pieces);
  return v;
}

grammar::GrammarPtr compile_grammar(const std::string& gbnf) {
  return std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(gbnf));
}

namespace {

class GrammarConstraint : public LogitProcessor {
 public:
  GrammarConstraint(grammar::GrammarPtr g, std::shared_ptr<const GrammarVocab> v, GrammarOptions o)
      : vocab_(std::move(v)), opts_(std::move(o)), m_(std::move(g), opts_.max_stacks) {
    reset();
  }
  const char* name() const override { return "grammar"; }
  bool is_constraint() const override { return true; }

  void apply(Candidates& c, const SamplingContext&) override {
    if (!active_) return;
    if (mask_version_ != version_) {  // the mask for this state may already be built
      vocab_->trie->mask(m_, mask_, walk_scratch_);
      const bool done = m_.is_complete();
      for (size_t id = 0; id < mask_.size(); ++id)
        if (vocab_->eog[id]) mask_[id] = done;
      mask_version_ = version_;
    }
    for (auto& x : c.items)
      if (x.id < 0 || static_cast<size_t>(x.id) >= mask_.size() || !mask_[x.id]) x.logit = -INFINITY;
  }

  bool allows(int32_t id) override {
    if (!active_) return true;
    if (id < 0 || static_cast<size_t>(id) >= vocab_->pieces.size()) return false;
    if (vocab_->eog[id]) return m_.is_complete();
    const std::string& p = vocab_->pieces[id];
    return !p.empty() && m_.would_accept(p);
  }

  // The path's bytes fed at once (the matcher works on bytes, so this is the same as token by
  // token). An end-of-generation token ends the path: what follows it is never drawn.
  bool allows_path(std::span<const int32_t> ids) override {
    if (!active_) return true;
    path_bytes_.clear();
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= vocab_->pieces.size()) return false;
      if (vocab_->eog[id]) break;
      const std::string& p = vocab_->pieces[id];
      if (p.empty()) return false;
      path_bytes_ += p;
    }
    return path_bytes_.empty() || m_.would_accept(path_bytes_);
  }

  void accept(int32_t id) override {
    if (id < 0 || static_cast<size_t>(id) >= vocab_->pieces.size() || vocab_->eog[id]) return;
    const std::string& p = vocab_->pieces[id];
    ++version_;
    if (!active_) {
      text_ += p;
      const size_t at = text_.find(opts_.start_after);
      if (at == std::string::npos) {
        if (text_.size() > opts_.start_after.size()) text_.erase(0, text_.size() - opts_.start_after.size());
        return;
      }
      active_ = true;
      const std::string rest = text_.substr(at + opts_.start_after.size());
      text_.clear();
      // Whitespace right after the marker is not part of the structured output.
      size_t k = 0;
      while (k < rest.size() && (rest[k] == ' ' || rest[k] == '\n')) ++k;
      if (k < rest.size() && !m_.accept(std::string_view(rest).substr(k)))
        fail("grammar", "the text after '" + opts_.start_after + "' does not match the grammar");
      return;
    }
    if (!m_.accept(p)) fail("grammar", "token " + std::to_string(id) + " was sampled but the grammar rejects it");
  }

  void reset() override {
    m_.reset();
    active_ = opts_.start_after.empty();
    text_.clear();
    ++version_;
  }

 private:
  std::shared_ptr<const GrammarVocab> vocab_;
  GrammarOptions opts_;
  grammar::Matcher m_;
  bool active_ = true;
  std::string text_;              // output tail while waiting for start_after
  std::string path_bytes_;        // allows_path scratch
  uint64_t version_ = 0, mask_version_ = ~uint64_t{0};
  std::vector<uint8_t> mask_;     // [n_vocab], valid for mask_version_
  std::vector<grammar::MatchState> walk_scratch_;  // [max token length + 1], reused by every mask
};

}  // namespace

std::unique_ptr<LogitProcessor> make_grammar_constraint(grammar::GrammarPtr g, std::shared_ptr<const GrammarVocab> vocab,
                                                        GrammarOptions opts) {
  return std::make_unique<GrammarConstraint>(std::move(g), std::move(vocab), std::move(opts));
}

}  // namespace coppice
