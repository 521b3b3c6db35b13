// `coppice template`: prints the exact prompt a chat turns into, rendered with the model's
// chat template (or a template file), so users can see what the model receives.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/chat_template.h"
#include "apps/commands.h"
#include "formats/hf_folder.h"
#include "apps/common.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct TemplateArgs {
  ModelArgs model;
  std::string template_file, messages, tools, bos, eos;
  bool add_generation_prompt = false;
};

nlohmann::ordered_json read_json(const std::string& path, const char* what) {
  try {
    return nlohmann::ordered_json::parse(read_text(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("cli", path + ": " + what + " is not valid JSON: " + e.what());
  }
}

int render(const TemplateArgs& a) {
  if (a.template_file.empty() == (a.model.model.empty() && a.model.hf.empty()))
    fail("cli", "give exactly one of -m MODEL or --template FILE");
  const auto messages = read_json(a.messages, "--messages");
  if (!messages.is_array()) fail("cli", a.messages + ": --messages must hold a JSON array of messages");
  nlohmann::ordered_json tools;
  if (!a.tools.empty()) tools = read_json(a.tools, "--tools");
  ChatTemplate tpl = ChatTemplate::from_style(ChatTemplate::Style::Plain);
  if (!a.template_file.empty()) {
    tpl = ChatTemplate::from_jinja(read_text(a.template_file), a.bos, a.eos);
  } else {
    gguf::File f = hf::open_model_file(resolve_model(a.model));
    if (!f.get_string("tokenizer.chat_template"))
      std::fprintf(stderr, "coppice: %s has no chat template; using the built-in plain format\n", f.path().c_str());
    tpl = ChatTemplate::from_model(f);
  }
  const std::string out = tpl.render_json(messages, a.add_generation_prompt, a.tools.empty() ? nullptr : &tools);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

Action register_template(CLI::App& app) {
  auto a = std::make_shared<TemplateArgs>();
  CLI::App* sub = app.add_subcommand("template", "render a conversation with a chat template");
  sub->add_option("-m,--model", a->model.model, "take the template (and BOS/EOS) from this GGUF");
  sub->add_option("--hf", a->model.hf, "Hugging Face owner/repo/file");
  sub->add_option("--template", a->template_file, "a Jinja chat template file");
  sub->add_option("--messages", a->messages, "JSON file: an array of {role, content, ...}")->required();
  sub->add_option("--tools", a->tools, "JSON file: tool definitions");
  sub->add_flag("--add-generation-prompt", a->add_generation_prompt, "end with the assistant's turn header");
  sub->add_option("--bos", a->bos, "BOS text (with --template)");
  sub->add_option("--eos", a->eos, "EOS text (with --template)");
  return [a] { return render(*a); };
}

}  // namespace coppice::cli
