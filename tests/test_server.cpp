// The HTTP server, in-process on a loopback port 0, driven by httplib::Client: every error
// path, the small endpoints, greedy text equal to the CLI's, stop strings never leaked (also
// split across tokens, streaming), 32 concurrent streams equal to their solo outputs, a client
// disconnect freeing its KV blocks, prefix-cache hits across identical multi-turn requests.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/chat_template.h"
#include "server/auth.h"
#include "server/server.h"
#include "server/stop.h"
#include "test_util.h"

using namespace coppice;
using json = nlohmann::json;

namespace {

const std::string kModel = testutil::shared("models/stories260K.gguf");

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};
Loaded& stories() {
  static Loaded l = [] {
    Loaded x;
    ModelOptions mo;
    mo.n_threads = 2;
    x.model = Model::load(kModel, mo);
    x.tok = Tokenizer::from_gguf(x.model->file());
    return x;
  }();
  return l;
}

// An engine and a server on 127.0.0.1:0, stopped when the test ends.
struct Harness {
  explicit Harness(server::ServerOptions so = {}, EngineOptions eo = default_engine()) {
    auto& l = stories();
    engine = std::make_unique<Engine>(*l.model, *l.tok, eo);
    so.host = "127.0.0.1";
    so.port = 0;
    so.model_id = "stories260K.gguf";
    so.model_aliases = {"stories260K"};
    const auto tpl = cli::ChatTemplate::from_model(l.model->file());
    so.render_chat = [tpl](const std::vector<server::ChatMessage>& m) {
      std::vector<cli::ChatMessage> c;
      for (const auto& x : m) c.push_back({x.role, x.content});
      return tpl.render(c, true);
    };
    so.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lk(log_mu);
      logs.push_back(line);
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
    eo.n_ctx = 256;
    eo.n_parallel = 32;
    eo.step_tokens = 64;
    return eo;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body, const httplib::Headers& h = {}) const {
    return client().Post(path.c_str(), h, body, "application/json");
  }
  json post_json(const std::string& path, const json& body, int expect_status = 200) const {
    auto r = post(path, body.dump());
    EXPECT_TRUE(r) << "no response for " << path;
    if (!r) return json();
    EXPECT_EQ(r->status, expect_status) << r->body;
    return json::parse(r->body);
  }
  double metric(const std::string& name) const {
    auto r = client().Get("/metrics");
    EXPECT_TRUE(r && r->status == 200);
    if (!r) return -1;
    const std::string body = "\n" + r->body;
    const size_t at = body.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(body.substr(at + name.size() + 2));
  }

  std::unique_ptr<Engine> engine;
  std::unique_ptr<server::Server> srv;
  int port = 0;
  std::mutex log_mu;
  std::vector<std::string> logs;
};

// Streams a request; returns the SSE events' JSON (the last entry is "[DONE]" as a string).
std::vector<json> stream(const Harness& h, const std::string& path, json body) {
  body["stream"] = true;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string buf;
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    buf.append(d, n);
    return true;
  };
  auto c = h.client();
  auto r = c.send(req);
  EXPECT_TRUE(r && r->status == 200);
  std::vector<json> out;
  size_t at = 0;
  for (size_t end; (end = buf.find("\n\n", at)) != std::string::npos; at = end + 2) {
    const std::string ev = buf.substr(at, end - at);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    const std::string data = ev.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
  }
  EXPECT_EQ(at, buf.size()) << "trailing bytes in the stream";
  return out;
}

// The concatenated text of one choice over a stream.
std::string stream_text(const std::vector<json>& evs, int choice = 0) {
  std::string s;
  for (const json& e : evs) {
    if (!e.is_object()) continue;
    for (const json& c : e["choices"]) {
      if (c["index"] != choice) continue;
      if (c.contains("text")) s += c["text"].get<std::string>();
      if (c.contains("delta") && c["delta"].contains("content")) s += c["delta"]["content"].get<std::string>();
    }
  }
  return s;
}

json greedy(const std::string& prompt, int max_tokens) {
  return {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

// "# HELP ...", "# TYPE ...", or name{label="v",...} value (no std::regex: GCC 12 warns on it).
bool prometheus_line_ok(const std::string& l) {
  if (l.rfind("# HELP ", 0) == 0 || l.rfind("# TYPE ", 0) == 0) return true;
  const size_t sp = l.rfind(' ');
  if (sp == std::string::npos || sp == 0) return false;
  size_t used = 0;
  try {
    (void)std::stod(l.substr(sp + 1), &used);
  } catch (const std::exception&) {
    return false;
  }
  if (used != l.size() - sp - 1) return false;
  const std::string key = l.substr(0, sp);
  const size_t brace = key.find('{');
  const std::string name = key.substr(0, brace);
  if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") != std::string::npos) return false;
  return brace == std::string::npos || (key.back() == '}' && key.find("=\"") != std::string::npos);
}

}  // namespace

TEST(ServerUnits, StopMatcherHoldsBackPartialMatches) {
  server::StopMatcher m({"girl named", "XYZ"});
  EXPECT_EQ(m.push("a little gi"), "a little ");  // "gi" may start "girl named"
  EXPECT_EQ(m.push("rl na"), "");
  EXPECT_EQ(m.push("mX"), "girl nam");  // the match broke; "X" may start "XYZ"
  EXPECT_EQ(m.push("Y"), "");
  EXPECT_EQ(m.push("Z and more"), "");
  EXPECT_TRUE(m.stopped());
  server::StopMatcher e({"end"});
  EXPECT_EQ(e.push("the en"), "the ");
  EXPECT_EQ(e.flush(), "en");
}

TEST(ServerUnits, ConstantTimeKeyCompare) {
  EXPECT_TRUE(server::authorized("", ""));
  EXPECT_TRUE(server::authorized("sk-1", "Bearer sk-1"));
  EXPECT_TRUE(server::authorized("sk-1", "bearer   sk-1 "));
  EXPECT_FALSE(server::authorized("sk-1", "Bearer sk-2"));
  EXPECT_FALSE(server::authorized("sk-1", "Bearer sk-12"));
  EXPECT_FALSE(server::authorized("sk-1", "sk-1"));
  EXPECT_FALSE(server::authorized("sk-1", ""));
}

TEST(Server, HealthModelsMetrics) {
  Harness h;
  auto c = h.client();
  auto r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["status"], "ok");
  r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  const json m = json::parse(r->body);
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"][0]["id"], "stories260K.gguf");
  h.post_json("/v1/completions", greedy("Once upon a time", 8));
  r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/plain", 0), 0u);
  for (const char* name :
       {"coppice_queue_length", "coppice_requests_running", "coppice_tokens_per_second", "coppice_kv_blocks_used",
        "coppice_kv_blocks_total", "coppice_kv_blocks_cached", "coppice_prefix_cache_hit_rate",
        "coppice_time_to_first_token_seconds_bucket{le=\"+Inf\"}", "coppice_time_per_output_token_seconds_count",
        "coppice_requests_finished_total{finish_reason=\"length\"}"})
    EXPECT_NE(r->body.find(std::string("\n") + name + " "), std::string::npos) << name;
  EXPECT_EQ(h.metric("coppice_requests_finished_total{finish_reason=\"length\"}"), 1);
  EXPECT_EQ(h.metric("coppice_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(h.metric("coppice_kv_blocks_total"), static_cast<double>(h.engine->stats().kv_blocks_total));
  // Every line is a comment or "name{labels} value".
  size_t at = 0;
  for (size_t end; (end = r->body.find('\n', at)) != std::string::npos; at = end + 1)
    EXPECT_TRUE(prometheus_line_ok(r->body.substr(at, end - at))) << r->body.substr(at, end - at);
}

TEST(Server, ErrorPathsAreOpenAiJson) {
  server::ServerOptions so;
  so.max_body = 4096;
  so.max_prompt_tokens = 100;
  Harness h(so);
  auto expect_error = [&](const std::string& path, const std::string& body, int status, const std::string& param) {
    auto r = h.post(path, body);
    ASSERT_TRUE(r) << body;
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    const json e = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(e.is_object() && e.contains("error")) << r->body;
    EXPECT_TRUE(e["error"]["message"].is_string());
    EXPECT_TRUE(e["error"]["type"].is_string());
    if (!param.empty()) {
      EXPECT_EQ(e["error"]["param"], param) << r->body;
    }
  };
  const std::string chat = "/v1/chat/completions", comp = "/v1/completions";
  expect_error(comp, "{\"prompt\": \"Once", 400, "");
  expect_error(comp, "", 400, "");
  expect_error(comp, "[1, 2]", 400, "");
  expect_error(comp, R"({"prompt": "x", "temperature": "hot"})", 400, "temperature");
  expect_error(comp, R"({"prompt": "x", "max_tokens": 1.5})", 400, "max_tokens");
  expect_error(comp, R"({"prompt": "x", "n": 0})", 400, "n");
  expect_error(comp, R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", 400, "stop");
  expect_error(comp, R"({"prompt": "x", "stop": [""]})", 400, "stop[0]");
  expect_error(comp, R"({"prompt": "x", "logit_bias": {"abc": 1}})", 400, "logit_bias.abc");
  expect_error(comp, R"({"prompt": "x", "logit_bias": {"999999": 1}})", 400, "logit_bias.999999");
  expect_error(comp, R"({"prompt": "x", "echo": true})", 400, "echo");
  expect_error(comp, R"({"prompt": "x", "stream_options": {"include_usage": true}})", 400, "stream_options");
  expect_error(comp, R"({"prompt": [1, 2, 99999]})", 400, "prompt[2]");
  expect_error(comp, R"({"max_tokens": 5})", 400, "prompt");
  expect_error(comp, R"({"prompt": "x", "max_tokens": 100000})", 400, "max_tokens");
  expect_error(chat, R"({"messages": "hi"})", 400, "messages");
  expect_error(chat, R"({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]})", 400,
               "messages[0].tool_calls");
  expect_error(chat, R"({"messages": [{"role": "robot", "content": "hi"}]})", 400, "messages[0].role");
  expect_error(chat, R"({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})", 400, "top_logprobs");
  expect_error(chat, R"({"messages": [{"role": "user", "content": "hi"}], "functions": []})", 400, "functions");
  expect_error(chat, R"({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})", 404, "model");
  // Too long: over --max-prompt, and over the context.
  std::string longp;
  for (int i = 0; i < 60; ++i) longp += "Once upon a time ";
  expect_error(comp, json{{"prompt", longp}}.dump(), 400, "prompt");
  std::vector<int> ids(300, 5);
  expect_error(comp, json{{"prompt", ids}}.dump(), 400, "prompt");
  // Body over --max-body.
  expect_error(comp, json{{"prompt", std::string(5000, 'a')}}.dump(), 413, "");
  auto r = h.client().Get("/v1/nothing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(json::parse(r->body).contains("error"));
  // Known names work.
  h.post_json(comp, {{"model", "stories260K"}, {"prompt", "Hi"}, {"max_tokens", 2}});
  h.post_json(comp, {{"model", "stories260K.gguf"}, {"prompt", "Hi"}, {"max_tokens", 2}, {"user", "u1"}});
  h.post_json(chat, {{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi"}}}}}}},
                     {"max_tokens", 2}, {"stop", nullptr}, {"seed", nullptr}});
  // The server is still healthy.
  EXPECT_EQ(h.client().Get("/health")->status, 200);
}

TEST(Server, ApiKeyRequiredExceptForHealth) {
  server::ServerOptions so;
  so.api_key = "sk-test-123";
  Harness h(so);
  auto c = h.client();
  EXPECT_EQ(c.Get("/health")->status, 200);
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "authentication_error");
  r = h.post("/v1/completions", greedy("Hi", 2).dump(), {{"Authorization", "Bearer sk-wrong"}});
  EXPECT_EQ(r->status, 401);
  r = h.post("/v1/completions", greedy("Hi", 2).dump(), {{"Authorization", "Bearer sk-test-123"}});
  EXPECT_EQ(r->status, 200);
  c.set_bearer_token_auth("sk-test-123");
  EXPECT_EQ(c.Get("/metrics")->status, 200);
}

TEST(Server, GreedyCompletionEqualsTheCli) {
  Harness h;
  const json r = h.post_json("/v1/completions", greedy("Once upon a time", 40));
  const std::string text = r["choices"][0]["text"];
  EXPECT_EQ(text.rfind(", there was a little girl named Lily", 0), 0u) << text;
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["completion_tokens"], 40);
  EXPECT_EQ(r["usage"]["total_tokens"], r["usage"]["prompt_tokens"].get<int>() + 40);
  EXPECT_TRUE(r["usage"]["prompt_tokens_details"]["cached_tokens"].is_number());
  const auto cli = testutil::run_cli("run -m " + kModel + " -p 'Once upon a time' --temp 0 -n 40 -t 1 --no-display-prompt");
  ASSERT_EQ(cli.status, 0) << cli.err;
  EXPECT_EQ(text + "\n", cli.out);
  // The same through streaming, and token-id prompts give the same continuation.
  EXPECT_EQ(stream_text(stream(h, "/v1/completions", greedy("Once upon a time", 40))), text);
  const auto ids = stories().tok->encode("Once upon a time", true, true);
  const json r2 = h.post_json("/v1/completions", {{"prompt", ids}, {"max_tokens", 40}, {"temperature", 0}});
  EXPECT_EQ(r2["choices"][0]["text"], text);
}

TEST(Server, StopStringsAreNeverLeaked) {
  Harness h;
  const std::string full = h.post_json("/v1/completions", greedy("Once upon a time", 60))["choices"][0]["text"];
  // Multi-token stop strings (split across tokens), one starting mid-token.
  for (const std::string stop : {"little girl", "ittle gir", "park. One", "Lily"}) {
    const size_t at = full.find(stop);
    ASSERT_NE(at, std::string::npos) << stop;
    json body = greedy("Once upon a time", 60);
    body["stop"] = {"never-appears", stop};
    const json r = h.post_json("/v1/completions", body);
    EXPECT_EQ(r["choices"][0]["text"], full.substr(0, at)) << stop;
    EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
    const auto evs = stream(h, "/v1/completions", body);
    EXPECT_EQ(stream_text(evs), full.substr(0, at)) << stop;
    EXPECT_EQ(evs.back(), "[DONE]");
    EXPECT_EQ(evs[evs.size() - 2]["choices"][0]["finish_reason"], "stop");
  }
  // A stop string whose prefix appears but never completes holds text back only for a while.
  json body = greedy("Once upon a time", 60);
  body["stop"] = "little girl named Bob";
  EXPECT_EQ(stream_text(stream(h, "/v1/completions", body)), full);
  EXPECT_EQ(h.post_json("/v1/completions", body)["choices"][0]["text"], full);
}

TEST(Server, ChatStreamingWithUsageLogprobsAndN) {
  Harness h;
  const json msgs = json::array({{{"role", "system"}, {"content", "You tell stories."}},
                                 {{"role", "user"}, {"content", "Tell me about a cat."}}});
  json body = {{"messages", msgs}, {"max_tokens", 12}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 3}};
  const json whole = h.post_json("/v1/chat/completions", body);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  const auto& lp = whole["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(lp.size(), whole["usage"]["completion_tokens"].get<size_t>());
  for (const json& t : lp) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    EXPECT_EQ(t["token"], t["top_logprobs"][0]["token"]);  // greedy picks the most likely
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
  }
  body["stream_options"] = {{"include_usage", true}};
  const auto evs = stream(h, "/v1/chat/completions", body);
  EXPECT_EQ(evs.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(stream_text(evs), whole["choices"][0]["message"]["content"]);
  const json& usage = evs[evs.size() - 2];
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);
  // n = 3 with a seed: three choices, reproducible, one shared prompt.
  json nb = {{"messages", msgs}, {"max_tokens", 10}, {"n", 3}, {"seed", 7}, {"temperature", 1.0}};
  const json a = h.post_json("/v1/chat/completions", nb);
  const json b = h.post_json("/v1/chat/completions", nb);
  ASSERT_EQ(a["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["message"]["content"], b["choices"][i]["message"]["content"]);
  EXPECT_EQ(a["usage"]["prompt_tokens"], whole["usage"]["prompt_tokens"]);
  const auto ns = stream(h, "/v1/chat/completions", nb);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(stream_text(ns, i), a["choices"][i]["message"]["content"]);
  // Completions-style logprobs.
  json cb = greedy("Once upon a time", 6);
  cb["logprobs"] = 2;
  const json c = h.post_json("/v1/completions", cb);
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"].size(), 6u);
  EXPECT_EQ(c["choices"][0]["logprobs"]["top_logprobs"][0].size(), 2u);
}

TEST(Server, ThirtyTwoConcurrentStreamsMatchTheirSoloOutputs) {
  Harness h;
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Tom and Sue went to the park",
                                            "One day, a bird", "Lily had a red ball", "There was a big tree",
                                            "The sun was hot and", "Mom said"};
  std::vector<json> bodies;
  std::vector<std::string> solo;
  for (int i = 0; i < 32; ++i) {
    std::string p = prompts[i % prompts.size()];
    for (int k = 0; k < i % 3; ++k) p += ". " + prompts[(i + k + 1) % prompts.size()];
    bodies.push_back(greedy(p, 20 + i % 7));
    solo.push_back(h.post_json("/v1/completions", bodies.back())["choices"][0]["text"]);
  }
  std::vector<std::string> got(32);
  std::vector<std::thread> ts;
  for (int i = 0; i < 32; ++i)
    ts.emplace_back([&, i] { got[i] = stream_text(stream(h, "/v1/completions", bodies[i])); });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 32; ++i) EXPECT_EQ(got[i], solo[i]) << "request " << i;
}

TEST(Server, ClientDisconnectFreesKvBlocks) {
  server::ServerOptions so;
  EngineOptions eo = Harness::default_engine();
  eo.n_ctx = 2048;
  eo.prefix_cache = false;
  Harness h(so, eo);
  const double baseline = h.metric("coppice_kv_blocks_used");
  ASSERT_EQ(baseline, 0);
  const int eos = stories().tok->eos();
  json body = greedy("Once upon a time", 2000);
  body["logit_bias"] = {{std::to_string(eos), -100}};  // runs the full 2000 tokens unless cancelled
  // Streaming: the client reads a few chunks, then hangs up.
  {
    body["stream"] = true;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    int chunks = 0;
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 5; };
    auto c = h.client();
    auto r = c.send(req);
    EXPECT_FALSE(r);  // cancelled by us
    EXPECT_GT(h.metric("coppice_kv_blocks_used"), -1);
  }
  // Not streaming: the client gives up waiting.
  {
    body.erase("stream");
    auto c = h.client();
    c.set_read_timeout(0, 100000);
    auto r = c.Post("/v1/completions", body.dump(), "application/json");
    EXPECT_FALSE(r);
  }
  double used = -1;
  for (int i = 0; i < 200 && (used = h.metric("coppice_kv_blocks_used")) != baseline; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(used, baseline);
  for (int i = 0; i < 200 && h.metric("coppice_requests_finished_total{finish_reason=\"cancelled\"}") < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(h.metric("coppice_requests_finished_total{finish_reason=\"cancelled\"}"), 2);
  EXPECT_LT(h.metric("coppice_generated_tokens_total"), 4000);  // neither ran to the end
  for (int i = 0; i < 200 && h.srv->in_flight() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(h.srv->in_flight(), 0);
  std::lock_guard<std::mutex> lk(h.log_mu);
  int logged_499 = 0;
  for (const auto& l : h.logs) logged_499 += json::parse(l)["status"] == 499;
  EXPECT_EQ(logged_499, 2);
}

TEST(Server, RepeatedMultiTurnChatHitsThePrefixCache) {
  Harness h;
  const json body = {{"messages",
                      {{{"role", "system"}, {"content", "You are a storyteller who tells short stories."}},
                       {{"role", "user"}, {"content", "Tell me a story about a girl named Lily."}},
                       {{"role", "assistant"}, {"content", "Once upon a time, there was a little girl named Lily."}},
                       {{"role", "user"}, {"content", "What did she do next?"}}}},
                     {"max_tokens", 16},
                     {"temperature", 0}};
  const json a = h.post_json("/v1/chat/completions", body);
  EXPECT_EQ(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  const double before = h.metric("coppice_prompt_tokens_cached_total");
  const json b = h.post_json("/v1/chat/completions", body);
  const int cached = b["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GT(cached, 0);
  EXPECT_GE(cached, a["usage"]["prompt_tokens"].get<int>() - 16);  // all but the last partial block
  EXPECT_EQ(h.metric("coppice_prompt_tokens_cached_total") - before, cached);
  EXPECT_GT(h.metric("coppice_prefix_cache_hit_rate"), 0.0);
  EXPECT_EQ(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
  // The request log carries the cached tokens too.
  std::lock_guard<std::mutex> lk(h.log_mu);
  json last;
  for (const auto& l : h.logs)
    if (json::parse(l).contains("id")) last = json::parse(l);
  ASSERT_TRUE(last.is_object());
  EXPECT_EQ(last["cached_tokens"], cached);
  for (const char* k : {"id", "endpoint", "status", "prompt_tokens", "completion_tokens", "ttft_ms", "total_ms",
                        "finish_reason"})
    EXPECT_TRUE(last.contains(k)) << k;
}

TEST(Server, QueueFullIs503WithRetryAfter) {
  server::ServerOptions so;
  EngineOptions eo = Harness::default_engine();
  eo.n_parallel = 1;
  eo.max_queue = 1;
  eo.n_ctx = 4096;
  Harness h(so, eo);
  json body = greedy("Once upon a time", 4000);
  body["logit_bias"] = {{std::to_string(stories().tok->eos()), -100}};
  // One running, one queued: the third is refused.
  std::thread runner([&] { h.post("/v1/completions", body.dump()); });
  for (int i = 0; i < 500 && h.metric("coppice_requests_running") < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::thread queued([&] { h.post("/v1/completions", greedy("Hi", 2).dump()); });
  for (int i = 0; i < 500 && h.metric("coppice_queue_length") < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  auto r = h.post("/v1/completions", greedy("Hi", 2).dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "server_busy");
  h.srv->shutdown(std::chrono::milliseconds(0));  // cancels the long runner
  runner.join();
  queued.join();
}

TEST(Server, GracefulShutdownRefusesNewWorkAndEndsInFlight) {
  EngineOptions eo = Harness::default_engine();
  eo.n_ctx = 4096;
  Harness h(server::ServerOptions{}, eo);
  json body = greedy("Once upon a time", 4000);
  body["logit_bias"] = {{std::to_string(stories().tok->eos()), -100}};
  std::vector<json> evs;
  std::thread t([&] { evs = stream(h, "/v1/completions", body); });
  while (h.srv->in_flight() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  h.srv->shutdown(std::chrono::milliseconds(100));
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_GE(evs.size(), 2u);
  EXPECT_EQ(evs.back(), "[DONE]");  // the stream was ended properly, not cut
  EXPECT_EQ(h.srv->in_flight(), 0);
  EXPECT_FALSE(h.client().Get("/health"));  // the listener is closed
}
