#include "chat/chat_template.h"

#include "chat/jinja_ast.h"
#include "chat/jinja_eval.h"
#include "util/error.h"

namespace coppice::chat {

ChatTemplate ChatTemplate::parse(std::string source) {
  ChatTemplate t;
  t.root_ = std::make_shared<const jinja::NodeList>(jinja::parse_template(source));
  t.source_ = std::move(source);
  return t;
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return render(context, RenderOptions{});
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context, const RenderOptions& opt) const {
  if (!context.is_object()) coppice::fail("template", "render context must be a JSON object");
  jinja::Scope vars;
  for (auto it = context.begin(); it != context.end(); ++it) vars[it.key()] = jinja::Value::from_json(it.value());
  jinja::RenderLimits limits;
  limits.now_unix = opt.now_unix;
  limits.max_output = opt.max_output;
  limits.max_call_depth = opt.max_call_depth;
  limits.max_steps = opt.max_steps;
  jinja::Interp interp(limits, std::move(vars));
  return interp.render(*root_);
}

std::string render_chat(const ChatTemplate& tpl, const nlohmann::ordered_json& messages,
                        bool add_generation_prompt, const std::string& bos, const std::string& eos,
                        const nlohmann::ordered_json* tools, const RenderOptions& opt) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["tools"] = tools ? *tools : nlohmann::ordered_json(nullptr);
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = bos;
  ctx["eos_token"] = eos;
  return tpl.render(ctx, opt);
}

}  // namespace coppice::chat
