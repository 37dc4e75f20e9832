// Diagnostic goldens: every tests/golden/diagnostics/NAME.ktp is linted and
// its rendered diagnostics compared with NAME.txt. Run with
// KT_UPDATE_GOLDENS=1 to rewrite the .txt files, then review the diff.
//
// A case may start with directive comments:
//   // options: max_file_bytes=64 max_errors=3
//   // extra-path: some/path.ktp        (also passed to the linter)
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "compiler/compiler.h"
#include "tests/compiler/test_files.h"

namespace kt {
namespace {

namespace fs = std::filesystem;

using testing::ReadAll;

std::vector<fs::path> Cases() {
  std::vector<fs::path> cases;
  for (const auto& e : fs::directory_iterator("tests/golden/diagnostics")) {
    if (e.path().extension() == ".case") cases.push_back(e.path());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

std::string RunCase(const fs::path& file) {
  std::string text = ReadAll(file);
  Options options;
  options.stdlib_paths = {"stdlib"};
  std::vector<std::string> paths = {file.string()};
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line) && line.rfind("// ", 0) == 0) {
    if (line.rfind("// options:", 0) == 0) {
      std::istringstream kv(line.substr(11));
      std::string item;
      while (kv >> item) {
        auto eq = item.find('=');
        std::string key = item.substr(0, eq);
        long value = std::stol(item.substr(eq + 1));
        if (key == "max_file_bytes") options.max_file_bytes = static_cast<std::size_t>(value);
        if (key == "max_errors") options.max_errors = static_cast<int>(value);
        if (key == "dfa_budget") options.dfa_memory_budget = static_cast<std::size_t>(value);
      }
    } else if (line.rfind("// extra-path:", 0) == 0) {
      paths.push_back(line.substr(15));
    }
  }
  std::vector<Diagnostic> missing;
  std::vector<std::string> files = CollectPolicyFiles(paths, &missing);
  SourceMap sources;
  LintResult result = Lint(files, options, &sources);
  result.diagnostics.insert(result.diagnostics.begin(), missing.begin(), missing.end());
  return RenderText(result.diagnostics, sources, false);
}

TEST(DiagnosticGoldens, EveryCaseMatches) {
  bool update = std::getenv("KT_UPDATE_GOLDENS") != nullptr;
  std::vector<fs::path> cases = Cases();
  ASSERT_GE(cases.size(), 60u);
  for (const fs::path& c : cases) {
    std::string actual = RunCase(c);
    fs::path golden = fs::path(c).replace_extension(".txt");
    if (update) {
      std::ofstream(golden, std::ios::binary) << actual;
      continue;
    }
    ASSERT_TRUE(fs::exists(golden)) << golden << " is missing; run with KT_UPDATE_GOLDENS=1";
    EXPECT_EQ(ReadAll(golden), actual) << "golden mismatch for " << c;
    EXPECT_FALSE(actual.empty()) << c << " is an invalid program but produced no diagnostic";
  }
}

// Each case is named after the code it demonstrates; that code must appear.
TEST(DiagnosticGoldens, CaseNameCodeIsReported) {
  for (const fs::path& c : Cases()) {
    std::string stem = c.stem().string();
    std::string code = stem.substr(0, 5);
    for (char& ch : code) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    std::string actual = RunCase(c);
    EXPECT_NE(actual.find("[" + code + "]"), std::string::npos)
        << c << " should report " << code << "; got:\n"
        << actual;
  }
}

TEST(DiagnosticGoldens, EveryCodeIsCoveredAndDocumented) {
  std::string all;
  for (const fs::path& c : Cases()) all += ReadAll(fs::path(c).replace_extension(".txt"));
  std::string docs = ReadAll("docs/diagnostics.md");
  for (const DiagnosticCodeInfo& info : DiagnosticCodes()) {
    std::string code(info.code);
    EXPECT_NE(all.find("[" + code + "]"), std::string::npos) << code << " has no golden case";
    EXPECT_NE(docs.find("## " + code), std::string::npos)
        << code << " is not documented in docs/diagnostics.md";
  }
}

// The policy IR of every example file, golden-tested, and verified.
TEST(PirGoldens, ExamplesMatchAndVerify) {
  bool update = std::getenv("KT_UPDATE_GOLDENS") != nullptr;
  int cases = 0;
  for (const auto& e : fs::directory_iterator("examples/policies")) {
    if (e.path().extension() != ".ktp") continue;
    ++cases;
    Options options;
    options.stdlib_paths = {"stdlib"};
    SourceMap sources;
    ExplainResult r = Explain({e.path().string()}, options, &sources);
    ASSERT_EQ(r.lint.error_count, 0) << e.path();
    EXPECT_TRUE(r.ir_problems.empty()) << e.path() << ": " << r.ir_problems[0];
    fs::path golden = fs::path("tests/golden/pir") / e.path().filename();
    golden.replace_extension(".pir");
    if (update) {
      std::ofstream(golden, std::ios::binary) << r.pir;
      continue;
    }
    EXPECT_EQ(ReadAll(golden), r.pir) << "IR golden mismatch for " << e.path();
  }
  EXPECT_GE(cases, 6);
}

}  // namespace
}  // namespace kt
