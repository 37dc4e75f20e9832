// The `kt` command: policy tooling for authors and CI.
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kt: a policy gateway for LLM traffic, and the tooling for its .ktp policies"};
  app.set_version_flag("--version", std::string("kt ") + std::string(kt::Version()));
  app.require_subcommand(1);
  kt::cli::CommonOptions common;
  int exit_code = 0;
  kt::cli::AddPolicyCommands(&app, &common, &exit_code);
  kt::cli::AddPatternCommands(&app, &common, &exit_code);
  kt::cli::AddGatewayCommands(&app, &common, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    // Usage errors are exit 2, like a policy error: the run proved nothing.
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
