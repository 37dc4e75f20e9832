#include "runtime/internal/lazy_dfa.h"

#include <algorithm>
#include <functional>
#include <thread>

namespace kt {

LazyDfa::LazyDfa(const abi::NfaProgram& nfa, bool unanchored, std::size_t cache_bytes)
    : subset_(nfa, unanchored),
      k_(subset_.num_classes()),
      byte_class_(subset_.byte_class()),
      max_states_(std::max<std::size_t>(cache_bytes / (sizeof(uint64_t) * k_), 16)),
      row_(k_) {
  // Room for one full row of new successors past the bound: Fill checks the
  // bound before expanding, and an expansion adds at most k_ states.
  table_.reset(new uint64_t[(max_states_ + k_ + 1) * k_]);
  InitNewRows();
}

void LazyDfa::InitNewRows() {
  for (; rows_ready_ < subset_.num_states(); ++rows_ready_) {
    std::fill_n(table_.get() + rows_ready_ * k_, k_, kUnknown);
  }
}

LazyDfa::State LazyDfa::Start(abi::Context ctx) {
  uint32_t& s = starts_[ctx & 3];
  if (s == UINT32_MAX) {
    s = subset_.Start(ctx);
    InitNewRows();
  }
  return Addr(s);
}

LazyDfa::State LazyDfa::FromKey(const Subset::Key& key) {
  uint32_t s = subset_.InternKey(key);
  InitNewRows();
  return Addr(s);
}

LazyDfa::State LazyDfa::Fill(State state, uint32_t cls) {
  uint32_t s = Id(state);
  if (subset_.num_states() + k_ > max_states_) {
    // Full: start over from this state alone. Every successor the row names
    // is interned below, so the table never holds more than one extra row of
    // states beyond the bound.
    s = subset_.Clear(s);
    rows_ready_ = 0;
    starts_.fill(UINT32_MAX);
  }
  subset_.Expand(s, row_.data());
  InitNewRows();
  uint64_t* row = table_.get() + std::size_t{s} * k_;
  for (uint32_t c = 0; c < k_; ++c) {
    uint32_t t = row_[c];
    row[c] = Addr(t) | (subset_.matches(t).empty() ? 0 : kSpecial);
  }
  return Addr(row_[cls]);
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
