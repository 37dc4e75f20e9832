// Formatter: goldens, idempotency on every .ktp in the repository, and
// comment preservation.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "compiler/compiler.h"
#include "tests/compiler/test_files.h"

namespace kt {
namespace {

namespace fs = std::filesystem;

using testing::ReadAll;

std::vector<fs::path> RepositoryPolicies() {
  std::vector<fs::path> files;
  for (const char* dir : {"examples", "stdlib", "tests/golden/fmt"}) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.path().extension() == ".ktp" || e.path().extension() == ".input") {
        files.push_back(e.path());
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> Comments(const std::string& text) {
  std::vector<std::string> out;
  std::regex comment(R"(//[^\n]*|/\*[\s\S]*?\*/)");
  // Strings may contain `//` (URLs); strip them first.
  std::string stripped = std::regex_replace(text, std::regex(R"("([^"\\\n]|\\.)*")"), "\"\"");
  for (std::sregex_iterator it(stripped.begin(), stripped.end(), comment), end; it != end; ++it) {
    std::string c = it->str();
    while (!c.empty() && (c.back() == ' ' || c.back() == '\r')) c.pop_back();
    out.push_back(c);
  }
  return out;
}

TEST(Formatter, GoldenLayouts) {
  bool update = std::getenv("KT_UPDATE_GOLDENS") != nullptr;
  int cases = 0;
  for (const auto& e : fs::directory_iterator("tests/golden/fmt")) {
    if (e.path().extension() != ".input") continue;
    ++cases;
    FormatResult r = Format(e.path().string(), ReadAll(e.path()), Options{});
    ASSERT_TRUE(r.ok) << e.path();
    fs::path golden = fs::path(e.path()).replace_extension(".expected");
    if (update) {
      std::ofstream(golden, std::ios::binary) << r.text;
      continue;
    }
    EXPECT_EQ(ReadAll(golden), r.text) << "formatter golden mismatch for " << e.path();
  }
  EXPECT_GE(cases, 3);
}

TEST(Formatter, IdempotentAndKeepsCommentsOnEveryRepositoryFile) {
  for (const fs::path& f : RepositoryPolicies()) {
    std::string text = ReadAll(f);
    FormatResult once = Format(f.string(), text, Options{});
    ASSERT_TRUE(once.ok) << f;
    FormatResult twice = Format(f.string(), once.text, Options{});
    ASSERT_TRUE(twice.ok) << f;
    EXPECT_EQ(once.text, twice.text) << "formatting is not idempotent on " << f;
    EXPECT_EQ(Comments(text), Comments(once.text)) << "comments changed in " << f;
  }
}

// A UTF-8 byte order mark must not shift spans (string values, comments).
TEST(Formatter, ByteOrderMarkIsHandled) {
  std::string text = "\xEF\xBB\xBF// note\npolicy \"p\" {\n  on input\n  then block \"msg\"\n}\n";
  FormatResult once = Format("bom.ktp", text, Options{});
  ASSERT_TRUE(once.ok);
  EXPECT_EQ(once.text, "// note\npolicy \"p\" {\n  on input\n  then block \"msg\"\n}\n");
  FormatResult twice = Format("bom.ktp", once.text, Options{});
  EXPECT_EQ(twice.text, once.text);
}

TEST(Formatter, RefusesFilesWithSyntaxErrors) {
  FormatResult r = Format("x.ktp", "policy \"a\" {\n  on input\n", Options{});
  EXPECT_FALSE(r.ok);
  ASSERT_FALSE(r.diagnostics.empty());
  EXPECT_EQ(r.diagnostics[0].code, "E0101");
}

}  // namespace
}  // namespace kt
