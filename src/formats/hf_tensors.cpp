// HF tensor names -> GGUF names, per family, and the tensors GGUF stores differently:
//  - llama / Mixtral q_proj, k_proj: rows in rotate-half order -> interleaved pairs
//    (llama.cpp's permute);
//  - Gemma RMSNorm weights: HF keeps w and computes x * (1 + w); GGUF stores 1 + w (F32);
//  - MoE experts: one HF matrix per expert -> one [n_expert][rows][cols] GGUF tensor;
//  - Qwen2-MoE shared_expert_gate [1][n_embd] -> a vector.
// Everything else stays a view into the mapped safetensors.
#include <algorithm>
#include <cstring>
#include <map>

#include "formats/hf_internal.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::hf::detail {
namespace {

// "<prefix><digits>.<rest>" -> number, rest (no std::regex: GCC 12 warns inside it at -O2
// with the sanitizers, and this is all the pattern needs).
bool split_index(const std::string& n, std::string_view prefix, std::string& index, std::string& rest) {
  if (n.rfind(prefix, 0) != 0) return false;
  size_t i = prefix.size(), j = i;
  while (j < n.size() && n[j] >= '0' && n[j] <= '9') ++j;
  if (j == i || j + 1 >= n.size() || n[j] != '.') return false;
  index = n.substr(i, j - i);
  rest = n.substr(j + 1);
  return true;
}

// HF per-layer tensor suffix -> GGUF suffix, shared by every family.
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
// Family-specific names, looked up before the shared ones.
constexpr std::pair<const char*, const char*> kGemmaNames[] = {
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
};
constexpr std::pair<const char*, const char*> kPhi3Names[] = {
    {"self_attn.qkv_proj.weight", "attn_qkv.weight"},  // rows [Q; K; V]
    {"mlp.gate_up_proj.weight", "ffn_up.weight"},      // rows [gate; up]
};
constexpr std::pair<const char*, const char*> kMoeNames[] = {
    {"mlp.gate.weight", "ffn_gate_inp.weight"},              // Qwen MoE router
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},  // Mixtral router
    {"mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
    {"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"},
};
// Expert matrices: "<prefix><e>.<kind>" with kind -> GGUF stacked name.
constexpr std::pair<const char*, const char*> kQwenExperts[] = {
    {"gate_proj.weight", "ffn_gate_exps.weight"}, {"up_proj.weight", "ffn_up_exps.weight"}, {"down_proj.weight", "ffn_down_exps.weight"}};
constexpr std::pair<const char*, const char*> kMixtralExperts[] = {
    {"w1.weight", "ffn_gate_exps.weight"}, {"w3.weight", "ffn_up_exps.weight"}, {"w2.weight", "ffn_down_exps.weight"}};

template <size_t N>
const char* lookup(const std::pair<const char*, const char*> (&table)[N], const std::string& key) {
  for (const auto& [from, to] : table)
    if (key == from) return to;
  return nullptr;
}

DType dtype_of(const safetensors::Tensor& t, const std::string& where) {
  if (t.dtype == "F32") return DType::F32;
  if (t.dtype == "F16") return DType::F16;
  if (t.dtype == "BF16") return DType::BF16;
  fail("hf", where + ": tensor '" + t.name + "': dtype " + t.dtype + " is not supported (F32, F16, BF16)");
}

float element(const safetensors::Tensor& t, size_t i) {
  if (t.dtype == "F32") {
    float f;
    std::memcpy(&f, t.data + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, t.data + 2 * i, 2);
  return t.dtype == "F16" ? fp16_to_fp32(h) : bf16_to_fp32(h);
}

// Rows of a [rows][cols] matrix reordered as llama.cpp's permute(): within each head, row
// (j * hd/2 + i) moves to (2 * i + j).
std::shared_ptr<std::vector<uint8_t>> permute_rows(const safetensors::Tensor& t, int64_t n_head, const std::string& where) {
  const int64_t rows = t.shape[0];
  const size_t row_bytes = static_cast<size_t>(t.end - t.begin) / static_cast<size_t>(rows);
  if (n_head <= 0 || rows % (2 * n_head) != 0)
    fail("hf", where + ": tensor '" + t.name + "': " + std::to_string(rows) + " rows do not split into " +
                   std::to_string(n_head) + " heads of even size");
  const int64_t hd = rows / n_head, half = hd / 2;
  auto out = std::make_shared<std::vector<uint8_t>>(t.end - t.begin);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(out->data() + static_cast<size_t>(h * hd + 2 * i + j) * row_bytes,
                    t.data + static_cast<size_t>(h * hd + j * half + i) * row_bytes, row_bytes);
  return out;
}

gguf::TensorInfo view(const safetensors::Tensor& t, std::string name, const std::string& where) {
  gguf::TensorInfo ti;
  ti.name = std::move(name);
  ti.type = dtype_of(t, where);
  if (t.shape.empty() || t.shape.size() > 4 || t.n_elements() == 0)
    fail("hf", where + ": tensor '" + t.name + "': shape with " + std::to_string(t.shape.size()) + " dimensions or no elements");
  ti.dims.assign(t.shape.rbegin(), t.shape.rend());  // GGUF lists the contiguous dimension first
  ti.size = t.end - t.begin;
  ti.data = t.data;
  return ti;
}

// Strips the language-model prefix of multimodal checkpoints (Gemma 3 4B+); "" for tensors
// of other towers, which are skipped.
std::string text_name(const std::string& n) {
  for (const char* skip : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
    if (n.rfind(skip, 0) == 0) return "";
  for (const auto& [from, to] : {std::pair{"language_model.model.", "model."}, std::pair{"language_model.lm_head.", "lm_head."},
                                 std::pair{"model.language_model.", "model."}})
    if (n.rfind(from, 0) == 0) return to + n.substr(std::strlen(from));
  return n;
}

struct ExpertGroup {
  std::string name;                              // GGUF name
  std::vector<const safetensors::Tensor*> part;  // [n_expert]
};

gguf::TensorInfo stack_experts(const ExpertGroup& g, const std::string& where,
                               std::vector<std::shared_ptr<const void>>& owners) {
  for (size_t e = 0; e < g.part.size(); ++e)
    if (!g.part[e]) fail("hf", where + ": expert " + std::to_string(e) + " of " + g.name + " is missing");
  const safetensors::Tensor& t0 = *g.part[0];
  if (t0.shape.size() != 2) fail("hf", where + ": tensor '" + t0.name + "': expected a matrix");
  const size_t bytes = t0.end - t0.begin;
  auto buf = std::make_shared<std::vector<uint8_t>>(bytes * g.part.size());
  for (size_t e = 0; e < g.part.size(); ++e) {
    const safetensors::Tensor& t = *g.part[e];
    if (t.dtype != t0.dtype || t.shape != t0.shape)
      fail("hf", where + ": tensor '" + t.name + "': dtype or shape differs from expert 0's");
    std::memcpy(buf->data() + e * bytes, t.data, bytes);
  }
  gguf::TensorInfo ti = view(t0, g.name, where);
  ti.dims.push_back(static_cast<int64_t>(g.part.size()));
  ti.size = buf->size();
  ti.data = buf->data();
  owners.push_back(buf);
  return ti;
}

}  // namespace

void map_tensors(const HfConfig& cfg, const safetensors::Folder& folder, const std::string& dir,
                 std::vector<gguf::TensorInfo>& out, std::vector<std::shared_ptr<const void>>& owners) {
  const Family fam = cfg.arch->family;
  const bool permute_qk = fam == Family::Llama || fam == Family::Mixtral;
  const int64_t n_expert = is_moe(*cfg.arch) ? cfg.c.value(fam == Family::Mixtral ? "num_local_experts" : "num_experts", int64_t{0}) : 0;
  std::map<std::string, ExpertGroup> experts;  // by GGUF name
  for (const safetensors::Tensor* t : folder.tensors()) {
    const std::string hf_name = text_name(t->name);
    if (hf_name.empty()) continue;
    std::string name, layer, rest;
    if (hf_name == "model.embed_tokens.weight") name = "token_embd.weight";
    else if (hf_name == "model.norm.weight") name = "output_norm.weight";
    else if (hf_name == "lm_head.weight") name = "output.weight";
    else if (split_index(hf_name, "model.layers.", layer, rest)) {
      const char* g = nullptr;
      if (is_gemma(*cfg.arch)) g = lookup(kGemmaNames, rest);
      if (!g && fam == Family::Phi3) g = lookup(kPhi3Names, rest);
      if (!g && n_expert > 0) g = lookup(kMoeNames, rest);
      if (!g) g = lookup(kLayerNames, rest);
      if (g) name = "blk." + layer + "." + g;
      std::string e, kind;
      const bool mixtral = fam == Family::Mixtral;
      if (!g && n_expert > 0 && split_index(rest, mixtral ? "block_sparse_moe.experts." : "mlp.experts.", e, kind)) {
        const char* stacked = mixtral ? lookup(kMixtralExperts, kind) : lookup(kQwenExperts, kind);
        const int64_t ie = std::stoll(e);
        if (stacked && ie < n_expert) {
          ExpertGroup& grp = experts["blk." + layer + "." + stacked];
          grp.name = "blk." + layer + "." + stacked;
          grp.part.resize(static_cast<size_t>(n_expert), nullptr);
          grp.part[static_cast<size_t>(ie)] = t;
          continue;
        }
      }
    }
    if (name.empty()) {
      if (hf_name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed from rope_theta
      fail("hf", dir + ": tensor '" + t->name + "' has no GGUF name (unexpected for " + cfg.arch->hf + ")");
    }
    gguf::TensorInfo ti = view(*t, name, dir);
    if (permute_qk && (rest == "self_attn.q_proj.weight" || rest == "self_attn.k_proj.weight")) {
      if (t->shape.size() != 2) fail("hf", dir + ": tensor '" + t->name + "': expected a matrix");
      auto buf = permute_rows(*t, rest == "self_attn.q_proj.weight" ? cfg.n_head : cfg.n_head_kv, dir);
      ti.data = buf->data();
      owners.push_back(buf);
    } else if (is_gemma(*cfg.arch) && name.size() > 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0) {
      auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(t->n_elements()));
      for (size_t i = 0; i < buf->size(); ++i) (*buf)[i] = element(*t, i) + 1.0f;
      ti.type = DType::F32;
      ti.size = buf->size() * sizeof(float);
      ti.data = reinterpret_cast<const uint8_t*>(buf->data());
      owners.push_back(buf);
    } else if (name.find("ffn_gate_inp_shexp") != std::string::npos && ti.dims.size() == 2 && ti.dims[1] == 1) {
      ti.dims.pop_back();  // [1][n_embd] -> [n_embd]
    }
    out.push_back(std::move(ti));
  }
  for (const auto& [name, grp] : experts) out.push_back(stack_experts(grp, dir, owners));
  if (cfg.tied)
    out.erase(std::remove_if(out.begin(), out.end(), [](const gguf::TensorInfo& t) { return t.name == "output.weight"; }), out.end());
}

}  // namespace coppice::hf::detail
