// libFuzzer target for the front end: lexer, parser, AST builder, checker,
// renderers, formatter, and (for clean programs) the test interpreter. Beyond "no crash", it asserts two properties:
// formatting is idempotent, and formatted output still parses.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "compiler/compiler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  kt::Options options;
  options.stdlib_paths = {KT_SOURCE_STDLIB};
  kt::SourceMap sources;
  kt::LintResult lint = kt::LintText("/fuzz/input.ktp", text, options, &sources);
  (void)kt::RenderText(lint.diagnostics, sources, false);
  (void)kt::RenderJson(lint, sources);
  if (lint.error_count == 0) {
    // A clean program: run its tests through the interpreter too.
    kt::SourceMap test_sources;
    kt::TestRun run = kt::RunPolicyTestsOnText("/fuzz/input.ktp", text, options, &test_sources);
    if (run.passed + run.failed != static_cast<int>(run.results.size())) std::abort();
  }
  kt::FormatResult once = kt::Format("input.ktp", text, options);
  if (once.ok) {
    kt::FormatResult twice = kt::Format("input.ktp", once.text, options);
    if (!twice.ok || twice.text != once.text) std::abort();
  }
  return 0;
}
