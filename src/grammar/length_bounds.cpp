#include "grammar/length_bounds.h"

#include <algorithm>

namespace coppice::grammar {
namespace {

uint32_t sat_add(uint32_t a, uint32_t b) { return std::min<uint64_t>(uint64_t{a} + b, MinLengths::kInf); }
uint32_t sat_mul(uint32_t a, uint32_t b) { return std::min<uint64_t>(uint64_t{a} * b, MinLengths::kInf); }

bool only(const CharClass& c, uint32_t cp) {
  return !c.negated && c.ranges.size() == 1 && c.ranges[0].first == cp && c.ranges[0].second == cp;
}

}  // namespace

bool has_length_bounds(const Grammar& g) {
  return std::any_of(g.elements.begin(), g.elements.end(),
                     [](const Element& e) { return e.op == Op::Bounded || e.op == Op::BoundedJson; });
}

MinLengths MinLengths::compute(const Grammar& g) {
  MinLengths m;
  const size_t n = g.elements.size();
  m.tail_cp.assign(n, kInf);
  m.tail_js.assign(n, kInf);
  m.rule_cp.assign(g.n_rules(), kInf);
  m.rule_js.assign(g.n_rules(), kInf);
  // JSON units (static, from neighbours): '\' alone costs 0; after a literal "\u" the rest of
  // the alternative (the hex digits, however they are written) costs 0. A lower bound, so no
  // valid string is ever pruned.
  std::vector<uint8_t> js_free(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const Element& e = g.elements[i];
    if (e.op != Op::Chars || !only(g.classes[e.arg], '\\')) continue;
    js_free[i] = 1;
    if (i + 1 < n && g.elements[i + 1].op == Op::Chars && only(g.classes[g.elements[i + 1].arg], 'u'))
      for (size_t k = i + 2; k < n && g.elements[k].op != Op::End; ++k) js_free[k] = 1;
  }
  // Fixpoint: rule minima only decrease; each pass recomputes every alternative's tails.
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < g.n_rules(); ++r)
      for (uint32_t a : g.alts[r]) {
        size_t end = a;
        while (g.elements[end].op != Op::End) ++end;
        uint32_t cp = 0, js = 0;
        m.tail_cp[end] = m.tail_js[end] = 0;
        for (size_t i = end; i-- > a;) {
          const Element& e = g.elements[i];
          const uint32_t js_before = js;
          switch (e.op) {
            case Op::Chars: cp = sat_add(cp, 1); js = sat_add(js, 1); break;
            case Op::Ref: cp = sat_add(cp, m.rule_cp[e.arg]); js = sat_add(js, m.rule_js[e.arg]); break;
            case Op::Repeat: cp = sat_add(cp, sat_mul(e.min, m.rule_cp[e.arg])); js = sat_add(js, sat_mul(e.min, m.rule_js[e.arg])); break;
            case Op::Bounded: cp = sat_add(cp, std::max(e.min, m.rule_cp[e.arg])); js = sat_add(js, m.rule_js[e.arg]); break;
            case Op::BoundedJson: cp = sat_add(cp, m.rule_cp[e.arg]); js = sat_add(js, std::max(e.min, m.rule_js[e.arg])); break;
            case Op::End: break;
          }
          if (js_free[i]) js = js_before;
          m.tail_cp[i] = cp;
          m.tail_js[i] = js;
        }
        if (cp < m.rule_cp[r]) m.rule_cp[r] = cp, changed = true;
        if (js < m.rule_js[r]) m.rule_js[r] = js, changed = true;
      }
  }
  return m;
}

}  // namespace coppice::grammar
