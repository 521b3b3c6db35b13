#!/usr/bin/env python3
"""Independent NumPy forward pass of the architectures coppice runs, for its logit tests.

    forward.py MODEL.gguf --tokens 1,2,3 --out logits.f32 [--n-ctx N]

Reads the GGUF with the small reader below (F32/F16 tensors only), runs every position of
the token sequence at once in float64 (causal mask, sliding windows as masks, no KV cache),
and writes logits [n_tokens][n_vocab] as little-endian float32. Written from the model
descriptions (HF transformers semantics, GGUF conventions), not from coppice's code.
"""
import argparse
import math
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- GGUF reader
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}


class Gguf:
    def __init__(self, path):
        self.buf = open(path, "rb").read()
        self.off = 0
        if self.buf[:4] != b"GGUF":
            raise ValueError(path + ": not a GGUF file")
        self.off = 4
        version = self._u(4)
        if version < 2:
            raise ValueError("GGUF version %d unsupported" % version)
        n_tensors, n_kv = self._u(8), self._u(8)
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u(4))
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            n_dims = self._u(4)
            dims = [self._u(8) for _ in range(n_dims)]
            ttype, offset = self._u(4), self._u(8)
            infos.append((name, dims, ttype, offset))
        align = self.kv.get("general.alignment", 32)
        data = (self.off + align - 1) // align * align
        self.tensors = {}
        for name, dims, ttype, offset in infos:
            count = int(np.prod(dims))
            if ttype == 0:
                a = np.frombuffer(self.buf, np.float32, count, data + offset)
            elif ttype == 1:
                a = np.frombuffer(self.buf, np.float16, count, data + offset)
            elif ttype == 8:  # Q8_0: blocks of (f16 scale, 32 x int8), value = scale * q
                blocks = np.frombuffer(self.buf, np.dtype([("d", "<f2"), ("q", "i1", 32)]), count // 32, data + offset)
                a = (blocks["d"].astype(np.float64)[:, None] * blocks["q"].astype(np.float64)).reshape(-1)
            else:
                a = None  # other quantized types: not needed by the reference tests
            if a is not None:
                a = a.astype(np.float64).reshape(list(reversed(dims)))
            self.tensors[name] = a

    def _u(self, n):
        v = int.from_bytes(self.buf[self.off:self.off + n], "little")
        self.off += n
        return v

    def _str(self):
        n = self._u(8)
        s = self.buf[self.off:self.off + n].decode("utf-8")
        self.off += n
        return s

    def _value(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            et, n = self._u(4), self._u(8)
            return [self._value(et) for _ in range(n)]
        fmt = _SCALARS[t]
        v = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += struct.calcsize(fmt)
        return v

    def t(self, name):
        if name not in self.tensors:
            raise KeyError("missing tensor " + name)
        return self.tensors[name]

    def opt(self, name):
        return self.tensors.get(name)


# ---------------------------------------------------------------- building blocks
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def rope(x, pos, rope_dim, base, scale, factors, mscale, neox):
    """x: [T, H, D]. Rotates the first rope_dim dims of each head."""
    half = rope_dim // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / rope_dim)
    theta = pos[:, None] * scale * inv[None, :]
    if factors is not None:
        theta = theta / factors[None, :]
    c = (np.cos(theta) * mscale)[:, None, :]
    s = (np.sin(theta) * mscale)[:, None, :]
    x = x.copy()
    if neox:
        a, b = x[..., :half].copy(), x[..., half:rope_dim].copy()
        x[..., :half], x[..., half:rope_dim] = a * c - b * s, a * s + b * c
    else:
        a, b = x[..., 0:rope_dim:2].copy(), x[..., 1:rope_dim:2].copy()
        x[..., 0:rope_dim:2], x[..., 1:rope_dim:2] = a * c - b * s, a * s + b * c
    return x


def llama3_factors(base, dim, factor, low, high, orig):
    out = []
    for i in range(dim // 2):
        freq = base ** (-2.0 * i / dim)
        wl = 2 * math.pi / freq
        if wl < orig / high:
            out.append(1.0)
        elif wl > orig / low:
            out.append(factor)
        else:
            sm = (orig / wl - low) / (high - low)
            out.append(1.0 / ((1 - sm) / factor + sm))
    return np.array(out)


# ---------------------------------------------------------------- the forward pass
def forward(g, tokens, n_ctx=0):
    arch = g.kv["general.architecture"]
    known = ["llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "gemma2", "gemma3", "phi3"]
    if arch not in known:
        raise ValueError("unknown architecture " + arch)
    K = lambda k, d=None: g.kv.get(arch + "." + k, d)
    E, L = K("embedding_length"), K("block_count")
    H = K("attention.head_count")
    HKV = K("attention.head_count_kv", H)
    D = K("attention.key_length", E // H)
    rope_dim = K("rope.dimension_count", D)
    eps = K("attention.layer_norm_rms_epsilon", 1e-5)
    base = K("rope.freq_base", 10000.0)
    gemma = arch in ("gemma2", "gemma3")
    neox = arch != "llama"
    qk_norm = arch in ("qwen3", "qwen3moe", "gemma3")
    bias = arch in ("qwen2", "qwen2moe")
    n_exp = K("expert_count", 0)
    n_used = K("expert_used_count", 0)
    norm_topk = arch in ("llama", "qwen3moe")
    scale = K("attention.scale", 1.0 / math.sqrt(D))
    attn_cap = K("attn_logit_softcapping", 50.0) if arch == "gemma2" else 0.0
    final_cap = K("final_logit_softcapping", 30.0 if arch == "gemma2" else 0.0)
    n_swa = K("attention.sliding_window", 4096 if arch == "gemma2" else 0)

    def is_swa(il):
        if arch == "gemma2":
            return il % 2 == 0
        if arch == "gemma3":
            return il % 6 != 5
        return n_swa > 0

    # RoPE variants.
    freq_scale, factors, mscale = 1.0, None, K("rope.scaling.attn_factor", 1.0)
    stype = K("rope.scaling.type", "none")
    orig = K("rope.scaling.original_context_length", K("context_length", 2048))
    if stype == "linear":
        freq_scale = 1.0 / K("rope.scaling.factor")
    if g.opt("rope_freqs.weight") is not None:
        factors = g.t("rope_freqs.weight")
    elif stype == "llama3":
        factors = llama3_factors(base, rope_dim, K("rope.scaling.factor"),
                                 K("rope.scaling.low_freq_factor", 1.0),
                                 K("rope.scaling.high_freq_factor", 4.0), orig)
    if g.opt("rope_factors_long.weight") is not None:
        factors = g.t("rope_factors_long.weight") if n_ctx > orig else g.t("rope_factors_short.weight")

    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    emb = g.t("token_embd.weight")
    x = emb[np.array(tokens)]
    if gemma:
        x = x * math.sqrt(E)
    causal = pos[None, :] <= pos[:, None]
    window = (pos[:, None] - pos[None, :]) < n_swa

    for il in range(L):
        p = "blk.%d." % il
        W = lambda n: g.t(p + n)
        h = rmsnorm(x, W("attn_norm.weight"), eps)
        if arch == "phi3" and g.opt(p + "attn_qkv.weight") is not None:
            qkv = h @ W("attn_qkv.weight").T
            q, k, v = qkv[:, :H * D], qkv[:, H * D:(H + HKV) * D], qkv[:, (H + HKV) * D:]
        else:
            q, k, v = h @ W("attn_q.weight").T, h @ W("attn_k.weight").T, h @ W("attn_v.weight").T
        if bias:
            q, k, v = q + W("attn_q.bias"), k + W("attn_k.bias"), v + W("attn_v.bias")
        q, k, v = q.reshape(T, H, D), k.reshape(T, HKV, D), v.reshape(T, HKV, D)
        if qk_norm:
            q = rmsnorm(q, W("attn_q_norm.weight"), eps)
            k = rmsnorm(k, W("attn_k_norm.weight"), eps)
        local = arch == "gemma3" and is_swa(il)
        lb = K("rope.freq_base_swa", 10000.0) if local else base
        ls = 1.0 if local else freq_scale
        lf = None if local else factors
        q = rope(q, pos, rope_dim, lb, ls, lf, mscale, neox)
        k = rope(k, pos, rope_dim, lb, ls, lf, mscale, neox)
        mask = causal & window if (n_swa > 0 and is_swa(il)) else causal
        rep = H // HKV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("thd,shd->hts", q, k) * scale
        if attn_cap > 0:
            s = attn_cap * np.tanh(s / attn_cap)
        s = np.where(mask[None], s, -np.inf)
        a = np.einsum("hts,shd->thd", softmax(s), v).reshape(T, H * D)
        o = a @ W("attn_output.weight").T
        if gemma:
            o = rmsnorm(o, W("post_attention_norm.weight"), eps)
        x = x + o

        h = rmsnorm(x, W("ffn_norm.weight"), eps)
        if n_exp > 0:
            probs = softmax(h @ W("ffn_gate_inp.weight").T)
            gate, up, down = W("ffn_gate_exps.weight"), W("ffn_up_exps.weight"), W("ffn_down_exps.weight")
            f = np.zeros_like(x)
            for t in range(T):
                sel = np.argsort(-probs[t], kind="stable")[:n_used]
                w = probs[t, sel]
                if norm_topk:
                    w = w / w.sum()
                for e, we in zip(sel, w):
                    f[t] += we * (down[e] @ (silu(gate[e] @ h[t]) * (up[e] @ h[t])))
            if arch == "qwen2moe":
                sh = (silu(h @ W("ffn_gate_shexp.weight").T) * (h @ W("ffn_up_shexp.weight").T)) @ W("ffn_down_shexp.weight").T
                gs = 1.0 / (1.0 + np.exp(-(h @ W("ffn_gate_inp_shexp.weight"))))
                f = f + gs[:, None] * sh
        elif arch == "phi3":
            gu = h @ W("ffn_up.weight").T
            nf = gu.shape[1] // 2
            f = (silu(gu[:, :nf]) * gu[:, nf:]) @ W("ffn_down.weight").T
        else:
            act = gelu_tanh if gemma else silu
            f = (act(h @ W("ffn_gate.weight").T) * (h @ W("ffn_up.weight").T)) @ W("ffn_down.weight").T
        if gemma:
            f = rmsnorm(f, W("post_ffw_norm.weight"), eps)
        x = x + f

    x = rmsnorm(x, g.t("output_norm.weight"), eps)
    out = g.opt("output.weight")
    logits = x @ (out if out is not None else emb).T
    if final_cap > 0:
        logits = final_cap * np.tanh(logits / final_cap)
    return logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-ctx", type=int, default=0)
    a = ap.parse_args()
    g = Gguf(a.model)
    logits = forward(g, [int(t) for t in a.tokens.split(",")], a.n_ctx)
    logits.astype("<f4").tofile(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
