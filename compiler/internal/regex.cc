// A recursive-descent parser for kt's regex dialect.
//
// The dialect is RE2's, minus everything that cannot be compiled to a finite
// automaton: backreferences, lookaround, atomic groups and `\C`. Those get an
// "unsupported" error that says why (the linear-time guarantee), rather than a
// generic syntax error, because authors arriving from PCRE will try them.
//
// Semantics follow RE2 where RE2 has an opinion: `\d \w \s \b` are ASCII;
// `.` is one code point and excludes `\n` unless (?s); `$` without (?m) means
// end of text; a `{` that does not start a valid repetition is a literal.
// Case-insensitive matching uses Unicode simple case folding (see
// scripts/gen-unicode-tables.py).
#include "compiler/internal/regex.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <utility>

namespace kt::internal {
namespace {

struct GroupTable {
  const char* name;
  std::vector<CodeRange> ranges;
};

#define KT_UNICODE_GROUP(name, ...) {name, {__VA_ARGS__}},
#define KT_CASE_EDGES(...)
const GroupTable kGroups[] = {
#include "compiler/internal/unicode_tables.inc"
};
#undef KT_UNICODE_GROUP
#undef KT_CASE_EDGES

#define KT_UNICODE_GROUP(name, ...)
#define KT_CASE_EDGES(...) __VA_ARGS__
const CodeRange kCaseEdges[] = {
#include "compiler/internal/unicode_tables.inc"
};
#undef KT_UNICODE_GROUP
#undef KT_CASE_EDGES

// cp -> every other member of its case-folding orbit.
const std::map<uint32_t, std::vector<uint32_t>>& CaseOrbits() {
  static const auto* orbits = [] {
    std::map<uint32_t, uint32_t> parent;
    auto find = [&](uint32_t x) {
      while (parent.count(x) && parent[x] != x) x = parent[x];
      return x;
    };
    for (const CodeRange& e : kCaseEdges) {
      for (uint32_t v : {e.lo, e.hi}) {
        if (!parent.count(v)) parent[v] = v;
      }
      uint32_t a = find(e.lo), b = find(e.hi);
      if (a != b) parent[std::max(a, b)] = std::min(a, b);
    }
    std::map<uint32_t, std::vector<uint32_t>> members;
    for (auto& [cp, _] : parent) members[find(cp)].push_back(cp);
    auto* result = new std::map<uint32_t, std::vector<uint32_t>>();
    for (auto& [root, list] : members) {
      for (uint32_t cp : list) {
        for (uint32_t other : list) {
          if (other != cp) (*result)[cp].push_back(other);
        }
      }
    }
    return result;
  }();
  return *orbits;
}

CharSet Ascii(std::initializer_list<std::pair<uint32_t, uint32_t>> ranges) {
  CharSet s;
  for (auto [lo, hi] : ranges) s.Add(lo, hi);
  return s;
}

const CharSet& DigitSet() {
  static const CharSet s = Ascii({{'0', '9'}});
  return s;
}
const CharSet& WordSet() {
  static const CharSet s = Ascii({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}, {'_', '_'}});
  return s;
}
const CharSet& SpaceSet() {
  static const CharSet s = Ascii({{'\t', '\n'}, {'\f', '\r'}, {' ', ' '}});
  return s;
}

const CharSet* PosixClass(std::string_view name) {
  static const std::map<std::string_view, CharSet> classes = {
      {"alnum", Ascii({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}})},
      {"alpha", Ascii({{'A', 'Z'}, {'a', 'z'}})},
      {"ascii", Ascii({{0, 0x7F}})},
      {"blank", Ascii({{'\t', '\t'}, {' ', ' '}})},
      {"cntrl", Ascii({{0, 0x1F}, {0x7F, 0x7F}})},
      {"digit", Ascii({{'0', '9'}})},
      {"graph", Ascii({{'!', '~'}})},
      {"lower", Ascii({{'a', 'z'}})},
      {"print", Ascii({{' ', '~'}})},
      {"punct", Ascii({{'!', '/'}, {':', '@'}, {'[', '`'}, {'{', '~'}})},
      {"space", Ascii({{'\t', '\r'}, {' ', ' '}})},
      {"upper", Ascii({{'A', 'Z'}})},
      {"word", Ascii({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}, {'_', '_'}})},
      {"xdigit", Ascii({{'0', '9'}, {'A', 'F'}, {'a', 'f'}})},
  };
  auto it = classes.find(name);
  return it == classes.end() ? nullptr : &it->second;
}

std::unique_ptr<RegexNode> MakeChars(CharSet set) {
  auto n = std::make_unique<RegexNode>();
  n->kind = RegexKind::kChars;
  n->chars = std::move(set);
  return n;
}

std::unique_ptr<RegexNode> MakeAssert(AssertKind kind) {
  auto n = std::make_unique<RegexNode>();
  n->kind = RegexKind::kAssert;
  n->assertion = kind;
  return n;
}

constexpr const char* kLinearHelp =
    "kt compiles every pattern to a finite automaton that reads each text once, "
    "which is what makes matching linear-time and immune to ReDoS";

class RegexParser {
 public:
  RegexParser(std::string_view src, RegexFlags flags, const RegexLimits& limits)
      : src_(src), limits_(limits), flags_(flags) {}

  ParsedRegex Run() {
    ParsedRegex result;
    if (src_.size() > limits_.max_bytes) {
      Fail(0, src_.size(), "regex is " + std::to_string(src_.size()) +
                               " bytes; the limit is " + std::to_string(limits_.max_bytes));
      result.error = error_;
      return result;
    }
    auto root = ParseAlt(0);
    if (!error_ && pos_ < src_.size()) {
      // Only an unmatched `)` stops ParseAlt early.
      Fail(pos_, 1, "unmatched `)`");
    }
    if (error_) {
      result.error = error_;
    } else {
      result.root = std::move(root);
    }
    return result;
  }

 private:
  bool AtEnd() const { return pos_ >= src_.size(); }
  char Peek() const { return src_[pos_]; }

  void Fail(std::size_t offset, std::size_t length, std::string message,
            bool unsupported = false) {
    if (error_) return;
    error_ = RegexError{offset, std::max<std::size_t>(length, 1), std::move(message),
                        unsupported};
  }
  void Unsupported(std::size_t offset, std::size_t length, const std::string& what) {
    Fail(offset, length, what + " are not supported: " + kLinearHelp, true);
  }

  // Decodes one UTF-8 code point at pos_ (the source is valid UTF-8).
  uint32_t NextCodePoint() {
    unsigned char c = static_cast<unsigned char>(src_[pos_]);
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len && pos_ + k < src_.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(src_[pos_ + k]) & 0x3F);
    }
    pos_ += len;
    return cp;
  }

  CharSet Fold(CharSet set) const {
    return flags_.case_insensitive ? set.CaseFolded() : set;
  }

  std::unique_ptr<RegexNode> ParseAlt(int depth) {
    if (depth > limits_.max_depth) {
      Fail(pos_, 1, "regex nested more than " + std::to_string(limits_.max_depth) +
                        " groups deep");
      return nullptr;
    }
    std::vector<std::unique_ptr<RegexNode>> branches;
    branches.push_back(ParseConcat(depth));
    while (!error_ && !AtEnd() && Peek() == '|') {
      ++pos_;
      branches.push_back(ParseConcat(depth));
    }
    if (error_) return nullptr;
    if (branches.size() == 1) return std::move(branches[0]);
    auto n = std::make_unique<RegexNode>();
    n->kind = RegexKind::kAlt;
    n->children = std::move(branches);
    return n;
  }

  std::unique_ptr<RegexNode> ParseConcat(int depth) {
    auto concat = std::make_unique<RegexNode>();
    concat->kind = RegexKind::kConcat;
    while (!error_ && !AtEnd() && Peek() != '|' && Peek() != ')') {
      std::size_t atom_start = pos_;
      auto atom = ParseAtom(depth);
      if (error_) return nullptr;
      if (atom == nullptr) continue;  // a flag group such as (?i) yields nothing
      atom = ParseQuantifiers(std::move(atom), atom_start);
      if (error_) return nullptr;
      concat->children.push_back(std::move(atom));
    }
    if (concat->children.empty()) {
      auto empty = std::make_unique<RegexNode>();
      empty->kind = RegexKind::kEmpty;
      return empty;
    }
    if (concat->children.size() == 1) return std::move(concat->children[0]);
    return concat;
  }

  // Parses {m}, {m,} or {m,n} at pos_; returns false (consuming nothing) when
  // the text is not a repetition, in which case `{` is a literal.
  bool ParseBraces(int* min, int* max) {
    std::size_t p = pos_ + 1;
    auto number = [&](int* out) {
      std::size_t start = p;
      long long v = 0;
      while (p < src_.size() && src_[p] >= '0' && src_[p] <= '9') {
        v = std::min<long long>(v * 10 + (src_[p] - '0'), 1'000'000'000);
        ++p;
      }
      *out = static_cast<int>(v);
      return p > start;
    };
    if (!number(min)) return false;
    if (p < src_.size() && src_[p] == '}') {
      *max = *min;
    } else if (p < src_.size() && src_[p] == ',') {
      ++p;
      if (p < src_.size() && src_[p] == '}') {
        *max = -1;
      } else if (!number(max) || p >= src_.size() || src_[p] != '}') {
        return false;
      }
    } else {
      return false;
    }
    pos_ = p + 1;
    return true;
  }

  std::unique_ptr<RegexNode> ParseQuantifiers(std::unique_ptr<RegexNode> atom,
                                              std::size_t atom_start) {
    bool quantified = false;
    while (!AtEnd()) {
      char c = Peek();
      std::size_t op_start = pos_;
      int min = 0, max = -1;
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        min = 1;
        ++pos_;
      } else if (c == '?') {
        max = 1;
        ++pos_;
      } else if (c == '{') {
        if (!ParseBraces(&min, &max)) break;
        if (min > limits_.max_repeat || max > limits_.max_repeat) {
          Fail(op_start, pos_ - op_start,
               "repetition count exceeds " + std::to_string(limits_.max_repeat));
          return nullptr;
        }
        if (max != -1 && max < min) {
          Fail(op_start, pos_ - op_start, "invalid repetition: the maximum is below the minimum");
          return nullptr;
        }
      } else {
        break;
      }
      if (quantified) {
        Fail(atom_start, pos_ - atom_start,
             "bad repetition operator `" + std::string(src_.substr(op_start, pos_ - op_start)) +
                 "`: the expression is already repeated",
             false);
        return nullptr;
      }
      quantified = true;
      // A trailing `?` makes the repetition lazy. A DFA has no preference
      // between match lengths, so lazy and greedy compile identically.
      if (!AtEnd() && Peek() == '?') ++pos_;
      if (!AtEnd() && Peek() == '+') {
        Unsupported(pos_, 1, "possessive quantifiers");
        return nullptr;
      }
      auto rep = std::make_unique<RegexNode>();
      rep->kind = RegexKind::kRepeat;
      rep->min = min;
      rep->max = max;
      rep->children.push_back(std::move(atom));
      atom = std::move(rep);
    }
    return atom;
  }

  std::unique_ptr<RegexNode> ParseAtom(int depth) {
    std::size_t start = pos_;
    char c = Peek();
    switch (c) {
      case '(':
        return ParseGroup(depth);
      case '[':
        return ParseClass();
      case '.': {
        ++pos_;
        CharSet s;
        if (flags_.dot_all) {
          s.Add(0, 0x10FFFF);
        } else {
          s.Add(0, '\n' - 1);
          s.Add('\n' + 1, 0x10FFFF);
        }
        return MakeChars(std::move(s));
      }
      case '^':
        ++pos_;
        return MakeAssert(flags_.multi_line ? AssertKind::kBeginLine : AssertKind::kBeginText);
      case '$':
        ++pos_;
        return MakeAssert(flags_.multi_line ? AssertKind::kEndLine : AssertKind::kEndText);
      case '*':
      case '+':
      case '?':
        Fail(start, 1, std::string("missing argument to repetition operator `") + c + "`");
        return nullptr;
      case '{': {
        int min = 0, max = 0;
        std::size_t save = pos_;
        if (ParseBraces(&min, &max)) {
          Fail(save, pos_ - save, "missing argument to repetition operator");
          return nullptr;
        }
        ++pos_;
        return MakeChars(Fold(Ascii({{'{', '{'}})));
      }
      case '\\':
        return ParseEscape();
      default: {
        uint32_t cp = NextCodePoint();
        CharSet s;
        s.Add(cp, cp);
        return MakeChars(Fold(std::move(s)));
      }
    }
  }

  std::unique_ptr<RegexNode> ParseGroup(int depth) {
    std::size_t open = pos_;
    ++pos_;  // (
    RegexFlags saved = flags_;
    if (!AtEnd() && Peek() == '?') {
      ++pos_;
      if (AtEnd()) {
        Fail(open, 2, "missing closing `)`");
        return nullptr;
      }
      char c = Peek();
      if (c == '=' || c == '!') {
        Unsupported(open, 3, "lookahead assertions");
        return nullptr;
      }
      if (c == '<' && pos_ + 1 < src_.size() && (src_[pos_ + 1] == '=' || src_[pos_ + 1] == '!')) {
        Unsupported(open, 4, "lookbehind assertions");
        return nullptr;
      }
      if (c == '>') {
        Unsupported(open, 3, "atomic groups");
        return nullptr;
      }
      if (c == 'P' && pos_ + 1 < src_.size() && src_[pos_ + 1] == '=') {
        Unsupported(open, 4, "backreferences");
        return nullptr;
      }
      if (c == 'P' || c == '<') {
        // Named group: (?P<name>…) or (?<name>…). Names are accepted and
        // ignored: kt reports whole-match spans only.
        if (c == 'P') ++pos_;
        if (AtEnd() || Peek() != '<') {
          Fail(open, pos_ - open + 1, "invalid named group");
          return nullptr;
        }
        std::size_t name_start = ++pos_;
        while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(Peek())) || Peek() == '_')) {
          ++pos_;
        }
        if (AtEnd() || Peek() != '>' || pos_ == name_start) {
          Fail(open, pos_ - open + 1, "invalid named group: expected `(?P<name>...)`");
          return nullptr;
        }
        ++pos_;
      } else {
        // Flag group: (?flags) or (?flags:…), flags like i, s, m, U, -i.
        bool negate = false;
        RegexFlags f = flags_;
        bool any = false;
        while (!AtEnd() && Peek() != ')' && Peek() != ':') {
          char fc = Peek();
          if (fc == '-' && !negate) {
            negate = true;
          } else if (fc == 'i') {
            f.case_insensitive = !negate;
          } else if (fc == 's') {
            f.dot_all = !negate;
          } else if (fc == 'm') {
            f.multi_line = !negate;
          } else if (fc == 'U') {
            // Ungreedy swaps lazy and greedy; meaningless for a DFA.
          } else if (fc == '#') {
            Unsupported(pos_, 1, "comment groups");
            return nullptr;
          } else {
            Fail(pos_, 1, std::string("unknown flag `") + fc + "` in group");
            return nullptr;
          }
          any = true;
          ++pos_;
        }
        if (AtEnd()) {
          Fail(open, pos_ - open, "missing closing `)`");
          return nullptr;
        }
        if (!any && Peek() == ')') {
          Fail(open, pos_ - open + 1, "empty flag group");
          return nullptr;
        }
        if (Peek() == ')') {
          // (?i): applies to the rest of the enclosing group.
          ++pos_;
          flags_ = f;
          return nullptr;
        }
        ++pos_;  // ':'
        flags_ = f;
      }
    }
    auto inner = ParseAlt(depth + 1);
    if (error_) return nullptr;
    if (AtEnd() || Peek() != ')') {
      Fail(open, 1, "missing closing `)` for this group");
      return nullptr;
    }
    ++pos_;
    flags_ = saved;
    return inner;
  }

  // Parses \p{Name}, \pL, \P{..} after the `p`/`P` at pos_ - 1.
  bool ParseUnicodeClass(std::size_t esc_start, bool negated, CharSet* out) {
    std::string name;
    if (AtEnd()) {
      Fail(esc_start, pos_ - esc_start, "incomplete `\\p` class");
      return false;
    }
    if (Peek() == '{') {
      std::size_t close = src_.find('}', pos_);
      if (close == std::string_view::npos) {
        Fail(esc_start, src_.size() - esc_start, "missing closing `}` in `\\p{...}`");
        return false;
      }
      name = std::string(src_.substr(pos_ + 1, close - pos_ - 1));
      pos_ = close + 1;
    } else {
      name = std::string(1, Peek());
      ++pos_;
    }
    if (!name.empty() && name[0] == '^') {
      negated = !negated;
      name = name.substr(1);
    }
    const CharSet* group = UnicodeGroup(name);
    if (name == "Any") {
      static const CharSet any = Ascii({{0, 0x10FFFF}});
      group = &any;
    }
    if (group == nullptr) {
      Fail(esc_start, pos_ - esc_start,
           "unknown Unicode class `" + name + "`; known: L Lu Ll Lt Lm Lo M Mn N Nd Nl No P "
           "Pc Pd Ps Pe Pi Pf Po S Sm Sc Z Zs C Cc Cf Any");
      return false;
    }
    CharSet s = *group;
    if (flags_.case_insensitive) s = s.CaseFolded();
    *out = negated ? s.Negated() : s;
    return true;
  }

  // Parses an escape inside or outside a class. Returns false on error or when
  // the escape is an assertion (then `*assertion` is set; only outside classes).
  enum class EscapeResult { kSet, kAssert, kLiteralRun, kError };

  EscapeResult ParseEscapeInto(bool in_class, CharSet* set, AssertKind* assertion,
                               std::string* literal_run) {
    std::size_t start = pos_;
    ++pos_;  // backslash
    if (AtEnd()) {
      Fail(start, 1, "trailing backslash at end of regex");
      return EscapeResult::kError;
    }
    char c = Peek();
    auto single = [&](uint32_t cp) {
      set->Add(cp, cp);
      return EscapeResult::kSet;
    };
    switch (c) {
      case 'd':
      case 'D':
      case 'w':
      case 'W':
      case 's':
      case 'S': {
        ++pos_;
        const CharSet& base = (c == 'd' || c == 'D')   ? DigitSet()
                              : (c == 'w' || c == 'W') ? WordSet()
                                                       : SpaceSet();
        // As in RE2, fold first and negate after: (?i)\W must not gain the
        // letters whose case partners (K for k, ſ for s) lie outside \w.
        CharSet folded = flags_.case_insensitive ? base.CaseFolded() : base;
        set->AddSet(std::isupper(static_cast<unsigned char>(c)) ? folded.Negated() : folded);
        folded_ = true;
        return EscapeResult::kSet;
      }
      case 'p':
      case 'P': {
        ++pos_;
        CharSet s;
        if (!ParseUnicodeClass(start, c == 'P', &s)) return EscapeResult::kError;
        set->AddSet(s);
        folded_ = true;
        return EscapeResult::kSet;
      }
      case 'a':
        ++pos_;
        return single(7);
      case 'f':
        ++pos_;
        return single('\f');
      case 't':
        ++pos_;
        return single('\t');
      case 'n':
        ++pos_;
        return single('\n');
      case 'r':
        ++pos_;
        return single('\r');
      case 'v':
        ++pos_;
        return single('\v');
      case 'x': {
        ++pos_;
        uint32_t cp = 0;
        if (!AtEnd() && Peek() == '{') {
          std::size_t close = src_.find('}', pos_);
          if (close == std::string_view::npos || close == pos_ + 1 || close - pos_ - 1 > 8) {
            Fail(start, (close == std::string_view::npos ? src_.size() : close + 1) - start,
                 "invalid `\\x{...}` escape");
            return EscapeResult::kError;
          }
          for (std::size_t k = pos_ + 1; k < close; ++k) {
            if (!std::isxdigit(static_cast<unsigned char>(src_[k]))) {
              Fail(k, 1, "invalid hex digit in `\\x{...}` escape");
              return EscapeResult::kError;
            }
            cp = cp * 16 + (std::isdigit(static_cast<unsigned char>(src_[k]))
                                ? src_[k] - '0'
                                : (std::tolower(static_cast<unsigned char>(src_[k])) - 'a' + 10));
            if (cp > 0x10FFFF) break;
          }
          pos_ = close + 1;
        } else {
          for (int k = 0; k < 2; ++k) {
            if (AtEnd() || !std::isxdigit(static_cast<unsigned char>(Peek()))) {
              Fail(start, pos_ - start + 1, "invalid `\\x` escape: expected two hex digits");
              return EscapeResult::kError;
            }
            char h = Peek();
            cp = cp * 16 + (std::isdigit(static_cast<unsigned char>(h))
                                ? h - '0'
                                : (std::tolower(static_cast<unsigned char>(h)) - 'a' + 10));
            ++pos_;
          }
        }
        if (cp > 0x10FFFF) {
          Fail(start, pos_ - start, "code point beyond U+10FFFF");
          return EscapeResult::kError;
        }
        return single(cp);
      }
      case '0': {
        // \0, \0n, \0nn: octal.
        ++pos_;
        uint32_t cp = 0;
        for (int k = 0; k < 2 && !AtEnd() && Peek() >= '0' && Peek() <= '7'; ++k) {
          cp = cp * 8 + (Peek() - '0');
          ++pos_;
        }
        return single(cp);
      }
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7':
      case '8':
      case '9':
        Unsupported(start, 2, "backreferences");
        return EscapeResult::kError;
      case 'k':
      case 'g':
        Unsupported(start, 2, "backreferences");
        return EscapeResult::kError;
      case 'C':
        Unsupported(start, 2, "single-byte matches (`\\C`)");
        return EscapeResult::kError;
      case 'A':
      case 'z':
      case 'b':
      case 'B':
        if (in_class) {
          Fail(start, 2, std::string("assertion `\\") + c + "` is not allowed in a character class");
          return EscapeResult::kError;
        }
        ++pos_;
        *assertion = c == 'A'   ? AssertKind::kBeginText
                     : c == 'z' ? AssertKind::kEndText
                     : c == 'b' ? AssertKind::kWordBoundary
                                : AssertKind::kNotWordBoundary;
        return EscapeResult::kAssert;
      case 'Z':
        Fail(start, 2, "invalid escape `\\Z`", false);
        return EscapeResult::kError;
      case 'Q':
        if (in_class) break;
        {
          ++pos_;
          std::size_t end = src_.find("\\E", pos_);
          std::size_t stop = end == std::string_view::npos ? src_.size() : end;
          *literal_run = std::string(src_.substr(pos_, stop - pos_));
          pos_ = end == std::string_view::npos ? src_.size() : end + 2;
          return EscapeResult::kLiteralRun;
        }
      default:
        break;
    }
    unsigned char uc = static_cast<unsigned char>(c);
    if (uc < 0x80 && !std::isalnum(uc)) {
      ++pos_;
      return single(uc);
    }
    std::size_t save = pos_;
    NextCodePoint();
    Fail(start, pos_ - start, "invalid escape `" + std::string(src_.substr(start, pos_ - start)) + "`");
    pos_ = save;
    return EscapeResult::kError;
  }

  std::unique_ptr<RegexNode> ParseEscape() {
    CharSet set;
    AssertKind assertion{};
    std::string run;
    folded_ = false;
    switch (ParseEscapeInto(false, &set, &assertion, &run)) {
      case EscapeResult::kSet:
        return MakeChars(folded_ ? std::move(set) : Fold(std::move(set)));
      case EscapeResult::kAssert:
        return MakeAssert(assertion);
      case EscapeResult::kLiteralRun: {
        auto n = LiteralRegex(run, flags_.case_insensitive);
        return n;
      }
      case EscapeResult::kError:
        return nullptr;
    }
    return nullptr;
  }

  std::unique_ptr<RegexNode> ParseClass() {
    std::size_t open = pos_;
    ++pos_;  // [
    bool negated = false;
    if (!AtEnd() && Peek() == '^') {
      negated = true;
      ++pos_;
    }
    CharSet set;
    bool first = true;
    while (true) {
      if (AtEnd()) {
        Fail(open, 1, "missing closing `]` for this character class");
        return nullptr;
      }
      char c = Peek();
      if (c == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      // POSIX class [:name:] / [:^name:]
      if (c == '[' && pos_ + 1 < src_.size() && src_[pos_ + 1] == ':') {
        std::size_t close = src_.find(":]", pos_ + 2);
        if (close != std::string_view::npos) {
          std::string_view name = src_.substr(pos_ + 2, close - pos_ - 2);
          bool neg = !name.empty() && name[0] == '^';
          if (neg) name.remove_prefix(1);
          const CharSet* posix = PosixClass(name);
          if (posix == nullptr) {
            Fail(pos_, close + 2 - pos_,
                 "unknown POSIX class `[:" + std::string(name) + ":]`");
            return nullptr;
          }
          CharSet folded = Fold(*posix);
          set.AddSet(neg ? folded.Negated() : folded);
          pos_ = close + 2;
          continue;
        }
      }
      std::size_t item_start = pos_;
      uint32_t lo = 0;
      if (c == '\\') {
        CharSet esc;
        AssertKind a{};
        std::string run;
        folded_ = false;
        EscapeResult r = ParseEscapeInto(true, &esc, &a, &run);
        if (r == EscapeResult::kError) return nullptr;
        // A single code point may start a range; a class escape may not.
        if (!folded_ && esc.ranges().size() == 1 && esc.ranges()[0].lo == esc.ranges()[0].hi) {
          lo = esc.ranges()[0].lo;
        } else {
          set.AddSet(folded_ ? esc : Fold(esc));
          continue;
        }
      } else {
        lo = NextCodePoint();
      }
      uint32_t hi = lo;
      if (pos_ + 1 < src_.size() && Peek() == '-' && src_[pos_ + 1] != ']') {
        ++pos_;
        if (Peek() == '\\') {
          CharSet esc;
          AssertKind a{};
          std::string run;
          if (ParseEscapeInto(true, &esc, &a, &run) == EscapeResult::kError) return nullptr;
          if (esc.ranges().size() != 1 || esc.ranges()[0].lo != esc.ranges()[0].hi) {
            Fail(item_start, pos_ - item_start, "invalid character class range");
            return nullptr;
          }
          hi = esc.ranges()[0].lo;
        } else {
          hi = NextCodePoint();
        }
        if (hi < lo) {
          Fail(item_start, pos_ - item_start,
               "invalid character class range `" +
                   std::string(src_.substr(item_start, pos_ - item_start)) +
                   "`: the end is before the start");
          return nullptr;
        }
      }
      // Each item is folded on its own, before the class is negated.
      CharSet item;
      item.Add(lo, hi);
      set.AddSet(Fold(std::move(item)));
    }
    if (negated) set = set.Negated();
    return MakeChars(std::move(set));
  }

  std::string_view src_;
  const RegexLimits& limits_;
  RegexFlags flags_;
  std::size_t pos_ = 0;
  bool folded_ = false;  // the last escape's set is already case-folded
  std::optional<RegexError> error_;
};

}  // namespace

void CharSet::Add(uint32_t lo, uint32_t hi) {
  if (lo > hi) return;
  // Insert, then merge overlapping or adjacent ranges.
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), lo,
                             [](const CodeRange& r, uint32_t v) { return r.lo < v; });
  it = ranges_.insert(it, CodeRange{lo, hi});
  std::size_t i = static_cast<std::size_t>(it - ranges_.begin());
  if (i > 0 && ranges_[i - 1].hi + 1 >= ranges_[i].lo) --i;
  while (i + 1 < ranges_.size() && ranges_[i].hi + 1 >= ranges_[i + 1].lo) {
    ranges_[i].hi = std::max(ranges_[i].hi, ranges_[i + 1].hi);
    ranges_[i].lo = std::min(ranges_[i].lo, ranges_[i + 1].lo);
    ranges_.erase(ranges_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
  }
}

void CharSet::AddSet(const CharSet& other) {
  for (const CodeRange& r : other.ranges_) Add(r.lo, r.hi);
}

CharSet CharSet::Negated() const {
  CharSet out;
  uint32_t next = 0;
  for (const CodeRange& r : ranges_) {
    if (r.lo > next) out.ranges_.push_back(CodeRange{next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= 0x10FFFF) out.ranges_.push_back(CodeRange{next, 0x10FFFF});
  return out;
}

bool CharSet::Contains(uint32_t cp) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), cp,
                             [](uint32_t v, const CodeRange& r) { return v < r.lo; });
  if (it == ranges_.begin()) return false;
  --it;
  return cp <= it->hi;
}

CharSet CharSet::CaseFolded() const {
  // Walk only the orbit entries that fall inside the set's ranges: a literal
  // costs a couple of map lookups, not a scan of every cased code point.
  CharSet out = *this;
  const auto& orbits = CaseOrbits();
  for (const CodeRange& r : ranges_) {
    for (auto it = orbits.lower_bound(r.lo); it != orbits.end() && it->first <= r.hi; ++it) {
      for (uint32_t o : it->second) out.Add(o, o);
    }
  }
  return out;
}

const CharSet* UnicodeGroup(std::string_view name) {
  static const auto* groups = [] {
    auto* m = new std::map<std::string, CharSet, std::less<>>();
    for (const GroupTable& g : kGroups) {
      CharSet s;
      for (const CodeRange& r : g.ranges) s.Add(r.lo, r.hi);
      (*m)[g.name] = std::move(s);
    }
    return m;
  }();
  auto it = groups->find(name);
  return it == groups->end() ? nullptr : &it->second;
}

std::size_t ParseRegexFlags(std::string_view text, RegexFlags* flags) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    switch (text[i]) {
      case 'i':
        flags->case_insensitive = true;
        break;
      case 's':
        flags->dot_all = true;
        break;
      case 'm':
        flags->multi_line = true;
        break;
      default:
        return i;
    }
  }
  return std::string_view::npos;
}

std::unique_ptr<RegexNode> LiteralRegex(std::string_view text, bool case_insensitive) {
  auto concat = std::make_unique<RegexNode>();
  concat->kind = RegexKind::kConcat;
  std::size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len && i + k < text.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    }
    i += len;
    CharSet s;
    s.Add(cp, cp);
    concat->children.push_back(MakeChars(case_insensitive ? s.CaseFolded() : s));
  }
  if (concat->children.empty()) concat->kind = RegexKind::kEmpty;
  if (concat->children.size() == 1) return std::move(concat->children[0]);
  return concat;
}

bool CanMatchEmpty(const RegexNode& node) {
  switch (node.kind) {
    case RegexKind::kEmpty:
    case RegexKind::kAssert:
      return true;
    case RegexKind::kChars:
      return false;
    case RegexKind::kConcat:
      return std::all_of(node.children.begin(), node.children.end(),
                         [](const auto& c) { return CanMatchEmpty(*c); });
    case RegexKind::kAlt:
      return std::any_of(node.children.begin(), node.children.end(),
                         [](const auto& c) { return CanMatchEmpty(*c); });
    case RegexKind::kRepeat:
      return node.min == 0 || CanMatchEmpty(*node.children[0]);
  }
  return false;
}

ParsedRegex ParseRegex(std::string_view source, RegexFlags flags, const RegexLimits& limits) {
  RegexParser parser(source, flags, limits);
  return parser.Run();
}

}  // namespace kt::internal
