// `kt policy lint` and `kt policy fmt`.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"

namespace kt::cli {
namespace {

namespace fs = std::filesystem;

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool UseColor() {
  return isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr;
}

void AddLimitFlags(CLI::App* cmd, CommonOptions* common) {
  cmd->add_option("--stdlib", common->stdlib, "directory that contains std/ (default: built in)");
  cmd->add_option("--max-errors", common->compiler.max_errors,
                  "diagnostics shown before the rest are summarised")
      ->capture_default_str();
  cmd->add_option("--max-file-bytes", common->compiler.max_file_bytes, "largest accepted file")
      ->capture_default_str();
  cmd->add_option("--max-depth", common->compiler.max_nesting_depth,
                  "deepest accepted expression nesting")
      ->capture_default_str();
  cmd->add_option("--dfa-budget", common->compiler.dfa_memory_budget,
                  "largest transition table of one pattern DFA, in bytes")
      ->capture_default_str();
  common->compiler.object_cache_dir = DefaultObjectCacheDir();
  cmd->add_option("--cache-dir", common->compiler.object_cache_dir,
                  "object cache of compiled policy programs (default: $KT_CACHE_DIR, "
                  "$XDG_CACHE_HOME/kt or ~/.cache/kt; empty: none)");
  cmd->add_flag("--interpret", [common](std::int64_t) { common->compiler.native = false; },
                "evaluate conditions with the AST interpreter instead of native code");
}

int RunLint(const std::vector<std::string>& paths, const std::string& format, bool strict,
            CommonOptions* common) {
  common->compiler.stdlib_paths = StdlibPaths(common->stdlib);
  std::vector<Diagnostic> missing;
  std::vector<std::string> files = CollectPolicyFiles(paths, &missing);
  SourceMap sources;
  LintResult result = Lint(files, common->compiler, &sources);
  for (Diagnostic& d : missing) {
    result.diagnostics.insert(result.diagnostics.begin(), d);
    ++result.error_count;
  }
  if (format == "json") {
    std::cout << RenderJson(result, sources);
  } else if (format == "sarif") {
    std::cout << RenderSarif(result, sources);
  } else {
    std::cout << RenderText(result.diagnostics, sources, UseColor());
    std::cerr << "kt: checked " << result.files.size() << " file"
              << (result.files.size() == 1 ? "" : "s") << ": " << result.error_count << " error"
              << (result.error_count == 1 ? "" : "s") << ", " << result.warning_count
              << " warning" << (result.warning_count == 1 ? "" : "s") << "\n";
  }
  if (result.error_count > 0) return 2;
  if (strict && result.warning_count > 0) return 1;
  return 0;
}

int RunFmt(const std::vector<std::string>& paths, bool write, bool check, CommonOptions* common) {
  std::vector<Diagnostic> missing;
  std::vector<std::string> files = CollectPolicyFiles(paths, &missing);
  SourceMap sources;
  int rc = 0;
  for (const Diagnostic& d : missing) {
    std::cerr << "kt: " << d.message << "\n";
    rc = 2;
  }
  std::vector<std::string> changed;
  for (const std::string& f : files) {
    std::string text;
    if (!ReadFile(f, &text)) {
      std::cerr << "kt: cannot read `" << f << "`\n";
      rc = 2;
      continue;
    }
    FormatResult r = Format(f, text, common->compiler);
    if (!r.ok) {
      sources.Add(f, text);
      std::cerr << RenderText(r.diagnostics, sources, false);
      rc = 2;
      continue;
    }
    if (check) {
      if (r.text != text) changed.push_back(f);
    } else if (write) {
      if (r.text != text) {
        std::ofstream out(f, std::ios::binary | std::ios::trunc);
        out << r.text;
        if (!out) {
          std::cerr << "kt: cannot write `" << f << "`\n";
          rc = 2;
        }
      }
    } else {
      std::cout << r.text;
    }
  }
  if (check) {
    for (const std::string& f : changed) std::cout << f << "\n";
    if (!changed.empty() && rc == 0) rc = 1;
  }
  return rc;
}

int RunExplain(const std::vector<std::string>& paths, bool pir, bool llvm, CommonOptions* common) {
  common->compiler.stdlib_paths = StdlibPaths(common->stdlib);
  std::vector<Diagnostic> missing;
  std::vector<std::string> files = CollectPolicyFiles(paths, &missing);
  SourceMap sources;
  ExplainResult r = Explain(files, common->compiler, &sources, llvm);
  r.lint.diagnostics.insert(r.lint.diagnostics.begin(), missing.begin(), missing.end());
  r.lint.error_count += static_cast<int>(missing.size());
  if (r.lint.error_count > 0) {
    std::cerr << RenderText(r.lint.diagnostics, sources, UseColor());
    return 2;
  }
  for (const std::string& problem : r.ir_problems) {
    std::cerr << "kt: internal error: policy IR does not verify: " << problem << "\n";
  }
  if (!r.ir_problems.empty()) return 3;
  if (pir) {
    std::cout << r.pir;
    return 0;
  }
  if (llvm) {
    std::cout << r.llvm;
    return 0;
  }
  for (const char* stage : {"input", "tool_call", "output"}) {
    std::vector<const PolicySummary*> rules;
    for (const PolicySummary& p : r.lint.policies) {
      if (std::find(p.stages.begin(), p.stages.end(), stage) != p.stages.end()) rules.push_back(&p);
    }
    if (rules.empty()) continue;
    std::cout << "stage " << stage << "\n  rules, in order:\n";
    for (const PolicySummary* p : rules) {
      std::cout << "    " << p->name << "  " << p->mode << " " << p->action;
      if (std::string(stage) == "output") std::cout << "  [" << p->output_class << "]";
      std::cout << "\n";
    }
    bool header = false;
    for (const PatternSetReport& s : r.sets) {
      if (s.stage != stage) continue;
      if (!header) std::cout << "  pattern sets:\n";
      header = true;
      std::cout << "    " << s.name << " on " << s.subject << ": " << s.patterns << " pattern"
                << (s.patterns == 1 ? "" : "s") << ", ";
      if (s.lazy) {
        std::cout << "lazy DFA (states built while scanning)";
      } else {
        std::cout << s.dfa_states << " DFA states";
      }
      std::cout << ", " << s.memory_bytes << " bytes, compiled in " << s.compile_ms << " ms\n";
    }
  }
  return 0;
}

int RunTest(const std::vector<std::string>& paths, bool json, CommonOptions* common) {
  common->compiler.stdlib_paths = StdlibPaths(common->stdlib);
  std::vector<Diagnostic> missing;
  std::vector<std::string> files = CollectPolicyFiles(paths, &missing);
  SourceMap sources;
  TestRun run = RunPolicyTests(files, common->compiler, &sources);
  run.lint.diagnostics.insert(run.lint.diagnostics.begin(), missing.begin(), missing.end());
  run.lint.error_count += static_cast<int>(missing.size());
  if (run.lint.error_count > 0) {
    std::cerr << RenderText(run.lint.diagnostics, sources, UseColor());
    std::cerr << "kt: the policies have errors; no test ran\n";
    return 2;
  }
  if (json) {
    nlohmann::json results = nlohmann::json::array();
    for (const TestCaseResult& r : run.results) {
      nlohmann::json j = {{"name", r.name},        {"file", r.file},       {"line", r.line},
                          {"passed", r.passed},    {"verdict", r.verdict}, {"policy", r.policy},
                          {"code", r.code}};
      if (!r.passed) {
        j["failure"] = r.failure;
        j["failure_line"] = r.failure_line;
      }
      results.push_back(std::move(j));
    }
    nlohmann::json out = {{"ok", run.failed == 0},
                          {"passed", run.passed},
                          {"failed", run.failed},
                          {"results", results},
                          {"untested_policies", run.untested}};
    std::cout << out.dump(2) << "\n";
  } else {
    for (const TestCaseResult& r : run.results) {
      if (r.passed) {
        std::cout << "ok    " << r.file << ":" << r.line << ": " << r.name << "\n";
      } else {
        std::cout << "FAIL  " << r.file << ":" << r.line << ": " << r.name << "\n"
                  << "      " << r.file << ":" << r.failure_line << ": " << r.failure << "\n";
      }
    }
    if (!run.untested.empty()) {
      std::cout << "policies no test exercised:";
      for (const std::string& p : run.untested) std::cout << " " << p;
      std::cout << "\n";
    }
    std::cout << run.passed << " passed, " << run.failed << " failed\n";
  }
  return run.failed > 0 ? 1 : 0;
}

int RunEval(const std::vector<std::string>& paths, const std::string& stage,
            const std::string& request_file, CommonOptions* common) {
  common->compiler.stdlib_paths = StdlibPaths(common->stdlib);
  std::vector<Diagnostic> missing;
  std::vector<std::string> files = CollectPolicyFiles(paths, &missing);
  std::string body;
  if (!ReadFile(request_file, &body)) {
    std::cerr << "kt: cannot read `" << request_file << "`\n";
    return 2;
  }
  SourceMap sources;
  EvalResult r = EvalPolicies(files, stage, body, common->compiler, &sources);
  r.lint.diagnostics.insert(r.lint.diagnostics.begin(), missing.begin(), missing.end());
  r.lint.error_count += static_cast<int>(missing.size());
  if (r.lint.error_count > 0) {
    std::cerr << RenderText(r.lint.diagnostics, sources, UseColor());
    return 2;
  }
  if (!r.error.empty()) {
    std::cerr << "kt: " << r.error << "\n";
    return 2;
  }
  std::cout << r.decision_json << "\n";
  return 0;
}

}  // namespace

std::vector<std::string> StdlibPaths(const std::string& flag) {
  if (!flag.empty()) return {flag};
  if (const char* env = std::getenv("KT_STDLIB"); env != nullptr && *env != '\0') return {env};
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path installed = exe.parent_path().parent_path() / "share" / "kt" / "stdlib";
    if (fs::is_directory(installed, ec)) return {installed.string()};
  }
  return {KT_SOURCE_STDLIB};
}

void AddPolicyCommands(CLI::App* app, CommonOptions* common, int* exit_code) {
  CLI::App* policy = app->add_subcommand("policy", "author and check .ktp policies");
  policy->require_subcommand(1);

  struct LintArgs {
    std::vector<std::string> paths;
    std::string format = "text";
    bool strict = false;
  };
  auto lint_args = std::make_shared<LintArgs>();
  CLI::App* lint = policy->add_subcommand("lint", "parse and check policy files");
  lint->add_option("PATH", lint_args->paths, "files or directories (searched for *.ktp)")
      ->required();
  lint->add_option("--format", lint_args->format, "output format")
      ->check(CLI::IsMember({"text", "json", "sarif"}))
      ->capture_default_str();
  lint->add_flag("--strict", lint_args->strict, "exit 1 when there are warnings");
  AddLimitFlags(lint, common);
  lint->callback([=] {
    *exit_code = RunLint(lint_args->paths, lint_args->format, lint_args->strict, common);
  });

  struct FmtArgs {
    std::vector<std::string> paths;
    bool write = false;
    bool check = false;
  };
  auto fmt_args = std::make_shared<FmtArgs>();
  CLI::App* fmt = policy->add_subcommand("fmt", "print policy files in the canonical layout");
  fmt->add_option("PATH", fmt_args->paths, "files or directories")->required();
  auto* write = fmt->add_flag("--write,-w", fmt_args->write, "rewrite the files in place");
  fmt->add_flag("--check", fmt_args->check, "list files that are not formatted; exit 1 if any")
      ->excludes(write);
  AddLimitFlags(fmt, common);
  fmt->callback([=] {
    *exit_code = RunFmt(fmt_args->paths, fmt_args->write, fmt_args->check, common);
  });

  struct TestArgs {
    std::vector<std::string> paths;
    bool json = false;
  };
  auto test_args = std::make_shared<TestArgs>();
  CLI::App* test = policy->add_subcommand(
      "test", "run the test blocks; exit 1 when any fails");
  test->add_option("PATH", test_args->paths, "files or directories")->required();
  test->add_flag("--json", test_args->json, "print the results as JSON");
  AddLimitFlags(test, common);
  test->callback([=] { *exit_code = RunTest(test_args->paths, test_args->json, common); });

  struct EvalArgs {
    std::vector<std::string> paths;
    std::string stage = "input";
    std::string request;
  };
  auto eval_args = std::make_shared<EvalArgs>();
  CLI::App* eval = policy->add_subcommand(
      "eval", "print the decision for one stage on a request, response or tool call, as JSON");
  eval->add_option("PATH", eval_args->paths, "files or directories")->required();
  eval->add_option("--stage", eval_args->stage, "input, tool_call or output")
      ->check(CLI::IsMember({"input", "tool_call", "output"}))
      ->capture_default_str();
  eval->add_option("--request", eval_args->request,
                   "JSON file: a chat-completions request (input), response (output) or tool call")
      ->required();
  AddLimitFlags(eval, common);
  eval->callback([=] {
    *exit_code = RunEval(eval_args->paths, eval_args->stage, eval_args->request, common);
  });

  struct ExplainArgs {
    std::vector<std::string> paths;
    bool pir = false;
    bool llvm = false;
  };
  auto explain_args = std::make_shared<ExplainArgs>();
  CLI::App* explain = policy->add_subcommand(
      "explain", "show, per stage, the rules, their stream class and the compiled pattern sets");
  explain->add_option("PATH", explain_args->paths, "files or directories")->required();
  explain->add_flag("--pir", explain_args->pir, "print the policy IR instead");
  explain->add_flag("--llvm", explain_args->llvm,
                    "print the LLVM IR of the JIT-compiled pattern scan loops instead");
  AddLimitFlags(explain, common);
  explain->callback([=] {
    *exit_code = RunExplain(explain_args->paths, explain_args->pir, explain_args->llvm, common);
  });
}

}  // namespace kt::cli
