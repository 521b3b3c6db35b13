// Structured pruning: removes whole FFN channels and KV head groups, writing a smaller dense
// model (see engine/prune.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/prune.h"
#include "formats/gguf_stream.h"
#include "util/error.h"

namespace coppice {
namespace {

void set_kv(std::vector<gguf::KV>& kvs, const std::string& key, gguf::Value v) {
  for (gguf::KV& kv : kvs)
    if (kv.key == key) { kv.value = std::move(v); return; }
  kvs.push_back({key, std::move(v)});
}

// Indices (ascending) of the n_keep highest scores; ties keep the higher index (as the masks).
std::vector<int64_t> keep_top(const std::vector<double>& score, int64_t n_keep) {
  std::vector<int64_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return score[a] < score[b]; });
  std::vector<int64_t> keep(idx.end() - n_keep, idx.end());
  std::sort(keep.begin(), keep.end());
  return keep;
}

std::vector<float> to_f32(const gguf::TensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  type_traits(t.type)->to_float(t.data, v.data(), t.n_elements());
  return v;
}

// Column norms^2 of a [rows][cols] matrix: sum over rows of w[r][c]^2.
std::vector<double> col_sq(const std::vector<float>& w, int64_t rows, int64_t cols) {
  std::vector<double> s(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) s[c] += static_cast<double>(w[r * cols + c]) * w[r * cols + c];
  return s;
}

struct LayerPlan {
  std::vector<int64_t> ffn;     // kept FFN channels
  std::vector<int64_t> q_rows;  // kept rows of attn_q (kept heads x head_dim)
  std::vector<int64_t> kv_rows; // kept rows of attn_k / attn_v
  std::vector<float> b_down, b_out;  // [n_embd] compensation biases (empty: none)
};

// FLAP's bias compensation: b[r] = (existing bias) + sum over removed columns j of
// w[r][j] * mean[j]: the removed inputs replaced by their calibration means.
std::vector<float> compensation(const std::vector<float>& w, int64_t rows, int64_t cols,
                                const std::vector<int64_t>& kept, const std::vector<double>& mean,
                                const gguf::TensorInfo* bias) {
  std::vector<bool> is_kept(static_cast<size_t>(cols), false);
  for (int64_t c : kept) is_kept[static_cast<size_t>(c)] = true;
  std::vector<float> b(static_cast<size_t>(rows), 0.0f);
  if (bias != nullptr) b = to_f32(*bias);
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0;
    for (int64_t c = 0; c < cols; ++c)
      if (!is_kept[static_cast<size_t>(c)]) acc += static_cast<double>(w[r * cols + c]) * mean[c];
    b[r] += static_cast<float>(acc);
  }
  return b;
}

// FLAP's adaptive structure across layers: each layer's channel scores are standardized
// ((s - mean) / std within the layer) and the round(sparsity x all channels) lowest of the whole
// model are removed, so layers whose channels matter more evenly lose fewer. A layer keeps at
// least 1/16 of its channels, and (when its width is a multiple of 32) a multiple of 32, so the
// pruned matrices still quantize to 32-blocks.
std::vector<int64_t> global_ffn_counts(const std::vector<std::vector<double>>& score, double sparsity) {
  struct Ch { double z; size_t layer; };
  std::vector<Ch> all;
  for (size_t l = 0; l < score.size(); ++l) {
    const std::vector<double>& s = score[l];
    double mean = 0, var = 0;
    for (double x : s) mean += x;
    mean /= static_cast<double>(s.size());
    for (double x : s) var += (x - mean) * (x - mean);
    const double sd = std::sqrt(var / static_cast<double>(s.size()));
    for (double x : s) all.push_back({sd > 0 ? (x - mean) / sd : 0.0, l});
  }
  std::stable_sort(all.begin(), all.end(), [](const Ch& a, const Ch& b) { return a.z < b.z; });
  const auto n_remove = static_cast<size_t>(std::llround(sparsity * static_cast<double>(all.size())));
  std::vector<int64_t> removed(score.size(), 0);
  for (size_t i = 0; i < n_remove && i < all.size(); ++i) ++removed[all[i].layer];
  std::vector<int64_t> keep(score.size());
  for (size_t l = 0; l < score.size(); ++l) {
    const auto n = static_cast<int64_t>(score[l].size());
    int64_t k = n - removed[l];
    if (n % 32 == 0) k = std::clamp<int64_t>((k + 16) / 32 * 32, 32, n);
    keep[l] = std::clamp<int64_t>(k, std::max<int64_t>(1, n / 16), n);
  }
  return keep;
}

}  // namespace

PruneReport prune_structured(const gguf::File& f, const std::string& out, const PruneOptions& opts,
                             const ActivationNorms& stats) {
  PruneReport rep;
  const std::string arch = f.get_string("general.architecture").value_or("llama");
  auto need_int = [&](const std::string& key) {
    const auto v = f.get_int(arch + "." + key);
    if (!v) fail("prune", "structured: missing metadata " + arch + "." + key);
    return *v;
  };
  const int64_t n_layer = need_int("block_count"), n_embd = need_int("embedding_length");
  if (const gguf::Value* v = f.find(arch + ".feed_forward_length"); v != nullptr && v->type == gguf::ValueType::ARRAY)
    fail("prune", "structured: " + arch + ".feed_forward_length is per layer (already pruned adaptively); "
                  "prune the original model");
  const int64_t n_ff = need_int("feed_forward_length"), n_head = need_int("attention.head_count");
  const int64_t n_kv = f.get_int(arch + ".attention.head_count_kv").value_or(n_head);
  const int64_t hd = f.get_int(arch + ".attention.key_length").value_or(n_embd / n_head);
  const int64_t per_group = n_head / n_kv;
  if (f.get_int(arch + ".expert_count").value_or(0) > 0)
    fail("prune", "structured: mixture-of-experts models are not supported (use magnitude / wanda / nm)");
  const int64_t ff_new = n_ff - std::min<int64_t>(n_ff - 1, static_cast<int64_t>(std::llround(opts.sparsity * n_ff)));
  const int64_t kv_new = n_kv - std::min<int64_t>(n_kv - 1, static_cast<int64_t>(std::llround(opts.sparsity * n_kv)));
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (t.name.rfind("blk.", 0) != 0) continue;
    if (t.name.find("attn_qkv") != std::string::npos)
      fail("prune", "structured: " + t.name + ": fused QKV is not supported");
    const bool layer_mat = prunable_tensor(t.name, nullptr, nullptr) || t.name.find(".bias") != std::string::npos;
    if (layer_mat && t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16)
      fail("prune", "structured: " + t.name + " is " + dtype_name(t.type) +
                        "; prune an F32/F16/BF16 model, then quantize");
  }

  // Per layer: fluctuation scores -> kept channels and heads.
  std::vector<LayerPlan> plan(static_cast<size_t>(n_layer));
  std::vector<std::vector<double>> ffn_score(static_cast<size_t>(n_layer));
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    const gguf::TensorInfo* down = f.tensor(p + "ffn_down.weight");
    const gguf::TensorInfo* wo = f.tensor(p + "attn_output.weight");
    if (down == nullptr || wo == nullptr || f.tensor(p + "ffn_gate.weight") == nullptr)
      fail("prune", "structured: layer " + std::to_string(il) + " needs ffn_gate, ffn_down and attn_output");
    const std::vector<double> vf = stats.variances(static_cast<int>(il), MatInput::FfnDown);
    const std::vector<double> va = stats.variances(static_cast<int>(il), MatInput::AttnOut);
    if (static_cast<int64_t>(vf.size()) != n_ff || static_cast<int64_t>(va.size()) != n_head * hd)
      fail("prune", "structured: no calibration statistics for layer " + std::to_string(il));
    const std::vector<float> down_w = to_f32(*down), wo_w = to_f32(*wo);
    std::vector<double> sf = col_sq(down_w, n_embd, n_ff);
    for (int64_t j = 0; j < n_ff; ++j) sf[j] *= vf[j];
    const std::vector<double> ca = col_sq(wo_w, n_embd, n_head * hd);
    std::vector<double> sg(static_cast<size_t>(n_kv), 0.0);
    for (int64_t c = 0; c < n_head * hd; ++c) sg[c / hd / per_group] += ca[c] * va[c];
    LayerPlan& lp = plan[static_cast<size_t>(il)];
    ffn_score[static_cast<size_t>(il)] = sf;
    for (int64_t g : keep_top(sg, kv_new)) {
      for (int64_t r = g * per_group * hd; r < (g + 1) * per_group * hd; ++r) lp.q_rows.push_back(r);
      for (int64_t r = g * hd; r < (g + 1) * hd; ++r) lp.kv_rows.push_back(r);
    }
    if (opts.bias_compensation && kv_new < n_kv)
      lp.b_out = compensation(wo_w, n_embd, n_head * hd, lp.q_rows, stats.means(static_cast<int>(il), MatInput::AttnOut),
                              f.tensor(p + "attn_output.bias"));
  }

  const std::vector<int64_t> ff_keep = opts.ffn_global ? global_ffn_counts(ffn_score, opts.sparsity)
                                                       : std::vector<int64_t>(static_cast<size_t>(n_layer), ff_new);
  for (int64_t il = 0; il < n_layer; ++il) {
    LayerPlan& lp = plan[static_cast<size_t>(il)];
    const int64_t keep = ff_keep[static_cast<size_t>(il)];
    lp.ffn = keep_top(ffn_score[static_cast<size_t>(il)], keep);
    if (opts.bias_compensation && keep < n_ff) {
      const std::string p = "blk." + std::to_string(il) + ".";
      lp.b_down = compensation(to_f32(*f.tensor(p + "ffn_down.weight")), n_embd, n_ff, lp.ffn,
                               stats.means(static_cast<int>(il), MatInput::FfnDown), f.tensor(p + "ffn_down.bias"));
    }
  }

  // What each tensor becomes: rows kept (row selection) or columns kept (column selection).
  // `bias` (set for compensation biases) replaces the source tensor's data, or, with src null,
  // is a new tensor written after the matrix it belongs to.
  struct Edit {
    const std::vector<int64_t>* rows = nullptr;
    const std::vector<int64_t>* cols = nullptr;
    const std::vector<float>* bias = nullptr;
    const gguf::TensorInfo* src = nullptr;
  };
  std::vector<Edit> edits;
  std::vector<gguf::StreamTensor> tensors;
  auto add_bias = [&](const std::string& name, const std::vector<float>& b) {
    edits.push_back({nullptr, nullptr, &b, nullptr});
    tensors.push_back({name, {n_embd}, DType::F32, static_cast<uint64_t>(n_embd) * sizeof(float)});
  };
  for (const gguf::TensorInfo& t : f.tensors()) {
    Edit e;
    e.src = &t;
    int il = -1;
    if (t.name.rfind("blk.", 0) == 0) il = std::atoi(t.name.c_str() + 4);
    if (il >= 0 && il < n_layer) {
      const LayerPlan& lp = plan[static_cast<size_t>(il)];
      const std::string rest = t.name.substr(t.name.find('.', 4) + 1);
      if (rest == "ffn_gate.weight" || rest == "ffn_up.weight") e.rows = &lp.ffn;
      else if (rest == "ffn_down.weight") e.cols = &lp.ffn;
      else if (rest == "attn_q.weight" || rest == "attn_q.bias") e.rows = &lp.q_rows;
      else if (rest == "attn_k.weight" || rest == "attn_v.weight" || rest == "attn_k.bias" || rest == "attn_v.bias") e.rows = &lp.kv_rows;
      else if (rest == "attn_output.weight") e.cols = &lp.q_rows;
      else if (rest == "ffn_down.bias" && !lp.b_down.empty()) e.bias = &lp.b_down;
      else if (rest == "attn_output.bias" && !lp.b_out.empty()) e.bias = &lp.b_out;
    }
    gguf::StreamTensor st{t.name, t.dims, t.type, t.size};
    if (e.rows) {
      if (t.dims.size() == 1) st.dims[0] = static_cast<int64_t>(e.rows->size());
      else st.dims[1] = static_cast<int64_t>(e.rows->size());
    }
    if (e.cols) st.dims[0] = static_cast<int64_t>(e.cols->size());
    int64_t ne = 1;
    for (int64_t d : st.dims) ne *= d;
    st.size = row_size(*type_traits(t.type), st.dims[0]) * static_cast<uint64_t>(ne / st.dims[0]);
    if (e.bias != nullptr) st.type = DType::F32, st.size = static_cast<uint64_t>(n_embd) * sizeof(float);
    edits.push_back(e);
    tensors.push_back(st);
    if (il >= 0 && il < n_layer) {  // a new compensation bias follows its matrix
      const LayerPlan& lp = plan[static_cast<size_t>(il)];
      const std::string p = "blk." + std::to_string(il) + ".";
      if (t.name == p + "ffn_down.weight" && !lp.b_down.empty() && f.tensor(p + "ffn_down.bias") == nullptr)
        add_bias(p + "ffn_down.bias", lp.b_down);
      if (t.name == p + "attn_output.weight" && !lp.b_out.empty() && f.tensor(p + "attn_output.bias") == nullptr)
        add_bias(p + "attn_output.bias", lp.b_out);
    }
  }

  std::vector<gguf::KV> kvs = f.kvs();
  if (std::all_of(ff_keep.begin(), ff_keep.end(), [&](int64_t k) { return k == ff_keep[0]; })) {
    set_kv(kvs, arch + ".feed_forward_length", gguf::Value::make_u32(static_cast<uint32_t>(ff_keep[0])));
  } else {  // one value per layer, the array form llama.cpp also reads
    std::vector<int32_t> per(ff_keep.begin(), ff_keep.end());
    set_kv(kvs, arch + ".feed_forward_length", gguf::Value::make_i32_array(per));
  }
  rep.ffn_kept = ff_keep;
  set_kv(kvs, arch + ".attention.head_count", gguf::Value::make_u32(static_cast<uint32_t>(kv_new * per_group)));
  set_kv(kvs, arch + ".attention.head_count_kv", gguf::Value::make_u32(static_cast<uint32_t>(kv_new)));
  set_kv(kvs, arch + ".attention.key_length", gguf::Value::make_u32(static_cast<uint32_t>(hd)));
  set_kv(kvs, arch + ".attention.value_length", gguf::Value::make_u32(static_cast<uint32_t>(hd)));
  set_kv(kvs, "coppice.prune.method", gguf::Value::make_string("structured"));
  set_kv(kvs, "coppice.prune.sparsity", gguf::Value::make_f32(static_cast<float>(opts.sparsity)));
  if (opts.bias_compensation) set_kv(kvs, "coppice.prune.bias_compensation", gguf::Value::make_bool(true));

  gguf::StreamWriter w(out, kvs, tensors);
  std::vector<uint8_t> buf;
  std::vector<float> row, sel;
  for (size_t i = 0; i < edits.size(); ++i) {
    const Edit& e = edits[i];
    if (e.bias != nullptr) {  // a compensation bias (new, or replacing the source's)
      w.write_tensor(reinterpret_cast<const uint8_t*>(e.bias->data()), tensors[i].size);
      if (opts.on_progress) opts.on_progress(i + 1, edits.size(), tensors[i].name);
      continue;
    }
    const gguf::TensorInfo& t = *e.src;
    const TypeTraits& tt = *type_traits(t.type);
    if (e.rows == nullptr && e.cols == nullptr) {
      w.write_tensor(t.data, t.size);
    } else if (e.rows) {  // whole rows (or elements of a 1-D bias): copy bytes
      const size_t rb = t.dims.size() == 1 ? tt.type_size : row_size(tt, t.dims[0]);
      buf.resize(tensors[i].size);
      for (size_t k = 0; k < e.rows->size(); ++k)
        std::memcpy(buf.data() + k * rb, t.data + static_cast<size_t>((*e.rows)[k]) * rb, rb);
      w.write_tensor(buf.data(), tensors[i].size);
      ++rep.n_pruned;
    } else {  // columns: f32 round trip (exact for F32/F16/BF16)
      const int64_t n = t.dims[0], rows = t.n_elements() / n, m = static_cast<int64_t>(e.cols->size());
      const size_t ib = row_size(tt, n), ob = row_size(tt, m);
      buf.resize(tensors[i].size);
      row.resize(static_cast<size_t>(n));
      sel.resize(static_cast<size_t>(m));
      for (int64_t r = 0; r < rows; ++r) {
        tt.to_float(t.data + r * ib, row.data(), n);
        for (int64_t k = 0; k < m; ++k) sel[k] = row[(*e.cols)[k]];
        tt.from_float(sel.data(), buf.data() + r * ob, m);
      }
      w.write_tensor(buf.data(), tensors[i].size);
      ++rep.n_pruned;
    }
    rep.n_weights += t.n_elements();
    rep.n_zeros += t.n_elements() - [&] { int64_t ne = 1; for (int64_t d : tensors[i].dims) ne *= d; return ne; }();
    if (opts.on_progress) opts.on_progress(i + 1, edits.size(), t.name);
  }
  rep.n_tensors = edits.size();
  rep.out_file_bytes = w.bytes_written();
  w.finish();
  rep.in_file_bytes = f.mapping()->size();
  return rep;
}

}  // namespace coppice
