// The server's best_of and `search` extension object, in-process on a loopback port: best_of
// returns the candidates an independent ranking picks, every strategy scores at least greedy's
// score on a deterministic reward, an ordinary request completes while a search runs, KV blocks
// all return after a search and after a cancelled one, and bad search objects are 400s naming
// the field.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>

#include "server/server.h"
#include "test_util.h"

using namespace coppice;
using json = nlohmann::json;

namespace {

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};
Loaded& stories() {
  static Loaded l = [] {
    Loaded x;
    ModelOptions mo;
    mo.n_threads = 1;  // a busy shared machine
    x.model = Model::load(testutil::shared("models/stories260K.gguf"), mo);
    x.tok = Tokenizer::from_gguf(x.model->file());
    return x;
  }();
  return l;
}

struct Harness {
  explicit Harness(EngineOptions eo = default_engine(), server::ServerOptions so = {}) {
    auto& l = stories();
    engine = std::make_unique<Engine>(*l.model, *l.tok, eo);
    so.host = "127.0.0.1";
    so.port = 0;
    so.model_id = "stories260K.gguf";
    so.log = [](const std::string&) {};
    so.render_chat = [](const std::vector<server::ChatMessage>& m) {  // a plain template will do
      std::string s;
      for (const auto& x : m) s += x.role + ": " + x.content + "\n";
      return s + "assistant:";
    };
    srv = std::make_unique<server::Server>(*engine, *l.tok, so);
    port = srv->start();
  }
  ~Harness() {
    srv->shutdown(std::chrono::milliseconds(0));
    srv.reset();
    engine.reset();
  }
  static EngineOptions default_engine() {
    EngineOptions eo;
    eo.n_ctx = 512;
    eo.n_parallel = 32;
    eo.step_tokens = 64;
    eo.prefix_cache = false;  // blocks in use are exactly the live sequences'
    return eo;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    return c;
  }
  json post(const json& body, int expect_status = 200, const std::string& path = "/v1/completions") const {
    auto r = client().Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << "no response";
    if (!r) return json();
    EXPECT_EQ(r->status, expect_status) << r->body;
    return json::parse(r->body);
  }
  std::unique_ptr<Engine> engine;
  std::unique_ptr<server::Server> srv;
  int port = 0;
};

double mean_logprob(const json& choice) {
  const json& lp = choice["logprobs"]["token_logprobs"];
  if (lp.empty()) return -1e30;
  double s = 0;
  for (const json& x : lp) s += x.get<double>();
  return s / static_cast<double>(lp.size());
}

// The deterministic task of tests/test_search.cpp: mentions "dog" and ends with a full stop.
double task_score(const std::string& text) {
  const size_t end = text.find_last_not_of(" \n\t");
  return (text.find("dog") != std::string::npos ? 1.0 : 0.0) + (end != std::string::npos && text[end] == '.' ? 1.0 : 0.0);
}
std::string first_sentences(const std::string& text, int n) {
  size_t pos = 0;
  for (int i = 0; i < n; ++i) {
    pos = text.find('.', pos);
    if (pos == std::string::npos) return text;
    ++pos;
  }
  return text.substr(0, pos);
}

json task_search(const std::string& strategy) {
  return {{"strategy", strategy},
          {"n", 4},
          {"budget", 320},
          {"unit", "delim:."},
          {"max_steps", 3},
          {"groups", 2},
          {"scorer", {{"type", "rules"}, {"keywords", {"dog"}}, {"rules", {{{"pattern", "\\.\\s*$"}, {"weight", 1}}}}}}};
}

void wait_blocks_free(const Engine& e) {
  for (int i = 0; i < 500 && e.stats().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace

TEST(ServerBestOf, ReturnsTheNBestOfIndependentCandidates) {
  Harness h;
  const std::string prompt = "Once upon a time";
  const int best_of = 5, n = 2;
  const uint64_t seed = 77;
  // Candidate c of best_of samples like choice c of an n = best_of request: seed + c. Ranked
  // here from independent single requests' own logprobs.
  std::vector<std::pair<double, std::string>> ranked;
  int tokens = 0;
  for (int c = 0; c < best_of; ++c) {
    json one = h.post({{"prompt", prompt}, {"max_tokens", 24}, {"seed", seed + c}, {"logprobs", 0}});
    ranked.emplace_back(mean_logprob(one["choices"][0]), one["choices"][0]["text"].get<std::string>());
    tokens += one["usage"]["completion_tokens"].get<int>();
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  json r = h.post({{"prompt", prompt}, {"max_tokens", 24}, {"seed", seed}, {"best_of", best_of}, {"n", n}});
  ASSERT_EQ(r["choices"].size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(r["choices"][i]["index"], i);
    EXPECT_EQ(r["choices"][i]["text"], ranked[static_cast<size_t>(i)].second) << "rank " << i;
    EXPECT_TRUE(r["choices"][i]["logprobs"].is_null()) << "logprobs were not asked for";
  }
  EXPECT_EQ(r["usage"]["completion_tokens"], tokens) << "every candidate's tokens are billed";
  // With logprobs asked for, they are the returned candidates' own.
  json lr = h.post({{"prompt", prompt}, {"max_tokens", 24}, {"seed", seed}, {"best_of", best_of}, {"logprobs", 0}});
  ASSERT_EQ(lr["choices"].size(), 1u);
  EXPECT_EQ(lr["choices"][0]["text"], ranked[0].second);
  EXPECT_NEAR(mean_logprob(lr["choices"][0]), ranked[0].first, 1e-5);
  wait_blocks_free(*h.engine);
  EXPECT_EQ(h.engine->stats().kv_blocks_used, 0);
}

TEST(ServerBestOf, BadUsesAre400) {
  Harness h;
  json e = h.post({{"prompt", "Hi"}, {"best_of", 2}, {"n", 3}}, 400);
  EXPECT_EQ(e["error"]["param"], "best_of");
  e = h.post({{"prompt", "Hi"}, {"best_of", 3}, {"stream", true}}, 400);
  EXPECT_EQ(e["error"]["param"], "best_of");
  e = h.post({{"prompt", "Hi"}, {"best_of", 0}}, 400);
  EXPECT_EQ(e["error"]["param"], "best_of");
  e = h.post({{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"best_of", 2}}, 400, "/v1/chat/completions");
  EXPECT_EQ(e["error"]["param"], "best_of") << "legacy completions only, as OpenAI";
}

TEST(ServerSearch, EveryStrategyScoresAtLeastGreedy) {
  Harness h;
  const std::string prompt = "Once upon a time";
  json g = h.post({{"prompt", prompt}, {"max_tokens", 64}, {"temperature", 0}});
  const double greedy = task_score(first_sentences(g["choices"][0]["text"].get<std::string>(), 3));
  for (const char* s : {"best-of-n", "self-consistency", "beam", "diverse-beam", "tree", "particles"}) {
    json r = h.post({{"prompt", prompt}, {"max_tokens", 64}, {"seed", 100}, {"n", 2}, {"search", task_search(s)}});
    ASSERT_TRUE(r.contains("choices")) << s;
    ASSERT_GE(r["choices"].size(), 1u) << s;
    ASSERT_LE(r["choices"].size(), 2u) << s;
    const json& best = r["choices"][0];
    const std::string text = best["text"].get<std::string>();
    if (std::string(s) != "self-consistency") {  // self-consistency ranks by vote first
      EXPECT_EQ(best["score"].get<double>(), task_score(text)) << s << ": " << text;
      EXPECT_GE(best["score"].get<double>(), greedy) << s << ": " << text;
      if (r["choices"].size() > 1) {
        EXPECT_LE(r["choices"][1]["score"].get<double>(), best["score"].get<double>());
      }
    }
    const json& u = r["search"];
    EXPECT_EQ(u["strategy"], s);
    EXPECT_LE(u["tokens_spent"].get<int64_t>(), 320) << s;
    EXPECT_GT(u["tokens_spent"].get<int64_t>(), 0) << s;
    EXPECT_EQ(r["usage"]["completion_tokens"], u["tokens_spent"]);
    EXPECT_LE(u["kv_blocks_peak"].get<int64_t>(), u["kv_blocks_independent"].get<int64_t>()) << s;
    EXPECT_EQ(u["kv_blocks_shared"].get<int64_t>(),
              u["kv_blocks_independent"].get<int64_t>() - u["kv_blocks_peak"].get<int64_t>());
    EXPECT_EQ(h.engine->stats().kv_blocks_used, 0) << s << ": the search's blocks are all returned";
  }
  // Chat: the candidate is the assistant message.
  json c = h.post({{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}}, {"max_tokens", 32},
                   {"seed", 1}, {"search", {{"strategy", "best-of-n"}, {"n", 3}, {"budget", 96}}}},
                  200, "/v1/chat/completions");
  ASSERT_EQ(c["choices"].size(), 1u);
  EXPECT_EQ(c["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_LE(c["search"]["tokens_spent"].get<int64_t>(), 96);
}

TEST(ServerSearch, OrdinaryRequestsAreServedWhileASearchRunsAndCancelFreesBlocks) {
  EngineOptions eo = Harness::default_engine();
  eo.n_ctx = 1024;
  Harness h(eo);
  const int eos = stories().tok->eos();
  // A long search (end of text banned, large budget) on its own connection.
  json body = {{"prompt", "Once upon a time"}, {"max_tokens", 512}, {"seed", 5},
               {"logit_bias", {{std::to_string(eos), -100}}},
               {"search", {{"strategy", "best-of-n"}, {"n", 32}, {"budget", 16384}}}};
  httplib::Client sc("127.0.0.1", h.port);
  sc.set_read_timeout(600, 0);
  std::atomic<bool> search_returned{false};
  std::thread searcher([&] {
    auto r = sc.Post("/v1/completions", body.dump(), "application/json");
    search_returned = true;
    EXPECT_FALSE(r) << "the search was expected to be cut off by its client";
  });
  for (int i = 0; i < 2000 && h.engine->stats().searches_running == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(h.engine->stats().searches_running, 1);
  // An ordinary greedy request completes, with the same text as on an idle server, while the
  // search is still running.
  json g = h.post({{"prompt", "The dog"}, {"max_tokens", 16}, {"temperature", 0}});
  EXPECT_EQ(h.engine->stats().searches_running, 1) << "the ordinary request waited for the search";
  EXPECT_FALSE(search_returned.load());
  EXPECT_EQ(g["choices"][0]["finish_reason"], "length");
  EXPECT_GT(h.engine->stats().kv_blocks_used, 0);
  sc.stop();  // the search's client goes away: the search is cancelled, its blocks freed
  searcher.join();
  for (int i = 0; i < 1000 && h.engine->stats().searches_running != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(h.engine->stats().searches_running, 0);
  EXPECT_EQ(h.engine->stats().searches_done, 1u);
  wait_blocks_free(*h.engine);
  EXPECT_EQ(h.engine->stats().kv_blocks_used, 0);
  // The same greedy request on the now idle server gives the same text.
  json again = h.post({{"prompt", "The dog"}, {"max_tokens", 16}, {"temperature", 0}});
  EXPECT_EQ(again["choices"][0]["text"], g["choices"][0]["text"]);
}

TEST(ServerSearch, BadSearchObjectsAre400NamingTheField) {
  Harness h;
  auto param = [&](const json& search, const std::string& want, json extra = json::object()) {
    json body = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"search", search}};
    for (const auto& [k, v] : extra.items()) body[k] = v;
    json e = h.post(body, 400);
    EXPECT_EQ(e["error"]["param"], want) << search.dump() << " -> " << e.dump();
    EXPECT_NE(e["error"]["message"].get<std::string>().find(want), std::string::npos) << e.dump();
  };
  param({{"strategy", "astar"}}, "search.strategy");
  param({{"budget", 10}}, "search.strategy");
  param({{"strategy", "beam"}, {"budget", 0}}, "search.budget");
  param({{"strategy", "beam"}, {"budget", -3}}, "search.budget");
  param({{"strategy", "beam"}, {"n", 100000}}, "search.n");
  param({{"strategy", "beam"}, {"unit", "paragraph"}}, "search.unit");
  param({{"strategy", "beam"}, {"scorer", "magic"}}, "search.scorer.type");
  param({{"strategy", "beam"}, {"scorer", {{"type", "command"}, {"command", "rm -rf /"}}}}, "search.scorer.type");
  param({{"strategy", "beam"}, {"scorer", "http"}}, "search.scorer.type");
  param({{"strategy", "beam"}, {"scorer", "reward"}}, "search.scorer.type");  // no reward model loaded
  param({{"strategy", "beam"}, {"scorer", {{"type", "rules"}, {"rules", {{{"pattern", "(unclosed"}}}}}}},
        "search.scorer.rules[0].pattern");
  param({{"strategy", "beam"}, {"scorer", {{"type", "logprob"}, {"path", "/etc/passwd"}}}}, "search.scorer.path");
  param({{"strategy", "beam"}, {"depth", 3}}, "search.depth");
  param({{"strategy", "self-consistency"}, {"answer_regex", "[a-"}}, "search.answer_regex");
  param({{"strategy", "diverse-beam"}, {"n", 2}, {"groups", 3}}, "search.groups");
  param({{"strategy", "beam"}}, "search", {{"stream", true}});
  param({{"strategy", "beam"}}, "best_of", {{"best_of", 2}});
  json e = h.post({{"prompt", "Hi"}, {"search", "beam"}}, 400);
  EXPECT_EQ(e["error"]["param"], "search");
  EXPECT_EQ(h.engine->stats().searches_done, 0u) << "nothing ran";
}

TEST(ServerSearch, APromptThatCannotFitTheKvPoolIsAClean400) {
  EngineOptions eo = Harness::default_engine();
  eo.kv_blocks = 4;  // 64 cells in all
  Harness h(eo);
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "Once upon a time ";
  json e = h.post({{"prompt", prompt}, {"max_tokens", 8}, {"search", {{"strategy", "best-of-n"}, {"n", 2}, {"budget", 16}}}}, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("KV"), std::string::npos) << e.dump();
  EXPECT_EQ(h.engine->stats().kv_blocks_used, 0);
}

TEST(ServerSearch, RefusedUnderAKvEvictionPolicy) {
  EngineOptions eo = Harness::default_engine();
  eo.kv_policy.kind = KvPolicyKind::Window;
  eo.kv_policy.budget = 64;
  Harness h(eo);
  json e = h.post({{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"search", {{"strategy", "beam"}}}}, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("--kv-policy"), std::string::npos) << e.dump();
}
