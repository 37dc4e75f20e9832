// Regex syntax: RE2's dialect without the constructs that need backtracking.
//
// The parser produces a small tree over Unicode code point sets. Case
// folding and the `\p{..}` classes are resolved here, so later passes (the
// automaton builder, the empty-match check) see only sets, concatenation,
// alternation, bounded repetition and zero-width assertions.
//
// Errors carry the byte offset inside the regex source, so the checker can
// point its caret at the offending character of a `/regex/` literal.
#ifndef KT_COMPILER_INTERNAL_REGEX_H_
#define KT_COMPILER_INTERNAL_REGEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kt::internal {

struct RegexFlags {
  bool case_insensitive = false;  // i
  bool dot_all = false;           // s: `.` also matches \n
  bool multi_line = false;        // m: ^ and $ match at line breaks
};

struct CodeRange {
  uint32_t lo;
  uint32_t hi;
};

// A set of code points as sorted, disjoint, non-adjacent ranges.
class CharSet {
 public:
  void Add(uint32_t lo, uint32_t hi);
  void AddSet(const CharSet& other);
  CharSet Negated() const;
  CharSet CaseFolded() const;
  bool Contains(uint32_t cp) const;
  bool Empty() const { return ranges_.empty(); }
  const std::vector<CodeRange>& ranges() const { return ranges_; }

 private:
  std::vector<CodeRange> ranges_;
};

enum class RegexKind { kEmpty, kChars, kConcat, kAlt, kRepeat, kAssert };

enum class AssertKind {
  kBeginLine,   // ^ under (?m)
  kEndLine,     // $ under (?m)
  kBeginText,   // \A, and ^ without (?m)
  kEndText,     // \z, and $ without (?m)
  kWordBoundary,
  kNotWordBoundary,
};

struct RegexNode {
  RegexKind kind = RegexKind::kEmpty;
  CharSet chars;                                    // kChars
  std::vector<std::unique_ptr<RegexNode>> children;  // kConcat, kAlt, kRepeat (one)
  int min = 0;                                      // kRepeat
  int max = -1;                                     // kRepeat; -1 = unbounded
  AssertKind assertion = AssertKind::kBeginText;    // kAssert
};

struct RegexError {
  std::size_t offset = 0;  // byte offset inside the regex source
  std::size_t length = 1;
  std::string message;
  bool unsupported = false;  // a construct we reject by design, not a typo
};

struct RegexLimits {
  std::size_t max_bytes = 16u << 10;
  int max_repeat = 1000;
  int max_depth = 200;
};

struct ParsedRegex {
  std::unique_ptr<RegexNode> root;
  std::optional<RegexError> error;
};

ParsedRegex ParseRegex(std::string_view source, RegexFlags flags, const RegexLimits& limits);

// Parses a flag string such as "is". Returns the offset of the first unknown
// flag character, or npos.
std::size_t ParseRegexFlags(std::string_view text, RegexFlags* flags);

// A literal string as a regex tree (each code point one set, folded when
// `case_insensitive`).
std::unique_ptr<RegexNode> LiteralRegex(std::string_view text, bool case_insensitive);

// True when the regex can match the empty string (assertions count as empty).
bool CanMatchEmpty(const RegexNode& node);

// Looks up a `\p{..}` group by name ("L", "Nd", …); nullptr if unknown.
const CharSet* UnicodeGroup(std::string_view name);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_REGEX_H_
