// Eager subset construction: every state reachable from the starts.
#include "runtime/internal/subset.h"
#include "runtime/runtime.h"

namespace kt {

DfaBuildResult BuildDfa(const abi::NfaProgram& nfa, bool unanchored, const DfaBuildLimits& limits,
                        abi::Dfa* out) {
  DfaBuildResult result;
  Subset subset(nfa, unanchored);
  const uint32_t k = subset.num_classes();
  std::array<uint32_t, 4> start{};
  for (int ctx = 0; ctx < 4; ++ctx) start[ctx] = subset.Start(static_cast<abi::Context>(ctx));
  std::vector<uint32_t> next;
  for (std::size_t s = 0; s < subset.num_states(); ++s) {
    bool over_bytes = (s + 1) * k * sizeof(uint32_t) > limits.budget_bytes;
    if (over_bytes || s + 1 > limits.max_states) {
      result.states = subset.num_states();
      result.bytes = subset.num_states() * k * sizeof(uint32_t);
      result.budget_exceeded = over_bytes;
      return result;
    }
    next.resize((s + 1) * k);
    subset.Expand(static_cast<uint32_t>(s), &next[s * k]);
  }
  const uint32_t n = static_cast<uint32_t>(subset.num_states());
  out->num_states = n;
  out->num_classes = k;
  out->byte_class = subset.byte_class();
  out->eot_class = k - 1;
  out->start = start;
  out->next = std::move(next);
  out->match_begin.assign(1, 0);
  out->match_ids.clear();
  out->quiescent.clear();
  for (uint32_t s = 0; s < n; ++s) {
    const std::vector<uint32_t>& m = subset.matches(s);
    out->match_ids.insert(out->match_ids.end(), m.begin(), m.end());
    out->match_begin.push_back(static_cast<uint32_t>(out->match_ids.size()));
    out->quiescent.push_back(subset.quiescent(s) ? 1 : 0);
  }
  result.ok = true;
  result.states = n;
  result.bytes = static_cast<std::size_t>(n) * k * sizeof(uint32_t);
  return result;
}

}  // namespace kt
