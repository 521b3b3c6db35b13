// Incremental recognizer for a Grammar: a set of pushdown stacks advanced one code point at a
// time, fed with raw token bytes (a token may end inside a UTF-8 sequence; the partial
// character is kept in the state). Like an Earley item set without the chart: each stack is
// one way the input so far can continue.
#pragma once
#include <compare>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/length_bounds.h"

namespace coppice::grammar {

struct Frame {
  uint32_t pos = 0;    // index into Grammar::elements
  uint32_t count = 0;  // repetitions done (Repeat) or length matched so far (Bounded*)
  auto operator<=>(const Frame&) const = default;
};
// Top at the back; every frame below the top sits on the Ref/Repeat element it returns to.
// An empty stack means the root rule is complete.
using Stack = std::vector<Frame>;

struct Utf8State {
  uint32_t value = 0;  // bits of the code point read so far
  uint8_t need = 0;    // continuation bytes still expected
  uint8_t len = 0;     // length of the whole sequence (rejects overlong forms)
};

struct MatchState {
  std::vector<Stack> stacks;  // sorted, unique; each top is a Chars element (or empty: complete)
  Utf8State utf8;
};

class Matcher {
 public:
  // max_stacks bounds the state set: a grammar that keeps more parses alive than this is
  // reported as too ambiguous (coppice::Error) instead of growing without limit.
  explicit Matcher(GrammarPtr g, size_t max_stacks = 4096);

  // Feeds bytes; on false nothing was consumed (the bytes cannot continue any parse).
  bool accept(std::string_view bytes);
  bool is_complete() const { return complete(state_); }
  // A copy of the current state fed with bytes, without changing it.
  bool would_accept(std::string_view bytes) const;
  void reset();

  const MatchState& state() const { return state_; }
  const Grammar& grammar() const { return *g_; }
  // One byte from `from` into `to` (which is overwritten); false when nothing survives.
  bool advance_byte(const MatchState& from, uint8_t byte, MatchState& to) const;
  static bool complete(const MatchState& s) { return s.utf8.need == 0 && !s.stacks.empty() && s.stacks.front().empty(); }

 private:
  void step(const std::vector<Stack>& in, uint32_t cp, std::vector<Stack>& out) const;
  void expand(Stack s, std::vector<Stack>& out) const;
  // False when some length bound on the stack cannot hold what the grammar still needs
  // (pending: a code point is half read at the top, counted as one more).
  bool live(const Stack& s, bool pending) const;
  GrammarPtr g_;
  std::shared_ptr<const MinLengths> min_len_;  // only for grammars with length bounds
  size_t max_stacks_;
  MatchState state_, scratch_[2];
};

}  // namespace coppice::grammar
