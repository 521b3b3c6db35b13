// Needle retrieval under KV eviction: a character's name is introduced at the start of a
// long story, filler follows, and a cue at the end (" One day,") asks for the main character.
// Hit = the model's top prediction after the cue is the name's first token. The context is
// prefilled in chunks of 64 and the cue decoded token by token, the policy evicting after
// every step, so the name must survive eviction to be found.
//   build/release/examples/example_kv_needle MODEL.gguf [TRIALS] [FILLER_SENTENCES]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "util/error.h"

using namespace coppice;

namespace {
const char* kNames[] = {"Lily", "Tom", "Ben", "Sue", "Max", "Anna", "Tim", "Sam", "Mia", "Lucy"};
const char* kFiller[] = {
    "The sun was warm and the sky was blue.", "The birds sang in the big green tree.",
    "There was a small red ball in the park.", "A dog ran fast to get the stick.",
    "Mom made a big cake for the party.", "The flowers were pretty and smelled nice.",
    "It was a happy day for everyone.", "The cat slept on the soft bed.",
    "They played with the toys all day.", "The wind blew the leaves around.",
    "A little bird flew over the house.", "The water in the pond was cold.",
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [TRIALS] [FILLER_SENTENCES]\n", argv[0]);
    return 2;
  }
  try {
    ModelOptions mo;
    mo.n_threads = 1;  // a tiny model: threads only add synchronisation
    auto model = Model::load(argv[1], mo);
    auto tok = Tokenizer::from_gguf(model->file());
    const int trials = argc > 2 ? std::atoi(argv[2]) : 20;
    const int n_fill = argc > 3 ? std::atoi(argv[3]) : 5;
    struct Trial { std::vector<int32_t> ctx, cue; int32_t answer; };
    std::vector<Trial> ts;
    uint64_t rng = 12345;
    int max_len = 0;
    for (int t = 0; t < trials; ++t) {
      const std::string name = kNames[t % 10];
      const bool girl = t % 2 == 0;
      std::string ctx = std::string("Once upon a time, there was a little ") + (girl ? "girl" : "boy") +
                        " named " + name + ". " + name + " liked to play outside.";
      for (int i = 0; i < n_fill; ++i) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ctx += std::string(" ") + kFiller[(rng >> 33) % 12];
      }
      const std::string cue = " One day,";
      // Split one tokenization of the whole text, so the boundaries are the model's own.
      const auto ctx_ids = tok->encode(ctx, true, true);
      const auto all = tok->encode(ctx + cue + " " + name, true, true);
      const size_t n_cue = tok->encode(ctx + cue, true, true).size() - ctx_ids.size();
      Trial tr{ctx_ids, std::vector<int32_t>(all.begin() + ctx_ids.size(), all.begin() + ctx_ids.size() + n_cue),
               all[ctx_ids.size() + n_cue]};
      max_len = std::max(max_len, static_cast<int>(tr.ctx.size() + tr.cue.size()));
      ts.push_back(std::move(tr));
    }
    std::printf("%d trials, contexts up to %d tokens\n\n| policy | budget | hits |\n|---|---:|---:|\n", trials, max_len);
    std::vector<std::pair<KvPolicyKind, int>> runs = {{KvPolicyKind::None, 0}};
    for (KvPolicyKind k : {KvPolicyKind::Window, KvPolicyKind::H2O, KvPolicyKind::SnapKV})
      for (int div : {2, 4, 8}) runs.push_back({k, max_len / div});
    for (const auto& [kind, budget] : runs) {
      KvPolicyOptions o;
      o.kind = kind;
      o.budget = budget;
      KvPolicy policy(o);
      KvPolicy* p = kind == KvPolicyKind::None ? nullptr : &policy;
      model->set_attention_observer(p != nullptr && p->needs_attention() ? p : nullptr);
      KvCache cache = model->make_cache(max_len + 64);
      int hits = 0;
      std::vector<float> logits;
      for (const Trial& tr : ts) {
        cache.add_sequence(0);
        prefill(*model, cache, 0, tr.ctx, 64, false, logits, p);
        prefill(*model, cache, 0, tr.cue, 1, false, logits, p);  // one token per step
        hits += std::max_element(logits.begin(), logits.end()) - logits.begin() == tr.answer;
        cache.remove_sequence(0);
        if (p != nullptr) p->forget(0);
      }
      std::printf("| %s | %d | %d/%d |\n", kv_policy_name(kind), kind == KvPolicyKind::None ? max_len : budget,
                  hits, trials);
    }
    model->set_attention_observer(nullptr);
  } catch (const coppice::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
