// Scanning with pattern sets: occurrence, spans and streaming, over eager
// DFAs (tables, optionally JIT-compiled) and lazy ones (built on demand).
//
// Spans are found in two steps. A reverse scan over the whole text marks
// every position where some match starts (the reverse automaton reads the
// text backwards and reports a start one symbol late, like the forward one
// reports ends). Then, from the leftmost marked position at or after the
// search point, the anchored automaton runs forward and remembers the last
// position where it accepted: the longest match from there.
//
// The algorithms are templates over an automaton view, so eager tables and
// lazy automata share them.
#include <algorithm>
#include <chrono>

#include "runtime/internal/jit.h"
#include "runtime/internal/lazy_dfa.h"
#include "runtime/runtime.h"

namespace kt {
namespace {

// Eager tables behind the same interface as LazyDfa.
class TableView {
 public:
  using State = uint64_t;
  explicit TableView(const abi::Dfa& d) : d_(d) {}
  State Start(abi::Context ctx) const { return d_.start[ctx]; }
  State Next(State s, uint32_t cls) const { return d_.Next(static_cast<uint32_t>(s), cls); }
  bool IsDead(State s) const { return s == abi::kDeadState; }
  uint32_t ByteClass(uint8_t b) const { return d_.byte_class[b]; }
  uint32_t eot_class() const { return d_.eot_class; }
  bool HasMatch(State s) const { return d_.HasMatch(static_cast<uint32_t>(s)); }
  bool Quiescent(State s) const { return d_.quiescent[s] != 0; }
  template <typename F>
  void ForEachMatch(State s, F f) const {
    for (uint32_t k = d_.match_begin[s]; k < d_.match_begin[s + 1]; ++k) f(d_.match_ids[k]);
  }

 private:
  const abi::Dfa& d_;
};

class LazyView {
 public:
  using State = LazyDfa::State;
  explicit LazyView(LazyDfa& d) : d_(d) {}
  State Start(abi::Context ctx) { return d_.Start(ctx); }
  State Next(State s, uint32_t cls) { return d_.Next(s, cls); }
  bool IsDead(State s) const { return d_.IsDead(s); }
  uint32_t ByteClass(uint8_t b) const { return d_.ByteClass(b); }
  uint32_t eot_class() const { return d_.eot_class(); }
  bool HasMatch(State s) const { return d_.HasMatch(s); }
  bool Quiescent(State s) const { return d_.Quiescent(s); }
  template <typename F>
  void ForEachMatch(State s, F f) const {
    for (uint32_t id : d_.Matches(s)) f(id);
  }

 private:
  LazyDfa& d_;
};

abi::Context ContextOfByte(int byte) {
  if (byte < 0) return abi::kCtxText;
  unsigned char c = static_cast<unsigned char>(byte);
  if (c == '\n') return abi::kCtxNewline;
  bool word = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '_';
  return word ? abi::kCtxWord : abi::kCtxOther;
}

// The context before `pos`; at 0 it is that of `prev_byte` (-1: start of
// text), so a region cut out of a stream sees the byte before it.
abi::Context ContextBefore(std::string_view text, std::size_t pos, int prev_byte = -1) {
  return ContextOfByte(pos == 0 ? prev_byte : static_cast<unsigned char>(text[pos - 1]));
}

// Marks starts[i] for every i where some match of the group starts.
template <typename View>
void ReverseStarts(View rev, std::string_view text, std::vector<uint8_t>* starts,
                   int prev_byte = -1) {
  const std::size_t n = text.size();
  starts->assign(n + 1, 0);
  auto s = rev.Start(abi::kCtxText);
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  for (std::size_t i = n; i > 0; --i) {
    s = rev.Next(s, rev.ByteClass(p[i - 1]));
    // Reported one symbol late: a start at i, the position after text[i-1].
    if (rev.HasMatch(s)) (*starts)[i] = 1;
  }
  // Reading backwards, the text's start is "end of text" unless a byte
  // precedes the region; then that byte is read instead.
  s = rev.Next(s, prev_byte < 0 ? rev.eot_class() : rev.ByteClass(static_cast<uint8_t>(prev_byte)));
  if (rev.HasMatch(s)) (*starts)[0] = 1;
}

// Longest match of the group anchored at `start`; false if none.
template <typename View>
bool LongestFrom(View a, const std::vector<uint32_t>& ids, std::string_view text,
                 std::size_t start, PatternMatch* out, int prev_byte = -1) {
  auto s = a.Start(ContextBefore(text, start, prev_byte));
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  bool found = false;
  auto accept = [&](auto state, std::size_t end) {
    uint32_t best = UINT32_MAX;
    a.ForEachMatch(state, [&](uint32_t id) { best = std::min(best, ids[id]); });
    out->start = start;
    out->end = end;
    out->pattern = best;
    found = true;
  };
  for (std::size_t i = start; i < text.size(); ++i) {
    s = a.Next(s, a.ByteClass(p[i]));
    if (a.IsDead(s)) return found;
    if (a.HasMatch(s)) accept(s, i);
  }
  s = a.Next(s, a.eot_class());
  if (a.HasMatch(s)) accept(s, text.size());
  return found;
}

template <typename View, typename Report>
void ScanForward(View f, std::string_view text, Report report) {
  auto s = f.Start(abi::kCtxText);
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const auto* end = p + text.size();
  for (; p < end; ++p) {
    s = f.Next(s, f.ByteClass(*p));
    if (f.HasMatch(s)) report(f, s);
  }
  s = f.Next(s, f.eot_class());
  if (f.HasMatch(s)) report(f, s);
}

bool Better(const PatternMatch& m, const PatternMatch& best) {
  return m.start < best.start ||
         (m.start == best.start &&
          (m.end > best.end || (m.end == best.end && m.pattern < best.pattern)));
}

}  // namespace

PatternSet::PatternSet(abi::PatternSetTables tables) : tables_(std::move(tables)) {
  for (const abi::DfaGroup& g : tables_.groups) {
    lazy_.push_back(g.lazy ? std::make_unique<LazyPool>(g, tables_.lazy_cache_bytes) : nullptr);
  }
}
PatternSet::~PatternSet() = default;

bool PatternSet::Jit(std::string* error, const JitOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  std::string err;
  jit_ = PatternJit::Compile(tables_, options, &err);
  jit_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (jit_ == nullptr && error != nullptr) *error = err;
  return jit_ != nullptr;
}

std::string PatternSet::jit_ir() const { return jit_ == nullptr ? std::string() : jit_->ir(); }

// Calls report(pattern) for every pattern match state entered while
// scanning `text` with every group (JIT-compiled loops when there are).
template <typename Report>
static void ScanGroups(const abi::PatternSetTables& tables,
                       const std::vector<std::unique_ptr<LazyPool>>& lazy_pools,
                       const PatternJit* jit, std::string_view text, Report report) {
  for (std::size_t gi = 0; gi < tables.groups.size(); ++gi) {
    const abi::DfaGroup& g = tables.groups[gi];
    auto each = [&](auto& view, uint64_t s) {
      view.ForEachMatch(s, [&](uint32_t id) { report(g.pattern_ids[id]); });
    };
    if (lazy_pools[gi] != nullptr) {
      LazyLease lease = lazy_pools[gi]->Acquire();
      LazyGroup* lazy = lease.group;
      LazyView view(lazy->forward);
      if (jit != nullptr) {
        jit->ScanLazyGroup(gi, lazy->forward, text, [&](uint64_t s) { each(view, s); });
      } else {
        ScanForward(view, text, each);
      }
    } else if (jit != nullptr) {
      TableView view(g.forward);
      jit->ScanGroup(gi, text, [&](uint32_t s) { each(view, s); });
    } else {
      ScanForward(TableView(g.forward), text, each);
    }
  }
}

bool PatternSet::Scan(std::string_view text, std::vector<bool>* matched) const {
  matched->assign(tables_.num_patterns, false);
  bool any = false;
  ScanGroups(tables_, lazy_, jit_.get(), text, [&](uint32_t p) {
    (*matched)[p] = true;
    any = true;
  });
  return any;
}

bool PatternSet::ScanInto(std::string_view text, uint64_t* words) const {
  bool any = false;
  ScanGroups(tables_, lazy_, jit_.get(), text, [&](uint32_t p) {
    words[p >> 6] |= uint64_t{1} << (p & 63);
    any = true;
  });
  return any;
}

// Without the per-pattern bitset: no allocation on the policy engine's
// path, which asks this for every `matches` it cannot answer from a
// stage's merged scan.
bool PatternSet::Contains(std::string_view text) const {
  bool any = false;
  ScanGroups(tables_, lazy_, jit_.get(), text, [&](uint32_t) { any = true; });
  return any;
}

bool PatternSet::FirstMatch(std::string_view text, std::size_t from, PatternMatch* out) const {
  std::vector<PatternMatch> all;
  bool found = false;
  std::vector<uint8_t> starts;
  for (std::size_t gi = 0; gi < tables_.groups.size(); ++gi) {
    const abi::DfaGroup& g = tables_.groups[gi];
    LazyLease lease;
    if (lazy_[gi] != nullptr) lease = lazy_[gi]->Acquire();
    LazyGroup* lazy = lease.group;
    if (lazy != nullptr) {
      ReverseStarts(LazyView(lazy->reverse), text, &starts);
    } else {
      ReverseStarts(TableView(g.reverse), text, &starts);
    }
    for (std::size_t i = from; i <= text.size(); ++i) {
      if (!starts[i]) continue;
      PatternMatch m;
      bool ok = lazy != nullptr ? LongestFrom(LazyView(lazy->anchored), g.pattern_ids, text, i, &m)
                                : LongestFrom(TableView(g.anchored), g.pattern_ids, text, i, &m);
      if (ok) {
        if (!found || Better(m, *out)) *out = m;
        found = true;
      }
      break;
    }
  }
  return found;
}

std::vector<PatternMatch> PatternSet::AllMatches(std::string_view text, int prev_byte) const {
  std::vector<PatternMatch> result;
  const std::size_t groups = tables_.groups.size();
  // Lazy groups stay locked for the whole search: their state ids are only
  // stable while no other thread can flush the cache.
  std::vector<LazyLease> leases(groups);
  std::vector<std::vector<uint8_t>> starts(groups);
  for (std::size_t gi = 0; gi < groups; ++gi) {
    if (lazy_[gi] != nullptr) {
      leases[gi] = lazy_[gi]->Acquire();
      ReverseStarts(LazyView(leases[gi].group->reverse), text, &starts[gi], prev_byte);
    } else {
      ReverseStarts(TableView(tables_.groups[gi].reverse), text, &starts[gi], prev_byte);
    }
  }
  std::vector<std::size_t> cursor(groups, 0);
  std::size_t pos = 0;
  while (pos <= text.size()) {
    bool found = false;
    PatternMatch best;
    for (std::size_t gi = 0; gi < groups; ++gi) {
      std::size_t& i = cursor[gi];
      i = std::max(i, pos);
      while (i <= text.size() && !starts[gi][i]) ++i;
      if (i > text.size()) continue;
      if (found && i > best.start) continue;
      PatternMatch m;
      const abi::DfaGroup& g = tables_.groups[gi];
      LazyGroup* lazy = leases[gi].group;
      bool ok = lazy != nullptr
                    ? LongestFrom(LazyView(lazy->anchored), g.pattern_ids, text, i, &m, prev_byte)
                    : LongestFrom(TableView(g.anchored), g.pattern_ids, text, i, &m, prev_byte);
      if (!ok) continue;
      if (!found || Better(m, best)) {
        best = m;
        found = true;
      }
    }
    if (!found) break;
    result.push_back(best);
    pos = best.end > best.start ? best.end : best.end + 1;
  }
  return result;
}

struct StreamScanner::LazyKeys {
  std::vector<Subset::Key> keys;  // per group; unused for eager groups
};

StreamScanner::StreamScanner(const PatternSet* set)
    : set_(set), lazy_keys_(std::make_unique<LazyKeys>()) {
  for (std::size_t gi = 0; gi < set->tables_.groups.size(); ++gi) {
    const abi::DfaGroup& g = set->tables_.groups[gi];
    if (set->lazy_[gi] != nullptr) {
      LazyLease lease = set->lazy_[gi]->Acquire();
      LazyGroup* lazy = lease.group;
      lazy_keys_->keys.push_back(lazy->forward.KeyOf(lazy->forward.Start(abi::kCtxText)));
      states_.push_back(0);
    } else {
      lazy_keys_->keys.emplace_back();
      states_.push_back(g.forward.start[abi::kCtxText]);
    }
  }
}

StreamScanner::~StreamScanner() = default;

void StreamScanner::Feed(std::string_view chunk, std::vector<MatchEnd>* ends) {
  if (finished_) return;
  const auto* p = reinterpret_cast<const uint8_t*>(chunk.data());
  const auto& groups = set_->tables_.groups;
  // Lazy groups: lease an instance, and turn the saved keys back into states.
  std::vector<LazyLease> leases(groups.size());
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    if (set_->lazy_[gi] != nullptr) {
      leases[gi] = set_->lazy_[gi]->Acquire();
      states_[gi] = leases[gi].group->forward.FromKey(lazy_keys_->keys[gi]);
    }
  }
  // Groups advance in lockstep: a byte may be released only where every
  // group is quiescent at the same offset.
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    bool quiet = true;
    for (std::size_t gi = 0; gi < groups.size(); ++gi) {
      auto step = [&](auto view) {
        auto s = view.Next(states_[gi], view.ByteClass(p[i]));
        states_[gi] = s;
        if (view.HasMatch(s)) {
          view.ForEachMatch(s, [&](uint32_t id) {
            ends->push_back(MatchEnd{groups[gi].pattern_ids[id], position_ + i});
          });
        }
        quiet = quiet && view.Quiescent(s);
      };
      if (LazyGroup* lazy = leases[gi].group) {
        step(LazyView(lazy->forward));
      } else {
        step(TableView(groups[gi].forward));
      }
    }
    if (quiet) last_quiescent_ = position_ + i + 1;
  }
  position_ += chunk.size();
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    if (LazyGroup* lazy = leases[gi].group) {
      lazy_keys_->keys[gi] = lazy->forward.KeyOf(states_[gi]);
    }
  }
}

void StreamScanner::Finish(std::vector<MatchEnd>* ends) {
  if (finished_) return;
  finished_ = true;
  const auto& groups = set_->tables_.groups;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    auto finish = [&](auto view, uint64_t state) {
      auto s = view.Next(state, view.eot_class());
      view.ForEachMatch(s, [&](uint32_t id) {
        ends->push_back(MatchEnd{groups[gi].pattern_ids[id], position_});
      });
    };
    if (set_->lazy_[gi] != nullptr) {
      LazyLease lease = set_->lazy_[gi]->Acquire();
      LazyGroup* lazy = lease.group;
      finish(LazyView(lazy->forward), lazy->forward.FromKey(lazy_keys_->keys[gi]));
    } else {
      finish(TableView(groups[gi].forward), states_[gi]);
    }
  }
  last_quiescent_ = position_;
}

}  // namespace kt
