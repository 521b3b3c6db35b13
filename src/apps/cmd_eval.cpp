// `coppice eval`: a prompt or an id list -> raw float32 little-endian logits
// [n_tokens][n_vocab] for every position (numpy: np.fromfile(f, '<f4').reshape(-1, n_vocab)).
#include <cstdio>
#include <sstream>

#include "apps/commands.h"
#include "apps/common.h"
#include "engine/generate.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct EvalArgs {
  ModelArgs model;
  std::string prompt, file, ids, out = "-";
  bool no_bos = false;
};

std::vector<int32_t> parse_ids(const std::string& s, int64_t n_vocab) {
  std::vector<int32_t> ids;
  std::string t = s;
  for (char& c : t) if (c == ',' || c == '[' || c == ']') c = ' ';
  std::istringstream in(t);
  std::string w;
  while (in >> w) {
    size_t used = 0;
    long long v = 0;
    try { v = std::stoll(w, &used); } catch (const std::exception&) { used = 0; }
    if (used != w.size()) fail("cli", "--ids: '" + w + "' is not a token id");
    if (v < 0 || v >= n_vocab)
      fail("cli", "--ids: token id " + w + " is out of range (vocabulary " + std::to_string(n_vocab) + ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int eval(const EvalArgs& a) {
  const int given = !a.prompt.empty() + !a.file.empty() + !a.ids.empty();
  if (given != 1) fail("cli", "give exactly one of -p, -f or --ids");
  // eval computes every position in one prefill: no step leaves a cache to evict from.
  if (a.model.kv_policy != "none")
    fail("cli", "eval does not apply --kv-policy (every position is computed in one pass); "
                "use perplexity --kv-policy P --kv-budget N to score text decoded under a policy");
  Loaded l = load(a.model);
  std::vector<int32_t> ids;
  if (!a.ids.empty()) ids = parse_ids(a.ids, l.model->n_vocab());
  else ids = l.tok->encode(a.file.empty() ? a.prompt : read_text(a.file), !a.no_bos, true);
  if (ids.empty()) fail("cli", "no tokens to evaluate");
  if (static_cast<int64_t>(ids.size()) > l.n_ctx)
    fail("cli", std::to_string(ids.size()) + " tokens exceed the context of " +
                    std::to_string(l.n_ctx) + " (raise -c)");
  KvCache cache = make_kv_cache(l, l.n_ctx);
  cache.add_sequence(0);
  std::vector<float> logits;
  prefill(*l.model, cache, 0, ids, a.model.batch, true, logits);
  FILE* out = a.out == "-" ? stdout : std::fopen(a.out.c_str(), "wb");
  if (!out) fail("cli", a.out + ": cannot open for writing");
  const size_t n = std::fwrite(logits.data(), sizeof(float), logits.size(), out);
  const bool ok = n == logits.size() && std::fflush(out) == 0;
  if (out != stdout) std::fclose(out);
  if (!ok) fail("cli", a.out + ": write failed");
  std::fprintf(stderr, "eval: %zu tokens x %lld logits written to %s\n", ids.size(),
               static_cast<long long>(l.model->n_vocab()), a.out == "-" ? "stdout" : a.out.c_str());
  return 0;
}

}  // namespace

Action register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand("eval", "tokens -> raw float32 logits for every position");
  add_model_options(sub, a->model);
  sub->add_option("-p,--prompt", a->prompt, "prompt text");
  sub->add_option("-f,--file", a->file, "prompt file");
  sub->add_option("--ids", a->ids, "token ids, e.g. 1,403,407 or [1, 403]");
  sub->add_option("-o,--output", a->out, "output file ('-' = stdout)");
  sub->add_flag("--no-bos", a->no_bos, "do not add BOS to a text prompt");
  return [a] { return eval(*a); };
}

}  // namespace coppice::cli
