// Options shared by the subcommands (model selection, threads, sampling) and the model
// resolution rule: -m PATH, else -hf SPEC, else the default model found on the models path
// (COPPICE_MODELS, ./models, ../shared/models), else downloaded from Hugging Face.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "engine/grammar_sampling.h"
#include "engine/sampling.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace coppice::cli {

struct ModelArgs {
  std::string model;   // -m
  std::string hf;      // -hf owner/repo/file
  std::string hf_sha256;
  int threads = 0;     // -t, 0 = physical cores
  int ctx = 0;         // -c, 0 = min(training context, 4096)
  int batch = 512;     // -b
  std::string cache_type = "f16";
  std::string cache_type_k, cache_type_v;      // override --cache-type for K / V
  std::vector<std::string> cache_type_layers;  // "A[-B]=K[/V]" per-layer overrides
  std::string kv_policy = "none";              // none | window | h2o | snapkv
  int kv_budget = 0;                           // cells kept per sequence (0: all)
  std::string kv_layer_budgets = "uniform";    // uniform | cake (h2o / snapkv: per-layer budgets)
  bool verbose = false;
};

void add_model_options(CLI::App* app, ModelArgs& a);
void add_sampling_options(CLI::App* app, SamplingParams& p);

// Resolves the model path per the rule above; downloads when needed.
std::string resolve_model(const ModelArgs& a);

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  int64_t n_ctx = 0;
  DType kv_type = DType::F16;
  KvCacheOptions kv;                  // types from --cache-type*, n_blocks unset
  std::unique_ptr<KvPolicy> policy;   // null without --kv-policy; the model's observer if needed
};
Loaded load(const ModelArgs& a);

// Parses the --cache-type* options for a model of n_layer layers; throws coppice::Error.
KvCacheOptions parse_kv_types(const ModelArgs& a, int n_layer);
// A cache of n_cells cells (all sequences together) with the chosen K/V types.
KvCache make_kv_cache(const Loaded& l, int64_t n_cells, int block_size = 16);
// "kv: 12 blocks (192 cells) in use, 0.8 MiB of 3.0 MiB, k f16 / v q8_0, 140 cells evicted"
std::string kv_usage(const KvCache& c, const KvPolicy* p);

// Reads a whole file (or stdin for "-"); throws coppice::Error naming the file.
std::string read_text(const std::string& path);

// Structured output: at most one of --grammar, --grammar-file, --json-schema, --regex.
struct GrammarArgs {
  std::string gbnf, gbnf_file, json_schema, regex;
  std::string start_after;  // --grammar-after
};
void add_grammar_options(CLI::App* app, GrammarArgs& a);
// The compiled grammar, or null when none was asked for; throws coppice::Error on bad input.
grammar::GrammarPtr load_grammar(const GrammarArgs& a);

// Throws coppice::Error when the sampling parameters are impossible.
void check_sampling(const SamplingParams& p);

// A self-overwriting progress line on stderr (drawn only on a terminal) for the file-writing
// commands (quantize, synth, prune); notes go on lines of their own as "[tag] text".
class ProgressLine {
 public:
  explicit ProgressLine(std::string tag);
  ~ProgressLine() { finish(); }
  bool enabled() const { return tty_; }
  void note(const std::string& text);
  void show(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void finish();  // ends an open line
 private:
  std::string tag_;
  bool tty_ = false, open_ = false;
};

}  // namespace coppice::cli
