// `coppice tokenize`: text or file -> token ids (`--ids`: a JSON array; `--json`: id + piece).
#include <nlohmann/json.hpp>
#include <cstdio>
#include <iostream>

#include "apps/commands.h"
#include "formats/hf_folder.h"
#include "apps/common.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct TokArgs {
  ModelArgs model;
  std::string prompt, file;
  bool ids = false, json = false, no_bos = false, no_parse_special = false;
};

int tokenize(const TokArgs& a) {
  if (!a.prompt.empty() && !a.file.empty()) fail("cli", "give either -p or -f, not both");
  std::string text = a.file.empty() ? a.prompt : read_text(a.file);
  const std::string path = resolve_model(a.model);
  gguf::File f = hf::open_model_file(path);
  auto tok = Tokenizer::from_gguf(f);
  const std::vector<int32_t> ids = tok->encode(text, !a.no_bos, !a.no_parse_special);
  if (a.ids) {
    std::cout << nlohmann::json(ids).dump() << "\n";
  } else if (a.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (int32_t id : ids) {
      const std::string piece = tok->token_to_piece(id, true);
      arr.push_back({{"id", id}, {"piece", piece}});
    }
    std::cout << arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    for (int32_t id : ids)
      std::printf("%6d -> '%s'\n", id, tok->token_to_piece(id, true).c_str());
  }
  return 0;
}

}  // namespace

Action register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokArgs>();
  CLI::App* sub = app.add_subcommand("tokenize", "text or file -> token ids");
  sub->add_option("-m,--model", a->model.model, "GGUF model (or vocabulary) file, or Hugging Face folder");
  sub->add_option("--hf", a->model.hf, "Hugging Face owner/repo/file");
  sub->add_option("-p,--prompt", a->prompt, "text to tokenize");
  sub->add_option("-f,--file", a->file, "file to tokenize ('-' for stdin)");
  sub->add_flag("--ids", a->ids, "print only a JSON array of ids");
  sub->add_flag("--json", a->json, "print a JSON array of {id, piece}");
  sub->add_flag("--no-bos", a->no_bos, "do not add BOS/EOS");
  sub->add_flag("--no-parse-special", a->no_parse_special, "treat special-token text as plain text");
  return [a] { return tokenize(*a); };
}

}  // namespace coppice::cli
