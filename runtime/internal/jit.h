// The one small class around LLVM ORC LLJIT.
//
// Each PatternSet gets its own ResourceTracker in a process-wide LLJIT, so a
// set's native code lives exactly as long as the set: destroying it removes
// the code (hot reload is add-new, swap, remove-old).
//
// The emitted function scans bytes until it enters a state that reports a
// match, or the input ends; the caller reports and resumes. Quiescent states
// with few exits get a 16-byte vector skip loop that compares the input
// against the exit bytes and jumps past everything else. A direct-coded
// variant (one basic block per state) exists for measurement.
#ifndef KT_RUNTIME_INTERNAL_JIT_H_
#define KT_RUNTIME_INTERNAL_JIT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/abi/automaton.h"
#include "runtime/runtime.h"

namespace kt {

// A skip loop for a quiescent state: the few bytes that leave it.
struct Accel {
  uint32_t state = 0;  // premultiplied offset
  std::vector<uint8_t> exits;
};

// A DFA re-laid for native code: match states numbered last, transitions as
// premultiplied row offsets (state * num_classes).
struct JitTables {
  static JitTables From(const abi::Dfa& dfa);
  uint32_t num_classes = 0;
  uint32_t match_threshold = 0;  // offsets >= this report a match
  uint32_t start = 0;
  std::vector<uint32_t> next;
  // The same transitions as absolute addresses of target rows: the generated
  // loop then loads `*(row + class)` with no add on the dependent chain (the
  // state is the row's address, as in RE2's State* loop).
  std::vector<uint64_t> rows;
  uint64_t Row(uint32_t offset) const { return reinterpret_cast<uint64_t>(rows.data() + offset); }
  uint32_t OffsetOf(uint64_t row) const {
    return static_cast<uint32_t>((row - Row(0)) / sizeof(uint64_t));
  }
  std::array<uint8_t, 256> byte_class{};
  std::vector<uint32_t> to_old;  // new state index -> ABI state id
  std::vector<Accel> accels;
};

// Returns the offset of the byte whose transition entered a match state, or
// `n` if none did; `*state` holds the state after that byte (or at the end).
// The tables are passed in rather than embedded in the code, so code size and
// JIT time do not grow with the automaton, and the code holds no address
// (`rows` is the first row of an eager table; lazy loops ignore it).
using ScanFn = uint64_t (*)(const uint8_t* p, uint64_t n, uint64_t* state, const uint32_t* rows,
                            const uint8_t* byte_class, const void* unused);

class PatternJit {
 public:
  static std::unique_ptr<PatternJit> Compile(const abi::PatternSetTables& tables,
                                             const JitOptions& options, std::string* error);
  ~PatternJit();

  // Scans `text` with group `group`'s forward DFA, calling report(state)
  // with the ABI state id of every state entered that reports a match.
  template <typename Report>
  void ScanGroup(std::size_t group, std::string_view text, Report report) const {
    const abi::Dfa& f = tables_->groups[group].forward;
    const JitTables& t = jt_[group];
    ScanFn fn = fns_[group];
    uint64_t s = t.Row(t.start);
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    uint64_t n = text.size();
    uint64_t i = 0;
    while (i < n) {
      uint64_t r = fn(p + i, n - i, &s, reinterpret_cast<const uint32_t*>(t.rows.data()),
                      t.byte_class.data(), nullptr);
      if (r == n - i) break;
      // The generated loop stopped before a byte that enters a match state.
      s = reinterpret_cast<const uint64_t*>(s)[t.byte_class[p[i + r]]];
      report(t.to_old[t.OffsetOf(s) / t.num_classes]);
      i += r + 1;
    }
    uint32_t last = f.Next(t.to_old[t.OffsetOf(s) / t.num_classes], f.eot_class);
    if (f.HasMatch(last)) report(last);
  }

  // Same, for a lazy group: the loop runs over the states built so far and
  // returns to build the next one or to report a match.
  template <typename Lazy, typename Report>
  void ScanLazyGroup(std::size_t group, Lazy& lazy, std::string_view text, Report report) const {
    ScanFn fn = fns_[group];
    uint64_t s = lazy.Start(abi::kCtxText);
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    uint64_t n = text.size();
    uint64_t i = 0;
    while (i < n) {
      uint64_t r = fn(p + i, n - i, &s, nullptr, lazy.byte_classes(), nullptr);
      if (r == n - i) break;
      s = lazy.Next(s, lazy.ByteClass(p[i + r]));
      if (lazy.HasMatch(s)) report(s);
      i += r + 1;
    }
    uint64_t last = lazy.Next(s, lazy.eot_class());
    if (lazy.HasMatch(last)) report(last);
  }

  // The LLVM IR of the set's module, for `explain --llvm`.
  const std::string& ir() const { return ir_; }

 private:
  PatternJit() = default;
  const abi::PatternSetTables* tables_ = nullptr;
  std::vector<ScanFn> fns_;
  std::vector<JitTables> jt_;
  std::string ir_;
  struct Handle;
  std::unique_ptr<Handle> handle_;
};

}  // namespace kt

#endif  // KT_RUNTIME_INTERNAL_JIT_H_
