#!/usr/bin/python3
# Exports a llama GGUF with f32 tensors (e.g. `coppice synth OUT --type f32 --pure`) as a
# Hugging Face folder: config.json, model.safetensors (or N shards + index), tokenizer.json.
#   python3 tests/reference/export_hf.py IN.gguf OUT_DIR [--shards N] [--dtype f32|f16|bf16]
# GGUF stores llama q/k rows in interleaved-pair order; HF in rotate-half order, so they are
# un-permuted here (the inverse of llama.cpp convert_hf_to_gguf.py's permute).
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

LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}

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

def main():
    args = sys.argv[1:]
    shards, dtype = 1, "f32"
    if "--shards" in args:
        i = args.index("--shards"); shards = int(args[i + 1]); del args[i:i + 2]
    if "--dtype" in args:
        i = args.index("--dtype"); dtype = args[i + 1]; del args[i:i + 2]
    src, out = args
    kv, g = read_gguf(src)
    a = kv["general.architecture"]
    assert a == "llama", a
    n_head = kv[f"{a}.attention.head_count"]
    n_kv = kv.get(f"{a}.attention.head_count_kv", n_head)
    hf = {}
    for name, w in g.items():
        if name == "token_embd.weight": hf["model.embed_tokens.weight"] = w
        elif name == "output_norm.weight": hf["model.norm.weight"] = w
        elif name == "output.weight": hf["lm_head.weight"] = w
        else:
            _, n, kind, _w = name.split(".")
            if kind == "attn_q": w = unpermute(w, n_head)
            if kind == "attn_k": w = unpermute(w, n_kv)
            hf[f"model.layers.{n}.{LAYER[kind]}.weight"] = w
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
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": kv[f"{a}.embedding_length"], "num_hidden_layers": kv[f"{a}.block_count"],
           "num_attention_heads": n_head, "num_key_value_heads": n_kv,
           "intermediate_size": kv[f"{a}.feed_forward_length"],
           "max_position_embeddings": kv.get(f"{a}.context_length", 2048),
           "rms_norm_eps": kv.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5),
           "rope_theta": kv.get(f"{a}.rope.freq_base", 10000.0), "vocab_size": n_vocab,
           "tie_word_embeddings": "output.weight" not in g, "torch_dtype": "float32"}
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
