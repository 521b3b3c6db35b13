#include "apps/chat_template.h"

#include <cstdio>

#include "util/error.h"

namespace coppice::cli {
namespace {
bool has(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

std::string token_text(const gguf::File& f, const char* key, const char* fallback) {
  auto id = f.get_int(key);
  const auto* toks = f.get_string_array("tokenizer.ggml.tokens");
  if (!id || !toks || *id < 0 || *id >= static_cast<int64_t>(toks->size())) return fallback;
  return (*toks)[static_cast<size_t>(*id)];
}
}  // namespace

ChatTemplate ChatTemplate::from_model(const gguf::File& f) {
  const std::string t = f.get_string("tokenizer.chat_template").value_or("");
  Style s = Style::Plain;
  if (has(t, "<|im_start|>")) s = Style::ChatML;
  else if (has(t, "<|start_header_id|>")) s = Style::Llama3;
  else if (has(t, "<|assistant|>") && has(t, "<|end|>")) s = Style::Phi3;
  else if (has(t, "<|user|>")) s = Style::Zephyr;
  else if (has(t, "<start_of_turn>")) s = Style::Gemma;
  else if (has(t, "[INST]") && has(t, "<<SYS>>")) s = Style::Llama2;
  else if (has(t, "[INST]")) s = Style::Mistral;
  std::string bos = token_text(f, "tokenizer.ggml.bos_token_id", "<s>");
  std::string eos = token_text(f, "tokenizer.ggml.eos_token_id", "</s>");
  if (!t.empty()) {
    try {
      return from_jinja(t, bos, eos);
    } catch (const Error& e) {
      std::fprintf(stderr, "coppice: warning: the model's chat template was not accepted (%s); "
                           "using the built-in renderer\n", e.what());
    }
  }
  return from_style(s, std::move(bos), std::move(eos));
}

ChatTemplate ChatTemplate::from_jinja(const std::string& source, std::string bos, std::string eos) {
  ChatTemplate c;
  c.jinja_ = std::make_shared<const chat::ChatTemplate>(chat::ChatTemplate::parse(source));
  c.bos_ = std::move(bos);
  c.eos_ = std::move(eos);
  return c;
}

std::string ChatTemplate::render_json(const nlohmann::ordered_json& messages, bool gen,
                                      const nlohmann::ordered_json* tools) const {
  if (jinja_) return chat::render_chat(*jinja_, messages, gen, bos_, eos_, tools);
  std::vector<ChatMessage> msgs;
  for (const auto& m : messages) {
    const auto& c = m.value("content", nlohmann::ordered_json());
    msgs.push_back({m.value("role", "user"), c.is_string() ? c.get<std::string>() : c.is_null() ? "" : c.dump()});
  }
  return render(msgs, gen);
}

ChatTemplate ChatTemplate::from_style(Style s, std::string bos, std::string eos) {
  ChatTemplate c;
  c.style_ = s;
  c.bos_ = std::move(bos);
  c.eos_ = std::move(eos);
  return c;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool gen) const {
  if (jinja_) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& m : msgs) arr.push_back({{"role", m.role}, {"content", m.content}});
    return chat::render_chat(*jinja_, arr, gen, bos_, eos_);
  }
  std::string o;
  switch (style_) {
    case Style::ChatML:
      for (const auto& m : msgs) o += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (gen) o += "<|im_start|>assistant\n";
      break;
    case Style::Llama3:
      o += bos_;
      for (const auto& m : msgs)
        o += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      if (gen) o += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case Style::Phi3:
      for (const auto& m : msgs) o += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      if (gen) o += "<|assistant|>\n";
      break;
    case Style::Zephyr:
      for (const auto& m : msgs) o += "<|" + m.role + "|>\n" + m.content + eos_ + "\n";
      if (gen) o += "<|assistant|>\n";
      break;
    case Style::Gemma:
      o += bos_;
      for (const auto& m : msgs) {
        const std::string role = m.role == "assistant" ? "model" : "user";
        o += "<start_of_turn>" + role + "\n" + m.content + "<end_of_turn>\n";
      }
      if (gen) o += "<start_of_turn>model\n";
      break;
    case Style::Llama2:
    case Style::Mistral: {
      std::string sys;
      for (const auto& m : msgs) {
        if (m.role == "system") {
          sys = m.content;
        } else if (m.role == "user") {
          std::string u = m.content;
          if (!sys.empty()) {
            u = style_ == Style::Llama2 ? "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" + u : sys + "\n\n" + u;
            sys.clear();
          }
          o += bos_ + "[INST] " + u + " [/INST]";
        } else {
          o += " " + m.content + eos_;
        }
      }
      break;
    }
    case Style::Plain:
      for (const auto& m : msgs) {
        if (m.role == "system") o += m.content + "\n\n";
        else if (m.role == "user") o += "User: " + m.content + "\n";
        else o += "Assistant: " + m.content + "\n";
      }
      if (gen) o += "Assistant:";
      break;
  }
  return o;
}

}  // namespace coppice::cli
