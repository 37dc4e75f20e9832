// The policy test runner behind `kt policy test`.
#ifndef KT_COMPILER_INTERNAL_TEST_RUNNER_H_
#define KT_COMPILER_INTERNAL_TEST_RUNNER_H_

#include "compiler/compiler.h"
#include <memory>

#include "compiler/internal/checker.h"
#include "runtime/runtime.h"

namespace kt::internal {

// How the interpreter matches patterns: kt's automata by default; the tests
// plug in RE2 as an independent oracle (the reference evaluator).
class PatternMatcher {
 public:
  virtual ~PatternMatcher() = default;
  // The leftmost-longest, non-overlapping matches of the union of `trees`;
  // `pattern` is the index of the tree that matched.
  virtual std::vector<PatternMatch> AllMatches(const std::vector<const RegexNode*>& trees,
                                               std::string_view text) = 0;
};

// Runs every `test` block of the program's root files. The program must have
// passed the checker without errors. `matcher` defaults to kt's automata.
TestRun RunTests(const Program& program, const Resolution& resolution, const Options& options,
                 const SourceMap& sources, PatternMatcher* matcher = nullptr);

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
