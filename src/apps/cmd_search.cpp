// `coppice search`: test-time search (best-of-n, self-consistency, beam, diverse-beam, tree,
// particles) over branches that share the prompt's KV, with a pluggable scorer. A live view
// of the best candidate and the tokens spent goes to stderr; the result to stdout.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/search_http_scorer.h"
#include "engine/search.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct SearchArgs {
  ModelArgs model;
  SamplingParams sampling;
  SearchOptions search;
  std::string strategy = "best-of-n";
  std::string step = "line";
  std::string prompt, file;
  std::string scorer = "logprob";
  std::vector<std::string> rules, keywords;
  std::string command, url, reward_model, judge = ".", judge_template = "{prompt}{response}";
  int64_t kv_blocks = 0;
  bool json = false, quiet = false, ignore_eos = false;
};

std::unique_ptr<Scorer> make_scorer(const SearchArgs& a) {
  if (a.scorer == "logprob") return make_logprob_scorer();
  if (a.scorer == "rules") {
    std::vector<Rule> rules;
    for (const std::string& r : a.rules) rules.push_back({r, 1.0});
    for (const std::string& k : a.keywords) rules.push_back({keyword_pattern(k), 1.0});
    return make_rules_scorer(rules);
  }
  if (a.scorer == "command") {
    if (a.command.empty()) fail("cli", "--scorer command needs --scorer-command CMD");
    return make_command_scorer(a.command);
  }
  if (a.scorer == "http") {
    if (a.url.empty()) fail("cli", "--scorer http needs --scorer-url URL");
    return make_http_scorer(a.url);
  }
  if (a.scorer == "reward") {
    if (a.reward_model.empty()) fail("cli", "--scorer reward needs --reward-model FILE.gguf");
    RewardModelOptions ro;
    ro.templ = a.judge_template;
    ro.judge = a.judge;
    ro.n_threads = a.model.threads;
    return make_reward_model_scorer(a.reward_model, ro);
  }
  fail("cli", "unknown scorer '" + a.scorer + "': expected logprob, rules, command, http or reward");
}

std::string one_line(const std::string& s, size_t n) {
  std::string o;
  for (char c : s.substr(s.size() > n ? s.size() - n : 0)) o += c == '\n' ? ' ' : c;
  return o;
}

int search(SearchArgs& a) {
  check_sampling(a.sampling);
  SearchOptions& o = a.search;
  o.kind = parse_search_kind(a.strategy);
  o.step = StepUnit::parse(a.step);
  o.sampling = a.sampling;
  o.branch.stop_at_eog = !a.ignore_eos;
  o.branch.n_batch = a.model.batch;
  if (o.kind == SearchKind::SelfConsistency) Regex check(o.answer_regex);
  std::unique_ptr<Scorer> scorer = make_scorer(a);  // bad scorer options fail before the model loads
  if (!a.prompt.empty() && !a.file.empty()) fail("cli", "give either -p or -f, not both");
  std::string prompt = a.prompt;
  if (!a.file.empty()) prompt = read_text(a.file);
  else if (prompt.empty() && !isatty(0)) prompt = read_text("-");
  if (prompt.empty()) fail("cli", "no prompt: use -p TEXT, -f FILE or pipe text on stdin");

  Loaded l = load(a.model);
  const std::vector<int32_t> ids = l.tok->encode(prompt, true, true);
  if (ids.empty()) fail("cli", "the prompt tokenized to nothing");
  if (static_cast<int64_t>(ids.size()) + o.max_tokens > l.n_ctx)
    fail("cli", "prompt (" + std::to_string(ids.size()) + " tokens) + " + std::to_string(o.max_tokens) +
                    " new tokens exceed the context " + std::to_string(l.n_ctx) + " (raise -c)");
  // The pool holds the prompt once plus every live branch's suffix (and a copied block each).
  const int bs = 16;
  const int64_t live = static_cast<int64_t>(o.n) * std::max(o.expand, 1) + o.groups + 1;
  const int64_t blocks = a.kv_blocks > 0 ? a.kv_blocks
                                         : (static_cast<int64_t>(ids.size()) + bs - 1) / bs +
                                               live * ((o.max_tokens + bs - 1) / bs + 1);
  KvCacheOptions ko;
  ko.block_size = bs;
  ko.n_blocks = blocks;
  ko.type = l.kv_type;
  const ModelConfig& cfg = l.model->config();
  KvCache cache(static_cast<int>(cfg.n_layer), static_cast<int>(cfg.n_head_kv), static_cast<int>(cfg.head_dim), ko);

  const bool live_view = !a.quiet && isatty(2);
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  ProgressFn progress = [&](const SearchProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (!live_view || now - last < std::chrono::milliseconds(100)) return;
    last = now;
    std::fprintf(stderr, "\r\033[K[%s] %lld/%lld tokens, %d branches, best %.3f: %s", a.strategy.c_str(),
                 static_cast<long long>(p.tokens_spent), static_cast<long long>(p.budget), p.live_branches,
                 p.best_score, one_line(p.best_text, 60).c_str());
    std::fflush(stderr);
  };
  const auto t0 = std::chrono::steady_clock::now();
  SearchResult r = run_search(*l.model, cache, *l.tok, ids, prompt, *scorer, o, progress);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (live_view) std::fputs("\r\033[K", stderr);
  if (r.candidates.empty()) fail("search", "no candidate was generated (budget too small?)");

  if (a.json) {
    nlohmann::json j;
    j["strategy"] = a.strategy;
    j["scorer"] = scorer->name();
    j["tokens_spent"] = r.tokens_spent;
    j["budget"] = o.budget;
    j["kv_blocks_peak"] = r.kv_blocks_peak;
    j["kv_blocks_independent"] = r.kv_blocks_independent;
    j["kv_blocks_saved"] = r.kv_blocks_independent - r.kv_blocks_peak;
    j["forward_steps"] = r.forward_steps;
    j["ms"] = ms;
    if (o.kind == SearchKind::SelfConsistency) j["answer"] = r.answer, j["answer_votes"] = r.answer_votes;
    j["candidates"] = nlohmann::json::array();
    for (const SearchCandidate& c : r.candidates)
      j["candidates"].push_back({{"text", c.text}, {"score", c.score}, {"mean_logprob", c.mean_logprob},
                                 {"tokens", c.tokens.size()}, {"finished", c.finished}, {"answer", c.answer}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << prompt << r.candidates[0].text << "\n";
  if (!a.quiet) {
    std::fprintf(stderr, "\n[%s] best score %.4f (mean logprob %.3f) of %zu candidates; %lld tokens spent of %lld; "
                 "KV blocks peak %lld vs %lld independent (%lld saved by sharing); %.1f ms\n",
                 a.strategy.c_str(), r.candidates[0].score, r.candidates[0].mean_logprob, r.candidates.size(),
                 static_cast<long long>(r.tokens_spent), static_cast<long long>(o.budget),
                 static_cast<long long>(r.kv_blocks_peak), static_cast<long long>(r.kv_blocks_independent),
                 static_cast<long long>(r.kv_blocks_independent - r.kv_blocks_peak), ms);
    if (o.kind == SearchKind::SelfConsistency)
      std::fprintf(stderr, "answer: %s (%d votes)\n", r.answer.empty() ? "(none)" : r.answer.c_str(), r.answer_votes);
  }
  return 0;
}

}  // namespace

Action register_search(CLI::App& app) {
  auto a = std::make_shared<SearchArgs>();
  CLI::App* sub = app.add_subcommand("search", "test-time search: best-of-n, beam, tree, particles with a scorer");
  add_model_options(sub, a->model);
  add_sampling_options(sub, a->sampling);
  SearchOptions& o = a->search;
  sub->add_option("-p,--prompt", a->prompt, "prompt text");
  sub->add_option("-f,--file", a->file, "read the prompt from a file");
  sub->add_option("--strategy", a->strategy, "best-of-n, self-consistency, beam, diverse-beam, tree, particles");
  sub->add_option("--budget", o.budget, "total generated tokens over all branches")->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  sub->add_option("-N,--branches", o.n, "samples / beams / tree width / particles")->check(CLI::Range(1, 256));
  sub->add_option("-n,--n-predict", o.max_tokens, "max tokens per candidate")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-steps", o.max_steps, "max step units per candidate (0 = no limit)")->check(CLI::Range(0, 1 << 20));
  sub->add_option("--step", a->step, "step unit: token, line, delim:STR, whole");
  sub->add_option("--expand", o.expand, "beam/tree: children sampled per node")->check(CLI::Range(1, 64));
  sub->add_option("--groups", o.groups, "diverse-beam: number of groups")->check(CLI::Range(1, 256));
  sub->add_option("--diversity", o.diversity, "diverse-beam: penalty per repeated step");
  sub->add_option("--ess", o.ess_threshold, "particles: resample when ESS < this * n")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--particle-temp", o.temperature, "particles: weights = exp(score / T)");
  sub->add_option("--kv-weight", o.kv_weight, "tree: cost of a node with a new parent");
  sub->add_option("--coverage-weight", o.coverage_weight, "tree: bonus for a new cluster");
  sub->add_option("--answer-regex", o.answer_regex, "self-consistency: answer = group 1 of the last match");
  sub->add_option("--scorer", a->scorer, "logprob, rules, command, http, reward");
  sub->add_option("--rule", a->rules, "rules scorer: +1 when this pcre2 regex matches (repeatable)");
  sub->add_option("--keyword", a->keywords, "rules scorer: +1 when this word occurs (repeatable)");
  sub->add_option("--scorer-command", a->command, "command scorer: reads the candidate on stdin, prints a number");
  sub->add_option("--scorer-url", a->url, "http scorer: POST {prompt, text} -> a number or {\"score\": x}");
  sub->add_option("--reward-model", a->reward_model, "reward scorer: GGUF judging the candidates");
  sub->add_option("--judge", a->judge, "reward scorer: judgement token text");
  sub->add_option("--judge-template", a->judge_template, "reward scorer: text with {prompt} and {response}");
  sub->add_option("--kv-blocks", a->kv_blocks, "KV pool size in 16-token blocks (default: enough for the search)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  sub->add_flag("--ignore-eos", a->ignore_eos, "keep generating past end-of-generation tokens");
  sub->add_flag("--json", a->json, "print the result as JSON");
  sub->add_flag("-q,--quiet", a->quiet, "no progress view or summary");
  return [a] { return search(*a); };
}

}  // namespace coppice::cli
