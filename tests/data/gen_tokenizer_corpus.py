#!/usr/bin/env python3
# Deterministic tokenizer parity corpus (one JSON string per line):
#   python3 tests/data/gen_tokenizer_corpus.py > tests/data/tokenizer_corpus.jsonl
import json, random

rng = random.Random(20240607)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "Hello, world!", "hello world", "HELLO WORLD",
    "Der schnelle braune Fuchs springt über den faulen Hund.", "Führer, Straße, Äpfel, Öl, Übermut",
    "Le cœur a ses raisons que la raison ne connaît point.", "¿Dónde está la biblioteca? ¡Olé!",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.", "Ελληνικά: Καλημέρα κόσμε",
    "我能吞下玻璃而不伤身体。", "今天天气很好，我们去公园散步吧！", "東京都渋谷区で会いましょう。",
    "ひらがなとカタカナと漢字", "안녕하세요, 세계! 한국어 문장입니다.", "مرحبا بالعالم، كيف حالك؟",
    "اللغة العربية جميلة جداً", "שלום עולם, מה שלומך?", "नमस्ते दुनिया, आप कैसे हैं?", "हिन्दी भाषा में वाक्य।",
    "สวัสดีชาวโลก ภาษาไทย", "Xin chào thế giới, tiếng Việt có dấu.", "Türkçe: İstanbul'da ışık ve gölge",
    "Zażółć gęślą jaźń", "Ελευθερία ή θάνατος", "ქართული ენა", "Հայերեն լեզու", "বাংলা ভাষা",
    "தமிழ் மொழி", "తెలుగు భాష", "ಕನ್ನಡ", "മലയാളം", "ગુજરાતી", "ਪੰਜਾਬੀ", "සිංහල", "ພາສາລາວ", "မြန်မာ",
    "ខ្មែរ", "አማርኛ", "ᠮᠣᠩᠭᠣᠯ", "ᐃᓄᒃᑎᑐᑦ", "Ṩ̤̊ ḉ̣ ǭ ǖ ẫ", "e\u0301 vs \u00e9, A\u030a vs \u00c5, \u212b",
    "\u1100\u1161\u11a8 \uac01 \u1112\u1161\u11ab", "ﬁ ﬂ ﬃ ① ㎞ ＡＢＣ １２３ ｶﾀｶﾅ", "x² + y³ = z⁴, ½ ¼ ¾",
    "ied 4 ½ months", "I've been 'told' he's here, don't you think? We'll see; they're OK.",
    "IT'S, I'M, WE'VE, YOU'LL, HE'D, SHE'S", "y'all ain't gonna b'lieve 'em",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇩🇪🇯🇵", "❤️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "🤖", "🙈🙉🙊", "☕", "🦀🐍", "⭐️", "1️⃣", "🫠"]
CODE = [
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "const x = {a: 1, b: [2, 3]};\nconsole.log(`${x.a}`);", '{"key": "value", "n": 12345.678e-9, "ok": true}',
    "<html><body><p class=\"x\">Hi&nbsp;there</p></body></html>", "SELECT * FROM users WHERE id = 42;",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 1); }", "fn main() { let v: Vec<u8> = vec![]; }",
    "if x != None and y >= 3:\n        pass\n\n\n", "  indented\n    more\n\t\ttabs\n", "a+=b; c-=d; e*=f; g/=h; i%=j;",
    "$ ls -la /usr/bin | grep -E '^d' > out.txt 2>&1", "https://example.com/path?q=1&r=two#frag", "user@example.org",
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<bos>", "<eos>",
            "<pad>", "<unk>", "<mask>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<think>", "</think>",
            "<|begin_of", "<start_of_turn", "|>", "<|", "<0x41>", "[multimodal]", "<unused0>", "<|reserved_special_token_5|>"]
WORDS = ["the", "of", "and", "tokenizer", "merges", "unbelievable", "antidisestablishmentarianism", "naïve",
         "café", "résumé", "coöperate", "Москва", "北京", "東京", "서울", "القاهرة", "दिल्ली", "über", "pneumonoultramicroscopic",
         "GPT", "LLaMA", "qwen", "Gemma", "x", "I", "a", "don't", "can't", "it's", "o'clock", "rock'n'roll"]
WS = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\t", "    ", " \t ", "\n \n", "\u00a0", "\u3000", "\u2009", "\u200b"]

def number():
    n = rng.randint(1, 30)
    s = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))
    r = rng.random()
    if r < 0.2: s = "-" + s
    elif r < 0.35: s = s[:max(1, len(s) // 2)] + "." + s[len(s) // 2:]
    elif r < 0.5: s = f"{int(s):,}"
    elif r < 0.6: s = "0" * rng.randint(1, 4) + s
    return s

def fragment():
    r = rng.random()
    if r < 0.25: return rng.choice(SENTENCES)
    if r < 0.40: return rng.choice(WORDS)
    if r < 0.52: return number()
    if r < 0.62: return rng.choice(EMOJI)
    if r < 0.72: return rng.choice(SPECIALS)
    if r < 0.82: return rng.choice(CODE)
    if r < 0.92: return rng.choice(WS)
    return "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff), rng.randint(0x3000, 0x9fff),
                                   rng.randint(0xac00, 0xd7a3), rng.randint(0x1f300, 0x1faff)])) for _ in range(rng.randint(1, 8)))

out = []
out += SENTENCES + EMOJI + CODE + SPECIALS + WORDS + WS
out += ["", " ", "a", "1", "12", "123", "1234", "12345", "123456789012345678901234567890", "3.14159", "1e10", "0x1F",
        "\n", "\t", "     leading", "trailing     ", "  both  ", "a\tb\nc\r\nd", "¡", "'s", "'", "''", "' s", "''''"]
for n in range(1, 41): out.append("".join(str((i * 7 + n) % 10) for i in range(n)))
for s in SPECIALS[:12]:
    out += [f"{s}Hello", f"Hello {s} world", f" {s} ", f"{s}{s}", f"text{s}\n"]
while len(out) < 2400:
    k = rng.randint(1, 6)
    sep = rng.choice(["", " ", " ", "", "\n", rng.choice(WS)])
    out.append(sep.join(fragment() for _ in range(k)))
for s in out:
    print(json.dumps(s, ensure_ascii=False))
