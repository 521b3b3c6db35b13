// Stop strings over streamed text: text is released only once it cannot be the start of a stop
// string, so a stop string split across tokens is never leaked, and neither is any part of it.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace coppice::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends text; returns what is now safe to emit. After a match, returns the text before it
  // and stopped() turns true; later pushes return "".
  std::string push(std::string_view text);
  // End of stream (no match): everything still held back.
  std::string flush();
  bool stopped() const { return stopped_; }
  size_t held() const { return held_.size(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace coppice::server
