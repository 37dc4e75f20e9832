// The automaton ABI: the tables the pattern compiler produces and the runtime
// scans (by interpretation or as JIT-compiled code).
//
// A `Dfa` reads bytes, plus one end-of-text symbol. Assertions (^ $ \b …) are
// resolved on transitions, so a match is known one symbol late: entering a
// state whose match list is non-empty means "these patterns have a match
// ending just before the symbol that was consumed". Feeding the end-of-text
// symbol therefore reports matches that end at the end of the text.
//
// Plain data, no behaviour: both layers include it, neither owns the other.
#ifndef KT_RUNTIME_ABI_AUTOMATON_H_
#define KT_RUNTIME_ABI_AUTOMATON_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kt::abi {

// What the previous byte was; start states differ by it because `^`, `\b`
// and `\B` depend on it.
enum Context : uint8_t { kCtxText = 0, kCtxNewline = 1, kCtxWord = 2, kCtxOther = 3 };

inline constexpr uint32_t kDeadState = 0;
inline constexpr uint32_t kNoTarget = UINT32_MAX;

// Zero-width assertions, as NFA instructions see them.
enum Assertion : uint8_t {
  kAssertBeginLine = 0,
  kAssertEndLine = 1,
  kAssertBeginText = 2,
  kAssertEndText = 3,
  kAssertWordBoundary = 4,
  kAssertNotWordBoundary = 5,
};

// One instruction of a Thompson NFA over bytes.
struct NfaInst {
  enum Kind : uint8_t { kRange, kEps, kAssert, kMatch };
  Kind kind = kEps;
  uint8_t lo = 0;  // kRange: bytes lo..hi (lo > hi never matches)
  uint8_t hi = 0;
  Assertion assertion = kAssertBeginText;
  uint32_t out = kNoTarget;
  uint32_t out2 = kNoTarget;  // kEps only: a second branch
  uint32_t pattern = 0;       // kMatch only
};

// The NFA of a pattern group (forward or reversed), the input of subset
// construction, eager at compile time or lazy at scan time.
struct NfaProgram {
  std::vector<NfaInst> insts;
  uint32_t start = 0;
};

struct Dfa {
  uint32_t num_states = 0;
  uint32_t num_classes = 0;  // byte classes plus one class for end of text
  std::array<uint8_t, 256> byte_class{};
  uint32_t eot_class = 0;
  // Start state per context (index with `Context`). Unanchored automata
  // restart at every position; anchored ones only at the start.
  std::array<uint32_t, 4> start{};
  std::vector<uint32_t> next;  // num_states * num_classes, row-major
  // Patterns that matched when this state was entered: ids in
  // match_ids[match_begin[s] .. match_begin[s + 1]).
  std::vector<uint32_t> match_begin;
  std::vector<uint32_t> match_ids;
  // 1 when no partial match is in progress in this state: every byte before
  // this point can be released by a streaming evaluator.
  std::vector<uint8_t> quiescent;

  bool HasMatch(uint32_t s) const { return match_begin[s + 1] != match_begin[s]; }
  uint32_t Next(uint32_t s, uint32_t cls) const { return next[s * num_classes + cls]; }
  std::size_t MemoryBytes() const {
    return next.size() * sizeof(uint32_t) + match_begin.size() * sizeof(uint32_t) +
           match_ids.size() * sizeof(uint32_t) + quiescent.size() + sizeof(Dfa);
  }
};

// One automaton triple over a subset of a pattern set's patterns. Match ids
// inside the DFAs are local; `pattern_ids` maps them to the set's ids.
struct DfaGroup {
  std::vector<uint32_t> pattern_ids;
  // Eager groups carry the three DFAs. Lazy groups (a set whose DFA would
  // exceed the budget) carry the NFAs instead; the runtime builds DFA states
  // on demand, in a bounded cache, as the text visits them.
  bool lazy = false;
  Dfa forward;   // unanchored: which patterns occur, and where matches end
  Dfa anchored;  // anchored at a start position: longest match from there
  Dfa reverse;   // unanchored over the reversed text: where matches start
  NfaProgram forward_nfa;
  NfaProgram reverse_nfa;
};

// Everything one pattern set compiles to. Usually one group; a set whose
// single DFA would exceed the memory budget is split into several groups.
struct PatternSetTables {
  uint32_t num_patterns = 0;
  // Bytes of DFA states a lazy group may cache before it starts over.
  std::size_t lazy_cache_bytes = 8u << 20;
  std::vector<DfaGroup> groups;
};

}  // namespace kt::abi

#endif  // KT_RUNTIME_ABI_AUTOMATON_H_
