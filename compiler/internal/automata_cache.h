// Compiled automata in the object cache directory, keyed by content.
//
// Subset construction and minimisation are most of what loading a policy
// set costs, and their output depends only on the regex trees and the
// limits. An entry is keyed by a SHA-256 of both (and the ABI and kt
// versions), so a changed pattern is a new key, never a stale hit. Entries
// are validated when read (every index in range, every size consistent): a
// damaged or foreign file is a miss, never a crash or a wrong answer.
#ifndef KT_COMPILER_INTERNAL_AUTOMATA_CACHE_H_
#define KT_COMPILER_INTERNAL_AUTOMATA_CACHE_H_

#include <string>
#include <vector>

#include "compiler/internal/automata.h"

namespace kt::internal {

// BuildAutomata through the cache in `dir` (empty: no cache).
AutomataResult BuildAutomataCached(const std::vector<const RegexNode*>& patterns,
                                   const AutomataLimits& limits, const std::string& dir);

// The serialised form (exposed for tests). `scannable`: the result must be
// complete enough to scan with (not a check-only build).
std::string SerializeAutomata(const AutomataResult& result);
bool DeserializeAutomata(const std::string& bytes, bool scannable, AutomataResult* out);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_AUTOMATA_CACHE_H_
