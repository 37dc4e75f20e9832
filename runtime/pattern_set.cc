// Table-driven scanning over abi::Dfa, and the span algorithm.
//
// Spans are found in two steps. A reverse scan over the whole text marks
// every position where some match starts (the reverse automaton reads the
// text backwards and reports a start one symbol late, like the forward one
// reports ends). Then, from the leftmost marked position at or after the
// search point, the anchored automaton runs forward and remembers the last
// position where it accepted: the longest match from there.
#include <algorithm>
#include <chrono>

#include "runtime/internal/jit.h"
#include "runtime/runtime.h"

namespace kt {
namespace {

abi::Context ContextBefore(std::string_view text, std::size_t pos) {
  if (pos == 0) return abi::kCtxText;
  unsigned char c = static_cast<unsigned char>(text[pos - 1]);
  if (c == '\n') return abi::kCtxNewline;
  bool word = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '_';
  return word ? abi::kCtxWord : abi::kCtxOther;
}

// Marks starts[i] for every i where some match of the group starts.
void ReverseStarts(const abi::Dfa& rev, std::string_view text, std::vector<uint8_t>* starts) {
  const std::size_t n = text.size();
  starts->assign(n + 1, 0);
  uint32_t s = rev.start[abi::kCtxText];
  const uint8_t* p = reinterpret_cast<const uint8_t*>(text.data());
  for (std::size_t i = n; i > 0; --i) {
    s = rev.Next(s, rev.byte_class[p[i - 1]]);
    // Reported one symbol late: a start at i, the position after text[i-1].
    if (rev.HasMatch(s)) (*starts)[i] = 1;
  }
  s = rev.Next(s, rev.eot_class);
  if (rev.HasMatch(s)) (*starts)[0] = 1;
}

// Longest match of the group anchored at `start`; false if none.
bool LongestFrom(const abi::DfaGroup& g, std::string_view text, std::size_t start,
                 PatternMatch* out) {
  const abi::Dfa& a = g.anchored;
  uint32_t s = a.start[ContextBefore(text, start)];
  const uint8_t* p = reinterpret_cast<const uint8_t*>(text.data());
  bool found = false;
  auto accept = [&](uint32_t state, std::size_t end) {
    uint32_t best = UINT32_MAX;
    for (uint32_t k = a.match_begin[state]; k < a.match_begin[state + 1]; ++k) {
      best = std::min(best, g.pattern_ids[a.match_ids[k]]);
    }
    out->start = start;
    out->end = end;
    out->pattern = best;
    found = true;
  };
  std::size_t i = start;
  for (; i < text.size(); ++i) {
    s = a.Next(s, a.byte_class[p[i]]);
    if (s == abi::kDeadState) return found;
    if (a.HasMatch(s)) accept(s, i);
  }
  s = a.Next(s, a.eot_class);
  if (a.HasMatch(s)) accept(s, text.size());
  return found;
}

}  // namespace

PatternSet::PatternSet(abi::PatternSetTables tables) : tables_(std::move(tables)) {}
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

bool PatternSet::Scan(std::string_view text, std::vector<bool>* matched) const {
  matched->assign(tables_.num_patterns, false);
  bool any = false;
  for (std::size_t gi = 0; gi < tables_.groups.size(); ++gi) {
    const abi::DfaGroup& g = tables_.groups[gi];
    const abi::Dfa& f = g.forward;
    auto report = [&](uint32_t s) {
      for (uint32_t k = f.match_begin[s]; k < f.match_begin[s + 1]; ++k) {
        (*matched)[g.pattern_ids[f.match_ids[k]]] = true;
        any = true;
      }
    };
    if (jit_ != nullptr) {
      jit_->ScanGroup(gi, text, report);
      continue;
    }
    uint32_t s = f.start[abi::kCtxText];
    const uint8_t* p = reinterpret_cast<const uint8_t*>(text.data());
    const uint8_t* end = p + text.size();
    for (; p < end; ++p) {
      s = f.Next(s, f.byte_class[*p]);
      if (f.HasMatch(s)) report(s);
    }
    s = f.Next(s, f.eot_class);
    if (f.HasMatch(s)) report(s);
  }
  return any;
}

bool PatternSet::Contains(std::string_view text) const {
  std::vector<bool> matched;
  return Scan(text, &matched);
}

bool PatternSet::FirstMatch(std::string_view text, std::size_t from, PatternMatch* out) const {
  std::vector<PatternMatch> all;
  bool found = false;
  std::vector<uint8_t> starts;
  for (const abi::DfaGroup& g : tables_.groups) {
    ReverseStarts(g.reverse, text, &starts);
    for (std::size_t i = from; i <= text.size(); ++i) {
      if (!starts[i]) continue;
      PatternMatch m;
      if (LongestFrom(g, text, i, &m)) {
        bool better = !found || m.start < out->start ||
                      (m.start == out->start &&
                       (m.end > out->end || (m.end == out->end && m.pattern < out->pattern)));
        if (better) *out = m;
        found = true;
      }
      break;
    }
  }
  return found;
}

std::vector<PatternMatch> PatternSet::AllMatches(std::string_view text) const {
  std::vector<PatternMatch> result;
  const std::size_t groups = tables_.groups.size();
  std::vector<std::vector<uint8_t>> starts(groups);
  for (std::size_t gi = 0; gi < groups; ++gi) {
    ReverseStarts(tables_.groups[gi].reverse, text, &starts[gi]);
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
      if (!LongestFrom(tables_.groups[gi], text, i, &m)) continue;
      if (!found || m.start < best.start ||
          (m.start == best.start &&
           (m.end > best.end || (m.end == best.end && m.pattern < best.pattern)))) {
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

StreamScanner::StreamScanner(const PatternSet* set) : set_(set) {
  for (const abi::DfaGroup& g : set->tables_.groups) states_.push_back(g.forward.start[abi::kCtxText]);
}

void StreamScanner::Feed(std::string_view chunk, std::vector<MatchEnd>* ends) {
  if (finished_) return;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(chunk.data());
  const auto& groups = set_->tables_.groups;
  // Groups advance in lockstep: a byte may be released only where every
  // group is quiescent at the same offset.
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    bool quiet = true;
    for (std::size_t gi = 0; gi < groups.size(); ++gi) {
      const abi::Dfa& f = groups[gi].forward;
      uint32_t s = f.Next(states_[gi], f.byte_class[p[i]]);
      states_[gi] = s;
      if (f.HasMatch(s)) {
        for (uint32_t k = f.match_begin[s]; k < f.match_begin[s + 1]; ++k) {
          ends->push_back(MatchEnd{groups[gi].pattern_ids[f.match_ids[k]], position_ + i});
        }
      }
      quiet = quiet && f.quiescent[s];
    }
    if (quiet) last_quiescent_ = position_ + i + 1;
  }
  position_ += chunk.size();
}

void StreamScanner::Finish(std::vector<MatchEnd>* ends) {
  if (finished_) return;
  finished_ = true;
  for (std::size_t gi = 0; gi < states_.size(); ++gi) {
    const abi::DfaGroup& g = set_->tables_.groups[gi];
    const abi::Dfa& f = g.forward;
    uint32_t s = f.Next(states_[gi], f.eot_class);
    for (uint32_t k = f.match_begin[s]; k < f.match_begin[s + 1]; ++k) {
      ends->push_back(MatchEnd{g.pattern_ids[f.match_ids[k]], position_});
    }
  }
  last_quiescent_ = position_;
}

}  // namespace kt
