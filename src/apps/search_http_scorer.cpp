#include "apps/search_http_scorer.h"

#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace coppice::cli {
namespace {

class HttpScorer : public Scorer {
 public:
  explicit HttpScorer(const std::string& url) : url_(url) {
    const std::string scheme = "http://";
    if (url.rfind(scheme, 0) != 0) fail("search", "scorer URL '" + url + "': only http:// is supported");
    const size_t slash = url.find('/', scheme.size());
    host_ = url.substr(0, slash);
    path_ = slash == std::string::npos ? "/" : url.substr(slash);
    if (host_.size() == scheme.size()) fail("search", "scorer URL '" + url + "': no host");
    client_ = std::make_unique<httplib::Client>(host_);
    client_->set_read_timeout(60, 0);
  }
  double score(const ScoreInput& c) override {
    const nlohmann::json body = {{"prompt", std::string(c.prompt)}, {"text", std::string(c.text)},
                                 {"finished", c.finished}};
    const auto res = client_->Post(path_, body.dump(), "application/json");
    if (!res) fail("search", "scorer URL " + url_ + ": " + httplib::to_string(res.error()));
    if (res->status < 200 || res->status >= 300)
      fail("search", "scorer URL " + url_ + ": HTTP status " + std::to_string(res->status));
    const auto j = nlohmann::json::parse(res->body, nullptr, false);
    double v = NAN;
    if (j.is_number()) v = j.get<double>();
    else if (j.is_object() && j.contains("score") && j["score"].is_number()) v = j["score"].get<double>();
    if (!std::isfinite(v))
      fail("search", "scorer URL " + url_ + " answered '" + res->body.substr(0, 80) + "', expected a number or {\"score\": x}");
    return v;
  }
  std::string name() const override { return "http"; }

 private:
  std::string url_, host_, path_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace

std::unique_ptr<Scorer> make_http_scorer(const std::string& url) { return std::make_unique<HttpScorer>(url); }

}  // namespace coppice::cli
