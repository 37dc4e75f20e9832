// A DFA built on demand from an NFA, in a bounded cache.
//
// Used for pattern sets whose eager DFA would exceed the memory budget
// (patterns that are in progress at the same time multiply states). Ordinary
// text visits a few hundred states, so the cache stays small and every text
// is still scanned once. When the cache is full it is flushed and rebuilt
// from the current state: each byte then costs one subset step, O(NFA size),
// so scanning stays linear in the text.
//
// Thread-safety: none inside; `LazyGroup` pairs the automata with a mutex
// that every scan of the group holds, and `LazyPool` keeps one LazyGroup per
// hardware thread so concurrent scans do not queue behind one lock.
#ifndef KT_RUNTIME_INTERNAL_LAZY_DFA_H_
#define KT_RUNTIME_INTERNAL_LAZY_DFA_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/abi/automaton.h"
#include "runtime/internal/subset.h"

namespace kt {

// States are named by the address of their row in a table allocated once at
// its full size (pages are touched only as rows are built, and a flush never
// moves it), so a step is one dependent load, as in the eager JIT loop. Each
// entry is the target's row address, with the top bit set when the target
// reports a match or is not built yet: one sign test tells the scan loop
// (interpreted or JIT) to step out of its fast path.
class LazyDfa {
 public:
  using State = uint64_t;
  static constexpr uint64_t kSpecial = uint64_t{1} << 63;
  static constexpr uint64_t kUnknown = ~uint64_t{0};

  LazyDfa(const abi::NfaProgram& nfa, bool unanchored, std::size_t cache_bytes);

  State Start(abi::Context ctx);
  // The target of `s` on `cls`, building it if needed.
  State Next(State s, uint32_t cls) {
    uint64_t t = reinterpret_cast<const uint64_t*>(s)[cls];
    return t == kUnknown ? Fill(s, cls) : (t & ~kSpecial);
  }
  uint32_t ByteClass(uint8_t b) const { return byte_class_[b]; }
  uint32_t eot_class() const { return k_ - 1; }
  bool IsDead(State s) const { return Id(s) == abi::kDeadState; }
  bool HasMatch(State s) const { return !subset_.matches(Id(s)).empty(); }
  const std::vector<uint32_t>& Matches(State s) const { return subset_.matches(Id(s)); }
  bool Quiescent(State s) const { return subset_.quiescent(Id(s)); }

  const uint8_t* byte_classes() const { return byte_class_.data(); }

  // A state survives a cache flush only as its key; streams keep keys
  // between chunks and re-intern them.
  Subset::Key KeyOf(State s) const { return subset_.KeyOf(Id(s)); }
  State FromKey(const Subset::Key& key);


 private:
  uint32_t Id(State s) const {
    return static_cast<uint32_t>((s - reinterpret_cast<uint64_t>(table_.get())) /
                                 (sizeof(uint64_t) * k_));
  }
  State Addr(uint32_t id) const { return reinterpret_cast<uint64_t>(table_.get() + std::size_t{id} * k_); }
  // Marks the rows of states interned since the last call as unknown.
  void InitNewRows();
  State Fill(State s, uint32_t cls);

  Subset subset_;
  uint32_t k_;
  std::array<uint8_t, 256> byte_class_;
  std::size_t max_states_;
  std::unique_ptr<uint64_t[]> table_;  // max_states_ + k_ rows, allocated once
  std::size_t rows_ready_ = 0;         // rows initialised to unknown
  std::vector<uint32_t> row_;
  // Start state ids per context, kept while no flush cleared the states
  // (UINT32_MAX: not interned yet). A scan starts here on every call, and
  // interning builds a key vector: the policy engine's per-request path
  // must not allocate.
  std::array<uint32_t, 4> starts_ = {UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX};
};

// The three lazy automata of one pattern group, and the lock their scans hold.
struct LazyGroup {
  LazyGroup(const abi::DfaGroup& g, std::size_t cache_bytes)
      : forward(g.forward_nfa, true, cache_bytes),
        anchored(g.forward_nfa, false, cache_bytes),
        reverse(g.reverse_nfa, true, cache_bytes) {}
  std::mutex mutex;
  LazyDfa forward;
  LazyDfa anchored;
  LazyDfa reverse;
};

// One locked instance of a pool; the lock is released with the lease.
struct LazyLease {
  LazyGroup* group = nullptr;
  std::unique_lock<std::mutex> lock;
};

class LazyPool {
 public:
  LazyPool(const abi::DfaGroup& g, std::size_t cache_bytes);
  // A free instance, preferring the calling thread's usual one (its cache is
  // warm); blocks only when every instance is busy.
  LazyLease Acquire();

 private:
  std::vector<std::unique_ptr<LazyGroup>> instances_;
};

}  // namespace kt

#endif  // KT_RUNTIME_INTERNAL_LAZY_DFA_H_
