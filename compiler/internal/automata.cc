// From regex trees to minimised multi-pattern DFAs.
//
// 1. Thompson construction over bytes. A code point set becomes the UTF-8
//    byte-range sequences that encode exactly its members (surrogates and
//    invalid bytes never match), merged into a prefix trie. Every pattern
//    ends in its own Match state; the set is one alternation.
// 2. Byte classes from the NFA: bytes that no range boundary, `\n` or word
//    boundary separates behave identically, so subset construction steps
//    once per class instead of once per byte.
// 3. Subset construction. A DFA state is (NFA states, context of the
//    previous byte, patterns that matched on entry). Assertions are resolved
//    while stepping, when both neighbours of the position are known, which
//    is why matches are reported one symbol late and why an end-of-text
//    symbol exists. Unanchored automata re-add the NFA start at every step.
// 4. Hopcroft minimisation, with the initial partition by match set and
//    quiescence, so both survive. Then byte classes are merged again where
//    the minimal DFA no longer distinguishes them.
//
// The reverse automaton is built from the reversed trees (concatenations and
// UTF-8 sequences reversed, ^/$ and \A/\z swapped), and finds match starts.
#include "compiler/internal/automata.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <tuple>
#include <numeric>
#include <unordered_map>

namespace kt::internal {
namespace {

constexpr uint32_t kNone = UINT32_MAX;

struct NfaState {
  enum Kind : uint8_t { kRange, kEps, kAssert, kMatch };
  Kind kind = kEps;
  uint8_t lo = 0;
  uint8_t hi = 0;
  AssertKind assertion = AssertKind::kBeginText;
  uint32_t out = kNone;
  uint32_t out2 = kNone;  // kEps only: a second branch
  uint32_t pattern = 0;   // kMatch only
};

struct ByteRange {
  uint8_t lo;
  uint8_t hi;
};

// Splits [lo, hi] into ranges whose UTF-8 encodings are byte-range
// sequences of one length (the classic utf8-ranges construction).
void Utf8Sequences(uint32_t lo, uint32_t hi, std::vector<std::vector<ByteRange>>* out) {
  if (lo > hi) return;
  // Surrogates are not valid in UTF-8.
  if (lo <= 0xDFFF && hi >= 0xD800) {
    if (lo < 0xD800) Utf8Sequences(lo, 0xD7FF, out);
    if (hi > 0xDFFF) Utf8Sequences(0xE000, hi, out);
    return;
  }
  static const uint32_t kMax[] = {0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  for (int i = 0; i < 3; ++i) {
    if (lo <= kMax[i] && hi > kMax[i]) {
      Utf8Sequences(lo, kMax[i], out);
      Utf8Sequences(kMax[i] + 1, hi, out);
      return;
    }
  }
  if (hi <= 0x7F) {
    out->push_back({ByteRange{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  int n = hi <= 0x7FF ? 2 : hi <= 0xFFFF ? 3 : 4;
  for (int i = 1; i < n; ++i) {
    uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        Utf8Sequences(lo, lo | m, out);
        Utf8Sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        Utf8Sequences(lo, (hi & ~m) - 1, out);
        Utf8Sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  auto encode = [n](uint32_t cp, uint8_t* b) {
    if (n == 2) {
      b[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
      b[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    } else if (n == 3) {
      b[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
      b[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      b[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    } else {
      b[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
      b[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
      b[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      b[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    }
  };
  uint8_t a[4], b[4];
  encode(lo, a);
  encode(hi, b);
  std::vector<ByteRange> seq;
  for (int i = 0; i < n; ++i) seq.push_back(ByteRange{a[i], b[i]});
  out->push_back(std::move(seq));
}

class NfaBuilder {
 public:
  struct Frag {
    uint32_t start;
    std::vector<uint32_t> outs;  // states whose `out` is still to be patched
  };

  explicit NfaBuilder(std::size_t max_states) : max_states_(max_states) {}

  std::vector<NfaState>& states() { return states_; }
  bool overflow() const { return overflow_; }

  uint32_t Add(NfaState s) {
    if (states_.size() >= max_states_) {
      overflow_ = true;
      return 0;
    }
    states_.push_back(s);
    return static_cast<uint32_t>(states_.size() - 1);
  }

  void Patch(const std::vector<uint32_t>& outs, uint32_t target) {
    for (uint32_t s : outs) {
      if (s < states_.size()) states_[s].out = target;
    }
  }

  Frag Epsilon() {
    uint32_t s = Add(NfaState{});
    return Frag{s, {s}};
  }

  Frag Build(const RegexNode& node, bool reverse) {
    if (overflow_) return Epsilon();
    switch (node.kind) {
      case RegexKind::kEmpty:
        return Epsilon();
      case RegexKind::kAssert: {
        NfaState s;
        s.kind = NfaState::kAssert;
        s.assertion = reverse ? Reversed(node.assertion) : node.assertion;
        uint32_t id = Add(s);
        return Frag{id, {id}};
      }
      case RegexKind::kChars:
        return Chars(node.chars, reverse);
      case RegexKind::kConcat: {
        std::vector<const RegexNode*> parts;
        for (const auto& c : node.children) parts.push_back(c.get());
        if (reverse) std::reverse(parts.begin(), parts.end());
        Frag f = Build(*parts[0], reverse);
        for (std::size_t i = 1; i < parts.size(); ++i) {
          Frag g = Build(*parts[i], reverse);
          Patch(f.outs, g.start);
          f.outs = std::move(g.outs);
        }
        return f;
      }
      case RegexKind::kAlt: {
        std::vector<Frag> frags;
        for (const auto& c : node.children) frags.push_back(Build(*c, reverse));
        return Alternate(std::move(frags));
      }
      case RegexKind::kRepeat:
        return Repeat(node, reverse);
    }
    return Epsilon();
  }

  Frag Alternate(std::vector<Frag> frags) {
    // A chain of binary splits: s0 -> f0 | s1, s1 -> f1 | s2, …
    Frag result{kNone, {}};
    uint32_t prev_split = kNone;
    for (std::size_t i = 0; i < frags.size(); ++i) {
      uint32_t entry = frags[i].start;
      if (i + 1 < frags.size()) {
        NfaState split;
        split.out = frags[i].start;
        entry = Add(split);
      }
      if (prev_split == kNone) {
        result.start = entry;
      } else {
        states_[prev_split].out2 = entry;
      }
      if (i + 1 < frags.size()) prev_split = entry;
      result.outs.insert(result.outs.end(), frags[i].outs.begin(), frags[i].outs.end());
    }
    return result;
  }

 private:
  static AssertKind Reversed(AssertKind a) {
    switch (a) {
      case AssertKind::kBeginLine:
        return AssertKind::kEndLine;
      case AssertKind::kEndLine:
        return AssertKind::kBeginLine;
      case AssertKind::kBeginText:
        return AssertKind::kEndText;
      case AssertKind::kEndText:
        return AssertKind::kBeginText;
      default:
        return a;
    }
  }

  // The byte sequences of a code point set, merged into a prefix trie so a
  // class such as \p{L} costs hundreds of states rather than thousands.
  Frag Chars(const CharSet& set, bool reverse) {
    std::vector<std::vector<ByteRange>> seqs;
    for (const CodeRange& r : set.ranges()) Utf8Sequences(r.lo, r.hi, &seqs);
    if (seqs.empty()) {
      // The empty set never matches: a range state with no byte.
      NfaState s;
      s.kind = NfaState::kRange;
      s.lo = 1;
      s.hi = 0;
      uint32_t id = Add(s);
      return Frag{id, {}};
    }
    if (reverse) {
      for (auto& seq : seqs) std::reverse(seq.begin(), seq.end());
    }
    struct TrieNode {
      std::vector<std::pair<ByteRange, int>> children;  // -1: leaf edge
    };
    std::vector<TrieNode> trie(1);
    std::vector<std::pair<int, std::size_t>> leaf_edges;  // (node, child index)
    for (const auto& seq : seqs) {
      int node = 0;
      for (std::size_t i = 0; i < seq.size(); ++i) {
        bool last = i + 1 == seq.size();
        auto& kids = trie[node].children;
        int found = -2;
        for (auto& [range, child] : kids) {
          if (range.lo == seq[i].lo && range.hi == seq[i].hi && (child == -1) == last) {
            found = child;
            break;
          }
        }
        if (found == -2) {
          int child = last ? -1 : static_cast<int>(trie.size());
          kids.emplace_back(seq[i], child);
          if (!last) trie.emplace_back();
          found = child;
        }
        if (last) break;
        node = found;
      }
    }
    Frag frag{kNone, {}};
    std::vector<uint32_t> entry(trie.size(), kNone);
    // Build bottom-up: a node is an alternation of its edges.
    for (int n = static_cast<int>(trie.size()) - 1; n >= 0; --n) {
      std::vector<Frag> alts;
      for (auto& [range, child] : trie[n].children) {
        NfaState s;
        s.kind = NfaState::kRange;
        s.lo = range.lo;
        s.hi = range.hi;
        uint32_t id = Add(s);
        if (child == -1) {
          alts.push_back(Frag{id, {id}});
        } else {
          if (id < states_.size()) states_[id].out = entry[child];
          alts.push_back(Frag{id, {}});
        }
      }
      Frag f = Alternate(std::move(alts));
      entry[n] = f.start;
      if (n == 0) frag.start = f.start;
      frag.outs.insert(frag.outs.end(), f.outs.begin(), f.outs.end());
    }
    return frag;
  }

  Frag Repeat(const RegexNode& node, bool reverse) {
    const RegexNode& sub = *node.children[0];
    Frag result = Epsilon();
    std::vector<uint32_t> outs = result.outs;
    uint32_t start = result.start;
    auto append = [&](Frag f) {
      Patch(outs, f.start);
      outs = std::move(f.outs);
    };
    for (int i = 0; i < node.min && !overflow_; ++i) append(Build(sub, reverse));
    if (node.max == -1) {
      // x*: split -> x -> back to split | exit
      NfaState split;
      uint32_t sid = Add(split);
      Frag body = Build(sub, reverse);
      if (sid < states_.size()) states_[sid].out = body.start;
      Patch(body.outs, sid);
      Patch(outs, sid);
      outs = {sid};
      // The split's out2 is the exit; record it by patching through a
      // dedicated epsilon so `outs` stays a list of `out` slots.
      uint32_t exit = Add(NfaState{});
      if (sid < states_.size()) states_[sid].out2 = exit;
      outs = {exit};
    } else {
      // x{0,k}: nested optionals, each skipping to the common exit.
      std::vector<uint32_t> skips;
      for (int i = node.min; i < node.max && !overflow_; ++i) {
        NfaState split;
        uint32_t sid = Add(split);
        Patch(outs, sid);
        Frag body = Build(sub, reverse);
        if (sid < states_.size()) states_[sid].out = body.start;
        uint32_t skip = Add(NfaState{});
        if (sid < states_.size()) states_[sid].out2 = skip;
        skips.push_back(skip);
        outs = std::move(body.outs);
      }
      outs.insert(outs.end(), skips.begin(), skips.end());
    }
    return Frag{start, outs};
  }

  std::vector<NfaState> states_;
  std::size_t max_states_;
  bool overflow_ = false;
};

bool IsWordByte(uint32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

// One pattern group's NFA, forward or reverse, with a start state.
struct Nfa {
  std::vector<NfaState> states;
  uint32_t start = 0;
};

bool BuildNfa(const std::vector<const RegexNode*>& patterns, bool reverse, std::size_t max_states,
              Nfa* nfa) {
  NfaBuilder b(max_states);
  std::vector<NfaBuilder::Frag> frags;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    NfaBuilder::Frag f = b.Build(*patterns[i], reverse);
    NfaState m;
    m.kind = NfaState::kMatch;
    m.pattern = static_cast<uint32_t>(i);
    uint32_t mid = b.Add(m);
    b.Patch(f.outs, mid);
    frags.push_back(NfaBuilder::Frag{f.start, {}});
  }
  NfaBuilder::Frag all = b.Alternate(std::move(frags));
  if (b.overflow()) return false;
  nfa->states = std::move(b.states());
  nfa->start = all.start;
  return true;
}

struct Flags {
  bool begin_text, begin_line, end_text, end_line, word_boundary;
};

struct VectorHash {
  std::size_t operator()(const std::vector<uint32_t>& v) const {
    std::size_t h = v.size();
    for (uint32_t x : v) h = h * 1000003u ^ x;
    return h;
  }
};

class SubsetBuilder {
 public:
  SubsetBuilder(const Nfa& nfa, bool unanchored, std::size_t budget,
                std::size_t max_states = SIZE_MAX)
      : nfa_(nfa), unanchored_(unanchored), budget_(budget), max_states_(max_states) {
    mark_.assign(nfa.states.size(), 0);
    ComputeClasses();
  }

  // Returns false when the DFA would exceed the budget.
  bool Run(abi::Dfa* dfa, std::size_t* states_before_min) {
    // State 0 is the dead state: no threads, nothing matched.
    keys_.push_back(Key{{}, 0, {}, false});
    for (int ctx = 0; ctx < 4; ++ctx) {
      start_[ctx] = Intern({nfa_.start}, static_cast<uint8_t>(ctx), {});
    }
    std::vector<std::vector<uint32_t>> q_next(num_classes_);
    std::vector<uint32_t> matches[4];
    for (std::size_t s = 0; s < keys_.size(); ++s) {
      bool over_bytes = (s + 1) * num_classes_ * sizeof(uint32_t) > budget_;
      if (over_bytes || s + 1 > max_states_) {
        *states_before_min = keys_.size();
        over_budget_bytes_ = keys_.size() * num_classes_ * sizeof(uint32_t);
        budget_exceeded_ = over_bytes;
        return false;
      }
      if (s == 0 || keys_[s].final_state) {
        transitions_.insert(transitions_.end(), num_classes_, 0);
        continue;
      }
      StepAll(keys_[s], &q_next, matches);
      for (uint32_t cls = 0; cls < num_classes_; ++cls) {
        bool eot = cls == num_classes_ - 1;
        const std::vector<uint32_t>& m = matches[class_sig_[cls]];
        uint32_t target = eot ? (m.empty() ? 0 : Intern({}, 0, m, true))
                              : Intern(q_next[cls], class_ctx_[cls], m);
        transitions_.push_back(target);
      }
    }
    *states_before_min = keys_.size();
    Emit(dfa);
    return true;
  }

 private:
  enum Sig : uint8_t { kSigOther = 0, kSigNewline = 1, kSigWord = 2, kSigEot = 3 };

  struct Key {
    std::vector<uint32_t> q;
    uint8_t ctx;
    std::vector<uint32_t> matches;
    bool final_state = false;
  };

  void ComputeClasses() {
    // Boundaries: every range edge, `\n`, and the word-character runs.
    std::vector<bool> boundary(257, false);
    boundary[0] = true;
    auto cut = [&](uint32_t b) {
      if (b <= 256) boundary[b] = true;
    };
    for (const NfaState& s : nfa_.states) {
      if (s.kind == NfaState::kRange && s.lo <= s.hi) {
        cut(s.lo);
        cut(static_cast<uint32_t>(s.hi) + 1);
      }
    }
    for (uint32_t b : {uint32_t{'\n'}, uint32_t{'\n' + 1}, uint32_t{'0'}, uint32_t{'9' + 1},
                       uint32_t{'A'}, uint32_t{'Z' + 1}, uint32_t{'_'}, uint32_t{'_' + 1},
                       uint32_t{'a'}, uint32_t{'z' + 1}}) {
      cut(b);
    }
    uint32_t cls = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      if (b > 0 && boundary[b]) ++cls;
      byte_class_[b] = static_cast<uint8_t>(cls);
      if (b == 0 || boundary[b]) {
        representative_.push_back(b);
        class_ctx_.push_back(b == '\n'         ? abi::kCtxNewline
                             : IsWordByte(b) ? abi::kCtxWord
                                             : abi::kCtxOther);
        class_sig_.push_back(b == '\n'         ? kSigNewline
                             : IsWordByte(b) ? kSigWord
                                             : kSigOther);
      }
    }
    num_classes_ = cls + 2;  // + end of text
    class_sig_.push_back(kSigEot);
    for (uint8_t sig : class_sig_) sig_present_[sig] = true;
  }

  static uint64_t HashKey(const std::vector<uint32_t>& q, uint8_t ctx,
                          const std::vector<uint32_t>& matches, bool final_state) {
    uint64_t h = 1469598103934665603ull ^ (static_cast<uint64_t>(ctx) << 1) ^ final_state;
    for (uint32_t x : q) h = (h ^ x) * 1099511628211ull;
    h = (h ^ 0xfffffffful) * 1099511628211ull;
    for (uint32_t x : matches) h = (h ^ x) * 1099511628211ull;
    return h;
  }

  // Finds or adds the state (q, ctx, matches). Lookups of existing states,
  // by far the common case, allocate nothing.
  uint32_t Intern(const std::vector<uint32_t>& q, uint8_t ctx,
                  const std::vector<uint32_t>& matches, bool final_state = false) {
    if (q.empty() && matches.empty()) return 0;
    if (q.empty()) ctx = 0;
    uint64_t h = HashKey(q, ctx, matches, final_state);
    auto& bucket = ids_[h];
    for (uint32_t id : bucket) {
      const Key& k = keys_[id];
      if (k.ctx == ctx && k.final_state == final_state && k.q == q && k.matches == matches) {
        return id;
      }
    }
    uint32_t id = static_cast<uint32_t>(keys_.size());
    keys_.push_back(Key{q, ctx, matches, final_state});
    bucket.push_back(id);
    return id;
  }

  // Computes every class's successor at once. The closure depends only on
  // the assertion flags, and those only on the class's signature (end of
  // text, newline, word byte, other), so there are at most four closures per
  // state; each range state then feeds the contiguous run of classes it
  // covers.
  void StepAll(const Key& k, std::vector<std::vector<uint32_t>>* q_next,
               std::vector<uint32_t>* matches) {
    for (auto& v : *q_next) v.clear();
    for (int sig = 0; sig < 4; ++sig) {
      matches[sig].clear();
      if (!sig_present_[sig]) continue;
      Flags f;
      f.begin_text = k.ctx == abi::kCtxText;
      f.begin_line = k.ctx == abi::kCtxText || k.ctx == abi::kCtxNewline;
      f.end_text = sig == kSigEot;
      f.end_line = sig == kSigEot || sig == kSigNewline;
      f.word_boundary = (k.ctx == abi::kCtxWord) != (sig == kSigWord);
      Closure(k.q, f, &ranges_, &matches[sig]);
      std::sort(matches[sig].begin(), matches[sig].end());
      matches[sig].erase(std::unique(matches[sig].begin(), matches[sig].end()),
                         matches[sig].end());
      if (sig == kSigEot) continue;
      for (uint32_t r : ranges_) {
        const NfaState& st = nfa_.states[r];
        if (st.lo > st.hi || st.out == kNone) continue;
        for (uint32_t cls = byte_class_[st.lo]; cls <= byte_class_[st.hi]; ++cls) {
          if (class_sig_[cls] == sig) (*q_next)[cls].push_back(st.out);
        }
      }
    }
    for (uint32_t cls = 0; cls + 1 < num_classes_; ++cls) {
      std::vector<uint32_t>& q = (*q_next)[cls];
      if (unanchored_) q.push_back(nfa_.start);
      std::sort(q.begin(), q.end());
      q.erase(std::unique(q.begin(), q.end()), q.end());
    }
  }

  void Closure(const std::vector<uint32_t>& q, const Flags& f, std::vector<uint32_t>* ranges,
               std::vector<uint32_t>* matches) {
    ++generation_;
    ranges->clear();
    stack_.clear();
    for (uint32_t s : q) Push(s);
    while (!stack_.empty()) {
      uint32_t s = stack_.back();
      stack_.pop_back();
      const NfaState& st = nfa_.states[s];
      switch (st.kind) {
        case NfaState::kEps:
          if (st.out2 != kNone) Push(st.out2);
          if (st.out != kNone) Push(st.out);
          break;
        case NfaState::kAssert: {
          bool ok = false;
          switch (st.assertion) {
            case AssertKind::kBeginText:
              ok = f.begin_text;
              break;
            case AssertKind::kBeginLine:
              ok = f.begin_line;
              break;
            case AssertKind::kEndText:
              ok = f.end_text;
              break;
            case AssertKind::kEndLine:
              ok = f.end_line;
              break;
            case AssertKind::kWordBoundary:
              ok = f.word_boundary;
              break;
            case AssertKind::kNotWordBoundary:
              ok = !f.word_boundary;
              break;
          }
          if (ok && st.out != kNone) Push(st.out);
          break;
        }
        case NfaState::kMatch:
          matches->push_back(st.pattern);
          break;
        case NfaState::kRange:
          ranges->push_back(s);
          break;
      }
    }
  }

  void Push(uint32_t s) {
    if (mark_[s] == generation_) return;
    mark_[s] = generation_;
    stack_.push_back(s);
  }

  void Emit(abi::Dfa* dfa) {
    dfa->num_states = static_cast<uint32_t>(keys_.size());
    dfa->num_classes = num_classes_;
    dfa->byte_class = byte_class_;
    dfa->eot_class = num_classes_ - 1;
    for (int i = 0; i < 4; ++i) dfa->start[i] = start_[i];
    dfa->next = std::move(transitions_);
    dfa->match_begin.assign(1, 0);
    dfa->quiescent.clear();
    for (const Key& k : keys_) {
      dfa->match_ids.insert(dfa->match_ids.end(), k.matches.begin(), k.matches.end());
      dfa->match_begin.push_back(static_cast<uint32_t>(dfa->match_ids.size()));
      bool quiet = unanchored_ && k.q.size() == 1 && k.q[0] == nfa_.start && !k.final_state;
      dfa->quiescent.push_back(quiet ? 1 : 0);
    }
  }

  const Nfa& nfa_;
  bool unanchored_;
  std::size_t budget_;
  std::size_t max_states_;

 public:
  std::size_t over_budget_bytes_ = 0;
  bool budget_exceeded_ = false;  // the byte budget, not a state cap, stopped it

 private:
  std::array<uint8_t, 256> byte_class_{};
  std::vector<uint32_t> representative_;
  std::vector<uint8_t> class_ctx_;
  std::vector<uint8_t> class_sig_;
  bool sig_present_[4] = {false, false, false, false};
  std::vector<uint32_t> ranges_;
  uint32_t num_classes_ = 0;
  std::array<uint32_t, 4> start_{};
  std::vector<Key> keys_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> ids_;
  std::vector<uint32_t> transitions_;
  std::vector<uint32_t> mark_;
  uint32_t generation_ = 0;
  std::vector<uint32_t> stack_;
};

// Hopcroft's algorithm. Blocks start as groups of states with the same match
// list and quiescence; a block is split whenever some class leads part of it
// into a splitter block and part elsewhere.
void Minimize(abi::Dfa* dfa) {
  const uint32_t n = dfa->num_states;
  const uint32_t k = dfa->num_classes;
  // Initial partition.
  std::unordered_map<std::vector<uint32_t>, uint32_t, VectorHash> initial;
  std::vector<uint32_t> block_of(n);
  std::vector<std::vector<uint32_t>> blocks;
  for (uint32_t s = 0; s < n; ++s) {
    std::vector<uint32_t> key(dfa->match_ids.begin() + dfa->match_begin[s],
                              dfa->match_ids.begin() + dfa->match_begin[s + 1]);
    key.push_back(UINT32_MAX - dfa->quiescent[s]);
    key.push_back(s == abi::kDeadState ? 1 : 0);
    auto [it, inserted] = initial.emplace(std::move(key), static_cast<uint32_t>(blocks.size()));
    if (inserted) blocks.emplace_back();
    block_of[s] = it->second;
    blocks[it->second].push_back(s);
  }
  // Inverse transitions, CSR per class.
  std::vector<uint32_t> inv_begin(static_cast<std::size_t>(k) * (n + 1), 0);
  std::vector<uint32_t> inv(static_cast<std::size_t>(k) * n);
  for (uint32_t c = 0; c < k; ++c) {
    uint32_t* begin = &inv_begin[static_cast<std::size_t>(c) * (n + 1)];
    for (uint32_t s = 0; s < n; ++s) ++begin[dfa->Next(s, c) + 1];
    for (uint32_t t = 0; t < n; ++t) begin[t + 1] += begin[t];
    std::vector<uint32_t> fill(begin, begin + n);
    for (uint32_t s = 0; s < n; ++s) {
      inv[static_cast<std::size_t>(c) * n + fill[dfa->Next(s, c)]++] = s;
    }
  }
  std::deque<uint32_t> work;
  std::vector<uint8_t> in_work(blocks.size(), 1);
  for (uint32_t b = 0; b < blocks.size(); ++b) work.push_back(b);
  std::vector<uint32_t> touched_count;
  std::vector<std::vector<uint32_t>> touched_states;
  std::vector<uint32_t> touched_blocks;
  std::vector<uint8_t> in_x(n, 0);
  while (!work.empty()) {
    uint32_t a = work.front();
    work.pop_front();
    in_work[a] = 0;
    std::vector<uint32_t> splitter = blocks[a];
    for (uint32_t c = 0; c < k; ++c) {
      touched_blocks.clear();
      const uint32_t* begin = &inv_begin[static_cast<std::size_t>(c) * (n + 1)];
      const uint32_t* sources = &inv[static_cast<std::size_t>(c) * n];
      for (uint32_t t : splitter) {
        for (uint32_t i = begin[t]; i < begin[t + 1]; ++i) {
          uint32_t s = sources[i];
          if (in_x[s]) continue;
          in_x[s] = 1;
          uint32_t b = block_of[s];
          if (b >= touched_states.size()) touched_states.resize(blocks.size());
          if (touched_states[b].empty()) touched_blocks.push_back(b);
          touched_states[b].push_back(s);
        }
      }
      for (uint32_t b : touched_blocks) {
        std::vector<uint32_t>& xs = touched_states[b];
        for (uint32_t s : xs) in_x[s] = 0;
        if (xs.size() < blocks[b].size()) {
          // Split b into (b ∩ X) as a new block and (b \ X) in place.
          uint32_t nb = static_cast<uint32_t>(blocks.size());
          blocks.emplace_back(xs);
          for (uint32_t s : xs) block_of[s] = nb;
          std::vector<uint32_t> rest;
          rest.reserve(blocks[b].size() - xs.size());
          for (uint32_t s : blocks[b]) {
            if (block_of[s] == b) rest.push_back(s);
          }
          blocks[b] = std::move(rest);
          in_work.push_back(0);
          if (in_work[b]) {
            work.push_back(nb);
            in_work[nb] = 1;
          } else {
            uint32_t smaller = blocks[b].size() <= blocks[nb].size() ? b : nb;
            work.push_back(smaller);
            in_work[smaller] = 1;
          }
        }
        xs.clear();
      }
    }
  }
  // Renumber: the dead state's block first, then in order of first member.
  std::vector<uint32_t> new_id(blocks.size(), UINT32_MAX);
  uint32_t next_id = 0;
  new_id[block_of[abi::kDeadState]] = next_id++;
  for (uint32_t s = 0; s < n; ++s) {
    if (new_id[block_of[s]] == UINT32_MAX) new_id[block_of[s]] = next_id++;
  }
  abi::Dfa out;
  out.num_states = next_id;
  out.num_classes = k;
  out.byte_class = dfa->byte_class;
  out.eot_class = dfa->eot_class;
  for (int i = 0; i < 4; ++i) out.start[i] = new_id[block_of[dfa->start[i]]];
  out.next.assign(static_cast<std::size_t>(next_id) * k, 0);
  std::vector<uint32_t> repr(next_id, UINT32_MAX);
  for (uint32_t s = 0; s < n; ++s) {
    uint32_t id = new_id[block_of[s]];
    if (repr[id] == UINT32_MAX) repr[id] = s;
  }
  out.match_begin.assign(1, 0);
  for (uint32_t id = 0; id < next_id; ++id) {
    uint32_t s = repr[id];
    for (uint32_t c = 0; c < k; ++c) out.next[id * k + c] = new_id[block_of[dfa->Next(s, c)]];
    out.match_ids.insert(out.match_ids.end(), dfa->match_ids.begin() + dfa->match_begin[s],
                         dfa->match_ids.begin() + dfa->match_begin[s + 1]);
    out.match_begin.push_back(static_cast<uint32_t>(out.match_ids.size()));
    out.quiescent.push_back(dfa->quiescent[s]);
  }
  *dfa = std::move(out);
}

// Merges byte classes whose columns are identical in the (minimal) DFA.
void CompressClasses(abi::Dfa* dfa) {
  const uint32_t k = dfa->num_classes;
  const uint32_t n = dfa->num_states;
  std::unordered_map<std::vector<uint32_t>, uint32_t, VectorHash> columns;
  std::vector<uint32_t> remap(k);
  std::vector<uint32_t> kept;
  for (uint32_t c = 0; c + 1 < k; ++c) {  // the end-of-text class stays last
    std::vector<uint32_t> col(n);
    for (uint32_t s = 0; s < n; ++s) col[s] = dfa->Next(s, c);
    auto [it, inserted] = columns.emplace(std::move(col), static_cast<uint32_t>(kept.size()));
    if (inserted) kept.push_back(c);
    remap[c] = it->second;
  }
  uint32_t nk = static_cast<uint32_t>(kept.size()) + 1;
  remap[k - 1] = nk - 1;
  kept.push_back(k - 1);
  std::vector<uint32_t> next(static_cast<std::size_t>(n) * nk);
  for (uint32_t s = 0; s < n; ++s) {
    for (uint32_t c = 0; c < nk; ++c) next[s * nk + c] = dfa->Next(s, kept[c]);
  }
  for (int b = 0; b < 256; ++b) dfa->byte_class[b] = static_cast<uint8_t>(remap[dfa->byte_class[b]]);
  dfa->num_classes = nk;
  dfa->eot_class = nk - 1;
  dfa->next = std::move(next);
}

enum class GroupStatus { kOk, kOverBudget, kNfaTooLarge };

// How far past the budget unminimised construction may go before giving up;
// the budget itself applies to the minimised tables.
constexpr std::size_t kTransientFactor = 4;

GroupStatus BuildGroup(const std::vector<const RegexNode*>& patterns, const AutomataLimits& limits,
                       abi::DfaGroup* group, AutomataStats* stats) {
  Nfa fwd, rev;
  if (!BuildNfa(patterns, false, limits.max_nfa_states, &fwd) ||
      (!limits.check_only && !BuildNfa(patterns, true, limits.max_nfa_states, &rev))) {
    return GroupStatus::kNfaTooLarge;
  }
  stats->nfa_states += fwd.states.size();
  std::size_t before = 0, ignored = 0;
  if (limits.check_only) {
    // Without minimisation the count is an upper bound, so the check holds
    // the unminimised tables to the budget: conservative, never lenient.
    SubsetBuilder f(fwd, true, limits.dfa_memory_budget, limits.max_dfa_states);
    if (!f.Run(&group->forward, &before)) {
      stats->dfa_states = before;
      stats->memory_bytes = f.over_budget_bytes_;
      stats->budget_exceeded = f.budget_exceeded_;
      return GroupStatus::kOverBudget;
    }
    stats->dfa_states += before;
    stats->dfa_states_minimized += before;
    return GroupStatus::kOk;
  }
  // Subset construction may use a few times the budget transiently: the
  // budget applies to the minimised tables that are kept.
  const std::size_t transient = kTransientFactor * limits.dfa_memory_budget;
  SubsetBuilder f(fwd, true, transient, limits.max_dfa_states);
  SubsetBuilder a(fwd, false, transient);
  SubsetBuilder r(rev, true, transient);
  for (auto [builder, dfa, count] : {std::tuple{&f, &group->forward, &before},
                                     std::tuple{&a, &group->anchored, &ignored},
                                     std::tuple{&r, &group->reverse, &ignored}}) {
    if (!builder->Run(dfa, count)) {
      stats->dfa_states = *count;
      stats->memory_bytes = builder->over_budget_bytes_;
      stats->budget_exceeded = builder->budget_exceeded_;
      return GroupStatus::kOverBudget;
    }
  }
  stats->dfa_states += before;
  for (abi::Dfa* d : {&group->forward, &group->anchored, &group->reverse}) {
    Minimize(d);
    CompressClasses(d);
    std::size_t bytes = static_cast<std::size_t>(d->num_states) * d->num_classes * sizeof(uint32_t);
    if (bytes > limits.dfa_memory_budget) {
      stats->dfa_states = d->num_states;
      stats->memory_bytes = bytes;
      stats->budget_exceeded = true;
      return GroupStatus::kOverBudget;
    }
  }
  stats->dfa_states_minimized += group->forward.num_states;
  return GroupStatus::kOk;
}

bool BuildOne(const std::vector<const RegexNode*>& patterns, const std::vector<uint32_t>& ids,
              const AutomataLimits& limits, AutomataResult* result) {
  abi::DfaGroup group;
  AutomataStats stats;
  GroupStatus status = BuildGroup(patterns, limits, &group, &stats);
  if (status == GroupStatus::kOk) {
    group.pattern_ids = ids;
    result->stats.nfa_states += stats.nfa_states;
    result->stats.dfa_states += stats.dfa_states;
    result->stats.dfa_states_minimized += stats.dfa_states_minimized;
    result->tables.groups.push_back(std::move(group));
    return true;
  }
  if (status == GroupStatus::kNfaTooLarge) {
    result->error = "pattern expands to more than " + std::to_string(limits.max_nfa_states) +
                    " automaton states";
    return false;
  }
  if (patterns.size() == 1) {
    result->error = "pattern needs more than " + std::to_string(stats.dfa_states) +
                    " DFA states (" + std::to_string(stats.memory_bytes) +
                    " bytes of transitions), over the " +
                    std::to_string(limits.dfa_memory_budget) + "-byte budget";
    result->failed_pattern = ids[0];
    return false;
  }
  // Still over budget: halve.
  result->stats.budget_exceeded = true;
  std::size_t half = patterns.size() / 2;
  std::vector<const RegexNode*> a(patterns.begin(), patterns.begin() + half);
  std::vector<const RegexNode*> b(patterns.begin() + half, patterns.end());
  std::vector<uint32_t> ia(ids.begin(), ids.begin() + half);
  std::vector<uint32_t> ib(ids.begin() + half, ids.end());
  return BuildOne(a, ia, limits, result) && BuildOne(b, ib, limits, result);
}

// Forward-DFA state count of `patterns` if it stays within `max_states`
// (and the budget); 0 otherwise.
std::size_t ProbeStates(const std::vector<const RegexNode*>& patterns, const AutomataLimits& limits,
                        std::size_t max_states, bool* budget_exceeded = nullptr) {
  AutomataLimits probe = limits;
  probe.check_only = true;
  probe.max_dfa_states = max_states;
  abi::DfaGroup group;
  AutomataStats stats;
  if (BuildGroup(patterns, probe, &group, &stats) != GroupStatus::kOk) {
    if (budget_exceeded != nullptr) *budget_exceeded = stats.budget_exceeded;
    return 0;
  }
  return stats.dfa_states;
}

// Patterns that are in progress at the same time multiply DFA states: a
// digit pattern and a card-number pattern together can need far more states
// than both apart. So a set is first tried whole, capped at a few times the
// sum of its members' own sizes; if it explodes, it is regrouped greedily,
// adding each pattern to the current group only while the merged automaton
// stays within that factor. Each group is then one DFA, scanned in turn.
bool BuildGroups(const std::vector<const RegexNode*>& patterns, const std::vector<uint32_t>& ids,
                 const AutomataLimits& limits, AutomataResult* result) {
  // Tuned on bench/patterns: the whole set may grow more than a trial
  // merge, because one DFA means one pass over every text.
  constexpr std::size_t kGrowth = 16;
  constexpr std::size_t kTrialGrowth = 8;
  if (patterns.size() == 1) return BuildOne(patterns, ids, limits, result);
  std::vector<std::size_t> alone(patterns.size());
  std::size_t sum = 0;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    alone[i] = ProbeStates({patterns[i]}, limits, SIZE_MAX);
    if (alone[i] == 0) return BuildOne({patterns[i]}, {ids[i]}, limits, result);  // reports it
    sum += alone[i];
  }
  {
    // The whole set in one DFA, built for real (no separate probe), unless
    // it grows past the cap.
    AutomataLimits capped = limits;
    capped.max_dfa_states = kGrowth * sum + 16;
    abi::DfaGroup whole;
    AutomataStats stats;
    if (BuildGroup(patterns, capped, &whole, &stats) == GroupStatus::kOk) {
      whole.pattern_ids = ids;
      result->stats.nfa_states += stats.nfa_states;
      result->stats.dfa_states += stats.dfa_states;
      result->stats.dfa_states_minimized += stats.dfa_states_minimized;
      result->tables.groups.push_back(std::move(whole));
      return true;
    }
    if (stats.budget_exceeded) result->stats.budget_exceeded = true;
  }
  std::vector<const RegexNode*> group = {patterns[0]};
  std::vector<uint32_t> group_ids = {ids[0]};
  std::size_t group_sum = alone[0];
  for (std::size_t i = 1; i < patterns.size(); ++i) {
    std::vector<const RegexNode*> trial = group;
    trial.push_back(patterns[i]);
    bool over_budget = false;
    if (ProbeStates(trial, limits, kTrialGrowth * (group_sum + alone[i]) + 16, &over_budget) != 0) {
      group = std::move(trial);
      group_ids.push_back(ids[i]);
      group_sum += alone[i];
      continue;
    }
    if (over_budget) result->stats.budget_exceeded = true;
    if (!BuildOne(group, group_ids, limits, result)) return false;
    group = {patterns[i]};
    group_ids = {ids[i]};
    group_sum = alone[i];
  }
  return BuildOne(group, group_ids, limits, result);
}

}  // namespace

AutomataResult BuildAutomata(const std::vector<const RegexNode*>& patterns,
                             const AutomataLimits& limits) {
  auto t0 = std::chrono::steady_clock::now();
  AutomataResult result;
  result.tables.num_patterns = static_cast<uint32_t>(patterns.size());
  std::vector<uint32_t> ids(patterns.size());
  std::iota(ids.begin(), ids.end(), 0);
  if (!patterns.empty()) {
    result.ok = BuildGroups(patterns, ids, limits, &result);
  } else {
    result.ok = true;
  }
  result.stats.groups = result.tables.groups.size();
  if (!result.tables.groups.empty()) {
    result.stats.byte_classes = result.tables.groups[0].forward.num_classes;
  }
  for (const abi::DfaGroup& g : result.tables.groups) {
    result.stats.memory_bytes +=
        g.forward.MemoryBytes() + g.anchored.MemoryBytes() + g.reverse.MemoryBytes();
  }
  result.stats.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace kt::internal
