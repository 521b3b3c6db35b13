// `coppice run`: one prompt in, streamed text out. `coppice chat`: interactive turns with the
// model's chat template (built-in renderer for the common template families).
#include <chrono>
#include <cstdio>
#include <iostream>

#include "apps/chat_template.h"
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/spec_cli.h"
#include "engine/generate.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct RunArgs {
  ModelArgs model;
  SamplingParams sampling;
  GrammarArgs grammar;
  SpecArgs spec;
  std::string prompt;
  std::string file;
  int n_predict = 128;
  bool no_display_prompt = false;
  bool ignore_eos = false;
};

void print_stats(const GenerateStats& st) {
  std::fprintf(stderr, "\nprompt: %d tokens in %.1f ms (%.1f tok/s); generation: %d tokens in %.1f ms (%.1f tok/s)\n",
               st.n_prompt, st.prompt_ms, st.prompt_ms > 0 ? 1000.0 * st.n_prompt / st.prompt_ms : 0.0,
               st.n_generated, st.gen_ms, st.gen_ms > 0 ? 1000.0 * st.n_generated / st.gen_ms : 0.0);
}

int run(const RunArgs& a) {
  check_sampling(a.sampling);
  const auto tg = std::chrono::steady_clock::now();
  const grammar::GrammarPtr g = load_grammar(a.grammar);  // before the model: bad input fails fast
  if (g && a.model.verbose)
    std::fprintf(stderr, "grammar: %zu rules, %zu elements, compiled in %.2f ms\n", g->n_rules(), g->elements.size(),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tg).count());
  if (!a.prompt.empty() && !a.file.empty()) fail("cli", "give either -p or -f, not both");
  std::string prompt = a.prompt;
  if (!a.file.empty()) prompt = read_text(a.file);
  else if (prompt.empty() && !isatty(0)) prompt = read_text("-");
  if (prompt.empty()) fail("cli", "no prompt: use -p TEXT, -f FILE or pipe text on stdin");

  Loaded l = load(a.model);
  std::vector<int32_t> ids = l.tok->encode(prompt, true, true);
  if (ids.empty()) fail("cli", "the prompt tokenized to nothing");
  if (static_cast<int64_t>(ids.size()) >= l.n_ctx)
    fail("cli", "prompt is " + std::to_string(ids.size()) + " tokens, context is " +
                    std::to_string(l.n_ctx) + " (raise -c)");
  KvCache cache = make_kv_cache(l, l.n_ctx);
  cache.add_sequence(0);
  Sampler sampler(a.sampling);
  if (g) {
    GrammarOptions go;
    go.start_after = a.grammar.start_after;
    sampler.set_constraint(make_grammar_constraint(g, GrammarVocab::from_tokenizer(*l.tok), go));
  }
  std::unique_ptr<SpecDecoder> spec = make_spec_decoder(a.spec, l, cache, 0, sampler, a.model.threads);
  StreamDecoder dec(*l.tok);
  if (!a.no_display_prompt) {
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
  }
  GenerateOptions go;
  go.n_predict = a.n_predict;
  go.n_batch = a.model.batch;
  go.stop_at_eog = !a.ignore_eos;
  go.kv_policy = l.policy.get();
  // The prompt was printed verbatim: prime the decoder with it so the continuation keeps
  // its leading space (SentencePiece drops it only at the start of a text).
  for (int32_t id : ids) dec.push(id);
  dec.flush();
  const auto sink = [&](int32_t id) {
    std::string piece = dec.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  GenerateStats st = spec ? generate_spec(*l.model, cache, 0, *l.tok, sampler, ids, go, *spec, sink)
                          : generate(*l.model, cache, 0, *l.tok, sampler, ids, go, sink);
  const std::string rest = dec.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (a.model.verbose) {
    print_stats(st);
    std::fprintf(stderr, "%s\n", kv_usage(cache, l.policy.get()).c_str());
  }
  if (a.model.verbose && spec) print_spec_stats(a.spec.spec, spec->stats());
  return 0;
}

int chat(const RunArgs& a, const std::string& system) {
  check_sampling(a.sampling);
  Loaded l = load(a.model);
  ChatTemplate tpl = ChatTemplate::from_model(l.model->file());
  KvCache cache = make_kv_cache(l, l.n_ctx);
  cache.add_sequence(0);
  Sampler sampler(a.sampling);
  std::unique_ptr<SpecDecoder> spec = make_spec_decoder(a.spec, l, cache, 0, sampler, a.model.threads);
  std::vector<ChatMessage> history;
  if (!system.empty()) history.push_back({"system", system});
  std::string rendered_so_far;
  const bool tty = isatty(0);
  std::string line;
  for (;;) {
    if (tty) std::fputs("\n> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    history.push_back({"user", line});
    const std::string full = tpl.render(history, true);
    // Only the new suffix of the conversation is evaluated; earlier turns stay in the KV cache.
    const std::string delta = full.substr(full.compare(0, rendered_so_far.size(), rendered_so_far) == 0
                                              ? rendered_so_far.size() : 0);
    std::vector<int32_t> ids = l.tok->encode(delta, rendered_so_far.empty(), true);
    if (cache.length(0) + static_cast<int64_t>(ids.size()) + 1 >= l.n_ctx) {
      std::fputs("[context full: conversation reset]\n", stderr);
      cache.remove_sequence(0);
      if (l.policy) l.policy->forget(0);
      cache.add_sequence(0);
      history.erase(history.begin() + (system.empty() ? 0 : 1), history.end() - 1);
      const std::string again = tpl.render(history, true);
      ids = l.tok->encode(again, true, true);
      rendered_so_far.clear();
    }
    StreamDecoder dec(*l.tok);
    std::string reply;
    GenerateOptions go;
    go.n_predict = a.n_predict;
    go.n_batch = a.model.batch;
    go.kv_policy = l.policy.get();
    const auto sink = [&](int32_t id) {
      std::string piece = dec.push(id);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return static_cast<int64_t>(cache.length(0)) + 1 < l.n_ctx;
    };
    GenerateStats st = spec ? generate_spec(*l.model, cache, 0, *l.tok, sampler, ids, go, *spec, sink)
                            : generate(*l.model, cache, 0, *l.tok, sampler, ids, go, sink);
    reply += dec.flush();
    std::fputc('\n', stdout);
    history.push_back({"assistant", reply});
    rendered_so_far = tpl.render(history, false);
    if (a.model.verbose) {
      print_stats(st);
      std::fprintf(stderr, "%s\n", kv_usage(cache, l.policy.get()).c_str());
    }
    if (a.model.verbose && spec) print_spec_stats(a.spec.spec, spec->stats());
  }
  return 0;
}

}  // namespace

Action register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand("run", "generate text from a prompt");
  add_model_options(sub, a->model);
  add_sampling_options(sub, a->sampling);
  add_grammar_options(sub, a->grammar);
  add_spec_options(sub, a->spec);
  sub->add_option("-p,--prompt", a->prompt, "prompt text");
  sub->add_option("-f,--file", a->file, "read the prompt from a file");
  sub->add_option("-n,--n-predict", a->n_predict, "tokens to generate (-1 = until end)")->check(CLI::Range(-1, 1 << 24));
  sub->add_flag("--no-display-prompt", a->no_display_prompt, "do not echo the prompt");
  sub->add_flag("--ignore-eos", a->ignore_eos, "keep generating past end-of-generation tokens");
  return [a] { return run(*a); };
}

Action register_chat(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto system = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand("chat", "interactive chat using the model's chat template");
  add_model_options(sub, a->model);
  add_sampling_options(sub, a->sampling);
  add_spec_options(sub, a->spec);
  a->n_predict = 512;
  sub->add_option("-n,--n-predict", a->n_predict, "max tokens per reply")->check(CLI::Range(-1, 1 << 24));
  sub->add_option("--system", *system, "system prompt");
  return [a, system] { return chat(*a, *system); };
}

}  // namespace coppice::cli
