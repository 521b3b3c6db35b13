#include "grammar/matcher.h"

#include <algorithm>
#include <set>

#include "util/error.h"

namespace coppice::grammar {
namespace {

constexpr uint32_t kCountMask = kBoundMax;  // Bounded frames: low bits count, top bits escape state
constexpr uint32_t kStateShift = 27;
bool is_bounded(Op op) { return op == Op::Bounded || op == Op::BoundedJson; }

// Counts one code point into the Bounded frame f (element e); false when it exceeds max.
// BoundedJson counts a JSON escape as one character: '\' is not counted, the escaped letter
// is, and the four hex digits after "\u" are not.
bool count_into(Frame& f, const Element& e, uint32_t cp) {
  uint32_t n = f.count & kCountMask, st = f.count >> kStateShift;
  bool counts = true;
  if (e.op == Op::BoundedJson) {
    if (st == 0 && cp == '\\') {
      if (e.max != kUnbounded && n >= e.max) return false;  // the escape it starts would not fit
      st = 1, counts = false;
    }
    else if (st == 1) st = cp == 'u' ? 5 : 0;
    else if (st >= 2) st = st == 2 ? 0 : st - 1, counts = false;
  }
  if (counts) {
    if (e.max != kUnbounded && n >= e.max) return false;
    ++n;
    if (e.max == kUnbounded) n = std::min(n, e.min);  // past min nothing distinguishes counts
  }
  f.count = (st << kStateShift) | n;
  return true;
}

}  // namespace

Matcher::Matcher(GrammarPtr g, size_t max_stacks) : g_(std::move(g)), max_stacks_(max_stacks) {
  if (has_length_bounds(*g_)) min_len_ = std::make_shared<const MinLengths>(MinLengths::compute(*g_));
  reset();
}

void Matcher::reset() {
  state_ = {};
  for (uint32_t a : g_->alts[g_->root]) expand(Stack{{a, 0}}, state_.stacks);
  std::erase_if(state_.stacks, [&](const Stack& s) { return !live(s, false); });
  std::sort(state_.stacks.begin(), state_.stacks.end());
  state_.stacks.erase(std::unique(state_.stacks.begin(), state_.stacks.end()), state_.stacks.end());
}

// Closes one stack over the moves that consume nothing (enter a rule, return from one,
// repeat or leave a repetition) and appends every stack that waits for a code point.
// `seen` stops revisits; unbounded repeat counts are capped at min so loops converge.
void Matcher::expand(Stack s, std::vector<Stack>& out) const {
  const auto& el = g_->elements;
  std::vector<Stack> work{std::move(s)};
  std::set<Stack> seen;
  auto push = [&](Stack&& st) {
    if (seen.insert(st).second) work.push_back(std::move(st));
  };
  while (!work.empty()) {
    Stack st = std::move(work.back());
    work.pop_back();
    if (st.empty()) {
      out.push_back(std::move(st));
      continue;
    }
    const Frame f = st.back();
    const Element& e = el[f.pos];
    switch (e.op) {
      case Op::Chars:
        out.push_back(std::move(st));
        break;
      case Op::End: {
        st.pop_back();
        if (!st.empty()) {
          Frame& p = st.back();
          const Element& pe = el[p.pos];
          if (pe.op == Op::Ref) {
            p = {p.pos + 1, 0};
          } else if (is_bounded(pe.op)) {
            if ((p.count & kCountMask) < pe.min || (p.count >> kStateShift) != 0) break;  // too short: this parse dies
            p = {p.pos + 1, 0};
          } else {
            ++p.count;
            if (pe.max == kUnbounded) p.count = std::min(p.count, pe.min);
          }
        }
        push(std::move(st));
        break;
      }
      case Op::Ref:
      case Op::Bounded:
      case Op::BoundedJson:
        for (uint32_t a : g_->alts[e.arg]) {
          Stack n = st;
          n.push_back({a, 0});
          push(std::move(n));
        }
        break;
      case Op::Repeat:
        if (f.count < e.max)
          for (uint32_t a : g_->alts[e.arg]) {
            Stack n = st;
            n.push_back({a, 0});
            push(std::move(n));
          }
        if (f.count >= e.min) {
          st.back() = {f.pos + 1, 0};
          push(std::move(st));
        }
        break;
    }
  }
}

bool Matcher::live(const Stack& s, bool pending) const {
  if (!min_len_ || s.empty()) return true;
  const MinLengths& ml = *min_len_;
  const uint32_t top = s.back().pos;
  uint64_t cp = pending ? 1 + ml.tail_cp[top + 1] : ml.tail_cp[top];
  uint64_t js = pending ? 1 + ml.tail_js[top + 1] : ml.tail_js[top];
  for (size_t k = s.size() - 1; k-- > 0;) {  // frames below the top, innermost first
    const Frame& f = s[k];
    const Element& e = g_->elements[f.pos];
    if (is_bounded(e.op)) {
      const uint64_t c = f.count & kCountMask;
      uint64_t& need = e.op == Op::Bounded ? cp : js;
      if ((f.count >> kStateShift) != 0) {
        // Inside a JSON escape the static costs above overcount its letters: no verdict
        // here (it comes once the escape is complete), only the bound's own minimum.
        need = e.min > c ? e.min - c : 0;
      } else {
        if (e.max != kUnbounded && c + need > e.max) return false;
        need = std::max<uint64_t>(need, e.min > c ? e.min - c : 0);
      }
    } else if (e.op == Op::Repeat) {
      const uint64_t left = e.min > f.count + 1 ? e.min - f.count - 1 : 0;
      cp += left * ml.rule_cp[e.arg];
      js += left * ml.rule_js[e.arg];
    }
    cp += ml.tail_cp[f.pos + 1];
    js += ml.tail_js[f.pos + 1];
  }
  return true;
}

void Matcher::step(const std::vector<Stack>& in, uint32_t cp, std::vector<Stack>& out) const {
  out.clear();
  for (const Stack& s : in) {
    if (s.empty()) continue;
    const Element& e = g_->elements[s.back().pos];
    if (!g_->classes[e.arg].contains(cp)) continue;
    Stack n = s;
    n.back() = {n.back().pos + 1, 0};
    bool fits = true;  // length bounds only exist where min_len_ does: no frame walk otherwise
    for (size_t k = 0; min_len_ && fits && k + 1 < n.size(); ++k)
      if (const Element& pe = g_->elements[n[k].pos]; is_bounded(pe.op)) fits = count_into(n[k], pe, cp);
    if (!fits) continue;
    const size_t from = out.size();
    expand(std::move(n), out);
    if (min_len_) out.erase(std::remove_if(out.begin() + static_cast<std::ptrdiff_t>(from), out.end(),
                                           [&](const Stack& st) { return !live(st, false); }), out.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > max_stacks_)
    fail("grammar", "more than " + std::to_string(max_stacks_) +
                        " parse states alive at once: the grammar is too ambiguous");
}

bool Matcher::advance_byte(const MatchState& from, uint8_t b, MatchState& to) const {
  Utf8State u = from.utf8;
  bool done = false;
  if (u.need == 0) {
    if (b < 0x80) u.value = b, done = true;
    else if ((b >> 5) == 6) u = {b & 0x1Fu, 1, 2};
    else if ((b >> 4) == 14) u = {b & 0x0Fu, 2, 3};
    else if ((b >> 3) == 30) u = {b & 0x07u, 3, 4};
    else return false;
  } else {
    if ((b >> 6) != 2) return false;
    u.value = (u.value << 6) | (b & 0x3Fu);
    done = --u.need == 0;
  }
  // Overlong forms (C1 BB for '{') and values past U+10FFFF are not UTF-8: a byte-fallback
  // vocabulary could spell grammar characters with them.
  static constexpr uint32_t kMinOfLen[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (done) {
    if (u.len > 1 && (u.value < kMinOfLen[u.len] || u.value > 0x10FFFF)) return false;
    step(from.stacks, u.value, to.stacks);
    to.utf8 = {};
    return !to.stacks.empty();
  }
  // Mid-character: viable while some stack accepts a code point with these leading bits.
  const uint32_t shift = 6u * u.need;
  const uint32_t lo = std::max(u.value << shift, kMinOfLen[u.len]);
  const uint32_t hi = std::min((u.value << shift) | ((1u << shift) - 1), 0x10FFFFu);
  if (lo > hi) return false;
  bool any = false;
  for (const Stack& s : from.stacks)
    if (!s.empty() && g_->classes[g_->elements[s.back().pos].arg].intersects(lo, hi) && live(s, true)) {
      any = true;
      break;
    }
  if (!any) return false;
  to.stacks = from.stacks;
  to.utf8 = u;
  return true;
}

bool Matcher::would_accept(std::string_view bytes) const {
  MatchState a = state_, b;
  for (char c : bytes) {
    if (!advance_byte(a, static_cast<uint8_t>(c), b)) return false;
    std::swap(a, b);
  }
  return true;
}

bool Matcher::accept(std::string_view bytes) {
  scratch_[0] = state_;
  int cur = 0;
  for (char c : bytes) {
    if (!advance_byte(scratch_[cur], static_cast<uint8_t>(c), scratch_[1 - cur])) return false;
    cur = 1 - cur;
  }
  std::swap(state_, scratch_[cur]);
  return true;
}

}  // namespace coppice::grammar
