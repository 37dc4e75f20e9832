// The facade's pattern compiler: regex sources to automaton tables.
#include "compiler/compiler.h"
#include "compiler/internal/automata.h"
#include "compiler/internal/regex.h"

namespace kt {

CompiledPatterns CompilePatterns(const std::vector<PatternSource>& patterns,
                                 const Options& options) {
  CompiledPatterns out;
  std::vector<internal::ParsedRegex> parsed;
  std::vector<const internal::RegexNode*> roots;
  internal::RegexLimits limits;
  limits.max_bytes = options.max_regex_bytes;
  limits.max_repeat = options.max_repeat;
  limits.max_depth = options.max_nesting_depth;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    internal::RegexFlags flags;
    std::size_t bad = internal::ParseRegexFlags(patterns[i].flags, &flags);
    if (bad != std::string::npos) {
      out.error_pattern = i;
      out.error = std::string("unknown regex flag `") + patterns[i].flags[bad] + "`";
      return out;
    }
    parsed.push_back(internal::ParseRegex(patterns[i].regex, flags, limits));
    if (parsed.back().error) {
      out.error_pattern = i;
      out.error_offset = parsed.back().error->offset;
      out.error = parsed.back().error->message;
      return out;
    }
  }
  for (const auto& p : parsed) roots.push_back(p.root.get());
  internal::AutomataLimits alimits;
  alimits.dfa_memory_budget = options.dfa_memory_budget;
  internal::AutomataResult r = internal::BuildAutomata(roots, alimits);
  out.stats.nfa_states = r.stats.nfa_states;
  out.stats.dfa_states = r.stats.dfa_states;
  out.stats.dfa_states_minimized = r.stats.dfa_states_minimized;
  out.stats.byte_classes = r.stats.byte_classes;
  out.stats.memory_bytes = r.stats.memory_bytes;
  out.stats.groups = r.stats.groups;
  out.stats.lazy = r.stats.lazy;
  out.stats.compile_ms = r.stats.compile_ms;
  if (!r.ok) {
    out.error = r.error;
    out.error_pattern = r.failed_pattern;
    return out;
  }
  out.tables = std::move(r.tables);
  out.tables.lazy_cache_bytes = options.dfa_memory_budget;
  out.ok = true;
  return out;
}

}  // namespace kt
