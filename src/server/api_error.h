// The one error type of the HTTP layer: an HTTP status plus OpenAI's error object
// {"error": {"message", "type", "param", "code"}}. Thrown inside the server, caught per request.
#pragma once
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace coppice::server {

struct ApiError : std::runtime_error {
  ApiError(int status_, std::string message, std::string param_ = "", std::string code_ = "",
           std::string type_ = "")
      : std::runtime_error(message), status(status_), param(std::move(param_)), code(std::move(code_)),
        type(type_.empty() ? default_type(status_) : std::move(type_)) {}

  int status;
  std::string param;  // the offending request field, "" when none
  std::string code;   // machine-readable reason, "" when none
  std::string type;   // invalid_request_error, authentication_error, server_error, ...

  nlohmann::json to_json() const {
    auto opt = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
    return {{"error", {{"message", what()}, {"type", type}, {"param", opt(param)}, {"code", opt(code)}}}};
  }

  static std::string default_type(int status) {
    if (status == 401) return "authentication_error";
    if (status == 404) return "invalid_request_error";
    if (status == 429 || status == 503) return "server_overloaded";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
  }
};

}  // namespace coppice::server
