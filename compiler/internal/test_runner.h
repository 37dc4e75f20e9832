// The policy test runner behind `kt policy test`.
#ifndef KT_COMPILER_INTERNAL_TEST_RUNNER_H_
#define KT_COMPILER_INTERNAL_TEST_RUNNER_H_

#include "compiler/compiler.h"
#include <memory>

#include "compiler/internal/checker.h"

namespace kt::internal {

// Runs every `test` block of the program's root files. The program must have
// passed the checker without errors.
TestRun RunTests(const Program& program, const Resolution& resolution, const Options& options,
                 const SourceMap& sources);

// Evaluates the whole policy set on OpenAI-format bodies (a chat-completions
// request, a response, or a tool call), keeping compiled patterns between
// calls. Not thread-safe.
class RequestEvaluator {
 public:
  RequestEvaluator(const Program& program, const Resolution& resolution, const Options& options);
  ~RequestEvaluator();
  // The decision for one stage, as JSON; empty with `*error` set on a bad body.
  std::string Evaluate(const std::string& stage, const std::string& body, std::string* error);

 private:
  std::string EvaluateChecked(const std::string& stage, const std::string& body,
                              std::string* error);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_TEST_RUNNER_H_
