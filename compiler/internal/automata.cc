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

#include "runtime/runtime.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <tuple>
#include <numeric>
#include <unordered_map>

namespace kt::internal {
namespace {

constexpr uint32_t kNone = abi::kNoTarget;

using NfaState = abi::NfaInst;

abi::Assertion ToAbi(AssertKind a) {
  switch (a) {
    case AssertKind::kBeginLine:
      return abi::kAssertBeginLine;
    case AssertKind::kEndLine:
      return abi::kAssertEndLine;
    case AssertKind::kBeginText:
      return abi::kAssertBeginText;
    case AssertKind::kEndText:
      return abi::kAssertEndText;
    case AssertKind::kWordBoundary:
      return abi::kAssertWordBoundary;
    case AssertKind::kNotWordBoundary:
      return abi::kAssertNotWordBoundary;
  }
  return abi::kAssertBeginText;
}

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
        s.assertion = ToAbi(reverse ? Reversed(node.assertion) : node.assertion);
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

using Nfa = abi::NfaProgram;

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
  nfa->insts = std::move(b.states());
  nfa->start = all.start;
  return true;
}

struct VectorHash {
  std::size_t operator()(const std::vector<uint32_t>& v) const {
    std::size_t h = v.size();
    for (uint32_t x : v) h = h * 1000003u ^ x;
    return h;
  }
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

// How far past the budget unminimised construction may go before giving up;
// the budget itself applies to the minimised tables that are kept.
constexpr std::size_t kTransientFactor = 4;

// Builds a group's three DFAs eagerly. False when any would exceed the
// budget or the forward one grows past `max_states`; `stats` then holds the
// size reached.
bool BuildEager(const Nfa& fwd, const Nfa& rev, const AutomataLimits& limits,
                std::size_t max_states, abi::DfaGroup* group, AutomataStats* stats) {
  const std::size_t transient = kTransientFactor * limits.dfa_memory_budget;
  struct Job {
    const Nfa* nfa;
    bool unanchored;
    abi::Dfa* out;
    std::size_t cap;
  };
  const Job jobs[] = {{&fwd, true, &group->forward, max_states},
                      {&fwd, false, &group->anchored, SIZE_MAX},
                      {&rev, true, &group->reverse, SIZE_MAX}};
  for (const Job& job : jobs) {
    DfaBuildResult r = BuildDfa(*job.nfa, job.unanchored, {transient, job.cap}, job.out);
    if (job.out == &group->forward) stats->dfa_states += r.states;
    if (!r.ok) {
      stats->memory_bytes = r.bytes;
      stats->budget_exceeded = stats->budget_exceeded || r.budget_exceeded;
      return false;
    }
    Minimize(job.out);
    CompressClasses(job.out);
    std::size_t bytes =
        static_cast<std::size_t>(job.out->num_states) * job.out->num_classes * sizeof(uint32_t);
    if (bytes > limits.dfa_memory_budget) {
      stats->memory_bytes = bytes;
      stats->budget_exceeded = true;
      return false;
    }
  }
  stats->dfa_states_minimized += group->forward.num_states;
  return true;
}

// Patterns that are in progress at the same time multiply DFA states: a
// digit pattern and a card-number pattern together can need hundreds of
// times the states of both apart. So a set is built eagerly only while it
// stays within a few times the sum of its members' own sizes and within the
// budget; otherwise it becomes one lazy group, whose states the runtime
// builds as texts visit them (one pass per text either way).
bool BuildGroups(const std::vector<const RegexNode*>& patterns, const std::vector<uint32_t>& ids,
                 const AutomataLimits& limits, AutomataResult* result) {
  Nfa fwd, rev;
  if (!BuildNfa(patterns, false, limits.max_nfa_states, &fwd) ||
      !BuildNfa(patterns, true, limits.max_nfa_states, &rev)) {
    result->error = "pattern expands to more than " + std::to_string(limits.max_nfa_states) +
                    " automaton states";
    return false;
  }
  result->stats.nfa_states += fwd.insts.size();
  // Eager DFAs scan without locks and need no warm-up, but their
  // construction time grows with every reachable state; past this many
  // states a lazy DFA (built as texts visit states) is the better trade.
  const std::size_t cap = limits.max_eager_states;
  abi::DfaGroup group;
  group.pattern_ids = ids;
  AutomataStats stats;
  if (!limits.check_only) {
    if (BuildEager(fwd, rev, limits, cap, &group, &stats)) {
      result->stats.dfa_states += stats.dfa_states;
      result->stats.dfa_states_minimized += stats.dfa_states_minimized;
      result->tables.groups.push_back(std::move(group));
      return true;
    }
  } else {
    // Lint: the unminimised forward DFA against the budget (conservative).
    abi::Dfa scratch;
    DfaBuildResult r = BuildDfa(fwd, true, {limits.dfa_memory_budget, cap}, &scratch);
    stats.dfa_states = r.states;
    stats.memory_bytes = r.bytes;
    stats.budget_exceeded = r.budget_exceeded;
    if (r.ok) {
      result->stats.dfa_states += r.states;
      result->stats.dfa_states_minimized += r.states;
      result->tables.groups.push_back(std::move(group));
      return true;
    }
  }
  // Too large for an eager DFA: run lazily.
  result->stats.dfa_states += stats.dfa_states;
  result->stats.memory_bytes_reached = std::max(result->stats.memory_bytes_reached, stats.memory_bytes);
  result->stats.budget_exceeded = result->stats.budget_exceeded || stats.budget_exceeded;
  result->stats.lazy = true;
  group = abi::DfaGroup{};
  group.pattern_ids = ids;
  group.lazy = true;
  group.forward_nfa = std::move(fwd);
  group.reverse_nfa = std::move(rev);
  result->tables.groups.push_back(std::move(group));
  return true;
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
        g.forward.MemoryBytes() + g.anchored.MemoryBytes() + g.reverse.MemoryBytes() +
        (g.forward_nfa.insts.size() + g.reverse_nfa.insts.size()) * sizeof(abi::NfaInst);
  }
  result.stats.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace kt::internal
