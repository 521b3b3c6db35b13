#include "server/search_request.h"

#include <cmath>

#include "server/api_error.h"
#include "util/error.h"

namespace coppice::server {

using json = nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& msg, const std::string& code = "invalid_value") {
  throw ApiError(400, "'" + field + "': " + msg, field, code);
}

double number(const std::string& f, const json& v, double lo, double hi) {
  if (!v.is_number()) bad(f, "must be a number", "invalid_type");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(f, v.dump() + " is out of range [" + json(lo).dump() + ", " + json(hi).dump() + "]");
  return x;
}

int64_t integer(const std::string& f, const json& v, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad(f, "must be an integer", "invalid_type");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    bad(f, v.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) bad(f, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

std::string string(const std::string& f, const json& v) {
  if (!v.is_string()) bad(f, "must be a string", "invalid_type");
  return v.get<std::string>();
}

// A pattern must compile now (400), not when the engine runs the search.
std::string pattern(const std::string& f, const std::string& p) {
  try {
    Regex check(p);
  } catch (const Error& e) {
    bad(f, e.what());
  }
  return p;
}

ScorerSpec parse_scorer(const json& v) {
  ScorerSpec s;
  const json obj = v.is_string() ? json{{"type", v}} : v;
  if (!obj.is_object()) bad("search.scorer", "must be a string or an object", "invalid_type");
  if (!obj.contains("type")) bad("search.scorer.type", "is required", "missing_field");
  const std::string type = string("search.scorer.type", obj["type"]);
  if (type == "logprob") {
    s.kind = ScorerSpec::Kind::Logprob;
  } else if (type == "rules") {
    s.kind = ScorerSpec::Kind::Rules;
  } else if (type == "reward") {
    s.kind = ScorerSpec::Kind::Reward;
  } else if (type == "command" || type == "http") {
    bad("search.scorer.type", "'" + type + "' scorers are not available in the server (a request never runs "
                               "commands or contacts hosts); use logprob, rules or reward");
  } else {
    bad("search.scorer.type", "unknown scorer '" + type + "': expected logprob, rules or reward");
  }
  for (const auto& [k, x] : obj.items()) {
    const std::string f = "search.scorer." + k;
    if (k == "type") continue;
    if (s.kind != ScorerSpec::Kind::Rules || (k != "rules" && k != "keywords"))
      bad(f, "unsupported field for a '" + type + "' scorer", "unknown_field");
    if (!x.is_array()) bad(f, "must be an array", "invalid_type");
    for (size_t i = 0; i < x.size(); ++i) {
      const std::string fi = f + "[" + std::to_string(i) + "]";
      if (k == "keywords") {
        const std::string w = string(fi, x[i]);
        if (w.empty()) bad(fi, "a keyword must not be empty");
        s.rules.push_back({keyword_pattern(w), 1.0});
        continue;
      }
      if (!x[i].is_object()) bad(fi, "must be an object {\"pattern\", \"weight\"}", "invalid_type");
      Rule r;
      bool has_pattern = false;
      for (const auto& [rk, rv] : x[i].items()) {
        if (rk == "pattern") r.pattern = pattern(fi + ".pattern", string(fi + ".pattern", rv)), has_pattern = true;
        else if (rk == "weight") r.weight = number(fi + ".weight", rv, -1e6, 1e6);
        else bad(fi + "." + rk, "unsupported field in a rule", "unknown_field");
      }
      if (!has_pattern) bad(fi + ".pattern", "is required", "missing_field");
      s.rules.push_back(std::move(r));
    }
  }
  if (s.kind == ScorerSpec::Kind::Rules && s.rules.empty())
    bad("search.scorer.rules", "a rules scorer needs at least one rule or keyword", "missing_field");
  return s;
}

}  // namespace

SearchSpec parse_search_object(const json& v, const SearchLimits& lim) {
  if (!v.is_object()) bad("search", "must be an object", "invalid_type");
  SearchSpec s;
  SearchOptions& o = s.opts;
  bool unit_given = false;
  for (const auto& [k, x] : v.items()) {
    const std::string f = "search." + k;
    if (x.is_null()) continue;
    if (k == "strategy") {
      try {
        o.kind = parse_search_kind(string(f, x));
      } catch (const Error& e) {
        bad(f, e.what());
      }
    } else if (k == "budget") {
      o.budget = integer(f, x, 1, lim.max_budget);
    } else if (k == "n") {
      o.n = static_cast<int>(integer(f, x, 1, lim.max_n));
    } else if (k == "expand") {
      o.expand = static_cast<int>(integer(f, x, 1, 64));
    } else if (k == "max_steps") {
      o.max_steps = static_cast<int>(integer(f, x, 0, 1 << 20));
    } else if (k == "unit") {
      try {
        o.step = StepUnit::parse(string(f, x));
      } catch (const Error& e) {
        bad(f, e.what());
      }
      unit_given = true;
    } else if (k == "groups") {
      o.groups = static_cast<int>(integer(f, x, 1, lim.max_n));
    } else if (k == "diversity") {
      o.diversity = number(f, x, 0, 1e6);
    } else if (k == "ess") {
      o.ess_threshold = number(f, x, 0, 1);
    } else if (k == "particle_temperature") {
      o.temperature = number(f, x, 1e-6, 1e6);
      if (!(o.temperature > 0)) bad(f, "must be > 0");
    } else if (k == "kv_weight") {
      o.kv_weight = number(f, x, -1e6, 1e6);
    } else if (k == "coverage_weight") {
      o.coverage_weight = number(f, x, -1e6, 1e6);
    } else if (k == "answer_regex") {
      o.answer_regex = pattern(f, string(f, x));
    } else if (k == "scorer") {
      s.scorer = parse_scorer(x);
    } else {
      bad(f, "unsupported field in 'search'", "unknown_field");
    }
  }
  if (!v.contains("strategy")) bad("search.strategy", "is required", "missing_field");
  if (o.kind == SearchKind::DiverseBeam && o.groups > o.n)
    bad("search.groups", std::to_string(o.groups) + " groups is more than n = " + std::to_string(o.n));
  if (!unit_given) o.step = StepUnit::parse("line");  // as `coppice search`
  return s;
}

}  // namespace coppice::server
