// The policy test runner behind `kt policy test`.
#ifndef KT_COMPILER_INTERNAL_TEST_RUNNER_H_
#define KT_COMPILER_INTERNAL_TEST_RUNNER_H_

#include "compiler/compiler.h"
#include "compiler/internal/checker.h"

namespace kt::internal {

// Runs every `test` block of the program's root files. The program must have
// passed the checker without errors.
TestRun RunTests(const Program& program, const Resolution& resolution, const Options& options,
                 const SourceMap& sources);

// The decision for one stage of the whole policy set on an OpenAI-format
// body (a chat-completions request, a response, or a tool call), as JSON.
std::string EvaluateRequest(const Program& program, const Resolution& resolution,
                            const Options& options, const std::string& stage,
                            const std::string& body, std::string* error);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_TEST_RUNNER_H_
