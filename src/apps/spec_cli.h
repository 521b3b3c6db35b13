// `--spec` for run and chat: drafter choice, tree budget, and the --verbose statistics line.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "apps/common.h"
#include "engine/spec_decode.h"

namespace coppice::cli {

struct SpecArgs {
  std::string spec = "none";  // ngram[:N] | recycle[:K] | layerskip[:EXIT] | draft:PATH | none
  int max_nodes = 16;         // draft tree size upper bound
  bool fixed = false;         // no adaptive depth / fallback
};
void add_spec_options(CLI::App* app, SpecArgs& a);

// Null when --spec is none; throws coppice::Error on a bad value or draft model.
std::unique_ptr<SpecDecoder> make_spec_decoder(const SpecArgs& a, const Loaded& l, KvCache& cache,
                                               SeqId seq, Sampler& sampler, int n_threads);
// One line on stderr: acceptance rate, mean accepted tokens per verify step, measured speed-up.
void print_spec_stats(const std::string& spec, const SpecStats& s);

}  // namespace coppice::cli
