// Zero leaks under splitting: for every output redaction in examples/ and
// stdlib/, texts with violating spans are fed split at every byte boundary,
// byte by byte, and at random multi-chunk splits. The released bytes,
// concatenated, must equal the whole-text redaction; since releases are
// append-only, no prefix ever released can contain a violating span.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "compiler/compiler.h"
#include "runtime/runtime.h"

namespace kt {
namespace {

namespace fs = std::filesystem;

const char* kTexts[] = {
    "contact alice.smith@example.org or bob@example.com today",
    "call (555) 123-4567, ssn 123-45-6789, card 4111 1111 1111 1111 thanks",
    "emails: a@x.io b@y.io c@z.io; phone +1 555 987 6543.",
    "nothing sensitive in this sentence at all",
    "unicode café — reach zoë@example.fr about naïve ideas",
    "key sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX1234 and AKIAIOSFODNN7EXAMPLE",
    "x@y",  // almost an email: held, then released unchanged at the end
};

std::string RedactStream(const PatternSet& set, const std::vector<std::string>& repl, std::string_view text,
                const std::vector<std::size_t>& cuts, std::size_t max_hold = 1 << 20) {
  StreamRedactor r(&set, repl, max_hold);
  std::string out;
  std::size_t prev = 0;
  for (std::size_t c : cuts) {
    std::size_t before = out.size();
    r.Feed(text.substr(prev, c - prev), &out);
    EXPECT_GE(out.size(), before);
    prev = c;
  }
  r.Feed(text.substr(prev), &out);
  r.Finish(&out);
  EXPECT_FALSE(r.capped());
  return out;
}

std::vector<std::vector<std::string>> PolicyFiles() {
  std::vector<std::vector<std::string>> sets;
  for (const char* dir : {"examples/policies", "stdlib/std"}) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".ktp") sets.push_back({e.path().string()});
    }
  }
  return sets;
}

TEST(StreamRedaction, NoLeaksAtAnySplit) {
  int sets_tested = 0;
  std::mt19937 rng(2024);
  for (const auto& files : PolicyFiles()) {
    Options options;
    options.stdlib_paths = {"stdlib"};
    SourceMap sources;
    CompiledRedactions c = CompileRedactions(files, "output", options, &sources);
    ASSERT_TRUE(c.ok) << files[0];
    if (c.replacements.empty()) continue;
    ++sets_tested;
    PatternSet set(std::move(c.tables));
    ASSERT_TRUE(set.Jit());
    int redacted_texts = 0;
    for (const char* t : kTexts) {
      std::string text = t;
      std::string whole = RedactStream(set, c.replacements, text, {});
      // The stream result is the whole-text redaction computed directly.
      std::string direct;
      std::size_t pos = 0;
      for (const PatternMatch& m : set.AllMatches(text)) {
        direct += text.substr(pos, m.start - pos) + c.replacements[m.pattern];
        pos = m.end;
      }
      direct += text.substr(pos);
      ASSERT_EQ(whole, direct) << files[0] << ": `" << text << "`";
      redacted_texts += whole != text;
      for (std::size_t cut = 1; cut < text.size(); ++cut) {
        ASSERT_EQ(RedactStream(set, c.replacements, text, {cut}), whole)
            << files[0] << ": split at " << cut << " of `" << text << "`";
      }
      std::vector<std::size_t> every;
      for (std::size_t i = 1; i < text.size(); ++i) every.push_back(i);
      ASSERT_EQ(RedactStream(set, c.replacements, text, every), whole) << files[0] << " byte by byte";
      for (int trial = 0; trial < 50; ++trial) {
        std::vector<std::size_t> cuts;
        for (std::size_t i = 1; i < text.size(); ++i) {
          if (rng() % 4 == 0) cuts.push_back(i);
        }
        ASSERT_EQ(RedactStream(set, c.replacements, text, cuts), whole) << files[0] << " random split";
      }
    }
    EXPECT_GT(redacted_texts, 0) << files[0] << ": no test text exercised its redactions";
  }
  EXPECT_GE(sets_tested, 3);  // quickstart, pii_redaction, stdlib pii_test at least
}

TEST(StreamRedaction, RedactsAnEmailSplitAcrossChunks) {
  CompiledPatterns c = CompilePatterns({{"[a-z.]+@[a-z]+\\.[a-z]{2,}", ""}}, Options{});
  ASSERT_TRUE(c.ok);
  PatternSet set(std::move(c.tables));
  StreamRedactor r(&set, {"[EMAIL]"}, 1 << 20);
  std::string out;
  r.Feed("write to bob@exa", &out);
  EXPECT_EQ(out, "write to ");  // `bob@exa` is held: it may become an email
  EXPECT_EQ(r.held(), 7u);
  r.Feed("mple.com now", &out);
  EXPECT_EQ(out, "write to [EMAIL] ");  // " now": `n` could still extend nothing; held
  r.Finish(&out);
  EXPECT_EQ(out, "write to [EMAIL] now");
  ASSERT_EQ(r.redacted().size(), 1u);
  EXPECT_EQ(r.redacted()[0].start, 9u);
  EXPECT_EQ(r.redacted()[0].end, 24u);
}

TEST(StreamRedaction, HoldBackIsCappedAndRecorded) {
  CompiledPatterns c = CompilePatterns({{"a+b", ""}}, Options{});
  ASSERT_TRUE(c.ok);
  PatternSet set(std::move(c.tables));
  StreamRedactor r(&set, {"X"}, 16);
  std::string out;
  r.Feed(std::string(10, 'a'), &out);
  EXPECT_EQ(out, "");
  EXPECT_FALSE(r.capped());
  r.Feed(std::string(10, 'a'), &out);
  EXPECT_TRUE(r.capped());
  EXPECT_EQ(out, std::string(20, 'a'));
  EXPECT_EQ(r.held(), 0u);
}

}  // namespace
}  // namespace kt
