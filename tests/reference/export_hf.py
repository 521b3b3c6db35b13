#!/usr/bin/python3
# Exports a GGUF with f32 tensors (e.g. `coppice synth OUT --type f32 --pure`; llama, Mistral,
# Mixtral, qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3, phi3) as a Hugging Face folder: config.json, model.safetensors (or N shards + index), tokenizer.json.
#   python3 tests/reference/export_hf.py IN.gguf OUT_DIR [--shards N] [--dtype f32|f16|bf16]
# GGUF stores llama q/k rows in interleaved-pair order; HF in rotate-half order, so they are
# un-permuted here (the inverse of llama.cpp convert_hf_to_gguf.py's permute). Gemma norms
# become w - 1 (HF computes x * (1 + w)); MoE experts are split into one matrix per expert;
# llama3 / linear / LongRoPE scaling go to config.json's rope_scaling.
# The tokenizer is a byte-level BPE over the 256 byte symbols plus <s> and </s> (no merges).
import json, os, struct, sys
import numpy as np

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

def read_gguf(path):
    buf = open(path, "rb").read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v
    def string():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s
    def value(t):
        if t == 8: return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])
    assert buf[:4] == b"GGUF", "not a GGUF"
    pos = 4
    take("<I")
    n_t, n_kv = take("<Q"), take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("<I"))
    infos = []
    for _ in range(n_t):
        name = string()
        nd = take("<I")
        dims = [take("<Q") for _ in range(nd)]
        typ, off = take("<I"), take("<Q")
        infos.append((name, dims, typ, off))
    align = kv.get("general.alignment", 32)
    data = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, typ, off in infos:
        if typ != 0: sys.exit(f"{name}: only f32 GGUF tensors are supported (use synth --type f32 --pure)")
        n = int(np.prod(dims))
        a = np.frombuffer(buf, dtype="<f4", count=n, offset=data + off)
        tensors[name] = a.reshape(list(reversed(dims))).copy()
    return kv, tensors

def unpermute(w, n_head):
    # GGUF row h*hd + 2*i + j holds HF row h*hd + j*hd/2 + i.
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

# GGUF per-layer kind -> HF module path, per family (inverse of src/formats/hf_tensors.cpp,
# written from transformers' module names, not from that file).
LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
         "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
GEMMA = {"post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
         "post_ffw_norm": "post_feedforward_layernorm"}
PHI3 = {"attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"}
QWEN_MOE = {"ffn_gate_inp": "mlp.gate", "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
            "ffn_up_shexp": "mlp.shared_expert.up_proj", "ffn_down_shexp": "mlp.shared_expert.down_proj",
            "ffn_gate_inp_shexp": "mlp.shared_expert_gate"}
EXPERTS = {"qwen": {"ffn_gate_exps": "mlp.experts.{e}.gate_proj", "ffn_up_exps": "mlp.experts.{e}.up_proj",
                    "ffn_down_exps": "mlp.experts.{e}.down_proj"},
           "mixtral": {"ffn_gate_exps": "block_sparse_moe.experts.{e}.w1", "ffn_up_exps": "block_sparse_moe.experts.{e}.w3",
                       "ffn_down_exps": "block_sparse_moe.experts.{e}.w2"}}

def write_safetensors(path, tensors, dtype):
    st = {"f32": ("F32", "<f4"), "f16": ("F16", "<f2"), "bf16": ("BF16", None)}[dtype]
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "bf16":
            b = (a.view(np.uint32) + 0x7FFF + ((a.view(np.uint32) >> 16) & 1)) >> 16
            raw = b.astype("<u2").tobytes()
        else:
            raw = a.astype(st[1]).tobytes()
        header[name] = {"dtype": st[0], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs: f.write(b)

HF_ARCH = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen2moe": "Qwen2MoeForCausalLM",
           "qwen3moe": "Qwen3MoeForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM",
           "phi3": "Phi3ForCausalLM"}

def convert(kv, g):
    """GGUF metadata + f32 tensors -> (HF tensors, config.json dict)."""
    a = kv["general.architecture"]
    K = lambda key, d=None: kv.get(f"{a}.{key}", d)
    n_head = K("attention.head_count")
    n_kv = K("attention.head_count_kv", n_head)
    n_embd = K("embedding_length")
    head_dim = K("attention.key_length", n_embd // n_head)
    n_expert = K("expert_count", 0)
    gemma = a in ("gemma2", "gemma3")
    if a == "llama":
        hf_arch = "MixtralForCausalLM" if n_expert else ("MistralForCausalLM" if K("attention.sliding_window") else "LlamaForCausalLM")
    else:
        hf_arch = HF_ARCH[a]
    experts = EXPERTS["mixtral" if a == "llama" else "qwen"]
    hf = {}
    for name, w in g.items():
        if name == "token_embd.weight": hf["model.embed_tokens.weight"] = w
        elif name == "output_norm.weight": hf["model.norm.weight"] = w - 1 if gemma else w
        elif name == "output.weight": hf["lm_head.weight"] = w
        elif name in ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"): continue  # config
        else:
            _, n, kind, suffix = name.split(".")
            if kind in experts:
                for e in range(w.shape[0]):
                    hf[f"model.layers.{n}.{experts[kind].format(e=e)}.{suffix}"] = w[e]
                continue
            path = (GEMMA.get(kind) if gemma else None) or (PHI3.get(kind) if a == "phi3" else None)
            if not path and kind == "ffn_gate_inp": path = "block_sparse_moe.gate" if a == "llama" else "mlp.gate"
            if not path and n_expert: path = QWEN_MOE.get(kind)
            path = path or LAYER[kind]
            if a == "llama" and kind == "attn_q": w = unpermute(w, n_head)
            if a == "llama" and kind == "attn_k": w = unpermute(w, n_kv)
            if gemma and kind.endswith("norm"): w = w - 1  # HF computes x * (1 + w)
            if kind == "ffn_gate_inp_shexp": w = w.reshape(1, -1)
            hf[f"model.layers.{n}.{path}.{suffix}"] = w
    cfg = {"architectures": [hf_arch], "model_type": hf_arch[:-len("ForCausalLM")].lower(),
           "hidden_size": n_embd, "num_hidden_layers": K("block_count"),
           "num_attention_heads": n_head, "num_key_value_heads": n_kv, "head_dim": head_dim,
           "intermediate_size": K("feed_forward_length"),
           "max_position_embeddings": K("context_length", 2048),
           "rms_norm_eps": K("attention.layer_norm_rms_epsilon", 1e-5),
           "rope_theta": K("rope.freq_base", 10000.0), "vocab_size": g["token_embd.weight"].shape[0],
           "tie_word_embeddings": "output.weight" not in g, "torch_dtype": "float32"}
    scaling = K("rope.scaling.type")
    if scaling == "linear":
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": K("rope.scaling.factor")}
    elif scaling == "llama3":
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": K("rope.scaling.factor"),
                               "low_freq_factor": K("rope.scaling.low_freq_factor"),
                               "high_freq_factor": K("rope.scaling.high_freq_factor"),
                               "original_max_position_embeddings": K("rope.scaling.original_context_length")}
    if "rope_factors_long.weight" in g:
        cfg["original_max_position_embeddings"] = K("rope.scaling.original_context_length")
        cfg["rope_scaling"] = {"type": "longrope", "long_factor": [float(x) for x in g["rope_factors_long.weight"]],
                               "short_factor": [float(x) for x in g["rope_factors_short.weight"]]}
    if K("attention.sliding_window"): cfg["sliding_window"] = K("attention.sliding_window")
    if a == "llama" and n_expert:
        cfg.update(num_local_experts=n_expert, num_experts_per_tok=K("expert_used_count"))
    if a in ("qwen2moe", "qwen3moe"):
        cfg.update(num_experts=n_expert, num_experts_per_tok=K("expert_used_count"),
                   moe_intermediate_size=K("expert_feed_forward_length"), norm_topk_prob=a == "qwen3moe",
                   decoder_sparse_step=1, mlp_only_layers=[])
        if a == "qwen2moe": cfg["shared_expert_intermediate_size"] = K("expert_shared_feed_forward_length")
    if a in ("qwen2", "qwen3", "qwen2moe", "qwen3moe"): cfg["use_sliding_window"] = False
    if gemma:
        scale = K("attention.scale")
        cfg["query_pre_attn_scalar"] = 1.0 / (scale * scale) if scale else head_dim
        cfg["hidden_activation"] = "gelu_pytorch_tanh"
    if a == "gemma2":
        cfg["attn_logit_softcapping"] = K("attn_logit_softcapping", 50.0)
        cfg["final_logit_softcapping"] = K("final_logit_softcapping", 30.0)
    if a == "gemma3":
        cfg.update(rope_local_base_freq=K("rope.freq_base_swa", 10000.0), sliding_window_pattern=6,
                   attn_logit_softcapping=None, final_logit_softcapping=None)
    return hf, cfg

def main():
    args = sys.argv[1:]
    shards, dtype = 1, "f32"
    if "--shards" in args:
        i = args.index("--shards"); shards = int(args[i + 1]); del args[i:i + 2]
    if "--dtype" in args:
        i = args.index("--dtype"); dtype = args[i + 1]; del args[i:i + 2]
    src, out = args
    kv, g = read_gguf(src)
    hf, cfg = convert(kv, g)
    os.makedirs(out, exist_ok=True)
    names = sorted(hf)
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), hf, dtype)
    else:
        wm = {}
        for s in range(shards):
            part = names[s::shards]
            fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(os.path.join(out, fn), {k: hf[k] for k in part}, dtype)
            wm.update({k: fn for k in part})
        json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=1)
    n_vocab = g["token_embd.weight"].shape[0]
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    # Byte-level BPE: the 256 GPT-2 byte symbols, then <s> and </s>.
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, k = bs[:], 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256 + k); k += 1
    byte_sym = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_sym[b]: b for b in range(256)}
    assert n_vocab >= 258
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 256, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
                            {"id": 257, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [256], "tokens": ["<s>"]}}},
           "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": []}}
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
               "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"},
              open(os.path.join(out, "tokenizer_config.json"), "w"))

if __name__ == "__main__":
    main()
