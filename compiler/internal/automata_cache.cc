// The automata cache (see automata_cache.h). The format is a flat sequence
// of little-endian fields in struct order, preceded by a magic tag; it is
// private to this file and versioned by the key.
#include "compiler/internal/automata_cache.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/SHA256.h"
#include "runtime/abi/request_view.h"
#include "runtime/runtime.h"

namespace kt::internal {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'k', 't', 'd', 'f', 'a', '0', '0', '1'};

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(&v, sizeof v); }
  void U64(uint64_t v) { Raw(&v, sizeof v); }
  void F64(double v) { Raw(&v, sizeof v); }
  void Str(const std::string& s) {
    U64(s.size());
    out_ += s;
  }
  template <typename T>
  void Vec(const std::vector<T>& v) {
    U64(v.size());
    if (!v.empty()) Raw(v.data(), v.size() * sizeof(T));
  }
  void Raw(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == in_.size(); }
  uint8_t U8() {
    uint8_t v = 0;
    Raw(&v, 1);
    return v;
  }
  uint32_t U32() {
    uint32_t v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  double F64() {
    double v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  std::string Str() {
    uint64_t n = U64();
    if (!ok_ || n > in_.size() - pos_) return Fail(), std::string();
    std::string s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> Vec() {
    uint64_t n = U64();
    if (!ok_ || n > (in_.size() - pos_) / sizeof(T)) return Fail(), std::vector<T>();
    std::vector<T> v(n);
    Raw(v.data(), n * sizeof(T));
    return v;
  }
  void Raw(void* p, std::size_t n) {
    if (!ok_ || n > in_.size() - pos_) return Fail();
    if (n == 0) return;  // an empty vector's data() may be null: memcpy's UB
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  void Fail() { ok_ = false; }

 private:
  const std::string& in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

void PutDfa(Writer* w, const abi::Dfa& d) {
  w->U32(d.num_states);
  w->U32(d.num_classes);
  w->Raw(d.byte_class.data(), d.byte_class.size());
  w->U32(d.eot_class);
  for (uint32_t s : d.start) w->U32(s);
  w->Vec(d.next);
  w->Vec(d.match_begin);
  w->Vec(d.match_ids);
  w->Vec(d.quiescent);
}

// Reads a DFA and checks that scanning it can never index out of range.
bool GetDfa(Reader* r, abi::Dfa* d, std::size_t local_patterns) {
  d->num_states = r->U32();
  d->num_classes = r->U32();
  r->Raw(d->byte_class.data(), d->byte_class.size());
  d->eot_class = r->U32();
  for (uint32_t& s : d->start) s = r->U32();
  d->next = r->Vec<uint32_t>();
  d->match_begin = r->Vec<uint32_t>();
  d->match_ids = r->Vec<uint32_t>();
  d->quiescent = r->Vec<uint8_t>();
  if (!r->ok()) return false;
  const uint64_t n = d->num_states;
  if (n == 0) {
    return d->next.empty() && d->match_begin.empty() && d->match_ids.empty() &&
           d->quiescent.empty();
  }
  if (d->num_classes == 0 || d->num_classes > 257 || d->eot_class >= d->num_classes) return false;
  for (uint8_t c : d->byte_class) {
    if (c >= d->num_classes) return false;
  }
  for (uint32_t s : d->start) {
    if (s >= n) return false;
  }
  if (d->next.size() != n * d->num_classes || d->match_begin.size() != n + 1 ||
      d->quiescent.size() != n || d->match_begin.front() != 0 ||
      d->match_begin.back() != d->match_ids.size()) {
    return false;
  }
  for (uint32_t t : d->next) {
    if (t >= n) return false;
  }
  for (std::size_t i = 0; i + 1 < d->match_begin.size(); ++i) {
    if (d->match_begin[i] > d->match_begin[i + 1]) return false;
  }
  for (uint32_t id : d->match_ids) {
    if (id >= local_patterns) return false;
  }
  return true;
}

void PutNfa(Writer* w, const abi::NfaProgram& p) {
  w->U64(p.insts.size());
  for (const abi::NfaInst& i : p.insts) {
    w->U8(i.kind);
    w->U8(i.lo);
    w->U8(i.hi);
    w->U8(i.assertion);
    w->U32(i.out);
    w->U32(i.out2);
    w->U32(i.pattern);
  }
  w->U32(p.start);
}

bool GetNfa(Reader* r, abi::NfaProgram* p, std::size_t local_patterns) {
  uint64_t n = r->U64();
  if (!r->ok() || n > (1u << 24)) return false;
  p->insts.resize(n);
  auto target_ok = [n](uint32_t t) { return t == abi::kNoTarget || t < n; };
  for (abi::NfaInst& i : p->insts) {
    uint8_t kind = r->U8();
    i.lo = r->U8();
    i.hi = r->U8();
    uint8_t assertion = r->U8();
    i.out = r->U32();
    i.out2 = r->U32();
    i.pattern = r->U32();
    if (kind > abi::NfaInst::kMatch || assertion > abi::kAssertNotWordBoundary) return false;
    i.kind = static_cast<abi::NfaInst::Kind>(kind);
    i.assertion = static_cast<abi::Assertion>(assertion);
    if (!target_ok(i.out) || !target_ok(i.out2)) return false;
    if (i.kind == abi::NfaInst::kMatch && i.pattern >= local_patterns) return false;
  }
  p->start = r->U32();
  return r->ok() && (n == 0 || p->start < n);
}

void KeyTree(Writer* w, const RegexNode& n) {
  w->U8(static_cast<uint8_t>(n.kind));
  w->U64(n.chars.ranges().size());
  for (const CodeRange& r : n.chars.ranges()) {
    w->U32(r.lo);
    w->U32(r.hi);
  }
  w->U32(static_cast<uint32_t>(n.min));
  w->U32(static_cast<uint32_t>(n.max));
  w->U8(static_cast<uint8_t>(n.assertion));
  w->U64(n.children.size());
  for (const auto& c : n.children) KeyTree(w, *c);
}

std::string Key(const std::vector<const RegexNode*>& patterns, const AutomataLimits& limits) {
  Writer w;
  w.Raw(kMagic, sizeof kMagic);
  w.U32(abi::kAbiVersion);
  w.Str(KT_VERSION);
  w.U64(limits.dfa_memory_budget);
  w.U64(limits.max_nfa_states);
  w.U8(limits.check_only ? 1 : 0);
  w.U64(limits.max_eager_states);
  w.U64(patterns.size());
  for (const RegexNode* p : patterns) KeyTree(&w, *p);
  std::string bytes = w.Take();
  auto digest = llvm::SHA256::hash(
      llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (std::size_t i = 0; i < 16; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace

std::string SerializeAutomata(const AutomataResult& r) {
  Writer w;
  w.Raw(kMagic, sizeof kMagic);
  w.U8(r.ok ? 1 : 0);
  w.Str(r.error);
  w.U32(r.failed_pattern);
  const AutomataStats& s = r.stats;
  for (std::size_t v : {s.nfa_states, s.dfa_states, s.dfa_states_minimized, s.byte_classes,
                        s.memory_bytes, s.groups, s.memory_bytes_reached}) {
    w.U64(v);
  }
  w.U8(s.budget_exceeded ? 1 : 0);
  w.U8(s.lazy ? 1 : 0);
  w.F64(s.compile_ms);
  w.U32(r.tables.num_patterns);
  w.U64(r.tables.lazy_cache_bytes);
  w.U64(r.tables.groups.size());
  for (const abi::DfaGroup& g : r.tables.groups) {
    w.Vec(g.pattern_ids);
    w.U8(g.lazy ? 1 : 0);
    PutDfa(&w, g.forward);
    PutDfa(&w, g.anchored);
    PutDfa(&w, g.reverse);
    PutNfa(&w, g.forward_nfa);
    PutNfa(&w, g.reverse_nfa);
  }
  return w.Take();
}

bool DeserializeAutomata(const std::string& bytes, bool scannable, AutomataResult* out) {
  Reader r(bytes);
  char magic[sizeof kMagic];
  r.Raw(magic, sizeof magic);
  if (!r.ok() || std::memcmp(magic, kMagic, sizeof kMagic) != 0) return false;
  AutomataResult res;
  res.ok = r.U8() != 0;
  res.error = r.Str();
  res.failed_pattern = r.U32();
  AutomataStats& s = res.stats;
  for (std::size_t* v : {&s.nfa_states, &s.dfa_states, &s.dfa_states_minimized, &s.byte_classes,
                         &s.memory_bytes, &s.groups, &s.memory_bytes_reached}) {
    *v = r.U64();
  }
  s.budget_exceeded = r.U8() != 0;
  s.lazy = r.U8() != 0;
  s.compile_ms = r.F64();
  res.tables.num_patterns = r.U32();
  res.tables.lazy_cache_bytes = r.U64();
  uint64_t groups = r.U64();
  if (!r.ok() || groups > 4096) return false;
  res.tables.groups.resize(groups);
  for (abi::DfaGroup& g : res.tables.groups) {
    g.pattern_ids = r.Vec<uint32_t>();
    for (uint32_t id : g.pattern_ids) {
      if (id >= res.tables.num_patterns) return false;
    }
    g.lazy = r.U8() != 0;
    const std::size_t local = g.pattern_ids.size();
    if (!GetDfa(&r, &g.forward, local) || !GetDfa(&r, &g.anchored, local) ||
        !GetDfa(&r, &g.reverse, local) || !GetNfa(&r, &g.forward_nfa, local) ||
        !GetNfa(&r, &g.reverse_nfa, local)) {
      return false;
    }
    // A group scans with its DFAs (eager) or builds them from its NFAs
    // (lazy): what it scans with must be there.
    if (scannable && res.ok && res.tables.num_patterns > 0) {
      const bool usable = g.lazy ? !g.forward_nfa.insts.empty() && !g.reverse_nfa.insts.empty()
                                 : g.forward.num_states > 0 && g.anchored.num_states > 0 &&
                                       g.reverse.num_states > 0;
      if (!usable) return false;
    }
  }
  if (!r.ok() || !r.done()) return false;
  *out = std::move(res);
  return true;
}

AutomataResult BuildAutomataCached(const std::vector<const RegexNode*>& patterns,
                                   const AutomataLimits& limits, const std::string& dir) {
  if (dir.empty()) return BuildAutomata(patterns, limits);
  const fs::path path = fs::path(dir) / "automata" / (Key(patterns, limits) + ".dfa");
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::ostringstream ss;
      ss << in.rdbuf();
      AutomataResult cached;
      if (DeserializeAutomata(ss.str(), !limits.check_only, &cached) && cached.tables.num_patterns == patterns.size()) {
        return cached;
      }
    }
  }
  AutomataResult built = BuildAutomata(patterns, limits);
  // Best effort: a cache that cannot be written costs the next load time,
  // nothing else.
  std::string ignored;
  WriteCacheFile(path.string(), SerializeAutomata(built), &ignored);
  return built;
}

}  // namespace kt::internal
