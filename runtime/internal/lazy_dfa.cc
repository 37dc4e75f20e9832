#include "runtime/internal/lazy_dfa.h"

#include <algorithm>

namespace kt {

LazyDfa::LazyDfa(const abi::NfaProgram& nfa, bool unanchored, std::size_t cache_bytes)
    : subset_(nfa, unanchored),
      k_(subset_.num_classes()),
      byte_class_(subset_.byte_class()),
      max_states_(std::max<std::size_t>(cache_bytes / (sizeof(uint32_t) * k_), 16)),
      row_(k_) {
  next_.assign(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
}

uint32_t LazyDfa::Start(abi::Context ctx) {
  uint32_t s = subset_.Start(ctx);
  next_.resize(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
  return s;
}

uint32_t LazyDfa::Fill(uint32_t s, uint32_t cls) {
  if (subset_.num_states() + k_ > max_states_) {
    // Full: start over from this state alone.
    s = subset_.Clear(s);
    next_.assign(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
    ++flushes_;
  }
  subset_.Expand(s, row_.data());
  next_.resize(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
  std::copy(row_.begin(), row_.end(), next_.begin() + static_cast<std::ptrdiff_t>(s) * k_);
  return row_[cls];
}

}  // namespace kt
