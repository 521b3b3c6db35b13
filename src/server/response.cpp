#include "server/response.h"

#include <algorithm>
#include <limits>

namespace coppice::server {

using json = nlohmann::json;

namespace {
json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char ch : s) b.push_back(static_cast<int>(ch));
  return b;
}

json chat_logprob_items(const std::vector<TokenInfo>& tokens) {
  json content = json::array();
  for (const TokenInfo& t : tokens) {
    json top = json::array();
    for (const auto& [piece, lp] : t.top) top.push_back({{"token", piece}, {"logprob", lp}, {"bytes", bytes_of(piece)}});
    content.push_back({{"token", t.piece}, {"logprob", t.logprob}, {"bytes", bytes_of(t.piece)}, {"top_logprobs", top}});
  }
  return content;
}

json completion_logprobs(const std::vector<TokenInfo>& tokens, size_t& offset) {
  json l = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
            {"text_offset", json::array()}};
  for (const TokenInfo& t : tokens) {
    l["tokens"].push_back(t.piece);
    l["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const auto& [piece, lp] : t.top) top[piece] = lp;
    l["top_logprobs"].push_back(top);
    l["text_offset"].push_back(offset);
    offset += t.piece.size();
  }
  return l;
}

json finish_json(FinishReason r) { return r == FinishReason::None ? json(nullptr) : json(finish_name(r)); }

json envelope(const ResponseMeta& m, const char* object) {
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model},
          {"system_fingerprint", "coppice-0.1.0"}};
}
}  // namespace

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& j) { return "data: " + dump_json(j) + "\n\n"; }

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

const char* finish_name(FinishReason r) {
  // OpenAI knows only stop and length; a cancelled or failed choice is reported as such.
  const char* s = finish_reason_name(r);
  return *s ? s : "stop";
}

ChunkWriter::ChunkWriter(ResponseMeta meta) : meta_(std::move(meta)), offset_(static_cast<size_t>(meta_.n), 0) {}

std::vector<json> ChunkWriter::opening() const {
  std::vector<json> out;
  if (meta_.endpoint != Endpoint::Chat) return out;
  for (int i = 0; i < meta_.n; ++i) {
    json c = envelope(meta_, "chat.completion.chunk");
    c["choices"] = json::array({{{"index", i},
                                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                                 {"logprobs", nullptr},
                                 {"finish_reason", nullptr}}});
    out.push_back(std::move(c));
  }
  return out;
}

json ChunkWriter::logprobs_json(const Piece& p) {
  if (!meta_.logprobs) return nullptr;
  if (meta_.endpoint == Endpoint::Chat) return {{"content", chat_logprob_items(p.tokens)}, {"refusal", nullptr}};
  return completion_logprobs(p.tokens, offset_[static_cast<size_t>(p.choice)]);
}

json ChunkWriter::chunk(const Piece& p) {
  const bool chat = meta_.endpoint == Endpoint::Chat;
  json c = envelope(meta_, chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", p.choice}};
  if (chat) {
    choice["delta"] = p.text.empty() && p.finish != FinishReason::None ? json::object() : json{{"content", p.text}};
  } else {
    choice["text"] = p.text;
  }
  choice["logprobs"] = logprobs_json(p);
  choice["finish_reason"] = finish_json(p.finish);
  c["choices"] = json::array({choice});
  return c;
}

json ChunkWriter::usage_chunk(const Usage& u) const {
  json c = envelope(meta_, meta_.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion");
  c["choices"] = json::array();
  c["usage"] = usage_json(u);
  return c;
}

ResponseBuilder::ResponseBuilder(ResponseMeta meta) : meta_(std::move(meta)), choices_(static_cast<size_t>(meta_.n)) {}

void ResponseBuilder::add(const Piece& p) {
  if (p.choice < 0 || p.choice >= meta_.n) return;
  Choice& c = choices_[static_cast<size_t>(p.choice)];
  c.text += p.text;
  c.tokens.insert(c.tokens.end(), p.tokens.begin(), p.tokens.end());
  if (p.finish != FinishReason::None) c.finish = p.finish;
}

void ResponseBuilder::keep_best(int n, bool show_logprobs) {
  std::vector<std::pair<double, size_t>> rank;  // (mean logprob, choice)
  for (size_t i = 0; i < choices_.size(); ++i) {
    double sum = 0;
    for (const TokenInfo& t : choices_[i].tokens) sum += t.logprob;
    const size_t k = choices_[i].tokens.size();
    rank.emplace_back(k ? sum / static_cast<double>(k) : -std::numeric_limits<double>::infinity(), i);
  }
  std::stable_sort(rank.begin(), rank.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<Choice> best;
  for (size_t i = 0; i < rank.size() && static_cast<int>(i) < n; ++i) best.push_back(std::move(choices_[rank[i].second]));
  choices_ = std::move(best);
  meta_.n = static_cast<int>(choices_.size());
  meta_.logprobs = show_logprobs;
}

json ResponseBuilder::body(const Usage& u) const {
  const bool chat = meta_.endpoint == Endpoint::Chat;
  json r = envelope(meta_, chat ? "chat.completion" : "text_completion");
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    json ch = {{"index", i}};
    if (chat) ch["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
    else ch["text"] = c.text;
    if (!meta_.logprobs) {
      ch["logprobs"] = nullptr;
    } else if (chat) {
      ch["logprobs"] = {{"content", chat_logprob_items(c.tokens)}, {"refusal", nullptr}};
    } else {
      size_t offset = 0;
      ch["logprobs"] = completion_logprobs(c.tokens, offset);
    }
    ch["finish_reason"] = finish_json(c.finish);
    choices.push_back(std::move(ch));
  }
  r["choices"] = std::move(choices);
  r["usage"] = usage_json(u);
  return r;
}

}  // namespace coppice::server
