#include "apps/common.h"

#include <unistd.h>

#include <cstdarg>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "grammar/json_schema.h"
#include "grammar/regex.h"
#include "util/download.h"
#include "util/error.h"

namespace coppice::cli {

namespace fs = std::filesystem;

namespace {
constexpr const char* kDefaultModel = "stories260K.gguf";
constexpr const char* kDefaultHf = "ggml-org/models/tinyllamas/stories260K.gguf";
constexpr const char* kDefaultSha256 =
    "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
}  // namespace

void add_model_options(CLI::App* app, ModelArgs& a) {
  app->add_option("-m,--model", a.model, "GGUF model file or Hugging Face model folder");
  app->add_option("--hf,-H", a.hf, "download from Hugging Face: owner/repo/path/file.gguf");
  app->add_option("--hf-sha256", a.hf_sha256, "expected sha256 of the downloaded file");
  app->add_option("-t,--threads", a.threads, "threads (default: physical cores)")->check(CLI::Range(0, 1024));
  app->add_option("-c,--ctx-size", a.ctx, "context size in tokens (default: min(train, 4096))")->check(CLI::Range(0, 1 << 24));
  app->add_option("-b,--batch-size", a.batch, "prompt tokens per forward step")->check(CLI::Range(1, 1 << 16));
  app->add_option("--cache-type", a.cache_type, "KV cache type of K and V: f16, f32, bf16, q8_0, q4_0, q4_1, q5_0, q5_1");
  app->add_option("--cache-type-k", a.cache_type_k, "K cache type (default: --cache-type)");
  app->add_option("--cache-type-v", a.cache_type_v, "V cache type (default: --cache-type)");
  app->add_option("--cache-type-layer", a.cache_type_layers, "per-layer K/V types: A[-B]=K[/V], e.g. 0-1=f16/q8_0 (repeatable)");
  app->add_option("--kv-policy", a.kv_policy, "KV eviction policy: none, window, h2o, snapkv");
  app->add_option("--kv-layer-budgets", a.kv_layer_budgets,
                  "h2o/snapkv: uniform (one kept set for every layer) or cake (budget x layers split by attention dispersion)");
  app->add_option("--kv-budget", a.kv_budget, "KV cells kept per sequence under --kv-policy (0: all)")->check(CLI::Range(0, 1 << 24));
  app->add_flag("-v,--verbose", a.verbose, "print timings and model details to stderr");
}

void add_sampling_options(CLI::App* app, SamplingParams& p) {
  app->add_option("--temp", p.temperature, "temperature (0 = greedy)");
  app->add_option("--top-k", p.top_k, "top-k (0 = off)");
  app->add_option("--top-p", p.top_p, "top-p (1 = off)");
  app->add_option("--min-p", p.min_p, "min-p (0 = off)");
  app->add_option("--typical", p.typical_p, "locally typical sampling (1 = off)");
  app->add_option("--repeat-penalty", p.repeat_penalty, "repetition penalty (1 = off)");
  app->add_option("--repeat-last-n", p.repeat_last_n, "tokens the repetition penalty looks back");
  app->add_option("--presence-penalty", p.presence_penalty, "presence penalty");
  app->add_option("--frequency-penalty", p.frequency_penalty, "frequency penalty");
  app->add_option("-s,--seed", p.seed, "random seed");
  app->add_option_function<std::vector<std::string>>(
      "-l,--logit-bias",
      [&p](const std::vector<std::string>& v) {
        for (const std::string& s : v) {
          const auto sep = s.find_first_of("+-", 1);
          if (sep == std::string::npos || sep == 0)
            throw CLI::ValidationError("--logit-bias", "expected TOKEN_ID(+|-)BIAS, got '" + s + "'");
          try {
            p.logit_bias[std::stoi(s.substr(0, sep))] = std::stof(s.substr(sep));
          } catch (const std::exception&) {
            throw CLI::ValidationError("--logit-bias", "expected TOKEN_ID(+|-)BIAS, got '" + s + "'");
          }
        }
      },
      "bias a token: ID+BIAS or ID-BIAS (e.g. 15043+1)");
}

void add_grammar_options(CLI::App* app, GrammarArgs& a) {
  app->add_option("--grammar", a.gbnf, "constrain the output with a GBNF grammar (text)");
  app->add_option("--grammar-file", a.gbnf_file, "constrain the output with a GBNF grammar file");
  app->add_option("--json-schema", a.json_schema, "constrain the output to a JSON Schema (JSON text or @FILE)");
  app->add_option("--regex", a.regex, "constrain the output to match a regular expression (ECMAScript subset)");
  app->add_option("--grammar-after", a.start_after, "apply the constraint only after this text (e.g. </think>)");
}

grammar::GrammarPtr load_grammar(const GrammarArgs& a) {
  const int n = !a.gbnf.empty() + !a.gbnf_file.empty() + !a.json_schema.empty() + !a.regex.empty();
  if (n == 0) return nullptr;
  if (n > 1) fail("cli", "give only one of --grammar, --grammar-file, --json-schema, --regex");
  std::string gbnf = a.gbnf;
  if (!a.gbnf_file.empty()) gbnf = read_text(a.gbnf_file);
  if (!a.regex.empty()) gbnf = grammar::regex_to_gbnf(a.regex);
  if (!a.json_schema.empty()) {
    const std::string text = a.json_schema[0] == '@' ? read_text(a.json_schema.substr(1)) : a.json_schema;
    nlohmann::ordered_json schema;
    try {
      schema = nlohmann::ordered_json::parse(text);
    } catch (const std::exception& e) {
      fail("json-schema", std::string("not valid JSON: ") + e.what());
    }
    gbnf = grammar::json_schema_to_gbnf(schema);
  }
  return compile_grammar(gbnf);
}

void check_sampling(const SamplingParams& p) {
  const std::string err = validate(p);
  if (!err.empty()) fail("sampling", err);
}

std::string resolve_model(const ModelArgs& a) {
  if (!a.model.empty()) {
    if (!fs::exists(a.model)) fail("cli", a.model + ": model file not found");
    return a.model;
  }
  if (!a.hf.empty()) return download_hf(a.hf, default_model_dir(), a.hf_sha256);
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("COPPICE_MODELS")) dirs.emplace_back(env);
  dirs.emplace_back("models");
  dirs.emplace_back("../shared/models");
  for (const fs::path& d : dirs)
    if (fs::exists(d / kDefaultModel)) return (d / kDefaultModel).string();
  std::cerr << "coppice: " << kDefaultModel << " not found on the models path; downloading "
            << kDefaultHf << "\n";
  return download_hf(kDefaultHf, default_model_dir(), kDefaultSha256);
}

namespace {
DType kv_type_arg(const std::string& opt, const std::string& name) {
  auto t = dtype_from_name(name);
  if (!t || (*t != DType::F16 && *t != DType::F32 && *t != DType::BF16 && *t != DType::Q8_0 &&
             *t != DType::Q4_0 && *t != DType::Q4_1 && *t != DType::Q5_0 && *t != DType::Q5_1))
    fail("cli", opt + " " + name + " is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)");
  return *t;
}
}  // namespace

KvCacheOptions parse_kv_types(const ModelArgs& a, int n_layer) {
  KvCacheOptions o;
  const DType both = kv_type_arg("--cache-type", a.cache_type);
  o.type = a.cache_type_k.empty() ? both : kv_type_arg("--cache-type-k", a.cache_type_k);
  o.type_v = a.cache_type_v.empty() ? both : kv_type_arg("--cache-type-v", a.cache_type_v);
  if (a.cache_type_layers.empty()) return o;
  o.layer_types.assign(static_cast<size_t>(n_layer), KvLayerTypes{o.type, *o.type_v});
  for (const std::string& spec : a.cache_type_layers) {
    const std::string bad = "--cache-type-layer " + spec + ": expected A[-B]=K[/V] with layers below " +
                            std::to_string(n_layer);
    const auto eq = spec.find('='), dash = spec.find('-');
    if (eq == std::string::npos) fail("cli", bad);
    int lo = -1, hi = -1;
    try {
      lo = std::stoi(spec.substr(0, std::min(eq, dash)));
      hi = dash < eq ? std::stoi(spec.substr(dash + 1, eq - dash - 1)) : lo;
    } catch (const std::exception&) {
      fail("cli", bad);
    }
    if (lo < 0 || hi < lo || hi >= n_layer) fail("cli", bad);
    const std::string types = spec.substr(eq + 1);
    const auto slash = types.find('/');
    const DType k = kv_type_arg("--cache-type-layer", types.substr(0, slash));
    const DType v = slash == std::string::npos ? k : kv_type_arg("--cache-type-layer", types.substr(slash + 1));
    for (int l = lo; l <= hi; ++l) o.layer_types[static_cast<size_t>(l)] = {k, v};
  }
  return o;
}

KvCache make_kv_cache(const Loaded& l, int64_t n_cells, int block_size) {
  KvCacheOptions o = l.kv;
  o.block_size = block_size;
  o.n_blocks = (n_cells + block_size - 1) / block_size;
  const ModelConfig& c = l.model->config();
  return KvCache(static_cast<int>(c.n_layer), static_cast<int>(c.n_head_kv), static_cast<int>(c.head_dim), o);
}

std::string kv_usage(const KvCache& c, const KvPolicy* p) {
  char buf[256];
  const double mib = 1024.0 * 1024.0;
  std::snprintf(buf, sizeof buf, "kv: %lld blocks of %d cells in use, %.2f MiB of %.2f MiB, k %s / v %s",
                static_cast<long long>(c.blocks_used()), c.block_size(),
                static_cast<double>(c.bytes_used()) / mib,
                static_cast<double>(c.bytes_total()) / mib, dtype_name(c.k_type(0)), dtype_name(c.v_type(0)));
  std::string s = buf;
  if (p != nullptr && p->options().kind != KvPolicyKind::None)
    s += std::string(", policy ") + kv_policy_name(p->options().kind) + (p->options().cake ? "+cake" : "") +
         " budget " + std::to_string(p->options().budget) + ", " + std::to_string(p->cells_evicted()) + " cells evicted";
  if (p != nullptr && !p->last_layer_budgets().empty()) {
    s += ", layer budgets";
    for (int b : p->last_layer_budgets()) s += " " + std::to_string(b);
  }
  return s;
}

Loaded load(const ModelArgs& a) {
  Loaded l;
  l.kv_type = kv_type_arg("--cache-type", a.cache_type);
  const auto pk = kv_policy_from_name(a.kv_policy);
  if (!pk) fail("cli", "--kv-policy " + a.kv_policy + " is not one of none, window, h2o, snapkv");
  KvPolicyOptions po;
  po.kind = *pk;
  po.budget = a.kv_budget;
  if (a.kv_layer_budgets != "uniform" && a.kv_layer_budgets != "cake")
    fail("cli", "--kv-layer-budgets " + a.kv_layer_budgets + " is not one of uniform, cake");
  po.cake = a.kv_layer_budgets == "cake";
  if (po.cake && po.kind == KvPolicyKind::None)
    fail("cli", "--kv-layer-budgets cake needs --kv-policy h2o or snapkv and --kv-budget CELLS");
  if (po.kind != KvPolicyKind::None && po.budget == 0)
    fail("cli", "--kv-policy " + a.kv_policy + " needs --kv-budget CELLS");
  validate(po);
  ModelOptions mo;
  mo.n_threads = a.threads;
  const std::string path = resolve_model(a);
  l.model = Model::load(path, mo);
  l.tok = Tokenizer::from_gguf(l.model->file());
  // HF folders often pad the embedding beyond the tokenizer's ids; more ids than rows is an error.
  if (l.tok->n_vocab() > l.model->n_vocab() ||
      (l.tok->n_vocab() != l.model->n_vocab() && l.model->file().find("tokenizer.huggingface.json") == nullptr))
    fail("model", path + ": tokenizer has " + std::to_string(l.tok->n_vocab()) +
                      " tokens but the embedding has " + std::to_string(l.model->n_vocab()) + " rows");
  l.kv = parse_kv_types(a, static_cast<int>(l.model->config().n_layer));
  if (po.cake && l.model->config().n_swa > 0)
    fail("kv", "--kv-layer-budgets cake: this model has sliding-window layers, which need one cell table for every layer");
  if (po.kind != KvPolicyKind::None) {
    l.policy = std::make_unique<KvPolicy>(po);
    if (l.policy->needs_attention()) l.model->set_attention_observer(l.policy.get());
  }
  const int64_t train = l.model->config().n_ctx_train;
  l.n_ctx = a.ctx > 0 ? a.ctx : std::min<int64_t>(train, 4096);
  if (a.verbose) {
    const ModelConfig& c = l.model->config();
    std::cerr << "model: " << path << " (" << c.arch << ", " << c.n_layer << " layers, dim "
              << c.n_embd << ", " << c.n_head << "/" << c.n_head_kv << " heads, vocab "
              << c.n_vocab << "), ctx " << l.n_ctx << ", threads " << l.model->pool().size() << "\n";
  }
  return l;
}

std::string read_text(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cli", path + ": cannot read file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ProgressLine::ProgressLine(std::string tag) : tag_(std::move(tag)), tty_(isatty(2) != 0) {}

void ProgressLine::note(const std::string& text) {
  finish();
  std::fprintf(stderr, "[%s] %s\n", tag_.c_str(), text.c_str());
}

void ProgressLine::show(const char* fmt, ...) {
  if (!tty_) return;
  std::fputc('\r', stderr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputs("\x1b[K", stderr);
  open_ = true;
}

void ProgressLine::finish() {
  if (open_) std::fputc('\n', stderr);
  open_ = false;
}

}  // namespace coppice::cli
