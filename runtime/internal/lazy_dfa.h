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

// States are named by their row offset (id * classes), and each table entry
// is the target's offset with the top bit set when the target reports a match
// or is not built yet: one test tells the scan loop (interpreted or JIT) to
// step out of its fast path.
class LazyDfa {
 public:
  static constexpr uint32_t kSpecial = 0x80000000u;
  static constexpr uint32_t kUnknown = 0xFFFFFFFFu;

  LazyDfa(const abi::NfaProgram& nfa, bool unanchored, std::size_t cache_bytes);

  uint32_t Start(abi::Context ctx);
  // The target offset of `s` on `cls`, building it if needed.
  uint32_t Next(uint32_t s, uint32_t cls) {
    uint32_t t = next_[static_cast<std::size_t>(s) + cls];
    return t == kUnknown ? Fill(s, cls) : (t & ~kSpecial);
  }
  uint32_t ByteClass(uint8_t b) const { return byte_class_[b]; }
  uint32_t eot_class() const { return k_ - 1; }
  bool HasMatch(uint32_t s) const { return !subset_.matches(s / k_).empty(); }
  const std::vector<uint32_t>& Matches(uint32_t s) const { return subset_.matches(s / k_); }
  bool Quiescent(uint32_t s) const { return subset_.quiescent(s / k_); }

  // The raw tables for generated code; valid until the next Next() call.
  const uint32_t* table() const { return next_.data(); }
  const uint8_t* byte_classes() const { return byte_class_.data(); }

  // A state survives a cache flush only as its key; streams keep keys
  // between chunks and re-intern them.
  Subset::Key KeyOf(uint32_t s) const { return subset_.KeyOf(s / k_); }
  uint32_t FromKey(const Subset::Key& key);

  std::size_t flushes() const { return flushes_; }
  std::size_t cached_states() const { return subset_.num_states(); }

 private:
  uint32_t Fill(uint32_t s, uint32_t cls);

  Subset subset_;
  uint32_t k_;
  std::array<uint8_t, 256> byte_class_;
  std::size_t max_states_;
  std::vector<uint32_t> next_;
  std::vector<uint32_t> row_;
  std::size_t flushes_ = 0;
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
