// The conformance corpus (and every test block of the examples and stdlib)
// through three evaluators: the JIT engine (the policy program compiled to
// native code, the gateway's engine), the interpreter with kt's automata,
// and the reference evaluator, the AST walk with RE2 (longest match) for
// every pattern. All must pass every case and agree on every decision.
#include <gtest/gtest.h>
#include <re2/re2.h>

#include <filesystem>
#include <map>
#include <memory>

#include "compiler/compiler.h"
#include "compiler/internal/codegen.h"
#include "compiler/internal/driver.h"
#include "compiler/internal/regex.h"
#include "compiler/internal/test_runner.h"

namespace kt {
namespace {

namespace fs = std::filesystem;
using internal::RegexKind;
using internal::RegexNode;

// RE2 syntax for a regex tree. Sets are printed as explicit code point
// classes (folding and classes were resolved by kt's parser), so RE2 sees
// exactly the language kt compiled.
std::string ToRe2(const RegexNode& n) {
  auto hex = [](uint32_t cp) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\x{%X}", cp);
    return std::string(buf);
  };
  switch (n.kind) {
    case RegexKind::kEmpty:
      return "(?:)";
    case RegexKind::kChars: {
      std::string s = "[";
      bool any = false;
      for (const internal::CodeRange& r : n.chars.ranges()) {
        // Surrogates are not code points RE2 accepts in classes.
        uint32_t lo = r.lo, hi = r.hi;
        if (lo <= 0xDFFF && hi >= 0xD800) {
          if (lo < 0xD800) s += hex(lo) + "-" + hex(0xD7FF), any = true;
          if (hi > 0xDFFF) s += hex(0xE000) + "-" + hex(hi), any = true;
          continue;
        }
        s += hex(lo) + "-" + hex(hi);
        any = true;
      }
      return any ? s + "]" : "[^\\x{0}-\\x{10FFFF}]";
    }
    case RegexKind::kConcat: {
      std::string s = "(?:";
      for (const auto& c : n.children) s += ToRe2(*c);
      return s + ")";
    }
    case RegexKind::kAlt: {
      std::string s = "(?:";
      for (std::size_t i = 0; i < n.children.size(); ++i) s += (i ? "|" : "") + ToRe2(*n.children[i]);
      return s + ")";
    }
    case RegexKind::kRepeat:
      return "(?:" + ToRe2(*n.children[0]) + "){" + std::to_string(n.min) + "," +
             (n.max < 0 ? std::string() : std::to_string(n.max)) + "}";
    case RegexKind::kAssert:
      switch (n.assertion) {
        case internal::AssertKind::kBeginLine:
          return "(?m:^)";
        case internal::AssertKind::kEndLine:
          return "(?m:$)";
        case internal::AssertKind::kBeginText:
          return "\\A";
        case internal::AssertKind::kEndText:
          return "\\z";
        case internal::AssertKind::kWordBoundary:
          return "\\b";
        case internal::AssertKind::kNotWordBoundary:
          return "\\B";
      }
  }
  return "";
}

class Re2Matcher : public internal::PatternMatcher {
 public:
  std::vector<PatternMatch> AllMatches(const std::vector<const RegexNode*>& trees,
                                       std::string_view text) override {
    auto& re = cache_[trees];
    if (re == nullptr) {
      std::string alt;
      for (std::size_t i = 0; i < trees.size(); ++i) alt += (i ? "|(" : "(") + ToRe2(*trees[i]) + ")";
      RE2::Options o;
      o.set_longest_match(true);
      o.set_max_mem(64 << 20);
      re = std::make_unique<RE2>(alt, o);
      EXPECT_TRUE(re->ok()) << re->error() << " in " << alt;
    }
    std::vector<PatternMatch> out;
    std::vector<re2::StringPiece> sub(trees.size() + 1);
    re2::StringPiece input(text.data(), text.size());
    std::size_t pos = 0;
    while (pos <= text.size() &&
           re->Match(input, pos, text.size(), RE2::UNANCHORED, sub.data(), static_cast<int>(sub.size()))) {
      PatternMatch m;
      m.start = static_cast<std::size_t>(sub[0].data() - text.data());
      m.end = m.start + sub[0].size();
      // Among alternatives of the same (longest) length, the lowest index, as kt.
      for (std::size_t i = 0; i < trees.size(); ++i) {
        if (sub[i + 1].data() != nullptr && sub[i + 1].size() == sub[0].size() &&
            sub[i + 1].data() == sub[0].data()) {
          m.pattern = static_cast<uint32_t>(i);
          break;
        }
      }
      out.push_back(m);
      pos = m.end > m.start ? m.end : m.end + 1;
    }
    return out;
  }

 private:
  std::map<std::vector<const RegexNode*>, std::unique_ptr<RE2>> cache_;
};

std::vector<std::string> Files() {
  std::vector<std::string> files;
  for (const char* dir : {"tests/conformance", "examples/policies", "stdlib/std"}) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".ktp") files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(Conformance, JitInterpreterAndReferenceAgreeAndPass) {
  int cases = 0;
  int corpus_cases = 0;  // in tests/conformance/ itself
  for (const std::string& file : Files()) {
    Options options;
    options.stdlib_paths = {"stdlib"};
    SourceMap sources;
    internal::CheckedSet set = internal::LoadAndCheck({file}, options, &sources);
    ASSERT_EQ(set.error_count, 0) << file;
    internal::KtMatcher matcher(options, /*jit=*/true);
    std::string error;
    auto code = internal::PolicyProgram::Build(*set.program, *set.checked.resolution, &matcher,
                                               internal::ProgramOptions(), &error);
    ASSERT_NE(code, nullptr) << file << ": " << error;
    TestRun jit_run = internal::RunTests(*set.program, *set.checked.resolution, options, sources,
                                         &matcher, code.get());
    TestRun kt_run = internal::RunTests(*set.program, *set.checked.resolution, options, sources);
    Re2Matcher re2;
    TestRun ref_run =
        internal::RunTests(*set.program, *set.checked.resolution, options, sources, &re2);
    ASSERT_EQ(kt_run.results.size(), ref_run.results.size()) << file;
    ASSERT_EQ(jit_run.results.size(), ref_run.results.size()) << file;
    for (std::size_t i = 0; i < kt_run.results.size(); ++i) {
      const TestCaseResult& a = kt_run.results[i];
      const TestCaseResult& b = ref_run.results[i];
      const TestCaseResult& j = jit_run.results[i];
      EXPECT_TRUE(j.passed) << "jit: " << file << ":" << j.line << " " << j.name << ": " << j.failure;
      EXPECT_EQ(j.verdict, b.verdict) << "jit: " << file << ":" << j.line;
      EXPECT_EQ(j.policy, b.policy) << "jit: " << file << ":" << j.line;
      EXPECT_EQ(j.code, b.code) << "jit: " << file << ":" << j.line;
      ++cases;
      if (file.rfind("tests/conformance/", 0) == 0) ++corpus_cases;
      EXPECT_TRUE(a.passed) << file << ":" << a.line << " " << a.name << ": " << a.failure;
      EXPECT_TRUE(b.passed) << "reference: " << file << ":" << b.line << " " << b.name << ": "
                            << b.failure;
      EXPECT_EQ(a.verdict, b.verdict) << file << ":" << a.line;
      EXPECT_EQ(a.policy, b.policy) << file << ":" << a.line;
      EXPECT_EQ(a.code, b.code) << file << ":" << a.line;
    }
  }
  EXPECT_GE(corpus_cases, 150);
  EXPECT_GE(cases, corpus_cases + 40);
}

}  // namespace
}  // namespace kt
