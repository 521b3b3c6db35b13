// Each subcommand registers its options on the CLI and returns the action that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace coppice::cli {

using Action = std::function<int()>;

Action register_run(CLI::App& app);
Action register_chat(CLI::App& app);
Action register_info(CLI::App& app);
Action register_tokenize(CLI::App& app);
Action register_eval(CLI::App& app);
Action register_perplexity(CLI::App& app);
Action register_bench(CLI::App& app);
Action register_template(CLI::App& app);
Action register_serve(CLI::App& app);
Action register_quantize(CLI::App& app);
Action register_synth(CLI::App& app);
Action register_convert(CLI::App& app);
Action register_prune(CLI::App& app);
Action register_search(CLI::App& app);

}  // namespace coppice::cli
