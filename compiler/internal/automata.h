// Regex trees to automata: Thompson NFA over UTF-8 bytes, subset
// construction into one DFA per pattern set, Hopcroft minimisation and
// byte-class compression. The output is `abi::PatternSetTables`.
#ifndef KT_COMPILER_INTERNAL_AUTOMATA_H_
#define KT_COMPILER_INTERNAL_AUTOMATA_H_

#include <cstddef>
#include <cstdint>
#include <cstddef>
#include <string>
#include <vector>

#include "compiler/internal/regex.h"
#include "runtime/abi/automaton.h"

namespace kt::internal {

struct AutomataLimits {
  std::size_t dfa_memory_budget = 8u << 20;  // bytes per DFA (see Options)
  std::size_t max_nfa_states = 1u << 20;
  // Build only the unminimised forward DFA: enough to check the budget
  // (the lint path), not enough to scan.
  bool check_only = false;
  // Largest forward DFA built eagerly; larger sets run lazily.
  std::size_t max_eager_states = 2048;
};

struct AutomataStats {
  std::size_t nfa_states = 0;
  std::size_t dfa_states = 0;            // forward DFA before minimisation, all groups
  std::size_t dfa_states_minimized = 0;  // forward DFA after, all groups
  std::size_t byte_classes = 0;          // forward DFA of the first group
  std::size_t memory_bytes = 0;          // all tables of all groups
  std::size_t groups = 0;
  // True when an eager DFA would exceed the memory budget (not only the
  // growth heuristic): worth a diagnostic, the heuristic alone is not.
  bool budget_exceeded = false;
  // True when the set runs as a lazy DFA, and how far eager construction got.
  bool lazy = false;
  std::size_t memory_bytes_reached = 0;
  double compile_ms = 0;
};

struct AutomataResult {
  bool ok = false;
  std::string error;  // set when !ok: a single pattern exceeds a limit
  uint32_t failed_pattern = 0;
  abi::PatternSetTables tables;
  AutomataStats stats;
};

// Compiles the patterns (ids are their indexes) into tables: one eager DFA
// group when it fits the budget, otherwise one lazy group (the NFAs, for
// on-demand construction at scan time). Fails only when the NFA itself
// exceeds `max_nfa_states`.
AutomataResult BuildAutomata(const std::vector<const RegexNode*>& patterns,
                             const AutomataLimits& limits);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_AUTOMATA_H_
