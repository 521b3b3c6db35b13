// Reads one head's cached K/V rows in any KV type (internal to ops/attention*.cpp).
// F32/F16/BF16 heads with head_dim % 8 == 0 use the float row-block kernels (a block of rows
// per call); other widths the dot/axpy kernels, one row at a time. Quantized K and V use
// the fused kernels (kernels/attn.h) over a block of rows: the query is quantized once per
// head (KvQuery) and scored with integer dots, V blocks are widened in registers; nothing is
// dequantized to memory.
// Heads narrower than a block (head_dim 8 or 16: a 32-block holds several heads of a row):
// the block holding the head is dequantized and the head's slice used (float query).
#pragma once
#include <cstdint>

#include "kernels/dispatch.h"
#include "ops/attention.h"
#include "util/error.h"

namespace coppice::ops {

class KvReader {
 public:
  static constexpr int kMaxHeadDim = 1024;

  explicit KvReader(const AttentionShape& s)
      : ks_(kernels::kernels()), hd_(s.head_dim), kt_(s.kv_type), vt_(s.v_type.value_or(s.kv_type)) {
    CP_ASSERT(hd_ > 0 && hd_ <= kMaxHeadDim);
    const TypeTraits* kt = type_traits(kt_);
    const TypeTraits* vt = type_traits(vt_);
    CP_ASSERT(kt != nullptr && vt != nullptr);
    k_quant_ = kt->quantized;
    v_quant_ = vt->quantized;
    k_sub_ = k_quant_ && hd_ % kt->block_size != 0;
    v_sub_ = v_quant_ && hd_ % vt->block_size != 0;
    k_bs_ = static_cast<int>(kt->block_size);
    v_bs_ = static_cast<int>(vt->block_size);
    k_tsize_ = kt->type_size;
    v_tsize_ = vt->type_size;
    CP_ASSERT((!k_sub_ || k_bs_ % hd_ == 0) && (!v_sub_ || v_bs_ % hd_ == 0));
    const int64_t row = static_cast<int64_t>(s.n_kv_head) * hd_;
    k_head_ = row_size(*kt, hd_);
    k_row_ = row_size(*kt, row);
    v_head_ = row_size(*vt, hd_);
    v_row_ = row_size(*vt, row);
    k_rows_ = !k_quant_ && hd_ % 8 == 0;
    v_rows_ = !v_quant_ && hd_ % 8 == 0;
    if (k_quant_) {
      k_deq_ = ks_.to_float[static_cast<uint32_t>(kt_)];
      if (!k_sub_) k_fused_ = ks_.attn.for_quant(kt_);
      CP_ASSERT(k_deq_ != nullptr && (k_sub_ || k_fused_ != nullptr));
    }
    if (v_quant_) {
      v_deq_ = ks_.to_float[static_cast<uint32_t>(vt_)];
      if (!v_sub_) v_fused_ = ks_.attn.for_quant(vt_);
      CP_ASSERT(v_deq_ != nullptr && (v_sub_ || v_fused_ != nullptr));
    }
  }

  // Byte offset of kv head h inside a cell's row (the block holding it for narrow heads).
  size_t k_head_offset(int h) const {
    return k_sub_ ? static_cast<size_t>(h * hd_ / k_bs_) * k_tsize_ : h * k_head_;
  }
  size_t v_head_offset(int h) const {
    return v_sub_ ? static_cast<size_t>(h * hd_ / v_bs_) * v_tsize_ : h * v_head_;
  }
  size_t k_row_bytes() const { return k_row_; }    // stride between cells
  size_t v_row_bytes() const { return v_row_; }

  // One query head's reading state: set by set_query, used by score_rows / accumulate_rows.
  struct Head {
    const float* q = nullptr;  // hd floats, kept by pointer
    size_t k_off = 0, v_off = 0;  // k_head_offset / v_head_offset of its kv head
    int k_slice = 0, v_slice = 0;  // narrow heads: the head's slice of the block
    kernels::KvQuery kq;           // fused K: the quantized query
  };
  void set_query(Head& hs, const float* qh, int kvh) const {
    hs.q = qh;
    hs.k_off = k_head_offset(kvh);
    hs.v_off = v_head_offset(kvh);
    hs.k_slice = k_sub_ ? kvh * hd_ % k_bs_ : 0;
    hs.v_slice = v_sub_ ? kvh * hd_ % v_bs_ : 0;
    if (k_fused_ != nullptr) kernels::kv_query_prepare(qh, hd_, hs.kq);
  }
  // out[j] = q . k_j (unscaled) for the n cells from k (the head's bytes of the first cell;
  // cells k_row_bytes() apart).
  void score_rows(const Head& hs, const uint8_t* k, int n, float* out) {
    if (k_fused_ != nullptr) return k_fused_->score_rows(hs.kq, k, k_row_, n, out);
    if (k_rows_) return ks_.attn.rows.score_rows(hs.q, k, k_row_, n, hd_, kt_, out);
    for (int j = 0; j < n; ++j) out[j] = score(hs, k + j * k_row_);
  }
  // y += sum over j < n with p[j] != 0 of p[j] v_j, for the n cells from v.
  void accumulate_rows(const Head& hs, float* y, const float* p, const uint8_t* v, int n) {
    if (v_fused_ != nullptr) return v_fused_->accum_rows(y, p, v, v_row_, n, hd_ / 32);
    if (v_rows_) return ks_.attn.rows.accum_rows(y, p, v, v_row_, n, hd_, vt_);
    for (int j = 0; j < n; ++j) {
      if (p[j] != 0.0f) accumulate(hs, y, p[j], v + j * v_row_);
    }
  }

 private:
  float score(const Head& hs, const void* k) {  // float or narrow-head K
    if (!k_quant_) return ks_.attn.dot(hs.q, k, hd_, kt_);
    k_deq_(k, ktmp_, k_bs_);
    return ks_.attn.dot(hs.q, ktmp_ + hs.k_slice, hd_, DType::F32);
  }
  void accumulate(const Head& hs, float* y, float p, const void* v) {  // float or narrow-head V
    if (!v_quant_) return ks_.attn.axpy(y, p, v, hd_, vt_);
    v_deq_(v, vtmp_, v_bs_);
    ks_.attn.axpy(y, p, vtmp_ + hs.v_slice, hd_, DType::F32);
  }

  const kernels::KernelSet& ks_;
  int hd_;
  DType kt_, vt_;
  bool k_quant_ = false, v_quant_ = false;
  bool k_sub_ = false, v_sub_ = false;  // heads narrower than a block
  bool k_rows_ = false, v_rows_ = false;  // float rows through the row-block kernels
  int k_bs_ = 1, v_bs_ = 1;
  size_t k_tsize_ = 0, v_tsize_ = 0;
  ToFloatFn k_deq_ = nullptr;
  size_t k_head_ = 0, k_row_ = 0, v_head_ = 0, v_row_ = 0;
  ToFloatFn v_deq_ = nullptr;
  const kernels::KvQuantKernels* k_fused_ = nullptr;  // quantized whole-block heads
  const kernels::KvQuantKernels* v_fused_ = nullptr;
  alignas(64) float vtmp_[32];    // one dequantized V block (narrow heads)
  alignas(64) float ktmp_[32];    // one dequantized K block (narrow heads)
};

}  // namespace coppice::ops
