#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "formats/hf_folder.h"
#include "ops/ops.h"
#include "util/error.h"

namespace coppice {

std::unique_ptr<Model> Model::load(const std::string& path, const ModelOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = hf::open_model_file(path);  // a GGUF, or a Hugging Face folder seen as one
  m->cfg_ = ModelConfig::from_gguf(m->file_);
  m->w_ = ModelWeights::from_gguf(m->file_, m->cfg_);
  const int nt = opts.n_threads > 0 ? opts.n_threads : ThreadPool::default_threads();
  m->pool_ = std::make_unique<ThreadPool>(nt);
  m->packed_ = pack_weights(m->w_, m->file_, *m->pool_);
  m->s_.att_scratch.assign(static_cast<size_t>(nt), std::vector<float>(2 * m->cfg_.n_head));
  m->s_.chunks.resize(static_cast<size_t>(nt));
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
  const int n = static_cast<int>(batch.size());
  logits.clear();
  if (n == 0) return;
  const int64_t E = cfg_.n_embd;
  for (const BatchToken& b : batch)
    if (b.token < 0 || b.token >= cfg_.n_vocab)
      fail("model", "token id " + std::to_string(b.token) + " is out of range (vocabulary " +
                        std::to_string(cfg_.n_vocab) + ")");

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
  int64_t need = 0;
  for (size_t k = 0; k < n_seqs; ++k)
    need += cache.blocks_needed(per_seq[k].first, static_cast<int>(per_seq[k].second.size()));
  if (need > cache.blocks_free())
    fail("kv", "the KV cache is full: this step needs " + std::to_string(need) +
                   " more blocks, " + std::to_string(cache.blocks_free()) + " are free");
  for (size_t k = 0; k < n_seqs; ++k) CP_ASSERT(cache.append(per_seq[k].first, per_seq[k].second));

  const int64_t qd = cfg_.n_head * cfg_.head_dim, kvd = cfg_.n_head_kv * cfg_.head_dim;
  auto grow = [](std::vector<float>& v, size_t sz) { if (v.size() < sz) v.resize(sz); };
  grow(s_.x, n * E); grow(s_.xn, n * E); grow(s_.tmp, n * E);
  grow(s_.q, n * qd); grow(s_.att, n * qd);
  grow(s_.k, n * kvd); grow(s_.v, n * kvd);
  grow(s_.gate, n * cfg_.n_ff); grow(s_.up, n * cfg_.n_ff);

  for (int i = 0; i < n; ++i) ops::get_row(w_.token_embd, batch[i].token, s_.x.data() + i * E);
  for (int il = 0; il < cfg_.n_layer; ++il) forward_layer(il, batch, cache, cells);

  // Final norm and output projection only for the rows that want logits.
  int n_out = 0;
  for (int i = 0; i < n; ++i) {
    if (!batch[i].want_logits) continue;
    ops::rmsnorm(s_.x.data() + i * E, w_.output_norm.data(), s_.xn.data() + n_out * E, E, cfg_.rms_eps);
    ++n_out;
  }
  logits.resize(static_cast<size_t>(n_out) * cfg_.n_vocab);
  if (n_out > 0) ops::matmul(w_.output, s_.xn.data(), n_out, logits.data(), *pool_, s_.act);
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
  ops::matmul(L.wq, xn, n, s_.q.data(), *pool_, s_.act);
  ops::matmul(L.wk, xn, n, s_.k.data(), *pool_, s_.act);
  ops::matmul(L.wv, xn, n, s_.v.data(), *pool_, s_.act);
  const bool neox = cfg_.rope_style == RopeStyle::NeoX;
  for (int i = 0; i < n; ++i) {
    const float pos = static_cast<float>(batch[i].pos);
    ops::rope(s_.q.data() + i * qd, static_cast<int>(cfg_.n_head), static_cast<int>(hd),
              static_cast<int>(cfg_.rope_dim), pos, cfg_.rope_freq_base, cfg_.rope_freq_scale, neox);
    ops::rope(s_.k.data() + i * kvd, static_cast<int>(cfg_.n_head_kv), static_cast<int>(hd),
              static_cast<int>(cfg_.rope_dim), pos, cfg_.rope_freq_base, cfg_.rope_freq_scale, neox);
    ops::store_kv_row(s_.k.data() + i * kvd, cache.k_row(il, batch[i].seq, cells[i]), kvd, cache.type());
    ops::store_kv_row(s_.v.data() + i * kvd, cache.v_row(il, batch[i].seq, cells[i]), kvd, cache.type());
  }

  // Attention: work units are (token, kv-head group) so decode (n = 1) still uses every thread.
  ops::AttentionShape shape;
  shape.n_head = static_cast<int>(cfg_.n_head);
  shape.n_kv_head = static_cast<int>(cfg_.n_head_kv);
  shape.head_dim = static_cast<int>(hd);
  shape.kv_type = cache.type();
  shape.scale = 1.0f / std::sqrt(static_cast<float>(hd));
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
        cache.chunks(il, batch[i].seq, cells[i] + 1, ch);
        last_tok = i;
      }
      ops::attention(s_.q.data() + i * qd, ch, shape, nullptr, s_.att.data() + i * qd,
                     s_.att_scratch[ith].data(), g * per_group, (g + 1) * per_group);
    }
  });

  ops::matmul(L.wo, s_.att.data(), n, s_.tmp.data(), *pool_, s_.act);
  ops::add(x, s_.tmp.data(), n * E);

  for (int i = 0; i < n; ++i) ops::rmsnorm(x + i * E, L.ffn_norm.data(), xn + i * E, E, cfg_.rms_eps);
  ops::matmul(L.w_gate, xn, n, s_.gate.data(), *pool_, s_.act);
  ops::matmul(L.w_up, xn, n, s_.up.data(), *pool_, s_.act);
  ops::swiglu(s_.gate.data(), s_.up.data(), n * cfg_.n_ff);
  ops::matmul(L.w_down, s_.gate.data(), n, s_.tmp.data(), *pool_, s_.act);
  ops::add(x, s_.tmp.data(), n * E);
}

}  // namespace coppice
