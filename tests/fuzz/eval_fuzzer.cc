// libFuzzer target for `kt policy eval`: arbitrary bodies against the
// quickstart and stdlib policies, on every stage. A body may be rejected with
// an error; it must never crash, hang or be accepted without a decision.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "compiler/compiler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kt::SourceMap* sources = new kt::SourceMap();
  static std::unique_ptr<kt::PolicyInterpreter> interp = [] {
    kt::Options options;
    options.stdlib_paths = {KT_SOURCE_STDLIB};
    kt::LintResult lint;
    std::string root = KT_SOURCE_STDLIB;
    root = root.substr(0, root.size() - 6);  // strip "stdlib"
    return kt::PolicyInterpreter::Load(
        {root + "examples/policies/quickstart.ktp", root + "stdlib/std/pii_test.ktp"}, options,
        sources, &lint);
  }();
  if (interp == nullptr) std::abort();
  std::string body(reinterpret_cast<const char*>(data), size);
  for (const char* stage : {"input", "output", "tool_call"}) {
    std::string error;
    std::string decision = interp->Evaluate(stage, body, &error);
    if (decision.empty() == error.empty()) std::abort();  // exactly one of the two
  }
  return 0;
}
