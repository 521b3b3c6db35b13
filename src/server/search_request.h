// The `search` extension object of /v1/completions and /v1/chat/completions: a test-time
// search (engine/search.h) instead of plain sampling, e.g.
//   "search": {"strategy": "beam", "budget": 512, "n": 4, "unit": "line",
//              "scorer": {"type": "rules", "keywords": ["dog"]}}
// Parsed into plain options here (no model needed: the request fuzzer links it); the scorer is
// built per request by the server. Requests never name files or commands: the reward model is
// the one the server was started with, and command/HTTP scorers are refused.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/search.h"

namespace coppice::server {

struct ScorerSpec {
  enum class Kind { Logprob, Rules, Reward } kind = Kind::Logprob;
  std::vector<Rule> rules;  // Rules: patterns (keywords escaped) and weights
};

struct SearchSpec {
  SearchOptions opts;  // sampling and max_tokens are filled from the request's own fields
  ScorerSpec scorer;
};

struct SearchLimits {
  int max_n = 64;            // search.n
  int64_t max_budget = 1 << 16;  // search.budget, generated tokens
};

// Throws ApiError(400) naming the field ("search.budget", "search.scorer.type", ...).
SearchSpec parse_search_object(const nlohmann::json& v, const SearchLimits& lim);

}  // namespace coppice::server
