#include "runtime/internal/lazy_dfa.h"

#include <algorithm>
#include <functional>
#include <thread>

namespace kt {

LazyDfa::LazyDfa(const abi::NfaProgram& nfa, bool unanchored, std::size_t cache_bytes)
    : subset_(nfa, unanchored),
      k_(subset_.num_classes()),
      byte_class_(subset_.byte_class()),
      max_states_(std::max<std::size_t>(cache_bytes / (sizeof(uint32_t) * k_), 16)),
      row_(k_) {
  next_.assign(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
  // Offsets must stay below the special bit.
  max_states_ = std::min<std::size_t>(max_states_, (kSpecial - 1) / k_ - k_);
}

uint32_t LazyDfa::Start(abi::Context ctx) {
  uint32_t s = subset_.Start(ctx);
  next_.resize(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
  return s * k_;
}

uint32_t LazyDfa::FromKey(const Subset::Key& key) {
  uint32_t s = subset_.InternKey(key);
  next_.resize(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
  return s * k_;
}

uint32_t LazyDfa::Fill(uint32_t offset, uint32_t cls) {
  uint32_t s = offset / k_;
  if (subset_.num_states() + k_ > max_states_) {
    // Full: start over from this state alone. Every successor the row
    // names is interned below, so the cache never exceeds its bound by more
    // than one row.
    s = subset_.Clear(s);
    next_.assign(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
    ++flushes_;
  }
  subset_.Expand(s, row_.data());
  next_.resize(static_cast<std::size_t>(subset_.num_states()) * k_, kUnknown);
  for (uint32_t c = 0; c < k_; ++c) {
    uint32_t t = row_[c];
    next_[static_cast<std::size_t>(s) * k_ + c] =
        t * k_ | (subset_.matches(t).empty() ? 0u : kSpecial);
  }
  return row_[cls] * k_;
}

LazyPool::LazyPool(const abi::DfaGroup& g, std::size_t cache_bytes) {
  unsigned n = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  for (unsigned i = 0; i < n; ++i) instances_.push_back(std::make_unique<LazyGroup>(g, cache_bytes));
}

LazyLease LazyPool::Acquire() {
  static thread_local const std::size_t hint = std::hash<std::thread::id>{}(std::this_thread::get_id());
  const std::size_t n = instances_.size();
  for (std::size_t k = 0; k < n; ++k) {
    LazyGroup* g = instances_[(hint + k) % n].get();
    std::unique_lock<std::mutex> lock(g->mutex, std::try_to_lock);
    if (lock.owns_lock()) return LazyLease{g, std::move(lock)};
  }
  LazyGroup* g = instances_[hint % n].get();
  return LazyLease{g, std::unique_lock<std::mutex>(g->mutex)};
}

}  // namespace kt
