// Checker behaviour that goldens do not show well: stream classes, stage
// scoping across several stages, and the JSON / SARIF renderings.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "compiler/compiler.h"

namespace kt {
namespace {

LintResult LintString(const std::string& text, SourceMap* sources) {
  Options options;
  options.stdlib_paths = {std::string(KT_SOURCE_DIR) + "/stdlib"};
  return LintText(std::string(KT_SOURCE_DIR) + "/tests/inline.ktp", text, options, sources);
}

std::string ClassOf(const std::string& condition) {
  SourceMap sources;
  LintResult r = LintString("policy \"p\" {\n  on output\n  when " + condition +
                                "\n  then block\n}\n",
                            &sources);
  EXPECT_EQ(r.error_count, 0) << RenderText(r.diagnostics, sources, false);
  return r.policies.empty() ? "" : r.policies[0].output_class;
}

TEST(Checker, ClassifiesOutputRulesForStreaming) {
  EXPECT_EQ(ClassOf("output.text matches /secret/"), "monotone");
  EXPECT_EQ(ClassOf("output.text contains \"x\" or output.text matches /y+/"), "monotone");
  EXPECT_EQ(ClassOf("count(/a/ in output.text) >= 3"), "monotone");
  EXPECT_EQ(ClassOf("len(output.text) > 1000 and input.model == \"gpt-4o\""), "monotone");
  EXPECT_EQ(ClassOf("input.stream"), "monotone");
  EXPECT_EQ(ClassOf("not (output.text matches /ok/)"), "final-only");
  EXPECT_EQ(ClassOf("output.text fullmatches /[a-z]+/"), "final-only");
  EXPECT_EQ(ClassOf("output.finish_reason == \"length\""), "final-only");
  EXPECT_EQ(ClassOf("len(output.text) < 10"), "final-only");
}

TEST(Checker, StageScopingIsCheckedPerStage) {
  SourceMap sources;
  LintResult r = LintString(
      "policy \"p\" {\n  on input, output\n  when output.text contains \"x\"\n  then block\n}\n",
      &sources);
  ASSERT_EQ(r.error_count, 1);
  EXPECT_EQ(r.diagnostics[0].code, "E0209");
  EXPECT_EQ(r.diagnostics[0].message, "`output` is not available on stage `input`");
}

TEST(Checker, ReportsSeveralErrorsInOneRun) {
  SourceMap sources;
  LintResult r = LintString(
      "policy \"a\" {\n  on inptu\n  when input.mesages == 1\n  then block\n}\n"
      "policy \"b\" {\n  on output\n  mode enforced\n  then block\n}\n",
      &sources);
  EXPECT_GE(r.error_count, 3) << RenderText(r.diagnostics, sources, false);
}

TEST(Checker, QualifiedNamesResolveThroughImports) {
  SourceMap sources;
  LintResult r = LintString(
      "import std.pii\nimport std.injection as inj\npolicy \"a\" {\n  on input\n"
      "  when any m in input.messages: m.content matches inj.attack\n"
      "  then redact std.pii.email with \"[E]\"\n}\n",
      &sources);
  EXPECT_EQ(r.error_count, 0) << RenderText(r.diagnostics, sources, false);
  EXPECT_EQ(r.warning_count, 0);
}

TEST(Checker, RelativeFileImportsResolveAgainstTheImporter) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "kt_import_test";
  fs::create_directories(dir / "shared");
  std::ofstream(dir / "shared" / "ids.ktp") << "pattern account = /AC-[0-9]{4}/\n";
  std::ofstream(dir / "main.ktp")
      << "import \"./shared/ids.ktp\"\nimport \"./shared/ids.ktp\" as other\n"
         "policy \"a\" {\n  on tool_call\n"
         "  when tool.args.id as string fullmatches ids.account or tool.name matches other.account\n"
         "  then block\n}\n";
  Options options;
  SourceMap sources;
  LintResult r = Lint({(dir / "main.ktp").string()}, options, &sources);
  EXPECT_EQ(r.error_count, 0) << RenderText(r.diagnostics, sources, false);
  EXPECT_EQ(r.warning_count, 0) << RenderText(r.diagnostics, sources, false);
  fs::remove_all(dir);
}

TEST(Checker, JsonArgumentsNeedAConversion) {
  SourceMap sources;
  LintResult ok = LintString(
      "policy \"a\" {\n  on tool_call\n  when tool.args.amount as float > 10.0\n  then block\n}\n",
      &sources);
  EXPECT_EQ(ok.error_count, 0) << RenderText(ok.diagnostics, sources, false);
  LintResult bad = LintString(
      "policy \"a\" {\n  on tool_call\n  when tool.args.amount > 10\n  then block\n}\n", &sources);
  ASSERT_EQ(bad.error_count, 1);
  EXPECT_NE(bad.diagnostics[0].help.find("as int"), std::string::npos);
}

TEST(Renderers, JsonAndSarifCarryLocations) {
  SourceMap sources;
  LintResult r = LintString(
      "policy \"a\" {\n  on input\n  when any m in input.mesages: m.role == \"user\"\n"
      "  then block\n}\n",
      &sources);
  ASSERT_EQ(r.error_count, 1);
  nlohmann::json j = nlohmann::json::parse(RenderJson(r, sources));
  EXPECT_EQ(j["diagnostics"][0]["code"], "E0202");
  EXPECT_EQ(j["diagnostics"][0]["start"]["line"], 3);
  EXPECT_EQ(j["diagnostics"][0]["start"]["column"], 23);
  EXPECT_EQ(j["diagnostics"][0]["help"], "did you mean `messages`?");
  nlohmann::json s = nlohmann::json::parse(RenderSarif(r, sources));
  EXPECT_EQ(s["version"], "2.1.0");
  const auto& result = s["runs"][0]["results"][0];
  EXPECT_EQ(result["ruleId"], "E0202");
  EXPECT_EQ(result["level"], "error");
  EXPECT_EQ(result["locations"][0]["physicalLocation"]["region"]["startLine"], 3);
  EXPECT_EQ(result["locations"][0]["physicalLocation"]["region"]["startColumn"], 23);
}

TEST(Renderers, TextHasCaretUnderTheSpan) {
  SourceMap sources;
  LintResult r = LintString("policy \"a\" {\n  on input\n  mode obsrve\n  then block\n}\n", &sources);
  std::string text = RenderText(r.diagnostics, sources, false);
  EXPECT_NE(text.find("inline.ktp:3:8: error[E0206]: unknown mode `obsrve`\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find(" 3 |   mode obsrve\n   |        ^^^^^^\n"), std::string::npos) << text;
  EXPECT_NE(text.find("help: did you mean `observe`?"), std::string::npos) << text;
}

}  // namespace
}  // namespace kt
