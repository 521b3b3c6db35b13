// coppice: command-line entry point. Errors from any layer arrive here as coppice::Error and
// become one line on stderr and a non-zero exit; wrong usage prints the usage line.
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  using namespace coppice::cli;
  CLI::App app{"coppice: fast LLM inference on the CPU", "coppice"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "coppice 0.1.0");
  std::map<CLI::App*, Action> actions;
  auto add = [&](Action (*reg)(CLI::App&)) {
    Action a = reg(app);
    actions[app.get_subcommands({}).back()] = std::move(a);
  };
  add(register_run);
  add(register_chat);
  add(register_info);
  add(register_tokenize);
  add(register_eval);
  add(register_perplexity);
  add(register_bench);
  add(register_template);
  add(register_serve);
  add(register_quantize);
  add(register_synth);
  add(register_convert);
  add(register_prune);
  add(register_search);

  // llama.cpp habit: multi-letter single-dash flags ("-hf"); CLI11 wants "--hf".
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) {
    std::string a = argv[i];
    if (a == "-hf") a = "--hf";
    args.push_back(std::move(a));
  }
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "coppice: " << e.what() << "\n";
    const auto subs = app.get_subcommands();
    std::cerr << "usage: " << (subs.empty() ? std::string("coppice <command> [options]")
                                           : "coppice " + subs[0]->get_name() + " [options]")
              << "   (see --help)\n";
    return 2;
  }
  try {
    for (CLI::App* sub : app.get_subcommands()) return actions.at(sub)();
  } catch (const coppice::Error& e) {
    std::cerr << "coppice: error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "coppice: error: out of memory\n";
    return 1;
  }
  return 0;
}
