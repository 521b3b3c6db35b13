// Speculative decoding in the server: draft models loaded once at start (vocabulary checked,
// requests may name only loaded ones), per-sequence draft KV that never mixes sequences and is
// freed when a request ends or is cancelled, and requests with logprobs speculating with the
// same tokens and logprobs as plain decoding, for every drafter, through the HTTP API.
#include <gtest/gtest.h>
#include <httplib.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/spec_draft_model.h"
#include "engine/synth.h"
#include "server/server.h"
#include "test_util.h"

using namespace coppice;
using json = nlohmann::json;

namespace {

const std::string kStories = testutil::shared("models/stories260K.gguf");
const std::string kFixture = testutil::shared("models/fixtures/llama-d256-f16.gguf");

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};
Loaded& stories() {
  static Loaded l = [] {
    Loaded x;
    ModelOptions mo;
    mo.n_threads = 1;  // small, busy test machines
    x.model = Model::load(kStories, mo);
    x.tok = Tokenizer::from_gguf(x.model->file());
    return x;
  }();
  return l;
}

EngineOptions engine_options() {
  EngineOptions eo;
  eo.n_ctx = 256;
  eo.n_parallel = 8;
  eo.step_tokens = 64;
  eo.spec = "draft:" + kStories;  // the target as its own draft: greedy acceptance ~100%
  eo.draft_models = {kFixture};
  eo.spec_adaptive = false;  // every step drafts: the verify path runs on every token
  return eo;
}

// An engine and a server on 127.0.0.1:0, stopped when the test ends.
struct Harness {
  explicit Harness(EngineOptions eo = engine_options()) {
    auto& l = stories();
    engine = std::make_unique<Engine>(*l.model, *l.tok, eo);
    server::ServerOptions so;
    so.host = "127.0.0.1";
    so.port = 0;
    so.model_id = "stories260K.gguf";
    so.render_chat = [](const std::vector<server::ChatMessage>& m) {  // a plain template will do
      std::string s;
      for (const auto& x : m) s += x.content + "\n";
      return s;
    };
    so.log = [](const std::string&) {};
    srv = std::make_unique<server::Server>(*engine, *l.tok, so);
    port = srv->start();
  }
  ~Harness() {
    srv->shutdown(std::chrono::milliseconds(0));
    srv.reset();
    engine.reset();
  }
  json post(const std::string& path, const json& body, int expect_status = 200) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << "no response for " << path;
    if (!r) return json();
    EXPECT_EQ(r->status, expect_status) << r->body;
    return json::parse(r->body);
  }
  double metric(const std::string& name) const {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
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
};

const char* kPrompts[] = {
    "Tom had a red ball. Tom had a red ball. Tom had a",
    "Once upon a time, there was a little girl named Lily.",
};

// Chat logprobs items must agree token for token; logprobs within 1e-5.
void expect_same_logprobs(const json& got, const json& ref, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_EQ(got[i]["token"], ref[i]["token"]) << what << " token " << i;
    EXPECT_NEAR(got[i]["logprob"].get<double>(), ref[i]["logprob"].get<double>(), 1e-5) << what << " token " << i;
    const json& gt = got[i]["top_logprobs"];
    const json& rt = ref[i]["top_logprobs"];
    ASSERT_EQ(gt.size(), rt.size()) << what << " token " << i;
    for (size_t k = 0; k < rt.size(); ++k) {
      EXPECT_EQ(gt[k]["token"], rt[k]["token"]) << what << " token " << i << " top " << k;
      EXPECT_NEAR(gt[k]["logprob"].get<double>(), rt[k]["logprob"].get<double>(), 1e-5) << what;
    }
  }
}

std::vector<int32_t> run_engine(Engine& e, const std::vector<int32_t>& prompt, int max_tokens,
                                const std::string& spec, int cancel_after = -1,
                                FinishReason* why = nullptr, int64_t* draft_blocks_seen = nullptr) {
  GenRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.spec = spec;
  std::vector<int32_t> out;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::shared_ptr<RequestHandle> handle;
  std::mutex hmu;
  std::unique_lock<std::mutex> hold(hmu);  // the sink reads `handle` once it is set
  handle = e.submit(r, [&](const TokenEvent& ev) {
    // Engine thread: the draft pool's usage as the sequence decodes.
    if (draft_blocks_seen) *draft_blocks_seen = std::max(*draft_blocks_seen, e.stats().spec_draft_kv_blocks);
    std::lock_guard<std::mutex> lk(mu);
    if (ev.token >= 0) out.push_back(ev.token);
    if (cancel_after >= 0 && static_cast<int>(out.size()) == cancel_after) {
      std::lock_guard<std::mutex> hl(hmu);
      if (handle) handle->cancel();
    }
    if (ev.finish != FinishReason::None) {
      if (why) *why = ev.finish;
      done = true, cv.notify_all();
    }
    return true;
  });
  hold.unlock();
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return done; });
  return out;
}

}  // namespace

TEST(ServerSpec, LogprobsUnderEveryDrafterEqualPlainDecoding) {
  Harness h;
  const std::string fixture_name = std::filesystem::path(kFixture).filename().string();
  for (const char* prompt : kPrompts) {
    json body = {{"messages", json::array({{{"role", "user"}, {"content", prompt}}})},
                 {"max_tokens", 40}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 4},
                 {"spec", "none"}};
    const json ref = h.post("/v1/chat/completions", body);
    const json& ref_lp = ref["choices"][0]["logprobs"]["content"];
    ASSERT_GE(ref_lp.size(), 8u) << ref.dump();
    for (const std::string& spec : std::vector<std::string>{"ngram", "recycle", "layerskip", "", "draft:" + fixture_name}) {
      const std::string what = (spec.empty() ? "server default draft:stories260K" : spec) + " on \"" + prompt + "\"";
      const double steps0 = h.metric("coppice_spec_verify_steps_total");
      const double drafted0 = h.metric("coppice_spec_drafted_tokens_total");
      const double accepted0 = h.metric("coppice_spec_accepted_tokens_total");
      body["spec"] = spec;
      if (spec.empty()) body.erase("spec");
      const json got = h.post("/v1/chat/completions", body);
      EXPECT_EQ(got["choices"][0]["message"]["content"], ref["choices"][0]["message"]["content"]) << what;
      expect_same_logprobs(got["choices"][0]["logprobs"]["content"], ref_lp, what);
      // /metrics reports these verify steps.
      const double steps = h.metric("coppice_spec_verify_steps_total") - steps0;
      const double drafted = h.metric("coppice_spec_drafted_tokens_total") - drafted0;
      const double accepted = h.metric("coppice_spec_accepted_tokens_total") - accepted0;
      EXPECT_GT(steps, 0) << what;
      EXPECT_GT(drafted, 0) << what;
      if (spec.empty()) {
        EXPECT_GT(accepted / drafted, 0.5) << what << ": the target drafting for itself";
      }
      std::printf("%s: %.0f verify steps, acceptance %.2f\n", what.c_str(), steps, drafted > 0 ? accepted / drafted : 0.0);
    }
  }
  // Completions-style logprobs too (the default drafter).
  json cb = {{"prompt", kPrompts[0]}, {"max_tokens", 24}, {"temperature", 0}, {"logprobs", 3}, {"spec", "none"}};
  const json a = h.post("/v1/completions", cb);
  cb.erase("spec");
  const json b = h.post("/v1/completions", cb);
  EXPECT_EQ(b["choices"][0]["text"], a["choices"][0]["text"]);
  const json& la = a["choices"][0]["logprobs"];
  const json& lb = b["choices"][0]["logprobs"];
  ASSERT_EQ(lb["tokens"], la["tokens"]);
  for (size_t i = 0; i < la["token_logprobs"].size(); ++i)
    EXPECT_NEAR(lb["token_logprobs"][i].get<double>(), la["token_logprobs"][i].get<double>(), 1e-5) << i;
  EXPECT_EQ(h.metric("coppice_spec_draft_kv_blocks"), 0) << "draft KV left after the requests ended";
}

TEST(ServerSpec, RequestsMayNameOnlyLoadedDraftModels) {
  Harness h;
  json body = {{"prompt", kPrompts[1]}, {"max_tokens", 4}, {"temperature", 0}};
  for (const std::string& bad : std::vector<std::string>{"draft:/etc/passwd", "draft:llama-d256-q8_0.gguf",
                                "draft:" + testutil::shared("models/fixtures/llama-d256-q8_0.gguf")}) {
    body["spec"] = bad;
    const json e = h.post("/v1/completions", body, 400);
    EXPECT_EQ(e["error"]["param"], "spec") << bad;
    EXPECT_NE(e["error"]["message"].get<std::string>().find("not loaded"), std::string::npos) << e.dump();
  }
  body["spec"] = "draft:medusa:x";
  EXPECT_EQ(h.post("/v1/completions", body, 400)["error"]["param"], "spec");
  // A loaded model by its path as given, its file name or its canonical path.
  for (const std::string& ok : std::vector<std::string>{"draft:" + kFixture, "draft:llama-d256-f16.gguf", "draft:stories260K.gguf",
                               "draft:" + std::filesystem::canonical(kStories).string()}) {
    body["spec"] = ok;
    h.post("/v1/completions", body, 200);
  }
  // A server without draft models refuses every draft.
  EngineOptions eo = engine_options();
  eo.spec = "ngram";
  eo.draft_models.clear();
  Harness plain(eo);
  body["spec"] = "draft:stories260K.gguf";
  const json e = plain.post("/v1/completions", body, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("--draft-model"), std::string::npos) << e.dump();
}

TEST(ServerSpec, DraftModelLoadErrorsAreClear) {
  auto& l = stories();
  EngineOptions eo = engine_options();
  eo.draft_models.clear();
  const auto message = [&](const std::string& spec) -> std::string {
    eo.spec = spec;
    try {
      Engine e(*l.model, *l.tok, eo);
    } catch (const Error& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_NE(message("draft:/nonexistent/d.gguf").find("/nonexistent/d.gguf"), std::string::npos);
  // Random-weight models: another vocabulary size, then the same size with other tokens.
  SynthOptions so;
  so.dim = 32, so.layers = 1, so.heads = 2, so.kv_heads = 2, so.ffn = 64, so.ctx = 256, so.type = "f32";
  so.vocab = 600;
  const std::string big = testutil::temp_path("draft-vocab600.gguf");
  synth_model(big, so);
  const std::string m1 = message("draft:" + big);
  EXPECT_NE(m1.find("600 tokens"), std::string::npos) << m1;
  EXPECT_NE(m1.find("vocabularies must match"), std::string::npos) << m1;
  so.vocab = l.model->n_vocab();
  const std::string same = testutil::temp_path("draft-vocab512.gguf");
  synth_model(same, so);
  const std::vector<std::string> synth_tokens = synth_vocab(so.vocab);
  int32_t first_diff = -1;
  for (int32_t id = 0; id < l.tok->n_vocab() && first_diff < 0; ++id)
    if (synth_tokens[static_cast<size_t>(id)] != l.tok->token_text(id)) first_diff = id;
  ASSERT_GE(first_diff, 0);
  const std::string m2 = message("draft:" + same);
  EXPECT_NE(m2.find("token " + std::to_string(first_diff) + " "), std::string::npos) << m2;
  // The CLI: one clear line, exit 1, before listening.
  // (timeout: a server that wrongly starts must not hang the test)
  const testutil::RunResult r = testutil::run_cli("serve -m " + kStories + " --port 0 -t 1 --spec draft:" + same, "timeout 60");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("vocabularies must match"), std::string::npos) << r.err;
  const testutil::RunResult r2 =
      testutil::run_cli("serve -m " + kStories + " --port 0 -t 1 --draft-model /nonexistent/d.gguf", "timeout 60");
  EXPECT_EQ(r2.status, 1);
  EXPECT_NE(r2.err.find("/nonexistent/d.gguf"), std::string::npos) << r2.err;
}

TEST(ServerSpec, DraftKvIsFreedWhenARequestEndsOrIsCancelled) {
  auto& l = stories();
  Engine e(*l.model, *l.tok, engine_options());
  const std::vector<int32_t> prompt = l.tok->encode(kPrompts[0], true, true);
  const std::vector<int32_t> ref = run_engine(e, prompt, 48, "none");
  int64_t seen = 0;
  FinishReason why = FinishReason::None;
  EXPECT_EQ(run_engine(e, prompt, 48, "", -1, &why, &seen), ref);
  EXPECT_GT(seen, 0) << "the draft model never held KV";
  EXPECT_EQ(e.stats().spec_draft_kv_blocks, 0);
  seen = 0;
  const std::vector<int32_t> part = run_engine(e, prompt, 200, "draft:llama-d256-f16.gguf", 20, &why, &seen);
  EXPECT_EQ(why, FinishReason::Cancelled);
  EXPECT_GT(seen, 0);
  EXPECT_EQ(e.stats().spec_draft_kv_blocks, 0) << "a cancelled request kept its draft KV";
  EXPECT_GT(e.stats().spec_steps, 0u);
}

TEST(ServerSpec, ConcurrentRequestsGetTheirSoloTokens) {
  // Requests of different lengths: they decode together (plainly), and whichever is left
  // alone speculates with the shared draft model; each gets the tokens it gets alone.
  auto& l = stories();
  Engine e(*l.model, *l.tok, engine_options());
  std::vector<std::vector<int32_t>> prompts, ref;
  const int lens[] = {12, 30, 50, 70};
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(l.tok->encode(kPrompts[i % 2], true, true));
    prompts.back().push_back(static_cast<int32_t>(300 + i));  // distinct contexts
    ref.push_back(run_engine(e, prompts.back(), lens[i], "none"));
  }
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i) th.emplace_back([&, i] { got[i] = run_engine(e, prompts[i], lens[i], ""); });
  for (auto& t : th) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], ref[i]) << "request " << i;
  EXPECT_EQ(e.stats().spec_draft_kv_blocks, 0);
}

TEST(ServerSpec, DraftSequencesNeverShareKv) {
  // Two sequences drafting in turn from one host whose pool holds one context: each draft
  // equals a fresh host's draft of the same context, whatever the other did in between.
  auto& l = stories();
  // A pool of 5 blocks of 16 cells (16 + 64 cells); each context takes 4 or more: they cannot coexist.
  auto host = std::make_shared<DraftModelHost>(kStories, *l.model, 1, 16, 1);
  std::vector<std::unique_ptr<Drafter>> d;
  d.push_back(make_draft_model_drafter(host));
  d.push_back(make_draft_model_drafter(host));
  std::vector<std::vector<int32_t>> ctx(2);
  for (int i = 0; i < 2; ++i) {
    const std::string text = std::string(kPrompts[i]) + " " + kPrompts[1 - i] + " " + kPrompts[i];
    ctx[static_cast<size_t>(i)] = l.tok->encode(text, true, true);
    ASSERT_GE(ctx[static_cast<size_t>(i)].size(), 49u);  // with a draft of 4: 4 blocks each
    ASSERT_LE(ctx[static_cast<size_t>(i)].size() + 12 + 4, 80u);  // alone, each fits
  }
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 2; ++i) {
      DraftTree t;
      d[static_cast<size_t>(i)]->draft(DraftRequest{ctx[static_cast<size_t>(i)], 4, 4, nullptr}, t);
      EXPECT_EQ(host->live_sequences(), 1) << "the other sequence's draft KV should have been dropped";
      auto fresh_host = std::make_shared<DraftModelHost>(kStories, *l.model, 1, 16, 1);
      DraftTree want;
      make_draft_model_drafter(fresh_host)->draft(DraftRequest{ctx[static_cast<size_t>(i)], 4, 4, nullptr}, want);
      ASSERT_EQ(want.size(), 4);
      EXPECT_EQ(t.tokens, want.tokens) << "sequence " << i << " round " << round;
      // The context grows by the first drafted token and a token the draft did not predict.
      ctx[static_cast<size_t>(i)].push_back(want.tokens[0]);
      ctx[static_cast<size_t>(i)].push_back(static_cast<int32_t>(260 + round + 7 * i));
    }
  }
  d.clear();
  EXPECT_EQ(host->kv_blocks_used(), 0);
  EXPECT_EQ(host->live_sequences(), 0);
}
