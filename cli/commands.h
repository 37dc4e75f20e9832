// Subcommand registration for the `kt` binary. Each group of commands lives
// in its own file and adds itself to the CLI11 app.
#ifndef KT_CLI_COMMANDS_H_
#define KT_CLI_COMMANDS_H_

#include <CLI/CLI.hpp>

#include "compiler/compiler.h"

namespace kt::cli {

// Shared front-end options (limits, stdlib path), bound to flags on `app`.
struct CommonOptions {
  std::string stdlib;
  Options compiler;
};

void AddPolicyCommands(CLI::App* app, CommonOptions* common, int* exit_code);
void AddPatternCommands(CLI::App* app, CommonOptions* common, int* exit_code);
void AddGatewayCommands(CLI::App* app, CommonOptions* common, int* exit_code);

// Resolves the stdlib search path: --stdlib, $KT_STDLIB, next to the binary,
// then the source tree the binary was built from.
std::vector<std::string> StdlibPaths(const std::string& flag);

}  // namespace kt::cli

#endif  // KT_CLI_COMMANDS_H_
