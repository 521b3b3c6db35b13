// Chat prompt rendering: the model's own Jinja template (tokenizer.chat_template, rendered like
// Hugging Face's apply_chat_template by src/chat), or, for models without one or with a
// template the interpreter rejects, a built-in renderer for the common template families.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "formats/gguf.h"

namespace coppice::cli {

struct ChatMessage {
  std::string role;     // system, user, assistant
  std::string content;
};

class ChatTemplate {
 public:
  enum class Style { ChatML, Llama2, Llama3, Zephyr, Phi3, Gemma, Mistral, Plain };
  static ChatTemplate from_model(const gguf::File& f);
  static ChatTemplate from_style(Style s, std::string bos = "<s>", std::string eos = "</s>");
  // A Jinja template given as text; throws coppice::Error "[template] line L: ..." when bad.
  static ChatTemplate from_jinja(const std::string& source, std::string bos, std::string eos);
  std::string render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  // Full OpenAI-style messages (tool_calls, tool results...) and optional tool definitions.
  std::string render_json(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                          const nlohmann::ordered_json* tools = nullptr) const;
  Style style() const { return style_; }
  bool is_jinja() const { return jinja_ != nullptr; }

 private:
  Style style_ = Style::Plain;
  std::string bos_, eos_;
  std::shared_ptr<const chat::ChatTemplate> jinja_;
};

}  // namespace coppice::cli
