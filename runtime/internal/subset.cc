#include "runtime/internal/subset.h"

#include <algorithm>

namespace kt {
namespace {

bool IsWordByte(uint32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

uint64_t HashKey(const std::vector<uint32_t>& q, uint8_t ctx, const std::vector<uint32_t>& matches,
                 bool final_state) {
  uint64_t h = 1469598103934665603ull ^ (static_cast<uint64_t>(ctx) << 1) ^ final_state;
  for (uint32_t x : q) h = (h ^ x) * 1099511628211ull;
  h = (h ^ 0xfffffffful) * 1099511628211ull;
  for (uint32_t x : matches) h = (h ^ x) * 1099511628211ull;
  return h;
}

}  // namespace

Subset::Subset(const abi::NfaProgram& nfa, bool unanchored) : nfa_(nfa), unanchored_(unanchored) {
  mark_.assign(nfa.insts.size(), 0);
  ComputeClasses();
  q_next_.resize(num_classes_);
  keys_.push_back(Key{{}, 0, {}, false});  // state 0: dead, nothing matched
}

void Subset::ComputeClasses() {
  // Bytes no NFA range edge, `\n` or word-character edge separates behave
  // alike, so each class is stepped once.
  std::vector<bool> boundary(257, false);
  boundary[0] = true;
  auto cut = [&](uint32_t b) {
    if (b <= 256) boundary[b] = true;
  };
  for (const abi::NfaInst& s : nfa_.insts) {
    if (s.kind == abi::NfaInst::kRange && s.lo <= s.hi) {
      cut(s.lo);
      cut(static_cast<uint32_t>(s.hi) + 1);
    }
  }
  for (uint32_t b : {uint32_t{'\n'}, uint32_t{'\n' + 1}, uint32_t{'0'}, uint32_t{'9' + 1},
                     uint32_t{'A'}, uint32_t{'Z' + 1}, uint32_t{'_'}, uint32_t{'_' + 1},
                     uint32_t{'a'}, uint32_t{'z' + 1}}) {
    cut(b);
  }
  uint32_t cls = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    if (b > 0 && boundary[b]) ++cls;
    byte_class_[b] = static_cast<uint8_t>(cls);
    if (b == 0 || boundary[b]) {
      representative_.push_back(b);
      class_ctx_.push_back(b == '\n'         ? abi::kCtxNewline
                           : IsWordByte(b) ? abi::kCtxWord
                                           : abi::kCtxOther);
      class_sig_.push_back(b == '\n' ? kSigNewline : IsWordByte(b) ? kSigWord : kSigOther);
    }
  }
  num_classes_ = cls + 2;  // + end of text
  class_sig_.push_back(kSigEot);
  for (uint8_t sig : class_sig_) sig_present_[sig] = true;
}

uint32_t Subset::Start(abi::Context ctx) {
  return Intern({nfa_.start}, static_cast<uint8_t>(ctx), {});
}

bool Subset::quiescent(uint32_t state) const {
  const Key& k = keys_[state];
  return unanchored_ && k.q.size() == 1 && k.q[0] == nfa_.start && !k.final_state;
}

uint32_t Subset::Intern(const std::vector<uint32_t>& q, uint8_t ctx,
                        const std::vector<uint32_t>& matches, bool final_state) {
  if (q.empty() && matches.empty()) return abi::kDeadState;
  if (q.empty()) ctx = 0;
  uint64_t h = HashKey(q, ctx, matches, final_state);
  auto& bucket = ids_[h];
  for (uint32_t id : bucket) {
    const Key& k = keys_[id];
    if (k.ctx == ctx && k.final_state == final_state && k.q == q && k.matches == matches) {
      return id;
    }
  }
  uint32_t id = static_cast<uint32_t>(keys_.size());
  keys_.push_back(Key{q, ctx, matches, final_state});
  bucket.push_back(id);
  return id;
}

void Subset::Expand(uint32_t state, uint32_t* row) {
  if (state == abi::kDeadState || keys_[state].final_state) {
    std::fill(row, row + num_classes_, abi::kDeadState);
    return;
  }
  // Copy: Intern below may grow keys_ and move the key.
  Key k = keys_[state];
  StepAll(k);
  for (uint32_t cls = 0; cls < num_classes_; ++cls) {
    bool eot = cls == num_classes_ - 1;
    const std::vector<uint32_t>& m = step_matches_[class_sig_[cls]];
    row[cls] = eot ? (m.empty() ? abi::kDeadState : Intern({}, 0, m, true))
                   : Intern(q_next_[cls], class_ctx_[cls], m);
  }
}

// The closure depends only on the assertion flags, and those only on the
// class's signature (end of text, newline, word byte, other), so there are at
// most four closures per state; each range state then feeds the contiguous
// run of classes it covers.
void Subset::StepAll(const Key& k) {
  for (auto& v : q_next_) v.clear();
  for (int sig = 0; sig < 4; ++sig) {
    step_matches_[sig].clear();
    if (!sig_present_[sig]) continue;
    Flags f;
    f.begin_text = k.ctx == abi::kCtxText;
    f.begin_line = k.ctx == abi::kCtxText || k.ctx == abi::kCtxNewline;
    f.end_text = sig == kSigEot;
    f.end_line = sig == kSigEot || sig == kSigNewline;
    f.word_boundary = (k.ctx == abi::kCtxWord) != (sig == kSigWord);
    Closure(k.q, f, &step_matches_[sig]);
    std::vector<uint32_t>& m = step_matches_[sig];
    std::sort(m.begin(), m.end());
    m.erase(std::unique(m.begin(), m.end()), m.end());
    if (sig == kSigEot) continue;
    for (uint32_t r : ranges_) {
      const abi::NfaInst& st = nfa_.insts[r];
      if (st.lo > st.hi || st.out == abi::kNoTarget) continue;
      for (uint32_t cls = byte_class_[st.lo]; cls <= byte_class_[st.hi]; ++cls) {
        if (class_sig_[cls] == sig) q_next_[cls].push_back(st.out);
      }
    }
  }
  for (uint32_t cls = 0; cls + 1 < num_classes_; ++cls) {
    std::vector<uint32_t>& q = q_next_[cls];
    if (unanchored_) q.push_back(nfa_.start);
    std::sort(q.begin(), q.end());
    q.erase(std::unique(q.begin(), q.end()), q.end());
  }
}

void Subset::Closure(const std::vector<uint32_t>& q, const Flags& f,
                     std::vector<uint32_t>* matches) {
  ++generation_;
  ranges_.clear();
  stack_.clear();
  for (uint32_t s : q) Push(s);
  while (!stack_.empty()) {
    uint32_t s = stack_.back();
    stack_.pop_back();
    const abi::NfaInst& st = nfa_.insts[s];
    switch (st.kind) {
      case abi::NfaInst::kEps:
        if (st.out2 != abi::kNoTarget) Push(st.out2);
        if (st.out != abi::kNoTarget) Push(st.out);
        break;
      case abi::NfaInst::kAssert: {
        bool ok = false;
        switch (st.assertion) {
          case abi::kAssertBeginText:
            ok = f.begin_text;
            break;
          case abi::kAssertBeginLine:
            ok = f.begin_line;
            break;
          case abi::kAssertEndText:
            ok = f.end_text;
            break;
          case abi::kAssertEndLine:
            ok = f.end_line;
            break;
          case abi::kAssertWordBoundary:
            ok = f.word_boundary;
            break;
          case abi::kAssertNotWordBoundary:
            ok = !f.word_boundary;
            break;
        }
        if (ok && st.out != abi::kNoTarget) Push(st.out);
        break;
      }
      case abi::NfaInst::kMatch:
        matches->push_back(st.pattern);
        break;
      case abi::NfaInst::kRange:
        ranges_.push_back(s);
        break;
    }
  }
}

void Subset::Push(uint32_t s) {
  if (mark_[s] == generation_) return;
  mark_[s] = generation_;
  stack_.push_back(s);
}

uint32_t Subset::Clear(uint32_t keep) {
  Key saved = keys_[keep];
  keys_.resize(1);
  ids_.clear();
  if (keep == abi::kDeadState) return abi::kDeadState;
  return Intern(saved.q, saved.ctx, saved.matches, saved.final_state);
}

}  // namespace kt
