// Regex front end: syntax accepted and rejected, error offsets, the
// empty-match check, case folding and Unicode classes.
#include "compiler/internal/regex.h"

#include <gtest/gtest.h>

namespace kt::internal {
namespace {

ParsedRegex Parse(std::string_view src, RegexFlags flags = {}) {
  return ParseRegex(src, flags, RegexLimits{});
}

TEST(RegexParser, AcceptsTheSupportedSyntax) {
  for (const char* ok :
       {"abc", "a|b|c", "(a)(?:b)", "(?P<year>[0-9]{4})", "(?<m>x)", "a*b+c?", "a{3}",
        "a{2,}", "a{2,5}", "a*?b+?c??d{2,3}?", "[a-z0-9_]", "[^\\n]", "[]a]", "[a-]",
        "\\d\\D\\w\\W\\s\\S", "\\x41\\x{1F600}", "\\p{L}\\pN\\P{P}\\p{^Lu}", "^a$", "\\Aa\\z",
        "\\bword\\B", "(?i)abc", "(?i:a)b", "(?s).", "(?m)^x$", "[[:alpha:]]", "\\Qa.b\\E",
        "a{,3}", "\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\", "é+", "\\0"}) {
    ParsedRegex r = Parse(ok);
    EXPECT_FALSE(r.error.has_value()) << ok << ": " << (r.error ? r.error->message : "");
  }
}

struct ErrorCase {
  const char* regex;
  std::size_t offset;
  bool unsupported;
};

TEST(RegexParser, ErrorsPointAtTheOffendingCharacter) {
  const ErrorCase cases[] = {
      {"ab(cd", 2, false},  {"abc)", 3, false},       {"a|*", 2, false},
      {"[z-a]", 1, false},  {"[abc", 0, false},       {"x\\y", 1, false},
      {"a**", 0, false},    {"(a)\\1", 3, true},      {"a(?=b)", 1, true},
      {"(?<!a)b", 0, true}, {"(?>a)", 0, true},       {"\\p{Klingon}", 0, false},
      {"a{2000}", 1, false}, {"a{5,2}", 1, false},    {"\\C", 0, true},
      {"a++", 2, true},     {"abc\\", 3, false},      {"(?z)", 2, false},
  };
  for (const ErrorCase& c : cases) {
    ParsedRegex r = Parse(c.regex);
    ASSERT_TRUE(r.error.has_value()) << c.regex;
    EXPECT_EQ(r.error->offset, c.offset) << c.regex << ": " << r.error->message;
    EXPECT_EQ(r.error->unsupported, c.unsupported) << c.regex;
  }
}

TEST(RegexParser, UnsupportedConstructsExplainTheLinearTimeGuarantee) {
  ParsedRegex r = Parse("(a+)\\1");
  ASSERT_TRUE(r.error.has_value());
  EXPECT_NE(r.error->message.find("backreferences are not supported"), std::string::npos);
  EXPECT_NE(r.error->message.find("linear-time"), std::string::npos);
}

TEST(RegexParser, EmptyMatchDetection) {
  for (const char* empty : {"a*", "(a|)", "a?", "^", "\\b", "(?:)", "a{0,3}", "(a*)+", "x*|y"}) {
    ParsedRegex r = Parse(empty);
    ASSERT_FALSE(r.error.has_value()) << empty;
    EXPECT_TRUE(CanMatchEmpty(*r.root)) << empty;
  }
  for (const char* nonempty : {"a", "a+", "a*b", "^a", "(a|b)c?", "a{1,3}", "\\bx\\b", "[^a]"}) {
    ParsedRegex r = Parse(nonempty);
    ASSERT_FALSE(r.error.has_value()) << nonempty;
    EXPECT_FALSE(CanMatchEmpty(*r.root)) << nonempty;
  }
}

TEST(RegexParser, CaseFoldingCoversNonAsciiLetters) {
  RegexFlags i;
  i.case_insensitive = true;
  ParsedRegex r = Parse("é", i);
  ASSERT_FALSE(r.error.has_value());
  EXPECT_TRUE(r.root->chars.Contains(0xC9));  // É
  r = Parse("σ", i);
  EXPECT_TRUE(r.root->chars.Contains(0x3A3));  // Σ
  EXPECT_TRUE(r.root->chars.Contains(0x3C2));  // final ς
  r = Parse("k", i);
  EXPECT_TRUE(r.root->chars.Contains(0x212A));  // Kelvin sign
  r = Parse("(?i)д");
  EXPECT_TRUE(r.root->chars.Contains(0x414));  // Д
}

TEST(RegexParser, UnicodeClasses) {
  ParsedRegex r = Parse("\\p{L}");
  ASSERT_FALSE(r.error.has_value());
  EXPECT_TRUE(r.root->chars.Contains('a'));
  EXPECT_TRUE(r.root->chars.Contains(0x4E2D));  // 中
  EXPECT_FALSE(r.root->chars.Contains('1'));
  r = Parse("\\p{N}");
  EXPECT_TRUE(r.root->chars.Contains(0x0663));  // Arabic-Indic three
  r = Parse("\\p{P}");
  EXPECT_TRUE(r.root->chars.Contains(0x00BF));  // ¿
  r = Parse("\\P{L}");
  EXPECT_FALSE(r.root->chars.Contains('a'));
}

TEST(RegexParser, DotExcludesNewlineUnlessDotAll) {
  ParsedRegex r = Parse(".");
  EXPECT_FALSE(r.root->chars.Contains('\n'));
  EXPECT_TRUE(r.root->chars.Contains(0x10FFFF));
  RegexFlags s;
  s.dot_all = true;
  r = Parse(".", s);
  EXPECT_TRUE(r.root->chars.Contains('\n'));
}

TEST(RegexParser, InlineFlagsAreScopedToTheirGroup) {
  ParsedRegex r = Parse("(?i:a)b");
  ASSERT_FALSE(r.error.has_value());
  ASSERT_EQ(r.root->kind, RegexKind::kConcat);
  EXPECT_TRUE(r.root->children[0]->chars.Contains('A'));
  EXPECT_FALSE(r.root->children[1]->chars.Contains('B'));
}

TEST(RegexParser, SizeLimit) {
  RegexLimits limits;
  limits.max_bytes = 8;
  ParsedRegex r = ParseRegex("abcdefghijk", {}, limits);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_NE(r.error->message.find("limit"), std::string::npos);
}

}  // namespace
}  // namespace kt::internal
