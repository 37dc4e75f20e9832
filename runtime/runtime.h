// kt runtime facade: the only header other layers include from runtime/.
//
// Purpose. Scans text with compiled pattern sets: which patterns occur (one
// pass, whatever the number of patterns), leftmost-longest non-overlapping
// match spans, and a streaming scanner whose state carries across arbitrary
// chunk boundaries.
//
// Ownership and thread-safety. A `PatternSet` is immutable after
// construction and may be shared by any number of threads; it owns its
// tables and, when JIT-compiled, its native code. A `StreamScanner` is one
// stream's state: one thread at a time, and it must not outlive its set.
//
// Error channel. Scanning cannot fail: every input is valid (invalid UTF-8
// simply matches nothing that needs a valid code point). JIT compilation
// failure is reported by `PatternSet::Jit()` returning false; the set then
// keeps scanning with the table interpreter.
//
// Cost. Occurrence scans and streaming are O(text) with no allocation.
// Span extraction is O(text) per match in the worst case (as in RE2 and Rust's
// regex), and O(text) in total for ordinary inputs.
#ifndef KT_RUNTIME_RUNTIME_H_
#define KT_RUNTIME_RUNTIME_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/abi/automaton.h"

namespace llvm {
class Module;
}  // namespace llvm

namespace kt {

struct PatternMatch {
  uint32_t pattern = 0;
  std::size_t start = 0;
  std::size_t end = 0;
};

class PatternJit;  // runtime/internal/jit.h
class LazyPool;  // runtime/internal/lazy_dfa.h

// Eager subset construction (used by the pattern compiler): every DFA state
// reachable from the four start states. Stops, with ok == false, past the
// byte budget or the state cap.
struct DfaBuildLimits {
  std::size_t budget_bytes = SIZE_MAX;  // transition table bytes
  std::size_t max_states = SIZE_MAX;
};
struct DfaBuildResult {
  bool ok = false;
  bool budget_exceeded = false;  // the byte budget, not the state cap, stopped it
  std::size_t states = 0;
  std::size_t bytes = 0;
};
DfaBuildResult BuildDfa(const abi::NfaProgram& nfa, bool unanchored, const DfaBuildLimits& limits,
                        abi::Dfa* out);

// How the scan loop is generated. The defaults are what measured fastest
// (docs/performance.md); the others exist to keep that measurement honest.
struct JitOptions {
  enum class Loop { kTable, kDirect };
  Loop loop = Loop::kTable;  // kDirect: one basic block per DFA state
  bool accelerate = true;    // vector skip loops for quiescent states
  // Object cache for the compiled loops (empty: none; kTable loops only,
  // the direct-coded ones embed addresses).
  std::string cache_dir;
};

class PatternSet {
 public:
  explicit PatternSet(abi::PatternSetTables tables);
  ~PatternSet();
  PatternSet(const PatternSet&) = delete;
  PatternSet& operator=(const PatternSet&) = delete;

  uint32_t num_patterns() const { return tables_.num_patterns; }
  const abi::PatternSetTables& tables() const { return tables_; }

  // Compiles the forward scan loops to native code with LLVM ORC. Returns
  // false (and keeps the interpreter) if code generation fails.
  bool Jit(std::string* error = nullptr, const JitOptions& options = JitOptions());
  bool jitted() const { return jit_ != nullptr; }
  double jit_ms() const { return jit_ms_; }
  // The generated LLVM IR (empty unless jitted).
  std::string jit_ir() const;

  // Sets bit `i` of `*matched` (resized to num_patterns) when pattern `i`
  // occurs anywhere in `text`. Returns true if any pattern occurs.
  bool Scan(std::string_view text, std::vector<bool>* matched) const;
  // The same into a caller's bitset of num_patterns bits (64 per word, set
  // bits are or-ed in): no allocation.
  bool ScanInto(std::string_view text, uint64_t* words) const;
  // True if any pattern occurs; stops at the first match.
  bool Contains(std::string_view text) const;

  // The leftmost-longest match starting at or after `from`, if any.
  bool FirstMatch(std::string_view text, std::size_t from, PatternMatch* out) const;
  // Every leftmost-longest, non-overlapping match, in order. `prev_byte` is
  // the byte before `text` when it is a region of a longer stream (-1: the
  // text starts there), so `^`, `\b` and `\A` see the true context.
  std::vector<PatternMatch> AllMatches(std::string_view text, int prev_byte = -1) const;

 private:
  friend class StreamScanner;
  abi::PatternSetTables tables_;
  std::unique_ptr<PatternJit> jit_;
  // Parallel to tables_.groups: the on-demand automata of lazy groups
  // (null for eager ones).
  std::vector<std::unique_ptr<LazyPool>> lazy_;
  double jit_ms_ = 0;
};

// Streaming occurrence scanner. Feeding a text in any number of chunks
// reports exactly the matches a single whole-buffer scan reports.
class StreamScanner {
 public:
  explicit StreamScanner(const PatternSet* set);
  ~StreamScanner();

  struct MatchEnd {
    uint32_t pattern;
    std::size_t end;  // absolute offset in the stream
  };

  // Consumes the next chunk. Match ends are reported as soon as they are
  // certain, which is one byte after they occur (or at Finish()).
  void Feed(std::string_view chunk, std::vector<MatchEnd>* ends);
  // Ends the stream: reports matches that end at the last byte.
  void Finish(std::vector<MatchEnd>* ends);

  // Bytes consumed so far.
  std::size_t position() const { return position_; }
  // The largest offset p at which no pattern had a partial match in
  // progress: bytes before p can be released by a streaming evaluator
  // without ever needing to be taken back.
  std::size_t last_quiescent() const { return last_quiescent_; }

 private:
  struct LazyKeys;  // lazy groups' states, kept as keys across cache flushes
  const PatternSet* set_;
  std::vector<uint64_t> states_;  // one per DFA group: an id (eager) or row address (lazy)
  std::unique_ptr<LazyKeys> lazy_keys_;
  std::size_t position_ = 0;
  std::size_t last_quiescent_ = 0;
  bool finished_ = false;
};

// Redacts a streamed text with a pattern set, releasing bytes only up to the
// last offset where no pattern had a partial match in progress (the
// scanner's quiescent point). A match is therefore never split across a
// release: the released bytes, concatenated, equal the whole-text redaction,
// whatever the chunking (UTF-8 characters included). Hold-back is 0 bytes on
// text no pattern starts to match, and is capped by `max_hold`; at the cap
// the held bytes are redacted with what is known and released, and
// `capped()` records that it happened.
class StreamRedactor {
 public:
  // `replacements[i]` replaces matches of pattern i.
  StreamRedactor(const PatternSet* set, std::vector<std::string> replacements,
                 std::size_t max_hold);

  // Appends to `*release` the bytes that are now safe to send.
  void Feed(std::string_view chunk, std::string* release);
  // Ends the stream: releases everything still held.
  void Finish(std::string* release);

  std::size_t held() const { return buffer_.size(); }
  bool capped() const { return capped_; }
  // Every redacted span so far, in absolute stream offsets.
  const std::vector<PatternMatch>& redacted() const { return redacted_; }

 private:
  void ReleaseUpTo(std::size_t end, std::string* release);

  const PatternSet* set_;
  std::vector<std::string> replacements_;
  std::size_t max_hold_;
  StreamScanner scanner_;
  std::string buffer_;     // held bytes, from stream offset base_
  std::size_t base_ = 0;
  int prev_byte_ = -1;     // the byte before base_ (-1: stream start)
  bool capped_ = false;
  std::vector<StreamScanner::MatchEnd> ends_;  // scratch; ends are not needed here
  std::vector<PatternMatch> redacted_;
};

// A relocatable object file (JIT-compiled policy code, possibly read back
// from the object cache) linked into the process-wide LLJIT. Each object
// gets its own JITDylib and ResourceTracker, so two versions of a policy set
// can be loaded side by side (hot reload) and destroying the object removes
// its code. `symbols` are the addresses its undefined symbols resolve to
// (the runtime helpers); anything else resolves against the process.
class NativeObject {
 public:
  using Symbols = std::vector<std::pair<std::string, const void*>>;
  static std::unique_ptr<NativeObject> Load(std::string_view object, const Symbols& symbols,
                                            std::string* error);

  // How Build went.
  struct BuildInfo {
    bool from_cache = false;
    double compile_ms = 0;  // optimisation + object emission (0 from the cache)
    double link_ms = 0;
    std::string key;          // the cache key
    std::string cache_error;  // why the cache was not used or not written
  };
  // Compiles `module` (optimised at -O2; with `quick`, no IR optimisation
  // and fast instruction selection, for large modules of calls where
  // compile time matters more than the last cycle) to a position-independent
  // object and links it. With a `cache_dir`, the object is first looked up there
  // under a SHA-256 of the module's bitcode, the target and the ABI version, and
  // stored there after a compile; a damaged entry is recompiled and
  // replaced. The module must not embed addresses of this process when a
  // cache is used. `ir` (optional) receives the IR as given, printed.
  static std::unique_ptr<NativeObject> Build(llvm::Module& module, const std::string& cache_dir,
                                             const Symbols& symbols, bool quick, BuildInfo* info,
                                             std::string* ir, std::string* error);
  ~NativeObject();
  NativeObject(const NativeObject&) = delete;
  NativeObject& operator=(const NativeObject&) = delete;
  // The address of a defined function; null (with `*error`) if the object
  // does not define it or does not link.
  const void* Lookup(const std::string& name, std::string* error) const;

 private:
  NativeObject() = default;
  struct Handle;
  std::unique_ptr<Handle> handle_;
};

// Writes one object-cache entry atomically (temporary file, then rename)
// and keeps its directory bounded (the oldest entries go past a cap).
bool WriteCacheFile(const std::string& path, std::string_view bytes, std::string* error);

}  // namespace kt

#endif  // KT_RUNTIME_RUNTIME_H_
