// Test-time search: forked branches equal independent runs, KV blocks shared and freed,
// every strategy against greedy and against plain sampling on a deterministic reward,
// self-consistency's vote, and the scorers.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "engine/search.h"
#include "formats/gguf.h"
#include "kernels/types.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;

namespace {

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};
Loaded& stories() {
  static Loaded l = [] {
    Loaded x;
    ModelOptions mo;
    mo.n_threads = 1;  // a busy shared machine: threads would spin against each other
    x.model = Model::load(testutil::shared("models/stories260K.gguf"), mo);
    x.tok = Tokenizer::from_gguf(x.model->file());
    return x;
  }();
  return l;
}

KvCache make_cache(int64_t blocks) {
  const ModelConfig& c = stories().model->config();
  KvCacheOptions o;
  o.block_size = 16;
  o.n_blocks = blocks;
  return KvCache(static_cast<int>(c.n_layer), static_cast<int>(c.n_head_kv), static_cast<int>(c.head_dim), o);
}

std::vector<int32_t> encode(const std::string& s) { return stories().tok->encode(s, true, false); }

// An independent run: its own cache and sequence, the plain generation loop.
std::vector<int32_t> independent(const std::vector<int32_t>& prompt, SamplingParams sp, int n) {
  KvCache cache = make_cache(64);
  cache.add_sequence(0);
  Sampler s(sp);
  GenerateOptions go;
  go.n_predict = n;
  std::vector<int32_t> out;
  generate(*stories().model, cache, 0, *stories().tok, s, prompt, go, [&](int32_t id) {
    out.push_back(id);
    return true;
  });
  return out;
}

SamplingParams sampling(uint64_t seed) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = seed;
  return sp;
}

}  // namespace

TEST(SearchBranches, ForkedBranchesEqualIndependentRuns) {
  Loaded& l = stories();
  const auto prompt = encode("Once upon a time, there was a little girl");
  KvCache cache = make_cache(256);
  BranchOptions bo;
  bo.max_tokens = 40;
  BranchSet set(*l.model, cache, *l.tok, bo);
  const uint64_t seed = 1234;
  const int root = set.start(prompt, sampling(seed));
  std::vector<int> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(set.fork(root, seed + i));
  // Mixed step units: every branch advances in the same batches until done.
  while (true) {
    bool any = false;
    for (int id : ids) any = any || !set.at(id).done;
    if (!any) break;
    set.advance(ids, StepUnit::parse("delim:."), 1 << 20);
  }
  EXPECT_GT(set.steps_run(), 0);
  for (int i = 0; i < 6; ++i) {
    const Branch& b = set.at(ids[i]);
    EXPECT_EQ(b.tokens, independent(prompt, sampling(seed + i), 40)) << "branch " << i;
    EXPECT_EQ(b.text, l.tok->decode(b.tokens));
  }
  // A branch forked mid-generation continues like a run whose prompt is the parent's text so far.
  const int mid = set.fork(root, 77);
  for (int k = 0; k < 5; ++k) set.advance(std::vector<int>{mid}, StepUnit::parse("token"), 1 << 20);
  const std::vector<int32_t> head = set.at(mid).tokens;
  ASSERT_EQ(head.size(), 5u);
  const int child = set.fork(mid, 99);
  for (int k = 0; k < 10; ++k) set.advance(std::vector<int>{child}, StepUnit::parse("token"), 1);
  std::vector<int32_t> full = prompt;
  full.insert(full.end(), head.begin(), head.end());
  const auto ref = independent(full, sampling(99), 10);
  const auto& got = set.at(child).tokens;
  ASSERT_GE(got.size(), head.size());
  EXPECT_EQ(std::vector<int32_t>(got.begin() + static_cast<long>(head.size()), got.end()), ref);
}

TEST(SearchBranches, KvBlocksSharedAndFreed) {
  Loaded& l = stories();
  std::string text;
  for (int i = 0; i < 12; ++i) text += "The little dog ran to the park and played with a red ball. ";
  const auto prompt = encode(text);
  const int P = static_cast<int>(prompt.size());
  ASSERT_GT(P, 150);
  const int bs = 16;
  KvCache cache = make_cache(512);
  const int64_t base = cache.blocks_used();
  {
    BranchOptions bo;
    bo.max_tokens = 40;
    bo.stop_at_eog = false;
    BranchSet set(*l.model, cache, *l.tok, bo);
    const int root = set.start(prompt, sampling(5));
    const int64_t prompt_blocks = (P + bs - 1) / bs;
    EXPECT_EQ(cache.blocks_used() - base, prompt_blocks);
    std::vector<int> ids;
    for (int i = 0; i < 16; ++i) ids.push_back(set.fork(root, 5 + i));
    set.kill(root);
    EXPECT_EQ(cache.blocks_used() - base, prompt_blocks) << "forks must not copy blocks";
    const int g = 20;  // tokens each branch appends to its KV
    for (int k = 0; k < g; ++k) set.advance(ids, StepUnit::parse("token"), 1 << 20);
    // Full prompt blocks stay shared; from the first partially filled block on, each branch
    // holds its own blocks (copy-on-write of the shared partial block).
    const int64_t shared_full = P / bs;
    const int64_t own = (P + g + bs - 1) / bs - shared_full;
    EXPECT_EQ(cache.blocks_used() - base, shared_full + 16 * own);
    EXPECT_EQ(set.blocks_independent(), 16 * ((P + g + bs - 1) / bs));
    EXPECT_GE(static_cast<double>(set.blocks_independent()) / static_cast<double>(set.blocks_used()), 3.0);
    // A dying branch frees only its own blocks; the last one frees the shared prefix too.
    set.kill(ids[0]);
    EXPECT_EQ(cache.blocks_used() - base, shared_full + 15 * own);
    for (int i = 1; i < 16; ++i) set.kill(ids[i]);
    EXPECT_EQ(cache.blocks_used(), base);
  }
  {  // Branches left alive are freed by the set's destructor.
    BranchSet set(*l.model, cache, *l.tok, BranchOptions{});
    const int root = set.start(prompt, sampling(5));
    const std::vector<int> ids{set.fork(root, 1), set.fork(root, 2)};
    set.advance(ids, StepUnit::parse("token"), 1 << 20);
    EXPECT_GT(cache.blocks_used(), base);
  }
  EXPECT_EQ(cache.blocks_used(), base);
}

namespace {

// The deterministic task: the story mentions kWord and ends with a full stop (score 2).
const char* kWord = "dog";
std::unique_ptr<Scorer> task_scorer() {
  return make_rules_scorer({{keyword_pattern(kWord), 1.0}, {"\\.\\s*$", 1.0}});
}
double task_score(const std::string& text) {  // the same reward, computed without pcre2
  size_t end = text.find_last_not_of(" \n\t");
  return (text.find(kWord) != std::string::npos ? 1.0 : 0.0) +
         (end != std::string::npos && text[end] == '.' ? 1.0 : 0.0);
}

constexpr int kMaxTokens = 64;
constexpr int kMaxSteps = 3;  // sentences
const char* kPrompt = "Once upon a time";

// A plain run's text cut like a search candidate: after the kMaxSteps-th full stop.
std::string first_sentences(const std::string& text) {
  size_t pos = 0;
  for (int i = 0; i < kMaxSteps; ++i) {
    pos = text.find('.', pos);
    if (pos == std::string::npos) return text;
    ++pos;
  }
  return text.substr(0, pos);
}

SearchResult search(SearchKind kind, uint64_t seed, int64_t budget, Scorer& scorer) {
  Loaded& l = stories();
  SearchOptions o;
  o.kind = kind;
  o.n = 4;
  o.budget = budget;
  o.max_tokens = kMaxTokens;
  o.max_steps = kMaxSteps;
  o.sampling = sampling(seed);
  o.step = StepUnit::parse("delim:.");
  o.groups = 2;
  KvCache cache = make_cache(512);
  SearchResult r = run_search(*l.model, cache, *l.tok, encode(kPrompt), kPrompt, scorer, o);
  EXPECT_EQ(cache.blocks_used(), 0) << "every branch is freed";
  EXPECT_LE(r.tokens_spent, budget);
  return r;
}

}  // namespace

TEST(Search, StrategiesNeverBelowGreedyAndBeatPlainSampling) {
  Loaded& l = stories();
  auto scorer = task_scorer();
  SamplingParams greedy_sp = sampling(0);
  greedy_sp.temperature = 0;
  const double greedy =
      task_score(first_sentences(l.tok->decode(independent(encode(kPrompt), greedy_sp, kMaxTokens))));
  const int n_seeds = 16;
  const int64_t budget = 4 * 80;
  // Plain sampling: one independent sample per seed (what the same budget buys without a
  // scorer: any one of several independent samples is as good as the first).
  int plain_hits = 0;
  for (int s = 0; s < n_seeds; ++s)
    plain_hits +=
        task_score(first_sentences(l.tok->decode(independent(encode(kPrompt), sampling(100 + s), kMaxTokens)))) >= 2;
  for (SearchKind kind : {SearchKind::BestOfN, SearchKind::Beam, SearchKind::DiverseBeam, SearchKind::Tree,
                          SearchKind::Particles}) {
    int hits = 0;
    for (int s = 0; s < n_seeds; ++s) {
      SearchResult r = search(kind, 100 + s, budget, *scorer);
      ASSERT_FALSE(r.candidates.empty()) << search_kind_name(kind);
      const SearchCandidate& best = r.candidates[0];
      EXPECT_EQ(best.score, task_score(best.text)) << search_kind_name(kind) << ": " << best.text;
      EXPECT_GE(best.score, greedy) << search_kind_name(kind) << " seed " << s;
      for (const SearchCandidate& c : r.candidates) EXPECT_LE(c.score, best.score);
      hits += best.score >= 2;
    }
    std::printf("%-12s hits %d/%d (plain sampling %d/%d, greedy score %.0f)\n", search_kind_name(kind), hits,
                n_seeds, plain_hits, n_seeds, greedy);
    EXPECT_GT(hits, plain_hits) << search_kind_name(kind);
  }
}

TEST(Search, SelfConsistencyVotesLikeAnIndependentTally) {
  Loaded& l = stories();
  const std::string prompt = "Once upon a time, there was a girl named";
  const auto ids = encode(prompt);
  auto scorer = make_logprob_scorer();
  SearchOptions o;
  o.kind = SearchKind::SelfConsistency;
  o.n = 8;
  o.budget = 8 * 24;
  o.max_tokens = 24;
  o.sampling = sampling(42);
  o.answer_regex = "^\\s*(\\w+)";  // the first word after the prompt: the girl's name
  KvCache cache = make_cache(256);
  const SearchResult r = run_search(*l.model, cache, *l.tok, ids, prompt, *scorer, o);
  // The same 8 samples drawn independently (sample i: seed + i), tallied by hand.
  std::map<std::string, int> tally;
  for (int i = 0; i < 8; ++i) {
    const std::string text = l.tok->decode(independent(ids, sampling(42 + i), 24));
    const size_t b = text.find_first_not_of(" \n\t");
    if (b == std::string::npos) continue;
    size_t e = b;
    while (e < text.size() && (std::isalnum(static_cast<unsigned char>(text[e])) || text[e] == '_')) ++e;
    if (e > b) ++tally[text.substr(b, e - b)];
  }
  int best = 0;
  for (const auto& [name, v] : tally) best = std::max(best, v);
  ASSERT_GT(best, 0);
  EXPECT_EQ(tally[r.answer], best) << "answer " << r.answer;
  EXPECT_EQ(r.answer_votes, best);
  EXPECT_EQ(r.candidates[0].answer, r.answer);
}

TEST(SearchScorer, RegexAndRules) {
  Regex rx("answer is (\\d+)");
  std::string out;
  EXPECT_TRUE(rx.extract_last("the answer is 12, no, the answer is 42.", out));
  EXPECT_EQ(out, "42");
  EXPECT_FALSE(rx.extract_last("no number here", out));
  EXPECT_THROW(Regex("(unclosed"), Error);
  EXPECT_TRUE(Regex(keyword_pattern("a.b(c)")).matches("x a.b(c) y"));
  EXPECT_FALSE(Regex(keyword_pattern("a.b")).matches("axb"));
  auto s = make_rules_scorer({{"cat", 1.0}, {"dog", 2.5}, {"\\.$", -1.0}});
  ScoreInput in;
  in.text = "the cat saw a dog.";
  EXPECT_DOUBLE_EQ(s->score(in), 1.0 + 2.5 - 1.0);
  in.text = "nothing";
  EXPECT_DOUBLE_EQ(s->score(in), 0.0);
  EXPECT_THROW(make_rules_scorer({}), Error);
  auto lp = make_logprob_scorer();
  const std::vector<int32_t> toks{1, 2, 3, 4};
  in.tokens = toks;
  in.logprob_sum = -6.0;
  EXPECT_DOUBLE_EQ(lp->score(in), -1.5);
}

TEST(SearchScorer, ExternalCommand) {
  auto s = make_command_scorer("wc -c");
  ScoreInput in;
  const std::string text = "a candidate\nwith two lines";
  in.text = text;
  EXPECT_DOUBLE_EQ(s->score(in), static_cast<double>(text.size()));
  EXPECT_THROW(make_command_scorer("echo not-a-number")->score(in), Error);
  EXPECT_THROW(make_command_scorer("exit 3")->score(in), Error);
}

TEST(SearchScorer, RewardModelLogprobOfJudgementToken) {
  Loaded& l = stories();
  RewardModelOptions ro;
  ro.templ = "Q: {prompt} A: {response}";
  ro.judge = "The";
  auto s = make_reward_model_scorer(testutil::shared("models/stories260K.gguf"), ro);
  ScoreInput in;
  in.prompt = "Once upon a time";
  in.text = " there was a dog.";
  const double got = s->score(in);
  // Independently: every row's logits from one step, log-softmax by hand at the last row.
  const auto ids = l.tok->encode("Q: Once upon a time A:  there was a dog.", true, false);
  int32_t judge = l.tok->find_token("The");
  if (judge < 0) judge = l.tok->encode("The", false, false).at(0);
  KvCache cache = make_cache(16);
  cache.add_sequence(0);
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < ids.size(); ++i) batch.push_back({ids[i], static_cast<int32_t>(i), 0, true});
  std::vector<float> logits;
  l.model->step(batch, cache, logits);
  const int64_t V = l.model->n_vocab();
  const float* row = logits.data() + (static_cast<int64_t>(ids.size()) - 1) * V;
  double mx = row[0], sum = 0;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
  for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
  EXPECT_NEAR(got, row[judge] - mx - std::log(sum), 1e-4);
  EXPECT_LT(got, 0.0);
}

TEST(Search, BadOptionsAreErrors) {
  Loaded& l = stories();
  auto scorer = make_logprob_scorer();
  KvCache cache = make_cache(64);
  SearchOptions o;
  o.n = 0;
  EXPECT_THROW(run_search(*l.model, cache, *l.tok, encode("Hi"), "Hi", *scorer, o), Error);
  o.n = 2;
  o.kind = SearchKind::DiverseBeam;
  o.groups = 3;
  EXPECT_THROW(run_search(*l.model, cache, *l.tok, encode("Hi"), "Hi", *scorer, o), Error);
  o.groups = 1;
  o.kind = SearchKind::SelfConsistency;
  o.answer_regex = "(";
  EXPECT_THROW(run_search(*l.model, cache, *l.tok, encode("Hi"), "Hi", *scorer, o), Error);
  EXPECT_THROW(parse_search_kind("bogus"), Error);
  EXPECT_THROW(StepUnit::parse("delim:"), Error);
  EXPECT_EQ(StepUnit::parse("delim:\\n\\n").delim, "\n\n");
  EXPECT_EQ(cache.blocks_used(), 0);
}

TEST(SearchCli, RunsAndReportsJson) {
  const auto r = testutil::run_cli("search -m " + testutil::shared("models/stories260K.gguf") +
                                   " -p 'Once upon a time' --strategy beam --step 'delim:.' -N 3 --budget 120 -n 30"
                                   " --scorer rules --keyword dog --rule '\\.$' --json -t 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("\"kv_blocks_saved\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"candidates\""), std::string::npos);
  const auto bad = testutil::run_cli("search -m " + testutil::shared("models/stories260K.gguf") +
                                     " -p hi --strategy nope");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("unknown strategy"), std::string::npos) << bad.err;
  const auto no_cmd = testutil::run_cli("search -m " + testutil::shared("models/stories260K.gguf") +
                                        " -p hi --scorer command");
  EXPECT_EQ(no_cmd.status, 1);
  EXPECT_NE(no_cmd.err.find("--scorer-command"), std::string::npos) << no_cmd.err;
  // The command scorer through the CLI: score = the candidate's byte count.
  const auto wc = testutil::run_cli("search -m " + testutil::shared("models/stories260K.gguf") +
                                    " -p 'Once upon a time' -N 2 --budget 40 -n 20 --scorer command"
                                    " --scorer-command 'wc -c' --json -t 1");
  ASSERT_EQ(wc.status, 0) << wc.err;
  const auto j = nlohmann::json::parse(wc.out);
  ASSERT_FALSE(j["candidates"].empty());
  for (const auto& c : j["candidates"])
    EXPECT_EQ(c["score"].get<double>(), static_cast<double>(c["text"].get<std::string>().size()));
  const auto http = testutil::run_cli("search -m " + testutil::shared("models/stories260K.gguf") +
                                      " -p hi -n 4 --budget 8 --scorer http --scorer-url http://127.0.0.1:1/score -t 1");
  EXPECT_EQ(http.status, 1);
  EXPECT_NE(http.err.find("scorer URL"), std::string::npos) << http.err;
  const auto step = testutil::run_cli("search -m " + testutil::shared("models/stories260K.gguf") + " -p hi --step para");
  EXPECT_EQ(step.status, 1);
  EXPECT_NE(step.err.find("step unit"), std::string::npos) << step.err;
}

TEST(Search, ProgressAndSharingReport) {
  Loaded& l = stories();
  std::string text;
  for (int i = 0; i < 12; ++i) text += "The little dog ran to the park and played with a red ball. ";
  const auto prompt = encode(text);
  auto scorer = task_scorer();
  for (SearchKind kind : {SearchKind::Tree, SearchKind::Particles, SearchKind::DiverseBeam}) {
    SearchOptions o;
    o.kind = kind;
    o.n = 4;
    o.budget = 200;
    o.max_tokens = 40;
    o.step = StepUnit::parse("delim:.");
    o.sampling = sampling(3);
    o.diversity = 10;  // a repeated step can never beat a fresh one
    KvCache cache = make_cache(512);
    std::vector<SearchProgress> seen;
    const SearchResult r =
        run_search(*l.model, cache, *l.tok, prompt, text, *scorer, o, [&](const SearchProgress& p) { seen.push_back(p); });
    ASSERT_FALSE(seen.empty()) << search_kind_name(kind);
    for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].tokens_spent, seen[i - 1].tokens_spent);
    EXPECT_LE(seen.back().tokens_spent, o.budget);
    EXPECT_EQ(seen.back().tokens_spent, r.tokens_spent);
    EXPECT_FALSE(seen.back().best_text.empty());
    // Every live branch shares the prompt's full blocks: at least 2x less than independent copies.
    EXPECT_GE(r.kv_blocks_independent, 2 * r.kv_blocks_peak) << search_kind_name(kind);
    EXPECT_GE(r.kv_blocks_peak, static_cast<int64_t>(prompt.size()) / 16);
    EXPECT_EQ(cache.blocks_used(), 0);
  }
}

namespace {
// stories260K plus a value head `cls.output.weight` = sum_k a_k * (output row t_k) and a bias:
// then head . h + bias = sum_k a_k * logit[t_k] + bias, an independent computation through the
// model's ordinary logits path.
std::string write_value_head_model(const std::vector<std::pair<int32_t, float>>& mix, float bias,
                                   const std::string& name) {
  const gguf::File f = gguf::File::open(testutil::shared("models/stories260K.gguf"));
  const gguf::TensorInfo* out = f.tensor("output.weight");
  if (!out) out = f.tensor("token_embd.weight");
  const int64_t E = out->ne(0);
  const TypeTraits* tt = type_traits(out->type);
  const size_t row_bytes = row_size(*tt, E);
  std::vector<float> head(static_cast<size_t>(E), 0.0f), row(static_cast<size_t>(E));
  for (const auto& [t, a] : mix) {
    tt->to_float(out->data + static_cast<size_t>(t) * row_bytes, row.data(), E);
    for (int64_t i = 0; i < E; ++i) head[static_cast<size_t>(i)] += a * row[static_cast<size_t>(i)];
  }
  std::vector<gguf::WriterTensor> ts;
  for (const gguf::TensorInfo& t : f.tensors()) ts.push_back({t.name, t.dims, t.type, t.data, t.size});
  ts.push_back({"cls.output.weight", {E, 1}, DType::F32, head.data(), head.size() * sizeof(float)});
  ts.push_back({"cls.output.bias", {1}, DType::F32, &bias, sizeof(float)});
  const std::string path = testutil::temp_path(name);
  gguf::write_file(path, f.kvs(), ts);
  return path;
}
}  // namespace

TEST(SearchScorer, RewardModelValueHeadEqualsLogitMixture) {
  Loaded& l = stories();
  const std::vector<std::pair<int32_t, float>> mix = {{13, 0.75f}, {400, -1.5f}, {7, 0.25f}};
  const float bias = 0.3f;
  RewardModelOptions ro;
  ro.templ = "Q: {prompt} A: {response}";
  ro.judge = "no-such-token-needed";  // a value head needs no judgement token
  auto s = make_reward_model_scorer(write_value_head_model(mix, bias, "value_head.gguf"), ro);
  EXPECT_EQ(s->name(), "reward-value-head");
  for (const char* response : {" there was a dog.", " a cat sat", "."}) {
    ScoreInput in;
    in.prompt = "Once upon a time";
    in.text = response;
    const double got = s->score(in);
    const auto ids = l.tok->encode(std::string("Q: Once upon a time A: ") + response, true, false);
    KvCache cache = make_cache(16);
    cache.add_sequence(0);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < ids.size(); ++i) batch.push_back({ids[i], static_cast<int32_t>(i), 0, true});
    std::vector<float> logits;
    l.model->step(batch, cache, logits);
    const float* last = logits.data() + (static_cast<int64_t>(ids.size()) - 1) * l.model->n_vocab();
    double want = bias;
    double scale = 0;
    for (const auto& [t, a] : mix) want += a * last[t], scale += std::fabs(a * last[t]);
    EXPECT_NEAR(got, want, 1e-4 * (1 + scale)) << response;
  }
}

TEST(SearchScorer, MisShapedValueHeadIsAnError) {
  const gguf::File f = gguf::File::open(testutil::shared("models/stories260K.gguf"));
  std::vector<gguf::WriterTensor> ts;
  for (const gguf::TensorInfo& t : f.tensors()) ts.push_back({t.name, t.dims, t.type, t.data, t.size});
  const int64_t E = f.tensor("token_embd.weight")->ne(0);
  std::vector<float> head(static_cast<size_t>(2 * E), 0.5f);  // two outputs: not a scalar value head
  ts.push_back({"cls.output.weight", {E, 2}, DType::F32, head.data(), head.size() * sizeof(float)});
  const std::string path = testutil::temp_path("value_head_bad.gguf");
  gguf::write_file(path, f.kvs(), ts);
  try {
    make_reward_model_scorer(path, RewardModelOptions{});
    FAIL() << "a two-output head loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cls.output.weight"), std::string::npos) << e.what();
  }
}
