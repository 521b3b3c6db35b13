#include "engine/kl_store.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "util/error.h"

namespace coppice {
namespace {
constexpr char kMagic[8] = {'C', 'P', 'K', 'L', 'B', 'A', 'S', '1'};

// log-softmax of a row into out; returns argmax.
int32_t log_softmax(const float* x, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  float mx = x[0];
  int32_t arg = 0;
  for (int64_t i = 1; i < n; ++i) if (x[i] > mx) { mx = x[i]; arg = static_cast<int32_t>(i); }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] - lse;
  return arg;
}
}  // namespace

KlWriter::KlWriter(const std::string& path, int64_t n_vocab, const std::vector<int32_t>& tokens,
                   int n_ctx)
    : path_(path), n_vocab_(n_vocab), q_(static_cast<size_t>(n_vocab)) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) fail("kl", path + ": cannot open for writing");
  const int64_t nt = static_cast<int64_t>(tokens.size());
  std::fwrite(kMagic, 1, 8, f_);
  std::fwrite(&n_vocab_, 8, 1, f_);
  std::fwrite(&rows_, 8, 1, f_);  // patched in finish()
  const int32_t ctx = n_ctx;
  std::fwrite(&ctx, 4, 1, f_);
  std::fwrite(&nt, 8, 1, f_);
  std::fwrite(tokens.data(), 4, tokens.size(), f_);
}

KlWriter::~KlWriter() { if (f_) std::fclose(f_); }

void KlWriter::add(const float* logits) {
  std::vector<double> lp;
  const int32_t arg = log_softmax(logits, n_vocab_, lp);
  const double lo = *std::min_element(lp.begin(), lp.end());
  const double hi = 0.0 > lp[arg] ? 0.0 : lp[arg];
  const float flo = static_cast<float>(lo), fscale = static_cast<float>((hi - lo) / 65535.0);
  for (int64_t i = 0; i < n_vocab_; ++i)
    q_[i] = static_cast<uint16_t>(std::lround(fscale > 0 ? (lp[i] - flo) / fscale : 0.0));
  std::fwrite(&flo, 4, 1, f_);
  std::fwrite(&fscale, 4, 1, f_);
  std::fwrite(&arg, 4, 1, f_);
  if (std::fwrite(q_.data(), 2, q_.size(), f_) != q_.size()) fail("kl", path_ + ": write failed");
  ++rows_;
}

void KlWriter::finish() {
  if (!f_) return;
  std::fseek(f_, 16, SEEK_SET);
  std::fwrite(&rows_, 8, 1, f_);
  const bool ok = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok) fail("kl", path_ + ": close failed");
}

KlReader::KlReader(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("kl", path + ": cannot open");
  std::vector<uint8_t> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto bad = [&](const std::string& what) { fail("kl", path + ": not a coppice KL base file (" + what + ")"); };
  if (all.size() < 36 || std::memcmp(all.data(), kMagic, 8) != 0) bad("bad magic");
  int64_t nt = 0;
  int32_t ctx = 0;
  std::memcpy(&n_vocab_, all.data() + 8, 8);
  std::memcpy(&rows_, all.data() + 16, 8);
  std::memcpy(&ctx, all.data() + 24, 4);
  std::memcpy(&nt, all.data() + 28, 8);
  n_ctx_ = ctx;
  if (n_vocab_ <= 0 || n_vocab_ > (1 << 24) || rows_ < 0 || nt < 0 || ctx <= 0) bad("bad header");
  const size_t tok_end = 36 + static_cast<size_t>(nt) * 4;
  if (tok_end > all.size()) bad("truncated token list");
  tokens_.resize(static_cast<size_t>(nt));
  std::memcpy(tokens_.data(), all.data() + 36, tokens_.size() * 4);
  row_bytes_ = 12 + static_cast<size_t>(n_vocab_) * 2;
  if ((all.size() - tok_end) != row_bytes_ * static_cast<size_t>(rows_)) bad("size does not match its header");
  data_.assign(all.begin() + static_cast<std::ptrdiff_t>(tok_end), all.end());
}

double KlReader::kl(int64_t r, const float* logits, bool* same_top1) const {
  CP_ASSERT(r >= 0 && r < rows_);
  const uint8_t* row = data_.data() + static_cast<size_t>(r) * row_bytes_;
  float lo, scale;
  int32_t base_arg;
  std::memcpy(&lo, row, 4);
  std::memcpy(&scale, row + 4, 4);
  std::memcpy(&base_arg, row + 8, 4);
  const uint16_t* q = reinterpret_cast<const uint16_t*>(row + 12);
  std::vector<double> lp;
  const int32_t arg = log_softmax(logits, n_vocab_, lp);
  double kl = 0;
  for (int64_t i = 0; i < n_vocab_; ++i) {
    uint16_t qi;
    std::memcpy(&qi, q + i, 2);
    const double lb = lo + scale * qi;
    kl += std::exp(lb) * (lb - lp[i]);
  }
  if (same_top1) *same_top1 = arg == base_arg;
  return kl < 0 ? 0 : kl;
}

KlStats summarize_kl(std::vector<double> kls, int64_t agree) {
  KlStats s;
  s.n = static_cast<int64_t>(kls.size());
  if (kls.empty()) return s;
  std::sort(kls.begin(), kls.end());
  double sum = 0;
  for (double k : kls) sum += k;
  auto pct = [&](double p) { return kls[static_cast<size_t>(p * (kls.size() - 1) + 0.5)]; };
  s.mean_kl = sum / kls.size();
  s.median_kl = pct(0.5);
  s.p90_kl = pct(0.9);
  s.p99_kl = pct(0.99);
  s.max_kl = kls.back();
  s.top1_agree = static_cast<double>(agree) / kls.size();
  return s;
}

}  // namespace coppice
