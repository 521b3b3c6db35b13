// API-key check: "Authorization: Bearer KEY" compared in constant time (the time depends on
// the lengths only, never on where the first differing byte is).
#pragma once
#include <string>
#include <string_view>

namespace coppice::server {

bool constant_time_equal(std::string_view a, std::string_view b);
// The KEY of "Bearer KEY" (scheme case-insensitive); "" when the header has another form.
std::string bearer_token(std::string_view authorization);
// True when no key is configured or the header carries it.
bool authorized(std::string_view api_key, std::string_view authorization);

}  // namespace coppice::server
