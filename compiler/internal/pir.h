// PIR, the policy IR: what a checked policy set means, per stage, in the
// form codegen consumes.
//
// Each stage lists its rules in declaration order, and its pattern sets: all
// patterns the stage applies to one subject (a field such as
// `input.messages[*].content` or `output.text`) are merged into one set, so
// each text is scanned once however many rules look at it. Conditions refer
// to patterns as (set, slot). The IR is printable (`kt policy explain
// --pir`), verified, and golden-tested on the examples.
#ifndef KT_COMPILER_INTERNAL_PIR_H_
#define KT_COMPILER_INTERNAL_PIR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compiler/compiler.h"
#include "compiler/internal/regex.h"

namespace kt::internal {

struct PirPattern {
  std::string label;  // the pattern's name, or its literal source
  std::vector<const RegexNode*> trees;
};

struct PirPatternSet {
  std::string subject;
  std::vector<PirPattern> patterns;  // slot = index
  // Filled by the explain pass when the set is compiled.
  std::size_t dfa_states = 0;
  std::size_t memory_bytes = 0;
  bool lazy = false;
};

struct PirRedaction {
  uint32_t set = 0;
  uint32_t slot = 0;
  std::string replacement;
};

struct PirRule {
  std::string policy;
  std::string file;
  std::string mode;          // enforce | observe
  std::string action;        // block | flag | redact
  std::string code;
  std::string message;
  std::string stream_class;  // output stage: monotone | final-only
  std::string condition;     // printed, with patterns as `S<set>#<slot>`
  std::vector<std::pair<uint32_t, uint32_t>> pattern_refs;  // (set, slot) the condition uses
  std::vector<PirRedaction> redactions;
};

struct PirStage {
  std::string name;  // input | tool_call | output
  std::vector<PirRule> rules;
  std::vector<PirPatternSet> sets;
};

struct PirProgram {
  std::vector<PirStage> stages;
  // Regex trees built for literals, shared with everything else the checker
  // hands out, so the program outlives the checker that made it.
  std::shared_ptr<const std::vector<std::unique_ptr<RegexNode>>> trees;
};

// Text form, stable across runs (golden-tested).
std::string PrintPir(const PirProgram& program);

// Structural checks: every pattern reference names an existing set and slot,
// every rule has an action its stage allows, sets are non-empty. Returns the
// problems found (empty when valid): these are kt bugs, not user errors.
std::vector<std::string> VerifyPir(const PirProgram& program);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_PIR_H_
