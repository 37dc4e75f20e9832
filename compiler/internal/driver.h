// Loading and checking a policy set, for in-process users of the checked
// program (the test runner's reference evaluator in tests/).
#ifndef KT_COMPILER_INTERNAL_DRIVER_H_
#define KT_COMPILER_INTERNAL_DRIVER_H_

#include <memory>
#include <string>
#include <vector>

#include "compiler/compiler.h"
#include "compiler/internal/checker.h"

namespace kt::internal {

struct CheckedSet {
  struct Storage;
  std::shared_ptr<Storage> storage;  // owns the modules and their ASTs
  const Program* program = nullptr;
  CheckResult checked;
  int error_count = 0;
  LintResult lint;  // the diagnostics, sorted and capped as lint reports them
};

CheckedSet LoadAndCheck(const std::vector<std::string>& files, const Options& options,
                        SourceMap* sources);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_DRIVER_H_
