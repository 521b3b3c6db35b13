// A Hugging Face tokenizer.json pipeline behind coppice::Tokenizer: added tokens split out
// (leftmost-longest, raw then normalized text), normalizer, pre-tokenizer, model (BPE or
// Unigram), post-processor (prefix/suffix special ids); per-token decoders for pieces.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace coppice::tok {

class HfPipeline {
 public:
  // tokenizer_config: the tokenizer_config.json text ("" when absent): bos/eos/unk/pad
  // tokens and add_bos_token/add_eos_token, which override the post-processor.
  // Fills `v` (texts, types, special ids, add flags). Throws coppice::Error.
  HfPipeline(std::string_view tokenizer_json, std::string_view tokenizer_config, Vocab& v);
  ~HfPipeline();
  void encode(std::string_view text, bool add_special, bool parse_special, std::vector<int32_t>& out) const;
  // Decoded bytes of one token (decoder chain applied to it alone, added tokens included, as
  // the reference decodes them).
  std::string piece(int32_t id) const;
  bool strips_leading_space() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coppice::tok
