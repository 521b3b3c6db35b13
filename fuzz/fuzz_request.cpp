// libFuzzer target for the HTTP request parser: any body must become a request within the
// limits or a 4xx ApiError, never a crash. Accepted stop strings are then checked against the
// stop matcher: fed byte by byte, it must emit exactly the text before the first completed
// stop string (or all of it), never a byte of the stop string itself.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/request.h"
#include "server/stop.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_stops(const std::vector<std::string>& stops, const std::string& text) {
  coppice::server::StopMatcher m(stops);
  std::string out;
  for (char c : text) {
    out += m.push(std::string_view(&c, 1));
    if (m.stopped()) break;
  }
  // Reference: the first end position where some stop completes; the earliest start there.
  size_t cut = std::string::npos;
  for (size_t e = 1; e <= text.size() && cut == std::string::npos; ++e)
    for (const std::string& s : stops)
      if (s.size() <= e && text.compare(e - s.size(), s.size(), s) == 0) cut = std::min(cut, e - s.size());
  if (cut == std::string::npos) {
    check(!m.stopped());
    check(out + m.flush() == text);
  } else {
    check(m.stopped());
    check(out == text.substr(0, cut));
  }
}

void run(std::string_view body, coppice::server::Endpoint ep) {
  coppice::server::ParseLimits lim;
  lim.n_vocab = 32000;
  lim.max_tokens = 4096;
  auto r = coppice::server::parse_request(body, ep, lim);
  if (auto* e = std::get_if<coppice::server::ApiError>(&r)) {
    check(e->status >= 400 && e->status < 500);
    (void)e->to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  const auto& q = std::get<coppice::server::ApiRequest>(r);
  check(q.gen.n >= 1 && q.gen.n <= lim.max_n);
  check(q.gen.max_tokens >= 0 && q.gen.max_tokens <= lim.max_tokens);
  check(q.stop.size() <= 4);
  check(q.gen.top_logprobs >= -1 && q.gen.top_logprobs <= lim.max_top_logprobs);
  for (int32_t id : q.prompt_ids) check(id >= 0 && id < lim.n_vocab);
  for (const auto& [id, b] : q.gen.sampling.logit_bias) check(id >= 0 && id < lim.n_vocab && b >= -100 && b <= 100);
  check(coppice::validate(q.gen.sampling).empty());
  if (ep == coppice::server::Endpoint::Chat) check(!q.messages.empty());
  if (!q.stop.empty()) {
    std::string text = q.prompt_text;
    for (const auto& m : q.messages) text += m.content;
    check_stops(q.stop, text.substr(0, 4096));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  run(body, coppice::server::Endpoint::Chat);
  run(body, coppice::server::Endpoint::Completions);
  return 0;
}
