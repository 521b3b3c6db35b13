// Compact store of a base model's log-probabilities for KL-divergence comparisons
// (`perplexity --kl-base`): per scored position, log-softmax quantized to 16 bits against the
// row's min and max, plus the argmax. About 2 bytes per vocabulary entry.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace coppice {

struct KlStats {
  int64_t n = 0;
  double mean_kl = 0, median_kl = 0, p90_kl = 0, p99_kl = 0, max_kl = 0;
  double top1_agree = 0;  // fraction of positions with the same argmax
};

class KlWriter {
 public:
  KlWriter(const std::string& path, int64_t n_vocab, const std::vector<int32_t>& tokens, int n_ctx);
  ~KlWriter();
  void add(const float* logits);  // one row [n_vocab]
  void finish();                   // writes the header's row count and closes

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  int64_t n_vocab_;
  int64_t rows_ = 0;
  std::vector<uint16_t> q_;
};

class KlReader {
 public:
  explicit KlReader(const std::string& path);  // throws coppice::Error on a bad file
  int64_t n_vocab() const { return n_vocab_; }
  int64_t rows() const { return rows_; }
  int n_ctx() const { return n_ctx_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // KL(base || this) for row r given this model's logits; also whether the argmax agrees.
  double kl(int64_t r, const float* logits, bool* same_top1) const;

 private:
  int64_t n_vocab_ = 0, rows_ = 0;
  int n_ctx_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<uint8_t> data_;  // rows_ x (2 floats + int32 + n_vocab u16)
  size_t row_bytes_ = 0;
};

KlStats summarize_kl(std::vector<double> kls, int64_t agree);

}  // namespace coppice
