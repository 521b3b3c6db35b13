// The shared transformer block of every architecture. Variants are the flags of ModelConfig
// (set by model/arch_*.cpp); with none set this is the plain llama block.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/hf_folder.h"
#include "model/sparse_pack.h"
#include "ops/ops.h"
#include "util/error.h"

namespace coppice {
namespace {

void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const ModelOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = hf::open_model_file(path);  // a GGUF, or a Hugging Face folder seen as one
  m->cfg_ = ModelConfig::from_gguf(m->file_);
  m->w_ = ModelWeights::from_gguf(m->file_, m->cfg_);
  const int nt = opts.n_threads > 0 ? opts.n_threads : ThreadPool::default_threads();
  m->pool_ = std::make_unique<ThreadPool>(nt);
  // 2:4 pruned matrices first (their own layout), then the dense packed layouts for the rest.
  pack_sparse24(m->w_, m->file_, *m->pool_, m->packed_);
  pack_weights(m->w_, m->file_, *m->pool_, m->packed_);
  m->s_.att_scratch.assign(static_cast<size_t>(nt), std::vector<float>(2 * m->cfg_.n_head));
  m->s_.chunks.resize(static_cast<size_t>(nt));
  m->s_.tree_k.resize(static_cast<size_t>(nt));
  m->s_.tree_v.resize(static_cast<size_t>(nt));
  m->s_.tree_path.resize(static_cast<size_t>(nt));
  const ModelWeights& w = m->w_;
  if (!w.rope_freqs.empty()) {
    m->rope_factors_ = w.rope_freqs.data();
  } else if (!w.rope_long.empty()) {
    m->rope_factors_ = opts.n_ctx > m->cfg_.n_ctx_orig ? w.rope_long.data() : w.rope_short.data();
  }
  return m;
}

KvCache Model::make_cache(int64_t n_ctx, DType type, int block_size) const {
  KvCacheOptions o;
  o.block_size = block_size;
  o.n_blocks = (n_ctx + block_size - 1) / block_size;
  o.type = type;
  return KvCache(static_cast<int>(cfg_.n_layer), static_cast<int>(cfg_.n_head_kv),
                 static_cast<int>(cfg_.head_dim), o);
}

void Model::step(std::span<const BatchToken> batch, KvCache& cache, std::vector<float>& logits) {
  step(batch, cache, logits, StepOptions{});
}

void Model::step(std::span<const BatchToken> batch, KvCache& cache, std::vector<float>& logits,
                 const StepOptions& opts) {
  const int n = static_cast<int>(batch.size());
  logits.clear();
  if (n == 0) return;
  const int64_t E = cfg_.n_embd;
  for (const BatchToken& b : batch)
    if (b.token < 0 || b.token >= cfg_.n_vocab)
      fail("model", "token id " + std::to_string(b.token) + " is out of range (vocabulary " +
                        std::to_string(cfg_.n_vocab) + ")");
  check_tree(batch);
  const std::span<const uint8_t> skip = opts.skip_layers;
  if (!skip.empty() && static_cast<int64_t>(skip.size()) != cfg_.n_layer)
    fail("model", "layer-skip set has " + std::to_string(skip.size()) + " entries, the model has " +
                      std::to_string(cfg_.n_layer) + " layers");

  // Reserve cells for every token, sequence by sequence; all-or-nothing.
  std::vector<int>& cells = s_.cells;
  cells.resize(static_cast<size_t>(n));
  auto& per_seq = s_.per_seq;  // (sequence, positions of its new cells); reused across steps
  size_t n_seqs = 0;
  for (int i = 0; i < n; ++i) {
    size_t k = 0;
    while (k < n_seqs && per_seq[k].first != batch[i].seq) ++k;
    if (k == n_seqs) {
      if (per_seq.size() <= n_seqs) per_seq.emplace_back();
      per_seq[n_seqs].first = batch[i].seq;
      per_seq[n_seqs].second.clear();
      ++n_seqs;
    }
    cells[i] = cache.length(batch[i].seq) + static_cast<int>(per_seq[k].second.size());
    per_seq[k].second.push_back(batch[i].pos);
  }
  thread_local std::vector<std::pair<SeqId, int>> appends;  // reused: no allocation per step
  appends.resize(n_seqs);
  for (size_t k = 0; k < n_seqs; ++k) appends[k] = {per_seq[k].first, static_cast<int>(per_seq[k].second.size())};
  const int64_t need = cache.blocks_needed(appends);
  if (need > cache.blocks_free())
    fail("kv", "the KV cache is full: this step needs " + std::to_string(need) +
                   " more blocks, " + std::to_string(cache.blocks_free()) + " are free");
  // Per-layer cells (CAKE) keep sequence cell indices, but sliding windows and tree gathers
  // read one position table for every layer.
  for (int i = 0; i < n; ++i)
    if ((cfg_.n_swa > 0 || batch[i].tree) && cache.layered(batch[i].seq))
      fail("kv", "sequence " + std::to_string(batch[i].seq) +
                     " keeps different cells per layer: sliding-window attention and tree steps need one cell table");
  for (size_t k = 0; k < n_seqs; ++k) CP_ASSERT(cache.append(per_seq[k].first, per_seq[k].second));
  if (cfg_.n_swa > 0) window_begins(batch, cache, cells);

  const int64_t qd = cfg_.n_head * cfg_.head_dim, kvd = cfg_.n_head_kv * cfg_.head_dim;
  const size_t un = static_cast<size_t>(n);
  grow(s_.x, un * E); grow(s_.xn, un * E); grow(s_.tmp, un * E);
  grow(s_.q, un * qd); grow(s_.att, un * qd);
  grow(s_.k, un * kvd); grow(s_.v, un * kvd);
  const int64_t ff = std::max(cfg_.n_ff, cfg_.n_ff_shexp);
  grow(s_.gate, un * ff); grow(s_.up, un * ff);
  if (cfg_.fused_qkv) grow(s_.fused, un * (qd + 2 * kvd));
  if (cfg_.fused_gate_up) grow(s_.fused, un * 2 * cfg_.n_ff);

  for (int i = 0; i < n; ++i) ops::get_row(w_.token_embd, batch[i].token, s_.x.data() + i * E);
  if (cfg_.embd_scale != 1.0f)
    for (int64_t j = 0; j < n * E; ++j) s_.x[j] *= cfg_.embd_scale;
  for (int il = 0; il < cfg_.n_layer; ++il)
    if (skip.empty() || !skip[il]) forward_layer(il, batch, cache, cells);

  // Final norm and output projection only for the rows that want logits.
  int n_out = 0;
  for (int i = 0; i < n; ++i) {
    if (!batch[i].want_logits) continue;
    ops::rmsnorm(s_.x.data() + i * E, w_.output_norm.data(), s_.xn.data() + n_out * E, E, cfg_.rms_eps);
    ++n_out;
  }
  if (opts.hidden) opts.hidden->assign(s_.xn.begin(), s_.xn.begin() + n_out * E);
  logits.resize(static_cast<size_t>(n_out) * cfg_.n_vocab);
  if (n_out > 0) ops::matmul(w_.output, s_.xn.data(), n_out, logits.data(), *pool_, s_.act);
  if (cfg_.final_softcap > 0) ops::softcap(logits.data(), static_cast<int64_t>(logits.size()), cfg_.final_softcap);
}

// First visible cell of each token under the sliding window: scan back from its own cell while
// the keys stay within n_swa positions (stops at the first one outside).
void Model::window_begins(std::span<const BatchToken> batch, const KvCache& cache,
                          std::span<const int> cells) {
  s_.swa_begin.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const std::span<const int32_t> pos = cache.positions(batch[i].seq);
    int c = cells[i];
    while (c > 0 && static_cast<int64_t>(batch[i].pos) - pos[c - 1] < cfg_.n_swa) --c;
    s_.swa_begin[i] = c;
  }
}

void Model::attention_qkv(int il, std::span<const BatchToken> batch) {
  const LayerWeights& L = w_.layers[il];
  const int n = static_cast<int>(batch.size());
  const int64_t hd = cfg_.head_dim, qd = cfg_.n_head * hd, kvd = cfg_.n_head_kv * hd;
  float* xn = s_.xn.data();
  float *q = s_.q.data(), *k = s_.k.data(), *v = s_.v.data();
  if (cfg_.fused_qkv) {
    const int64_t row = qd + 2 * kvd;
    ops::matmul(L.wqkv, xn, n, s_.fused.data(), *pool_, s_.act);
    for (int i = 0; i < n; ++i) {
      const float* src = s_.fused.data() + i * row;
      std::memcpy(q + i * qd, src, sizeof(float) * qd);
      std::memcpy(k + i * kvd, src + qd, sizeof(float) * kvd);
      std::memcpy(v + i * kvd, src + qd + kvd, sizeof(float) * kvd);
    }
  } else {
    ops::matmul(L.wq, xn, n, q, *pool_, s_.act);
    ops::matmul(L.wk, xn, n, k, *pool_, s_.act);
    ops::matmul(L.wv, xn, n, v, *pool_, s_.act);
  }
  if (cfg_.qkv_bias) {
    for (int i = 0; i < n; ++i) {
      ops::add(q + i * qd, L.bq.data(), qd);
      ops::add(k + i * kvd, L.bk.data(), kvd);
      ops::add(v + i * kvd, L.bv.data(), kvd);
    }
  }
  if (cfg_.qk_norm) {
    for (int64_t h = 0; h < n * cfg_.n_head; ++h) ops::rmsnorm(q + h * hd, L.q_norm.data(), q + h * hd, hd, cfg_.rms_eps);
    for (int64_t h = 0; h < n * cfg_.n_head_kv; ++h) ops::rmsnorm(k + h * hd, L.k_norm.data(), k + h * hd, hd, cfg_.rms_eps);
  }
  ops::RopeParams rp;
  rp.rope_dim = static_cast<int>(cfg_.rope_dim);
  rp.neox = cfg_.rope_style == RopeStyle::NeoX;
  const bool local = cfg_.is_swa(il) && cfg_.rope_freq_base_swa > 0;
  rp.freq_base = local ? cfg_.rope_freq_base_swa : cfg_.rope_freq_base;
  rp.freq_scale = local ? 1.0f : cfg_.rope_freq_scale;
  rp.freq_factors = local ? nullptr : rope_factors_;
  rp.mscale = cfg_.rope_attn_factor;
  for (int i = 0; i < n; ++i) {
    const float pos = static_cast<float>(batch[i].pos);
    ops::rope(q + i * qd, static_cast<int>(cfg_.n_head), static_cast<int>(hd), pos, rp);
    ops::rope(k + i * kvd, static_cast<int>(cfg_.n_head_kv), static_cast<int>(hd), pos, rp);
  }
}

void Model::forward_layer(int il, std::span<const BatchToken> batch, KvCache& cache,
                          std::span<const int> cells) {
  const LayerWeights& L = w_.layers[il];
  const int n = static_cast<int>(batch.size());
  const int64_t E = cfg_.n_embd, hd = cfg_.head_dim;
  const int64_t qd = cfg_.n_head * hd, kvd = cfg_.n_head_kv * hd;
  float* x = s_.x.data();
  float* xn = s_.xn.data();

  for (int i = 0; i < n; ++i) ops::rmsnorm(x + i * E, L.attn_norm.data(), xn + i * E, E, cfg_.rms_eps);
  if (observer_) observer_->observe(il, MatInput::AttnIn, xn, n, E);
  attention_qkv(il, batch);
  for (int i = 0; i < n; ++i) {
    ops::store_kv_row(s_.k.data() + i * kvd, cache.k_row(il, batch[i].seq, cells[i]), kvd, cache.k_type(il));
    ops::store_kv_row(s_.v.data() + i * kvd, cache.v_row(il, batch[i].seq, cells[i]), kvd, cache.v_type(il));
  }

  // Attention: work units are (token, kv-head group) so decode (n = 1) still uses every thread.
  ops::AttentionShape shape;
  shape.n_head = static_cast<int>(cfg_.n_head);
  shape.n_kv_head = static_cast<int>(cfg_.n_head_kv);
  shape.head_dim = static_cast<int>(hd);
  shape.kv_type = cache.k_type(il);
  shape.v_type = cache.v_type(il);
  shape.scale = cfg_.attn_scale;
  shape.softcap = cfg_.attn_softcap;
  const bool windowed = cfg_.is_swa(il);
  const int groups = static_cast<int>(cfg_.n_head_kv);
  const int per_group = static_cast<int>(cfg_.n_head / cfg_.n_head_kv);
  pool_->run([&](int ith, int nth) {
    const int64_t units = static_cast<int64_t>(n) * groups;
    const int64_t b = units * ith / nth, e = units * (ith + 1) / nth;
    std::vector<ops::KvChunk>& ch = s_.chunks[ith];
    int last_tok = -1;
    for (int64_t u = b; u < e; ++u) {
      const int i = static_cast<int>(u / groups), g = static_cast<int>(u % groups);
      if (i != last_tok) {
        const int begin = windowed ? s_.swa_begin[i] : 0;
        if (batch[i].tree) tree_chunks(il, ith, i, begin, batch, cache, cells, ch);
        else cache.chunks(il, batch[i].seq, begin, cells[i] + 1, ch);
        last_tok = i;
      }
      ops::attention(s_.q.data() + i * qd, ch, shape, nullptr, s_.att.data() + i * qd,
                     s_.att_scratch[ith].data(), g * per_group, (g + 1) * per_group);
    }
  });
  if (attn_observer_ != nullptr) attn_observer_->on_attention(il, batch, cells, s_.q.data(), shape, cache);

  if (observer_) observer_->observe(il, MatInput::AttnOut, s_.att.data(), n, qd);
  ops::matmul(L.wo, s_.att.data(), n, s_.tmp.data(), *pool_, s_.act);
  if (!L.bo.empty())
    for (int i = 0; i < n; ++i) ops::add(s_.tmp.data() + i * E, L.bo.data(), E);
  if (cfg_.post_norms)
    for (int i = 0; i < n; ++i) ops::rmsnorm(s_.tmp.data() + i * E, L.attn_post_norm.data(), s_.tmp.data() + i * E, E, cfg_.rms_eps);
  ops::add(x, s_.tmp.data(), n * E);

  for (int i = 0; i < n; ++i) ops::rmsnorm(x + i * E, L.ffn_norm.data(), xn + i * E, E, cfg_.rms_eps);
  if (observer_) observer_->observe(il, MatInput::FfnIn, xn, n, E);
  if (cfg_.n_expert > 0) moe_ffn(L, n, il);
  else dense_ffn(L, n, il);
  if (cfg_.post_norms)
    for (int i = 0; i < n; ++i) ops::rmsnorm(s_.tmp.data() + i * E, L.ffn_post_norm.data(), s_.tmp.data() + i * E, E, cfg_.rms_eps);
  ops::add(x, s_.tmp.data(), n * E);
}

void Model::dense_ffn(const LayerWeights& L, int n, int il) {
  const int64_t ff = cfg_.ff(il);
  const float* xn = s_.xn.data();
  if (cfg_.fused_gate_up) {
    ops::matmul(L.w_up, xn, n, s_.fused.data(), *pool_, s_.act);
    for (int i = 0; i < n; ++i) {
      const float* src = s_.fused.data() + i * 2 * ff;
      std::memcpy(s_.gate.data() + i * ff, src, sizeof(float) * ff);
      std::memcpy(s_.up.data() + i * ff, src + ff, sizeof(float) * ff);
    }
  } else {
    ops::matmul(L.w_gate, xn, n, s_.gate.data(), *pool_, s_.act);
    ops::matmul(L.w_up, xn, n, s_.up.data(), *pool_, s_.act);
  }
  if (cfg_.ffn_act == FfnAct::GeluTanh) ops::geglu(s_.gate.data(), s_.up.data(), n * ff);
  else ops::swiglu(s_.gate.data(), s_.up.data(), n * ff);
  if (observer_) observer_->observe(il, MatInput::FfnDown, s_.gate.data(), n, ff);
  ops::matmul(L.w_down, s_.gate.data(), n, s_.tmp.data(), *pool_, s_.act);
  if (!L.b_down.empty())
    for (int i = 0; i < n; ++i) ops::add(s_.tmp.data() + i * cfg_.n_embd, L.b_down.data(), cfg_.n_embd);
}

}  // namespace coppice
