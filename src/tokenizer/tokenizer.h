// Tokenizers built from GGUF metadata (tokenizer.ggml.*), matching the reference (Hugging Face
// tokenizers / llama.cpp) token for token:
//   "llama" SentencePiece BPE with scores and byte fallback   (spm.cpp)
//   "gpt2"  byte-level BPE with a regex pre-tokenizer chosen by tokenizer.ggml.pre (bpe.cpp)
//   "bert"  WordPiece with BERT basic pre-tokenization        (wordpiece.cpp)
// Control / user-defined token texts are split out before the model runs (special.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf.h"
#include "tokenizer/vocab.h"

namespace coppice {

namespace tok {
class Model;
class HfPipeline;
}

class Tokenizer {
 public:
  // Throws coppice::Error naming the key when metadata is missing or inconsistent.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);
  // Builds from already-extracted metadata (tests, other loaders).
  static std::unique_ptr<Tokenizer> from_metadata(tok::Metadata meta);
  // Builds from a Hugging Face tokenizer.json (and tokenizer_config.json text, "" if absent);
  // `source` names it in errors. GGUFs made by `coppice convert` keep both texts under
  // tokenizer.huggingface.json / tokenizer.huggingface.config, which from_gguf prefers.
  static std::unique_ptr<Tokenizer> from_hf_json(std::string_view tokenizer_json, std::string_view tokenizer_config,
                                                 const std::string& source);
  ~Tokenizer();

  // add_special: BOS/EOS per the model's add_bos/add_eos ([CLS]/[SEP] for bert).
  // parse_special: also match control-token texts (e.g. "<|im_start|>") in `text`;
  // user-defined tokens are always matched whole.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // Raw bytes of one token (may be part of a UTF-8 character). Control/unknown tokens give
  // "" unless render_special.
  std::string token_to_piece(int32_t id, bool render_special) const;
  // Concatenated pieces; for models with a space prefix ("llama", "bert") the leading
  // space of the first non-empty piece is dropped, so decode(encode(s)) == s.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.size()); }
  int32_t bos() const { return vocab_.bos; }
  int32_t eos() const { return vocab_.eos; }
  int32_t eot() const { return vocab_.eot; }
  int32_t eom() const { return vocab_.eom; }
  int32_t unk() const { return vocab_.unk; }
  int32_t sep() const { return vocab_.sep; }
  int32_t pad() const { return vocab_.pad; }
  bool add_bos() const { return vocab_.add_bos; }
  bool add_eos() const { return vocab_.add_eos; }
  bool is_eog(int32_t id) const;
  bool is_control(int32_t id) const;
  tok::TokenType token_type(int32_t id) const;
  const std::string& model() const { return vocab_.model; }
  const std::string& pre() const { return vocab_.pre; }
  const std::string& token_text(int32_t id) const;
  // Exact-text lookup of a token; -1 when absent.
  int32_t find_token(std::string_view text) const { return vocab_.find(text); }
  // True where decode drops the first leading space (SentencePiece's prefix rule).
  bool strips_leading_space() const;

 private:
  explicit Tokenizer(tok::Vocab vocab);
  tok::Vocab vocab_;
  std::unique_ptr<tok::Model> impl_;
  std::unique_ptr<tok::HfPipeline> hf_;  // set for tokenizer.json tokenizers (impl_ unused)
  std::vector<int32_t> special_by_len_;  // control/user-defined/unknown ids, longest text first
};

// Incremental detokenizer: never returns part of a UTF-8 character. Bytes of an incomplete
// trailing character are held back until the next token completes them (or flush()).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false)
      : tok_(tok), render_special_(render_special) {}
  // Text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete character at end of stream), as-is.
  std::string flush();
  void reset();

 private:
  const Tokenizer& tok_;
  bool render_special_;
  bool started_ = false;  // a non-empty piece has been seen (SPM leading-space rule)
  std::string pending_;
};

}  // namespace coppice
