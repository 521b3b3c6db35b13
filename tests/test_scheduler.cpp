// The serving engine: batching never changes results, chunked prefill, n choices, prefix
// cache hits, preemption by recompute, cancellation freeing KV, admission errors.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "engine/generate.h"
#include "engine/grammar_sampling.h"
#include "engine/scheduler.h"
#include "test_util.h"

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
    mo.n_threads = 2;
    x.model = Model::load(testutil::shared("models/stories260K.gguf"), mo);
    x.tok = Tokenizer::from_gguf(x.model->file());
    return x;
  }();
  return l;
}

struct Outcome {
  std::vector<std::vector<int32_t>> tokens;  // per choice
  std::vector<FinishReason> finish;
  int cached = 0;
  std::promise<void> done;
  int left = 0;
  std::mutex mu;
};

// on_done runs on the engine thread when the last choice finishes, before wait() returns.
std::shared_ptr<Outcome> submit(Engine& e, GenRequest r, std::shared_ptr<RequestHandle>* handle = nullptr,
                                std::function<void()> on_done = nullptr) {
  auto o = std::make_shared<Outcome>();
  o->tokens.resize(r.n);
  o->finish.assign(r.n, FinishReason::None);
  o->left = r.n;
  auto h = e.submit(std::move(r), [o, on_done](const TokenEvent& ev) {
    std::lock_guard<std::mutex> lk(o->mu);
    if (ev.token >= 0) o->tokens[ev.choice].push_back(ev.token);
    if (ev.finish != FinishReason::None) {
      o->finish[ev.choice] = ev.finish;
      o->cached = ev.cached_tokens;
      if (--o->left == 0) {
        if (on_done) on_done();
        o->done.set_value();
      }
    }
    return true;
  });
  if (handle) *handle = h;
  return o;
}

void wait(const std::shared_ptr<Outcome>& o) {
  ASSERT_EQ(o->done.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
}

// The single-sequence reference: engine/generate.h's plain loop.
std::vector<int32_t> solo(const std::vector<int32_t>& prompt, int n, SamplingParams sp,
                          grammar::GrammarPtr g = nullptr) {
  auto& l = stories();
  KvCache cache = l.model->make_cache(512);
  cache.add_sequence(0);
  Sampler sampler(sp);
  if (g) sampler.set_constraint(make_grammar_constraint(g, GrammarVocab::from_tokenizer(*l.tok)));
  GenerateOptions go;
  go.n_predict = n;
  std::vector<int32_t> out;
  generate(*l.model, cache, 0, *l.tok, sampler, prompt, go, [&](int32_t id) {
    out.push_back(id);
    return true;
  });
  return out;
}

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

std::vector<int32_t> prompt_of(const std::string& text) { return stories().tok->encode(text, true, false); }

const std::vector<std::string> kPrompts = {
    "Once upon a time", "The little dog", "Tom and Sue went to the park", "One day, a bird",
    "Lily had a red ball", "There was a big tree", "The sun was hot and", "Mom said"};

}  // namespace

TEST(Scheduler, ThirtyTwoConcurrentRequestsMatchTheirSoloOutputs) {
  auto& l = stories();
  EngineOptions eo;
  eo.n_parallel = 32;
  eo.step_tokens = 24;  // forces prompts to be chunked across steps, mixed with decodes
  eo.n_ctx = 256;
  Engine e(*l.model, *l.tok, eo);
  std::vector<GenRequest> reqs;
  std::vector<std::shared_ptr<Outcome>> outs;
  std::vector<std::vector<int32_t>> expect;
  for (int i = 0; i < 32; ++i) {
    // Vary prompts and lengths; some long enough to need several chunks.
    std::string text = kPrompts[i % kPrompts.size()];
    for (int k = 0; k < i % 4; ++k) text += ". " + kPrompts[(i + k) % kPrompts.size()];
    GenRequest r;
    r.prompt = prompt_of(text);
    r.max_tokens = 24 + i % 5;
    r.sampling = greedy();
    expect.push_back(solo(r.prompt, r.max_tokens, r.sampling));
    reqs.push_back(r);
  }
  for (auto& r : reqs) outs.push_back(submit(e, r));  // the model is not re-entrant: solo runs first
  for (int i = 0; i < 32; ++i) {
    wait(outs[i]);
    EXPECT_EQ(outs[i]->tokens[0], expect[i]) << "request " << i;
  }
  EXPECT_EQ(e.stats().requests_done, 32u);
}

TEST(Scheduler, NChoicesShareOnePrefillAndMatchSeededSoloRuns) {
  auto& l = stories();
  Engine e(*l.model, *l.tok, EngineOptions{});
  GenRequest r;
  r.prompt = prompt_of("Once upon a time, there was a little girl named Lily. She loved to play");
  r.n = 3;
  r.max_tokens = 20;
  r.sampling.temperature = 0.9f;
  r.sampling.seed = 1234;
  auto o = submit(e, r);
  wait(o);
  for (int c = 0; c < 3; ++c) {
    SamplingParams sp = r.sampling;
    sp.seed += c;
    EXPECT_EQ(o->tokens[c], solo(r.prompt, r.max_tokens, sp)) << "choice " << c;
  }
  EXPECT_NE(o->tokens[0], o->tokens[1]);
  // One prefill: the prompt was counted once.
  EXPECT_EQ(e.stats().prompt_tokens, r.prompt.size());
}

TEST(Scheduler, PrefixCacheHitsOnARepeatedConversation) {
  auto& l = stories();
  EngineOptions eo;
  eo.block_size = 8;
  Engine e(*l.model, *l.tok, eo);
  GenRequest r;
  r.prompt = prompt_of("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.");
  r.max_tokens = 16;
  r.sampling = greedy();
  auto a = submit(e, r);
  wait(a);
  EXPECT_EQ(a->cached, 0);
  // Second turn: the first prompt + its reply + a new user line.
  GenRequest r2 = r;
  r2.prompt.insert(r2.prompt.end(), a->tokens[0].begin(), a->tokens[0].end());
  const auto more = l.tok->encode(" Then she saw a cat.", false, false);
  r2.prompt.insert(r2.prompt.end(), more.begin(), more.end());
  auto b = submit(e, r2);
  wait(b);
  // Everything but the last partial block (and the final token) came from the cache.
  EXPECT_GE(b->cached, static_cast<int>(r.prompt.size() + a->tokens[0].size()) - 8);
  EXPECT_EQ(b->tokens[0], solo(r2.prompt, r2.max_tokens, r2.sampling));
  EXPECT_GT(e.stats().cached_prompt_tokens, 0u);
}

TEST(Scheduler, PreemptionUnderATinyKvPoolKeepsResultsExact) {
  auto& l = stories();
  EngineOptions eo;
  eo.block_size = 8;
  eo.kv_blocks = 24;  // 192 cells for 6 requests of ~60 tokens each: must preempt
  eo.n_parallel = 6;
  eo.n_ctx = 128;
  Engine e(*l.model, *l.tok, eo);
  std::vector<GenRequest> reqs;
  std::vector<std::shared_ptr<Outcome>> outs;
  std::vector<std::vector<int32_t>> expect;
  for (int i = 0; i < 6; ++i) {
    GenRequest r;
    r.prompt = prompt_of(kPrompts[i] + std::string(". ") + kPrompts[(i + 3) % kPrompts.size()]);
    r.max_tokens = 48;
    r.sampling = greedy();
    expect.push_back(solo(r.prompt, r.max_tokens, r.sampling));
    reqs.push_back(r);
  }
  for (auto& r : reqs) outs.push_back(submit(e, r));
  for (int i = 0; i < 6; ++i) {
    wait(outs[i]);
    EXPECT_EQ(outs[i]->tokens[0], expect[i]) << "request " << i;
  }
  EXPECT_GT(e.stats().preemptions, 0u);
}

TEST(Scheduler, CancelFreesKvBlocks) {
  auto& l = stories();
  EngineOptions eo;
  eo.prefix_cache = false;
  Engine e(*l.model, *l.tok, eo);
  GenRequest r;
  r.prompt = prompt_of("Once upon a time");
  r.max_tokens = 100000 / 100;
  r.sampling = greedy();
  r.ignore_eos = true;
  std::shared_ptr<RequestHandle> h;
  auto o = submit(e, r, &h);
  while (e.stats().generated_tokens < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GT(e.stats().kv_blocks_used, 0);
  h->cancel();
  wait(o);
  EXPECT_EQ(o->finish[0], FinishReason::Cancelled);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

TEST(Scheduler, AdmissionErrors) {
  auto& l = stories();
  EngineOptions eo;
  eo.n_ctx = 32;
  eo.max_queue = 1;
  eo.n_parallel = 1;
  Engine e(*l.model, *l.tok, eo);
  GenRequest too_long;
  too_long.prompt.assign(40, 5);
  try {
    e.submit(too_long, [](const TokenEvent&) { return true; });
    FAIL();
  } catch (const AdmissionError& err) {
    EXPECT_EQ(err.http_status, 400);
  }
  GenRequest bad;
  bad.prompt = {1, 2};
  bad.sampling.top_p = 2;
  EXPECT_THROW(e.submit(bad, [](const TokenEvent&) { return true; }), AdmissionError);
  GenRequest empty;
  EXPECT_THROW(e.submit(empty, [](const TokenEvent&) { return true; }), AdmissionError);
}

// The step-time model recovers a + b n from observed steps and sizes prompt chunks from it.
TEST(StepBudget, FitsStepTimesAndSizesChunksFromTheTarget) {
  StepBudget off(0, 256, 8);
  StepBudget b(100.0, 256, 8);
  EXPECT_EQ(b.tokens_for(4), 256);  // nothing observed yet: no model, full budget
  for (int i = 0; i < 50; ++i) {
    const int n = 1 + (i * 37) % 200;
    b.observe(n, 20.0 + 2.0 * n);
    off.observe(n, 20.0 + 2.0 * n);
  }
  ASSERT_TRUE(b.fitted());
  EXPECT_NEAR(b.fixed_ms(), 20.0, 1e-6);
  EXPECT_NEAR(b.per_token_ms(), 2.0, 1e-9);
  EXPECT_EQ(b.tokens_for(4), 4 + 36);   // (100 - 20 - 2 * 4) / 2 prompt tokens
  EXPECT_EQ(b.tokens_for(0), 256);      // no decodes: nobody to protect
  EXPECT_EQ(b.tokens_for(45), 45 + 8);  // target out of reach: the minimum chunk still runs
  EXPECT_EQ(off.tokens_for(4), 256);    // no target
  StepBudget big(1e6, 256, 8);
  big.observe(1, 22);
  big.observe(100, 220);
  EXPECT_EQ(big.tokens_for(4), 256);    // the budget never exceeds step_tokens
}

// With a TPOT target a long prompt arriving while another sequence decodes is prefilled in
// small chunks (more steps), and its output does not change.
TEST(Scheduler, TpotTargetChunksPrefillBehindRunningDecodes) {
  auto& l = stories();
  std::string text;
  for (int k = 0; k < 6; ++k)
    for (const auto& p : kPrompts) text += p + ". ";
  GenRequest longr;
  longr.prompt = prompt_of(text);
  ASSERT_GT(longr.prompt.size(), 150u);
  ASSERT_LT(longr.prompt.size(), 400u);
  longr.max_tokens = 4;
  longr.sampling = greedy();
  const auto expect = solo(longr.prompt, 4, greedy());

  auto steps_for_long_prompt = [&](double tpot_ms) {
    EngineOptions eo;
    eo.n_ctx = 512;
    eo.step_tokens = 512;
    eo.tpot_ms = tpot_ms;
    eo.min_chunk = 8;
    Engine e(*l.model, *l.tok, eo);
    GenRequest bg;
    bg.prompt = prompt_of("Once upon a time");
    bg.max_tokens = 150;  // outlives the long prompt: ~370 / 8 + 4 steps
    bg.ignore_eos = true;
    bg.sampling = greedy();
    std::shared_ptr<RequestHandle> h;
    auto first = submit(e, bg, &h);
    while (e.stats().generated_tokens < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const uint64_t s0 = e.stats().steps;
    // Steps counted when the long request finishes, on the engine thread: the background
    // stream keeps stepping until this thread wakes, which a loaded machine delays.
    std::atomic<uint64_t> s1{0};
    auto o = submit(e, longr, nullptr, [&] { s1 = e.stats().steps; });
    wait(o);
    const uint64_t steps = s1 - s0;
    EXPECT_EQ(o->tokens[0], expect) << "tpot " << tpot_ms;
    h->cancel();
    wait(first);
    return steps;
  };
  const uint64_t free_steps = steps_for_long_prompt(0), slo_steps = steps_for_long_prompt(0.001);
  std::printf("steps for a %zu-token prompt behind a decode: %llu without a target, %llu with one\n",
              longr.prompt.size(), static_cast<unsigned long long>(free_steps), static_cast<unsigned long long>(slo_steps));
  EXPECT_LE(free_steps, 8u);                           // one chunk + 4 decode steps (+ slack)
  EXPECT_GE(slo_steps, longr.prompt.size() / 8 + 3);  // 8-token chunks
}

// Grammar-constrained requests batched together (sampled, n = 2, chunked prefill): every
// output satisfies the grammar (checked by hand, not by the matcher) and equals a solo run
// with the same seed and grammar.
TEST(Scheduler, GrammarRequestsInABatchMatchSoloRunsAndTheGrammar) {
  auto& l = stories();
  const auto g = compile_grammar(R"(root ::= "Once upon a time, " word (" " word){3,8} "."
word ::= [a-z]+)");
  EngineOptions eo;
  eo.n_ctx = 256;
  eo.step_tokens = 16;
  Engine e(*l.model, *l.tok, eo);
  std::vector<std::shared_ptr<Outcome>> outs;
  std::vector<GenRequest> reqs;
  for (int i = 0; i < 6; ++i) {
    GenRequest r;
    r.prompt = prompt_of(kPrompts[i] + ". " + kPrompts[(i + 3) % kPrompts.size()] + ".");
    r.max_tokens = 80;
    r.n = 2;
    r.sampling.temperature = 0.9f;
    r.sampling.seed = 100 + static_cast<uint64_t>(i);
    r.grammar = g;
    reqs.push_back(r);
  }
  std::vector<std::vector<std::vector<int32_t>>> expect;
  for (const auto& r : reqs) {
    expect.emplace_back();
    for (int c = 0; c < 2; ++c) {
      SamplingParams sp = r.sampling;
      sp.seed += static_cast<uint64_t>(c);
      expect.back().push_back(solo(r.prompt, r.max_tokens, sp, g));
    }
  }
  for (auto& r : reqs) outs.push_back(submit(e, r));
  for (size_t i = 0; i < outs.size(); ++i) {
    wait(outs[i]);
    for (int c = 0; c < 2; ++c) {
      EXPECT_EQ(outs[i]->tokens[c], expect[i][c]) << "request " << i << " choice " << c;
      EXPECT_EQ(outs[i]->finish[c], FinishReason::Stop);
      const std::string text = l.tok->decode(outs[i]->tokens[c]);
      const std::string head = "Once upon a time, ";
      ASSERT_EQ(text.rfind(head, 0), 0u) << text;
      ASSERT_EQ(text.back(), '.') << text;
      int words = 0;
      bool in_word = false;
      for (char ch : text.substr(head.size(), text.size() - head.size() - 1)) {
        if (ch == ' ') {
          EXPECT_TRUE(in_word) << "empty word in " << text;
          in_word = false;
        } else {
          EXPECT_TRUE(ch >= 'a' && ch <= 'z') << text;
          if (!in_word) ++words;
          in_word = true;
        }
      }
      EXPECT_GE(words, 4) << text;
      EXPECT_LE(words, 9) << text;
    }
  }
}
