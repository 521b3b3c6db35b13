// Grammar parser, matcher, token masks and the sampler's rejection path, each against an
// independent oracle: a naive backtracking recognizer, a per-token check, exact probabilities.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "engine/grammar_sampling.h"
#include "engine/sampling.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/regex.h"
#include "grammar/token_trie.h"
#include "util/error.h"

using namespace coppice;
using namespace coppice::grammar;

namespace {

std::vector<uint32_t> cps(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) out.push_back(decode_utf8(s, i));
  return out;
}

// Naive recognizer over the parsed program: the set of end positions of each element run,
// by plain recursion (exponential, fine for short strings). Shares only the data structure.
class Naive {
 public:
  explicit Naive(const Grammar& g) : g_(g) {}
  bool full(const std::string& s) {
    in_ = cps(s);
    return rule(g_.root, 0).count(in_.size()) > 0;
  }

 private:
  std::set<size_t> rule(uint32_t r, size_t i) {
    std::set<size_t> out;
    for (uint32_t a : g_.alts[r]) {
      auto e = seq(a, i);
      out.insert(e.begin(), e.end());
    }
    return out;
  }
  std::set<size_t> seq(uint32_t pos, size_t i) {
    const Element& e = g_.elements[pos];
    std::set<size_t> out;
    switch (e.op) {
      case Op::End: out.insert(i); break;
      case Op::Chars:
        if (i < in_.size() && g_.classes[e.arg].contains(in_[i])) out = seq(pos + 1, i + 1);
        break;
      case Op::Ref:
        for (size_t m : rule(e.arg, i)) {
          auto x = seq(pos + 1, m);
          out.insert(x.begin(), x.end());
        }
        break;
      case Op::Repeat: out = rep(pos, 0, i); break;
      case Op::Bounded:
      case Op::BoundedJson:
        for (size_t m : rule(e.arg, i)) {
          const size_t len = e.op == Op::Bounded ? m - i : json_chars(i, m);
          if (len < e.min || (e.max != kUnbounded && len > e.max)) continue;
          auto x = seq(pos + 1, m);
          out.insert(x.begin(), x.end());
        }
        break;
    }
    return out;
  }
  // Characters of the JSON string text in_[i, m): an escape (\x, or \u and 4 more) is one.
  size_t json_chars(size_t i, size_t m) const {
    size_t n = 0;
    while (i < m) {
      if (in_[i] == '\\' && i + 1 < m) i += in_[i + 1] == 'u' ? 6 : 2;
      else ++i;
      ++n;
    }
    return n;
  }
  std::set<size_t> rep(uint32_t pos, uint32_t k, size_t i) {
    const Element& e = g_.elements[pos];
    std::set<size_t> out;
    if (k >= e.min) out = seq(pos + 1, i);
    if (k < e.max)
      for (size_t m : rule(e.arg, i)) {
        if (m == i && k >= e.min) continue;  // an empty iteration adds nothing new
        auto x = rep(pos, k + 1, m);
        out.insert(x.begin(), x.end());
      }
    return out;
  }
  const Grammar& g_;
  std::vector<uint32_t> in_;
};

struct Case {
  std::string gbnf;
  std::string alphabet;  // UTF-8; strings are all words over it up to max_len code points
  int max_len;
};

const std::vector<Case>& corpus() {
  static const std::vector<Case> c = {
      {R"(root ::= "a")", "ab", 4},
      {R"(root ::= "ab" | "a" "c")", "abc", 4},
      {R"(root ::= [a-c]*)", "abcd", 5},
      {R"(root ::= [^b]+)", "abc", 5},
      {R"(root ::= "a"? "b")", "ab", 4},
      {R"(root ::= ("a" | "bc")+)", "abc", 6},
      {R"(root ::= "x"{3})", "xy", 5},
      {R"(root ::= "x"{2,})", "xy", 5},
      {R"(root ::= "x"{1,3} "y")", "xy", 6},
      {R"(root ::= ("ab"){0,2})", "ab", 6},
      {R"(root ::= a b
a ::= "a"*
b ::= "b"* "a"?)", "ab", 5},
      {R"g(root ::= "(" root ")" | "")g", "()", 6},
      {R"(root ::= item ("," item)*
item ::= [0-9]+ | "[" root? "]")", "1,[]", 5},
      {"root ::= \"\\u00e9\" [\\u0100-\\u0200]* \"\\n\"", "\xc3\xa9\xc4\x80\xc8\x80\n", 4},
      {R"(root ::= . "z")", "z\xe2\x82\xac", 3},
      {R"(root ::= ("a" | "")* "b")", "ab", 5},
      {R"(root ::= ("a"? "b"?){2,3} "c")", "abc", 6},
      {R"(root ::= x
x ::= "a" x "b" | "ab")", "ab", 6},
      {"# comment\nroot ::= [\\x41-\\x43]+ # trailing\n  | \"\\\\\" \"\\\"\"", "AC\\\"", 4},
      {R"(root ::= ("a" "b"?)* "a")", "ab", 6},
      {R"(root ::= [a-b] [^a-b] .)", "abc", 4},
      {R"(root ::= "ab"* "abab")", "ab", 8},
      {R"(root ::= ( [0-9]{2} ":" ){1,2} [0-9])", "1:", 7},
      // Length bounds (coppice extension): code points, and JSON string characters.
      {R"(root ::= [a-c]+%{2,3} "c"?)", "abc", 5},
      {R"(root ::= ("a" | "bb")*%{1,3})", "ab", 6},
      {R"(root ::= [a\u20ac]*%{2} "b"?)", "a" "\xe2\x82\xac" "b", 4},
      {R"(root ::= ("a"*)%{2,} "b")", "ab", 6},
      {R"(root ::= ("a" x%{1,2})%{3} | x%{0}
x ::= "a"*)", "a", 6},
      {R"(root ::= ( "x" | "\\" "\\" | "\\u" "0"{4} )*%j{1,2})", "x\\u0", 7},
  };
  return c;
}

void words(const std::vector<std::string>& alpha, int max_len, std::vector<std::string>& out) {
  std::vector<std::string> cur = {""};
  out = cur;
  for (int l = 1; l <= max_len; ++l) {
    std::vector<std::string> next;
    for (const auto& w : cur)
      for (const auto& a : alpha) next.push_back(w + a);
    out.insert(out.end(), next.begin(), next.end());
    cur.swap(next);
  }
}

std::vector<std::string> split_cps(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    decode_utf8(s, i);
    out.push_back(s.substr(b, i - b));
  }
  return out;
}

}  // namespace

TEST(GrammarParse, ValidGrammarsParse) {
  for (const auto& c : corpus()) EXPECT_NO_THROW(Grammar::parse(c.gbnf)) << c.gbnf;
  const Grammar g = Grammar::parse("root ::= \"x\"{0,5000}");
  EXPECT_LT(g.elements.size(), 10u);  // counted repetition is one element, not 5000 copies
}

TEST(GrammarParse, ErrorsNameLineAndColumn) {
  auto msg = [](const std::string& text) {
    try {
      Grammar::parse(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(msg("root ::= \"a\"\nx ::= [a-z"), "[grammar] line 2, col 7: expected ']' to close the character class");
  EXPECT_EQ(msg("root ::= foo"), "[grammar] line 1, col 10: undefined rule 'foo'");
  EXPECT_EQ(msg("root ::= \"abc"), "[grammar] line 1, col 10: unterminated string literal (expected '\"')");
  EXPECT_EQ(msg("root ::= (\"a\""), "[grammar] line 1, col 10: expected ')' to close the group opened here");
  EXPECT_EQ(msg("x ::= \"a\""), "[grammar] no 'root' rule (the start symbol)");
  EXPECT_EQ(msg("root ::= \"a\"{3,1}"), "[grammar] line 1, col 13: repetition {3,1}: max is below min");
  EXPECT_EQ(msg("root ::= \"\\q\""), "[grammar] line 1, col 11: unknown escape '\\q'");
  EXPECT_EQ(msg("root ::= \"a\"\nroot ::= \"b\""), "[grammar] line 2, col 1: rule 'root' is defined twice");
  EXPECT_EQ(msg("root ::= \"a\" @"), "[grammar] line 1, col 14: unexpected character '@'");
  EXPECT_NE(msg("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"").find("left-recursive (expr -> expr)"), std::string::npos);
  EXPECT_NE(msg("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"b\"").find("left-recursive"), std::string::npos);
}

TEST(GrammarMatch, AgreesWithNaiveRecognizer) {
  std::mt19937 rng(7);
  size_t n_checked = 0, n_accepted = 0;
  for (const auto& c : corpus()) {
    auto g = std::make_shared<const Grammar>(Grammar::parse(c.gbnf));
    Naive naive(*g);
    std::vector<std::string> ws;
    words(split_cps(c.alphabet), c.max_len, ws);
    for (const std::string& w : ws) {
      const bool want = naive.full(w);
      // Feed in random byte chunks, so code points are split across calls.
      Matcher m(g);
      bool alive = true;
      for (size_t i = 0; i < w.size() && alive;) {
        const size_t n = std::min<size_t>(w.size() - i, 1 + rng() % 3);
        alive = m.accept(std::string_view(w).substr(i, n));
        i += n;
      }
      const bool got = alive && m.is_complete();
      EXPECT_EQ(got, want) << c.gbnf << "\non: '" << w << "'";
      ++n_checked;
      n_accepted += want;
    }
  }
  EXPECT_GT(n_checked, 5000u);
  EXPECT_GT(n_accepted, 200u);
}

TEST(GrammarMatch, RejectedBytesLeaveStateUnchanged) {
  auto g = std::make_shared<const Grammar>(Grammar::parse(R"(root ::= "ab" "c"*)"));
  Matcher m(g);
  EXPECT_TRUE(m.accept("a"));
  EXPECT_FALSE(m.accept("bx"));
  EXPECT_TRUE(m.accept("b"));
  EXPECT_TRUE(m.is_complete());
  EXPECT_TRUE(m.accept("cc"));
  EXPECT_TRUE(m.is_complete());
}

TEST(GrammarMatch, BoundsTheStateSet) {
  // After n a's every split into (outer count, inner count) is a distinct live parse.
  auto g = std::make_shared<const Grammar>(Grammar::parse(R"(root ::= ("a"{0,50}){0,50} "b")"));
  Matcher m(g, 64);
  EXPECT_THROW(
      {
        for (int i = 0; i < 50; ++i) m.accept("a");
      },
      Error);
}

TEST(GrammarMask, TrieMaskEqualsPerTokenCheck) {
  std::mt19937 rng(11);
  const std::vector<std::string> alpha = {"a", "b", "{", "}", "\"", ",", ":", " ", "1", "\xc3\xa9", "\xe2\x82\xac"};
  std::vector<std::string> pieces;
  for (int i = 0; i < 400; ++i) {
    std::string p;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n; ++k) p += alpha[rng() % alpha.size()];
    if (rng() % 5 == 0 && p.size() > 1) p.pop_back();  // may cut a UTF-8 sequence
    pieces.push_back(p);
  }
  pieces.push_back("");  // a control token: never allowed
  TokenTrie trie(pieces);
  const std::vector<std::string> grammars = {
      json_object_gbnf(),
      "root ::= (\"a\" | \"\\u00e9\" | \"\\u20ac\")+ \"b\"?",
      corpus()[12].gbnf,
      "root ::= [^a]* \"a\"",
  };
  for (const std::string& gb : grammars) {
    auto g = std::make_shared<const Grammar>(Grammar::parse(gb));
    Matcher m(g);
    for (int step = 0; step < 30; ++step) {
      std::vector<uint8_t> mask;
      trie.mask(m, mask);
      std::vector<size_t> ok;
      for (size_t id = 0; id < pieces.size(); ++id) {
        const bool want = !pieces[id].empty() && m.would_accept(pieces[id]);
        ASSERT_EQ(mask[id] != 0, want) << gb << " token '" << pieces[id] << "' step " << step;
        if (want) ok.push_back(id);
      }
      if (ok.empty()) break;
      ASSERT_TRUE(m.accept(pieces[ok[rng() % ok.size()]]));
    }
  }
}

namespace {

// A toy vocabulary: single characters, a few words, and an end-of-generation token (id 0).
std::shared_ptr<GrammarVocab> toy_vocab() {
  auto v = std::make_shared<GrammarVocab>();
  v->pieces = {"", "a", "b", "c", "ab", "ba", "{", "}", "\"", "x", "abc", "cc"};
  v->eog.assign(v->pieces.size(), 0);
  v->eog[0] = 1;
  v->trie = std::make_unique<TokenTrie>(v->pieces);
  return v;
}

std::vector<float> toy_logits(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> l(n);
  for (auto& x : l) x = nd(rng);
  return l;
}

}  // namespace

TEST(GrammarSampling, RejectionGivesTheMaskedDistribution) {
  auto vocab = toy_vocab();
  auto g = compile_grammar(R"(root ::= ("a" | "b")+ "c"?)");
  for (uint64_t trial = 0; trial < 3; ++trial) {
    const std::vector<float> logits = toy_logits(vocab->pieces.size(), trial);
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 100 + trial;
    Sampler adaptive(sp), full(sp);
    adaptive.set_constraint(make_grammar_constraint(g, vocab), true);
    full.set_constraint(make_grammar_constraint(g, vocab), false);
    // After "a": allowed are a, b, c, ab, ba, abc and EOG (the grammar is complete).
    adaptive.accept(1);
    full.accept(1);
    // Expected: softmax over allowed tokens only, computed here independently.
    const std::set<int32_t> allowed = {0, 1, 2, 3, 4, 5, 10};
    double z = 0;
    for (int32_t id : allowed) z += std::exp(static_cast<double>(logits[id]));
    std::vector<double> want(logits.size(), 0.0);
    for (int32_t id : allowed) want[id] = std::exp(static_cast<double>(logits[id])) / z;
    for (Sampler* s : {&adaptive, &full}) {
      const Candidates& c = s->process(logits);
      for (const auto& x : c.items) EXPECT_NEAR(x.p, want[x.id], 1e-6) << "token " << x.id;
    }
    const int N = 200000;
    std::vector<int> hist_a(logits.size()), hist_f(logits.size());
    for (int i = 0; i < N; ++i) {
      ++hist_a[adaptive.sample(logits)];
      ++hist_f[full.sample(logits)];
    }
    for (size_t id = 0; id < logits.size(); ++id) {
      const double sd = std::sqrt(N * want[id] * (1 - want[id])) + 1e-9;
      EXPECT_LE(std::fabs(hist_a[id] - N * want[id]), 5 * sd + 1) << "adaptive, token " << id;
      EXPECT_LE(std::fabs(hist_f[id] - N * want[id]), 5 * sd + 1) << "full mask, token " << id;
      if (want[id] == 0) {
        EXPECT_EQ(hist_a[id], 0) << "disallowed token " << id << " sampled";
      }
    }
  }
}

TEST(GrammarSampling, GreedyAndTruncationFallback) {
  auto vocab = toy_vocab();
  auto g = compile_grammar(R"(root ::= "x" "}")");
  std::vector<float> logits(vocab->pieces.size(), 0.0f);
  logits[1] = 5, logits[2] = 4, logits[9] = -3;  // "x" ranks far below a and b
  SamplingParams sp;
  sp.temperature = 0;
  Sampler greedy(sp);
  greedy.set_constraint(make_grammar_constraint(g, vocab));
  EXPECT_EQ(greedy.sample(logits), 9);
  greedy.accept(9);
  EXPECT_EQ(greedy.sample(logits), 7);
  greedy.accept(7);
  EXPECT_EQ(greedy.sample(logits), 0);  // complete: only end-of-generation is left
  // top_k = 2 keeps only a and b; the mask moves before truncation and "x" is still reachable.
  sp.temperature = 1;
  sp.top_k = 2;
  Sampler s(sp);
  s.set_constraint(make_grammar_constraint(g, vocab));
  EXPECT_EQ(s.sample(logits), 9);
}

TEST(GrammarSampling, ConstrainsOnlyAfterMarker) {
  auto vocab = std::make_shared<GrammarVocab>();
  vocab->pieces = {"", "think", "</", "think>", " ", "{", "}"};
  vocab->eog = {1, 0, 0, 0, 0, 0, 0};
  vocab->trie = std::make_unique<TokenTrie>(vocab->pieces);
  GrammarOptions opts;
  opts.start_after = "</think>";
  auto c = make_grammar_constraint(compile_grammar(R"(root ::= "{" "}")"), vocab, opts);
  EXPECT_TRUE(c->allows(1));
  c->accept(1);
  c->accept(2);
  EXPECT_TRUE(c->allows(6));  // still free: the marker is not complete
  c->accept(3);
  EXPECT_FALSE(c->allows(6));
  EXPECT_FALSE(c->allows(0));
  EXPECT_TRUE(c->allows(4) == false && c->allows(5));
  c->accept(5);
  c->accept(6);
  EXPECT_TRUE(c->allows(0));
}

// allows_path (speculative draft pruning) agrees with feeding the path token by token through
// allows() and accept() on a fresh constraint, for every path of up to 3 tokens.
TEST(GrammarSampling, AllowsPathAgreesWithTokenByTokenAcceptance) {
  auto vocab = std::make_shared<GrammarVocab>();
  vocab->pieces = {"", "a", "b", "ab", "ba", "c", "\xc3", "\xa9", "bc"};
  vocab->eog = {1, 0, 0, 0, 0, 0, 0, 0, 0};
  vocab->trie = std::make_unique<TokenTrie>(vocab->pieces);
  const auto g = compile_grammar(R"(root ::= "a" ("b" | "\u00e9")* "c"?)");
  const int V = static_cast<int>(vocab->pieces.size());
  int allowed = 0, total = 0;
  for (int n = 1; n <= 3; ++n) {
    std::vector<int32_t> path(static_cast<size_t>(n), 0);
    for (int code = 0; code < static_cast<int>(std::pow(V, n)); ++code) {
      for (int i = 0, c = code; i < n; ++i, c /= V) path[static_cast<size_t>(i)] = c % V;
      // Reference: a fresh constraint fed one token at a time; an end token ends the path.
      auto ref = make_grammar_constraint(g, vocab);
      bool ok = true;
      for (int32_t id : path) {
        if (vocab->eog[static_cast<size_t>(id)]) break;
        if (!ref->allows(id)) {
          // allows() refuses a lone UTF-8 lead byte only if no continuation could follow;
          // here it must be accepted to go on.
          ok = false;
          break;
        }
        ref->accept(id);
      }
      auto c = make_grammar_constraint(g, vocab);
      EXPECT_EQ(c->allows_path(path), ok) << "path of " << n << " tokens, code " << code;
      allowed += ok;
      ++total;
    }
  }
  EXPECT_GT(allowed, 10);
  EXPECT_LT(allowed, total / 2);
}

TEST(GrammarRegex, FullMatchAndErrors) {
  struct R {
    std::string re, yes, no;
  };
  const std::vector<R> cases = {
      {"a+b?", "aab", "abb"},       {"\\d{3}-\\d{2}", "123-45", "12-345"},
      {"[A-Z][a-z]*", "Hello", "hello"}, {"(cat|dog)s?", "dogs", "cats!"},
      {"^x.z$", "xyz", "x\nz"},      {"\\w+@\\w+\\.com", "me@ex.com", "me@ex.org"},
      {"[^0-9]{2,3}", "abc", "a1"},  {"(?:ab){2}", "abab", "ab"},
  };
  for (const auto& c : cases) {
    auto g = compile_grammar(regex_to_gbnf(c.re));
    Matcher y(g), n(g);
    EXPECT_TRUE(y.accept(c.yes) && y.is_complete()) << c.re << " on " << c.yes;
    EXPECT_FALSE(n.accept(c.no) && n.is_complete()) << c.re << " on " << c.no;
  }
  for (const char* bad : {"(a", "a)", "\\1", "(?=a)", "a\\b", "[a", "*a", "a{2,1}"})
    EXPECT_THROW(regex_to_gbnf(bad), Error) << bad;
}

TEST(GrammarJsonSchema, PatternsUseSearchSemanticsAndJsonEscapes) {
  auto g = compile_grammar(json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","pattern":"ab+c"})")));
  for (const char* yes : {"\"abbc\"", "\"zz abc q\"", "\"x\\\"abc\""}) {
    Matcher m(g);
    EXPECT_TRUE(m.accept(yes) && m.is_complete()) << yes;
  }
  for (const char* no : {"\"ac\"", "\"abb\"", "\"a\"bc\""}) {
    Matcher m(g);
    EXPECT_FALSE(m.accept(no) && m.is_complete()) << no;
  }
  auto q = compile_grammar(json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","pattern":"^[\"x]$"})")));
  Matcher m(q);
  EXPECT_TRUE(m.accept("\"\\\"\"") && m.is_complete());  // the quote, JSON-escaped
}

TEST(GrammarJsonSchema, IntegerRangesAreExact) {
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 0}, {-5, 5}, {7, 123}, {-130, -17}, {99, 1001}, {-1, 0}};
  for (auto [lo, hi] : ranges) {
    auto g = compile_grammar("root ::= " + int_range_gbnf(&lo, &hi));
    for (int64_t v = -1200; v <= 1200; ++v) {
      Matcher m(g);
      const bool in = m.accept(std::to_string(v)) && m.is_complete();
      EXPECT_EQ(in, v >= lo && v <= hi) << v << " in [" << lo << ", " << hi << "]";
    }
    Matcher z(g);
    EXPECT_FALSE(z.accept("00") && z.is_complete());
  }
  const int64_t lo = 42;
  auto g = compile_grammar("root ::= " + int_range_gbnf(&lo, nullptr));
  for (int64_t v = -100; v <= 20000; v += 7) {
    Matcher m(g);
    EXPECT_EQ(m.accept(std::to_string(v)) && m.is_complete(), v >= 42) << v;
  }
}

TEST(GrammarJsonSchema, LargeMaxLengthStaysCompact) {
  const std::string gb = json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","minLength":1,"maxLength":5000})"));
  EXPECT_LT(gb.size(), 2000u);
  auto g = compile_grammar(gb);
  Matcher m(g);
  EXPECT_TRUE(m.accept("\"" + std::string(5000, 'x')));
  EXPECT_FALSE(m.would_accept("x"));
  EXPECT_TRUE(m.accept("\"") && m.is_complete());
}

// pattern / format together with minLength/maxLength: the length counts JSON string
// characters (an escape is one), as JSON Schema validators do on the decoded string.
TEST(GrammarJsonSchema, PatternAndFormatWithLengthBounds) {
  auto accepts = [](const grammar::GrammarPtr& g, const std::string& s) {
    Matcher m(g);
    return m.accept(s) && m.is_complete();
  };
  auto g = compile_grammar(json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","pattern":"b","minLength":2,"maxLength":4})")));
  for (const char* yes : {"\"ab\"", "\"bbbb\"", "\"a\\\"b\"", "\"\\tb\\n\"", "\"\xc3\xa9" "b\""})
    EXPECT_TRUE(accepts(g, yes)) << yes;
  for (const char* no : {"\"b\"", "\"abbbb\"", "\"aaa\"", "\"\\\\\\\\\\\\b\\\\\"", "\"\\t\\t\\t\\tb\""})
    EXPECT_FALSE(accepts(g, no)) << no;
  auto d = compile_grammar(json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","format":"date","maxLength":9})")));
  EXPECT_FALSE(accepts(d, "\"2024-01-31\""));  // a date is 10 characters: nothing fits
  auto e = compile_grammar(json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","format":"email","maxLength":7})")));
  EXPECT_TRUE(accepts(e, "\"a@b.io\""));
  EXPECT_FALSE(accepts(e, "\"ab@cd.io\""));
  EXPECT_THROW(json_schema_to_gbnf(nlohmann::json::parse(R"({"type":"string","pattern":"a","format":"date"})")), Error);
}
