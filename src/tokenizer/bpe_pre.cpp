// Byte-level BPE pre-tokenizers, selected by tokenizer.ggml.pre. Each is a list of regexes
// applied in turn: every regex splits each piece from the previous step into its matches and
// the text between them (HF "Split" with behavior Isolated). Patterns are the ones in the
// models' tokenizer.json (PCRE2 supports their (?i:...), lookaheads and Unicode classes).
// Names and their grouping follow llama.cpp's llama-vocab.cpp. A missing pre uses "default" with a
// warning (as llama.cpp); an unknown name is an error: llama.cpp falls back to "default",
// which silently changes tokenization. kimi-k2 and afmoe (custom code in llama.cpp) are absent.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>

#include "tokenizer/vocab.h"
#include "util/error.h"

namespace coppice::tok {
namespace {

// GPT-2's pattern (also the tail of several others).
const char* const kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// cl100k (Llama 3, DBRX, ChatGLM4): digits in groups of up to 3.
const char* const kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2 / StableLM2: as cl100k but single digits.
const char* const kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kTekken =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// o200k (GPT-4o, Llama 4).
const char* const kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";
// Explicit code points: the class holds letters whose NFC and NFD forms differ.
const char* const kDeepseekLlmLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
const char* const kDeepseekV3 =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kSeedCoder =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kBailing =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";

using Table = std::map<std::string, std::vector<std::string>, std::less<>>;

const Table& table() {
  static const Table t = [] {
    Table m;
    auto add = [&m](std::initializer_list<const char*> names, std::vector<std::string> rx) {
      for (const char* n : names) m[n] = rx;
    };
    // llama.cpp's catch-all for "default" and a missing pre.
    add({"default"}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"});
    add({"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe"}, {kLlama3});
    add({"deepseek-llm"}, {"[\r\n]", kDeepseekLlmLetters, R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)", R"(\s+$)",
                           R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N}+)"});
    add({"deepseek-v3", "hunyuan-dense"}, {R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)", kDeepseekV3});
    add({"deepseek-coder"}, {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N})"});
    add({"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"});
    add({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
        {R"(\p{N})", kGpt2});
    add({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de",
         "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4"},
        {kGpt2});
    add({"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "grok-2"}, {kQwen2});
    add({"poro-chat", "bloom", "gpt3-finnish"}, {kBloom});
    add({"viking"}, {kBloom, R"(\p{N})"});
    add({"tekken"}, {kTekken});
    add({"chameleon"}, {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
                        R"(\p{N})", R"([\p{P}!-/:-@\[-`{-~])", kGpt2});
    add({"gpt-4o", "llama4", "minimax-m2"}, {kGpt4o});
    add({"superbpe"}, {R"(\p{N}+)", R"((?=(\d{3})+(?!\d)))"});
    add({"bailingmoe", "bailingmoe2", "llada-moe"}, {kBailing});
    add({"seed-coder"}, {kSeedCoder});
    return m;
  }();
  return t;
}

pcre2_code* compile(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &err,
                                   &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("tokenizer", "pre-tokenizer regex '" + pattern + "': " + reinterpret_cast<char*>(msg) +
                          " at offset " + std::to_string(err_off));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional: the interpreter is the fallback
  return code;
}

struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

}  // namespace

const std::vector<std::string>* bpe_pretokenizer_regexes(std::string_view pre) {
  const auto& t = table();
  const auto it = t.find(pre);
  return it == t.end() ? nullptr : &it->second;
}

bool bpe_ignore_merges(std::string_view pre) {
  return pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "tekken";
}

bool bpe_default_add_bos(std::string_view pre) {
  return bpe_ignore_merges(pre) || pre == "chameleon";
}

RegexSplitter::RegexSplitter(const std::vector<std::string>& regexes) {
  for (const std::string& rx : regexes) codes_.push_back(compile(rx));
}

RegexSplitter::~RegexSplitter() {
  for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
}

std::vector<std::string> bpe_pre_split(std::string_view text, const std::vector<std::string>& regexes) {
  return RegexSplitter(regexes).split(text);
}

std::vector<std::string> RegexSplitter::split(std::string_view text) const {
  // Pieces are [begin, end) byte ranges of text.
  std::vector<std::pair<size_t, size_t>> pieces;
  if (!text.empty()) pieces.emplace_back(0, text.size());
  for (void* code_ptr : codes_) {
    const auto* code = static_cast<const pcre2_code*>(code_ptr);
    MatchData md(code);
    std::vector<std::pair<size_t, size_t>> next;
    next.reserve(pieces.size() * 2);
    for (const auto& [b, e] : pieces) {
      // Each piece is matched on its own, as the reference does (lookarounds and $ stop at
      // the piece's edges).
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + b);
      const size_t len = e - b;
      size_t last = 0, pos = 0;
      while (pos <= len) {
        int rc = pcre2_match(code, subject, len, pos, 0, md.md, nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
          rc = pcre2_match(code, subject, len, pos, PCRE2_NO_JIT, md.md, nullptr);
        }
        if (rc < 0) {
          if (rc == PCRE2_ERROR_NOMATCH) break;
          fail("tokenizer", "pre-tokenizer regex match failed (pcre2 error " + std::to_string(rc) + ")");
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.md);
        const size_t ms = ov[0], me = ov[1];
        if (ms > last) next.emplace_back(b + last, b + ms);
        if (me > ms) {
          next.emplace_back(b + ms, b + me);
          last = pos = me;
        } else {
          // Empty match: a split point; resume one character later.
          last = ms;
          if (ms >= len) break;
          pos = ms + 1;
          while (pos < len && (static_cast<uint8_t>(text[b + pos]) & 0xC0) == 0x80) ++pos;
        }
      }
      if (last < len) next.emplace_back(b + last, e);
    }
    pieces = std::move(next);
  }
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const auto& [b, e] : pieces) out.emplace_back(text.substr(b, e - b));
  return out;
}

}  // namespace coppice::tok
