// `coppice serve`: the OpenAI-compatible HTTP server (src/server) over the serving engine.
// SIGTERM/SIGINT stop it gracefully: new requests get 503, in-flight ones finish (bounded by
// --shutdown-timeout, then cancelled), exit 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "apps/chat_template.h"
#include "apps/commands.h"
#include "apps/common.h"
#include "engine/scheduler.h"
#include "kernels/types.h"
#include "server/server.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct ServeArgs {
  ModelArgs model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string alias;
  int64_t max_body = 1 << 20;
  int max_connections = 64;
  int parallel = 16;
  int64_t kv_blocks = 0;
  int64_t kv_memory_mib = 0;
  int block_size = 16;
  int step_tokens = 256;
  double tpot_ms = 0;
  int min_chunk = 16;
  std::string spec = "none";
  int spec_max = 16;
  bool spec_fixed = false;
  std::vector<std::string> draft_models;
  int max_queue = 256;
  int max_tokens = 0;
  int max_prompt = 0;
  int max_n = 16;
  bool no_prefix_cache = false;
  double shutdown_timeout = 30;
  std::string reward_model, judge = ".", judge_template = "{prompt}{response}";
  int max_search_n = 64;
  int64_t max_search_budget = 1 << 16;
};

// The one place the server's chat prompt is rendered; the Jinja renderer (src/chat) replaces
// the built-in template families here once it lands.
std::string render_prompt(const ChatTemplate& tpl, const std::vector<server::ChatMessage>& msgs) {
  std::vector<ChatMessage> m;
  m.reserve(msgs.size());
  for (const auto& x : msgs) m.push_back({x.role, x.content});
  return tpl.render(m, true);
}

int64_t blocks_for_memory(const Loaded& l, int block_size, int64_t mib) {
  const int64_t per_block = static_cast<int64_t>(make_kv_cache(l, block_size, block_size).block_bytes_all_layers());
  const int64_t n = mib * (int64_t{1} << 20) / std::max<int64_t>(per_block, 1);
  if (n < 1)
    fail("serve", "--kv-memory " + std::to_string(mib) + " MiB holds no KV block (one block is " +
                      std::to_string(per_block) + " bytes)");
  return n;
}

int serve(ServeArgs a) {
  if (a.api_key.empty())
    if (const char* k = std::getenv("COPPICE_API_KEY")) a.api_key = k;
  if (a.kv_blocks > 0 && a.kv_memory_mib > 0) fail("serve", "give --kv-blocks or --kv-memory, not both");

  // Signals go to one waiting thread only: block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  Loaded l = load(a.model);
  EngineOptions eo;
  eo.n_ctx = static_cast<int>(l.n_ctx);
  eo.n_parallel = a.parallel;
  eo.step_tokens = a.step_tokens;
  eo.tpot_ms = a.tpot_ms;
  eo.min_chunk = a.min_chunk;
  eo.spec = a.spec;
  eo.spec_max_nodes = a.spec_max;
  eo.spec_adaptive = !a.spec_fixed;
  eo.draft_models = a.draft_models;
  eo.block_size = a.block_size;
  eo.kv_type = l.kv.type;
  eo.kv_type_v = l.kv.type_v;
  eo.kv_layer_types = l.kv.layer_types;
  if (l.policy) eo.kv_policy = l.policy->options();
  eo.max_queue = a.max_queue;
  eo.prefix_cache = !a.no_prefix_cache;
  eo.kv_blocks = a.kv_memory_mib > 0 ? blocks_for_memory(l, a.block_size, a.kv_memory_mib)
                                     : a.kv_blocks;
  Engine engine(*l.model, *l.tok, eo);

  const std::filesystem::path path = l.model->file().path();
  server::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.max_body = static_cast<size_t>(a.max_body);
  so.max_connections = a.max_connections;
  so.max_tokens = a.max_tokens;
  so.max_prompt_tokens = a.max_prompt;
  so.max_n = a.max_n;
  so.search_limits.max_n = a.max_search_n;
  so.search_limits.max_budget = a.max_search_budget;
  if (!a.reward_model.empty()) {  // loaded once here; requests can only say "reward"
    RewardModelOptions ro;
    ro.templ = a.judge_template;
    ro.judge = a.judge;
    so.reward_scorer = make_reward_model_scorer(a.reward_model, ro);
  }
  so.model_id = a.alias.empty() ? path.filename().string() : a.alias;
  so.model_aliases = {path.filename().string(), path.stem().string()};
  const ChatTemplate tpl = ChatTemplate::from_model(l.model->file());
  so.render_chat = [tpl](const std::vector<server::ChatMessage>& m) { return render_prompt(tpl, m); };
  server::Server srv(engine, *l.tok, so);
  const int port = srv.bind();
  std::printf("coppice serve: listening on http://%s:%d (model %s, ctx %d, parallel %d, kv blocks %lld)\n",
              a.host.c_str(), port, so.model_id.c_str(), eo.n_ctx, eo.n_parallel,
              static_cast<long long>(engine.stats().kv_blocks_total));
  std::fflush(stdout);

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::fprintf(stderr, "coppice serve: signal %d, shutting down\n", sig);
    srv.shutdown(std::chrono::milliseconds(static_cast<int64_t>(a.shutdown_timeout * 1000)));
  });
  srv.listen();
  srv.shutdown(std::chrono::milliseconds(0));  // listen() ended on its own: stop the waiter too
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  engine.shutdown(false);
  std::fprintf(stderr, "coppice serve: stopped\n");
  return 0;
}

}  // namespace

Action register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server (continuous batching)");
  add_model_options(sub, a->model);
  sub->add_option("--host", a->host, "address to bind (default 127.0.0.1)");
  sub->add_option("--port", a->port, "port (0: pick a free one and print it)")->check(CLI::Range(0, 65535));
  sub->add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' (or env COPPICE_API_KEY)");
  sub->add_option("--alias", a->alias, "model id reported by /v1/models (default: the file name)");
  sub->add_option("--max-body", a->max_body, "largest request body in bytes (413 beyond)")->check(CLI::Range(int64_t{1024}, int64_t{1} << 30));
  sub->add_option("--max-connections", a->max_connections, "connections served at once")->check(CLI::Range(2, 4096));
  sub->add_option("--parallel", a->parallel, "max sequences generated at once")->check(CLI::Range(1, 4096));
  sub->add_option("--kv-blocks", a->kv_blocks, "KV cache pool size in blocks (default: ctx * parallel)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  sub->add_option("--kv-memory", a->kv_memory_mib, "KV cache pool size in MiB")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  sub->add_option("--block-size", a->block_size, "tokens per KV block")->check(CLI::Range(1, 1024));
  sub->add_option("--spec", a->spec, "default speculative decoding for lone sequences: ngram[:N], recycle[:K], "
                  "layerskip[:EXIT], draft:PATH (loaded once) or none (requests may set \"spec\")");
  sub->add_option("--draft-model", a->draft_models,
                  "load a draft GGUF that requests may name as \"spec\": \"draft:FILE\" (repeatable)");
  sub->add_option("--spec-max", a->spec_max, "largest draft tree")->check(CLI::Range(1, 64));
  sub->add_flag("--spec-fixed", a->spec_fixed, "always draft --spec-max tokens (no adaptive size / fallback)");
  sub->add_option("--step-tokens", a->step_tokens, "tokens per forward step (chunked prefill budget)")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--tpot-ms", a->tpot_ms,
                  "time-per-output-token target: prompt chunks shrink while sequences decode (0: off)")
      ->check(CLI::Range(0.0, 1e6));
  sub->add_option("--min-chunk", a->min_chunk, "prompt tokens per step at least, whatever --tpot-ms says")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-queue", a->max_queue, "waiting requests before 503")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-tokens", a->max_tokens, "cap (and default) for max_tokens (0: ctx size)")->check(CLI::Range(0, 1 << 24));
  sub->add_option("--max-prompt", a->max_prompt, "longest prompt in tokens (0: ctx size - 1)")->check(CLI::Range(0, 1 << 24));
  sub->add_option("--max-n", a->max_n, "largest n (choices per request)")->check(CLI::Range(1, 128));
  sub->add_flag("--no-prefix-cache", a->no_prefix_cache, "do not reuse KV blocks across requests");
  sub->add_option("--reward-model", a->reward_model,
                  "GGUF for \"search\": {\"scorer\": \"reward\"} (a value head cls.output, else log p of --judge)");
  sub->add_option("--judge", a->judge, "reward model: judgement token text");
  sub->add_option("--judge-template", a->judge_template, "reward model: text with {prompt} and {response}");
  sub->add_option("--max-search-n", a->max_search_n, "largest search.n")->check(CLI::Range(1, 256));
  sub->add_option("--max-search-budget", a->max_search_budget, "largest search.budget (generated tokens)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  sub->add_option("--shutdown-timeout", a->shutdown_timeout, "seconds in-flight requests may run after SIGTERM")->check(CLI::Range(0.0, 3600.0));
  return [a] { return serve(*a); };
}

}  // namespace coppice::cli
