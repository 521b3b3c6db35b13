// Small tokenizer.json field readers shared by the hf_* files.
#include <nlohmann/json.hpp>

#include "tokenizer/hf_components.h"

namespace coppice::tok::hf {

std::string str_or(const Json& j, const char* key, const std::string& def) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}
bool bool_or(const Json& j, const char* key, bool def) {
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}

}  // namespace coppice::tok::hf
