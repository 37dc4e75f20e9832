// Policy programs: a checked policy set compiled to native code.
//
// One LLVM module per policy set, with one entry point per stage
// (`kt_stage_input`, `kt_stage_tool_call`, `kt_stage_output`) that evaluates
// every rule of the stage, in declaration order, over a flat RequestView
// (runtime/abi/request_view.h). Conditions become native control flow:
// `and`/`or`/`not`, quantifier loops and the fail-propagation rule of `as`
// are branches and phis; data access, comparisons of non-scalar values,
// pattern scans and built-ins are calls to the runtime helpers declared from
// builtins.def. When a rule's condition holds, generated code calls
// `kt_rt_fire`, and the runtime records the hit (the same code the
// interpreter uses: redact rules, observe mode, the first enforced block).
//
// The module is optimised and compiled to a relocatable object, which is
// linked into the process-wide LLJIT under its own ResourceTracker. Objects
// are kept in an on-disk cache keyed by a hash of the IR, the target and the
// ABI version: a restart with an unchanged policy set links the cached
// object and skips optimisation and code generation.
#ifndef KT_COMPILER_INTERNAL_CODEGEN_H_
#define KT_COMPILER_INTERNAL_CODEGEN_H_

#include <array>
#include <forward_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compiler/internal/checker.h"
#include "compiler/internal/test_runner.h"
#include "runtime/abi/request_view.h"
#include "runtime/runtime.h"

namespace kt::internal {

enum class StageId { kInput = 0, kToolCall = 1, kOutput = 2 };
inline constexpr std::array<const char*, 3> kStageNames = {"input", "tool_call", "output"};
int StageIndex(const std::string& stage);  // -1 if not a stage

struct NativeRun;

struct ProgramOptions {
  // Directory of the object cache; empty: no cache.
  std::string cache_dir;
  // Keep the module's IR as text (`explain --llvm`); printing it costs more
  // than compiling a large program quickly.
  bool keep_ir = false;
};

// Where a program's time went, and whether the cache served it.
struct ProgramStats {
  bool from_cache = false;
  double codegen_ms = 0;  // AST -> LLVM IR
  double compile_ms = 0;  // optimisation + object emission (0 from the cache)
  double link_ms = 0;     // linking into the JIT and resolving the stages
  std::string cache_key;
  std::string cache_error;  // why the cache could not be read or written
};

class PolicyProgram {
 public:
  // Compiles every policy of the program. `matcher` supplies the compiled
  // pattern sets the program scans with (it must outlive the program).
  // Null, with `*error`, if code generation or linking fails.
  static std::unique_ptr<PolicyProgram> Build(const Program& program, const Resolution& resolution,
                                              KtMatcher* matcher, const ProgramOptions& options,
                                              std::string* error);
  ~PolicyProgram();

  // The rules of a stage, in the order the entry point evaluates them.
  const std::vector<const PolicyDecl*>& rules(int stage) const { return rules_[stage]; }
  abi::StageFn entry(int stage) const { return entries_[stage]; }
  // Pattern set `i` of the program (null: it could not be compiled).
  const PatternSet* set(uint32_t i) const { return sets_[i]; }
  const std::string& set_error(uint32_t i) const { return set_errors_[i]; }
  // The set index of a redaction's pattern operand (-1 if unknown).
  int SetFor(const Expr* pattern) const {
    auto it = set_of_.find(pattern);
    return it == set_of_.end() ? -1 : static_cast<int>(it->second);
  }
  // Whether a pattern of set `set` occurs in `text`: read from one scan of
  // the text with the stage's merged set (memoised per text for the run),
  // or scanned with the set itself when the stage has no merged set.
  bool Occurs(NativeRun* run, uint32_t set, std::string_view text) const;
  // Words per text in the stage's merged bitset (0: no merged set).
  std::size_t merged_words(int stage) const;
  // Limit `i` (declaration order over the program's files) on the input:
  // whether it applies (its `when` holds, or cannot be judged: a limit must
  // not be escaped by a request policies cannot read) and its key ("" when
  // it has none). Throws EvaluationError when a helper fails.
  std::size_t limit_count() const { return limits_.size(); }
  void Limit(std::size_t i, const StageInput& in, bool* applies, std::string* key) const;
  // The module's LLVM IR as generated (before optimisation), when kept.
  const std::string& ir() const { return ir_; }
  const ProgramStats& stats() const { return stats_; }

 private:
  PolicyProgram() = default;
  std::array<std::vector<const PolicyDecl*>, 3> rules_;
  std::array<abi::StageFn, 3> entries_{};
  using LimitFn = void (*)(abi::Frame*, const abi::RequestView*, abi::Value* when, abi::Value* key);
  std::vector<const LimitDecl*> limits_;
  std::vector<LimitFn> limit_fns_;
  std::vector<const PatternSet*> sets_;
  std::vector<std::string> set_errors_;
  std::map<const Expr*, uint32_t> set_of_;  // redaction operands
  // Scan first, then decide: per stage, every occurrence test (`matches`,
  // redactions) of the stage merged into one set, and where each of the
  // program's sets lies in it (its pattern slots).
  struct StageScan {
    const PatternSet* merged = nullptr;
    std::vector<std::vector<uint32_t>> slots;  // per program set; empty: not merged
  };
  std::array<StageScan, 3> scans_;
  std::string ir_;
  ProgramStats stats_;
  std::unique_ptr<NativeObject> object_;
};

// The runtime side of one evaluation, reached from generated code through
// `abi::Frame::runtime`.
struct NativeRun {
  const PolicyProgram* program = nullptr;
  const StageInput* in = nullptr;
  // Called for each rule whose condition holds; returns true to stop.
  bool (*fire)(void* arg, uint32_t rule) = nullptr;
  void* fire_arg = nullptr;
  const abi::RequestView* view = nullptr;
  int stage = 0;
  // Occurrence bitsets of the texts scanned so far in this run, keyed by
  // the text's address and size (per-thread storage, reused).
  struct Memo {
    std::vector<const char*> data;
    std::vector<uint64_t> size;
    std::vector<uint64_t> words;
    std::size_t count = 0;
    std::size_t stride = 0;
  };
  Memo* memo = nullptr;
  // Strings built during evaluation (lower(), upper()); a list, so values
  // pointing into earlier strings stay valid as it grows, and empty (no
  // allocation) unless a rule builds one.
  std::forward_list<std::string> arena;
  bool failed = false;
  std::string error;
};

// Fills `*view` from a stage input; `messages` and `tools` receive the
// records the view points at.
void BuildView(const StageInput& in, abi::RequestView* view, std::vector<abi::MessageView>* messages,
               std::vector<abi::ToolDefView>* tools);

// The helper table (builtins.def), as (symbol, address) pairs.
const std::vector<std::pair<std::string, const void*>>& HelperSymbols();

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_CODEGEN_H_
