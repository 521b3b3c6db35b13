// Chat templates: renders a model's Jinja2 chat template (tokenizer_config.json
// "chat_template") byte-for-byte like Hugging Face's apply_chat_template.
//
//   auto tpl = coppice::chat::ChatTemplate::parse(source);   // throws coppice::Error
//   std::string prompt = coppice::chat::render_chat(tpl, messages, true, "<s>", "</s>");
//
// Errors (syntax, runtime, raise_exception) throw coppice::Error "[template] line L: what".
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace coppice::chat {

namespace jinja { struct Node; }

struct RenderOptions {
  int64_t now_unix = -1;                 // strftime_now's clock (UTC); -1: current local time
  size_t max_output = size_t{64} << 20;  // bytes
  int max_call_depth = 100;              // nested macro calls
  int64_t max_steps = 5'000'000;         // loop iterations + macro calls
};

class ChatTemplate {
 public:
  static ChatTemplate parse(std::string source);
  // `context` must be a JSON object; its keys become template variables.
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::ordered_json& context, const RenderOptions& opt) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::shared_ptr<const std::vector<std::unique_ptr<jinja::Node>>> root_;
};

// HF's call: messages, add_generation_prompt, bos_token, eos_token and tools (null when
// absent, as HF passes tools=None).
std::string render_chat(const ChatTemplate& tpl, const nlohmann::ordered_json& messages,
                        bool add_generation_prompt, const std::string& bos, const std::string& eos,
                        const nlohmann::ordered_json* tools = nullptr, const RenderOptions& opt = {});

}  // namespace coppice::chat
