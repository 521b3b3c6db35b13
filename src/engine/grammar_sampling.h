// The grammar as a sampling constraint: a LogitProcessor that bans every token whose bytes
// cannot continue the grammar (and end-of-generation until the grammar is complete). The
// Sampler runs it by rejection (Sampler::set_constraint): usually only the drawn token is
// checked; the full vocabulary mask is built only when that token is rejected.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/sampling.h"
#include "grammar/grammar.h"
#include "grammar/token_trie.h"
#include "tokenizer/tokenizer.h"

namespace coppice {

struct GrammarOptions {
  // Constrain only after this text has appeared in the output (e.g. "</think>" for reasoning
  // models); empty: from the first token. The text after the marker in the same token is fed
  // to the grammar.
  std::string start_after;
  size_t max_stacks = 4096;  // bound on the matcher's state set
};

// One vocabulary's token bytes, end-of-generation flags and byte trie; built once, shared by
// every request that uses a grammar.
struct GrammarVocab {
  std::vector<std::string> pieces;  // [n_vocab] raw bytes; "" for control tokens
  std::vector<uint8_t> eog;         // [n_vocab]
  std::unique_ptr<grammar::TokenTrie> trie;
  static std::shared_ptr<const GrammarVocab> from_tokenizer(const Tokenizer& tok);
};

std::unique_ptr<LogitProcessor> make_grammar_constraint(grammar::GrammarPtr g, std::shared_ptr<const GrammarVocab> vocab,
                                                        GrammarOptions opts = {});

// Parses GBNF and wraps it for the sampler (throws coppice::Error on a bad grammar).
grammar::GrammarPtr compile_grammar(const std::string& gbnf);

}  // namespace coppice
