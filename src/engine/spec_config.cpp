// `--spec` values (no dependency on the model: the server's request parser and its fuzzer
// link this file alone).
#include <charconv>

#include "engine/spec.h"
#include "util/error.h"

namespace coppice {

namespace {

int parse_int(const std::string& spec, const std::string& s, int lo, int hi) {
  int v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi)
    fail("spec", "'" + spec + "': '" + s + "' is not an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return v;
}

}  // namespace

SpecConfig parse_spec(const std::string& text) {
  SpecConfig c;
  const size_t colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  const bool has_arg = colon != std::string::npos;
  const std::string arg = has_arg ? text.substr(colon + 1) : "";
  if (kind == "none" || kind.empty()) {
    if (has_arg) fail("spec", "'" + text + "': none takes no argument");
    return c;
  }
  if (kind == "ngram") {
    c.kind = SpecConfig::Kind::Ngram;
    if (has_arg) c.ngram_n = parse_int(text, arg, 1, 16);
  } else if (kind == "recycle") {
    c.kind = SpecConfig::Kind::Recycle;
    if (has_arg) c.recycle_k = parse_int(text, arg, 1, 64);
  } else if (kind == "layerskip") {
    c.kind = SpecConfig::Kind::LayerSkip;
    if (has_arg) c.exit_layer = parse_int(text, arg, 1, 1 << 16);
  } else if (kind == "draft") {
    c.kind = SpecConfig::Kind::DraftModel;
    if (arg.empty()) fail("spec", "'" + text + "': draft needs a model path (draft:PATH)");
    c.draft_path = arg;
  } else {
    fail("spec", "unknown drafter '" + kind + "' (expected ngram[:N], recycle[:K], layerskip[:EXIT], draft:PATH or none)");
  }
  return c;
}

std::string spec_name(const SpecConfig& c) {
  switch (c.kind) {
    case SpecConfig::Kind::None: return "none";
    case SpecConfig::Kind::Ngram: return "ngram:" + std::to_string(c.ngram_n);
    case SpecConfig::Kind::Recycle: return "recycle:" + std::to_string(c.recycle_k);
    case SpecConfig::Kind::LayerSkip:
      return c.exit_layer > 0 ? "layerskip:" + std::to_string(c.exit_layer) : "layerskip";
    case SpecConfig::Kind::DraftModel: return "draft:" + c.draft_path;
  }
  return "none";
}

}  // namespace coppice
