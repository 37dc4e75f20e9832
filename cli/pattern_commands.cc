// `kt pattern match` and `kt pattern explain`.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "runtime/runtime.h"

namespace kt::cli {
namespace {

// Prints a regex error with a caret under the offending character.
void PrintRegexError(const std::string& regex, const CompiledPatterns& c) {
  std::cerr << "kt: error in pattern " << c.error_pattern + 1 << " at byte " << c.error_offset
            << ": " << c.error << "\n  " << regex << "\n  "
            << std::string(c.error_offset, ' ') << "^\n";
}

bool ReadStdin(std::size_t limit, std::string* out) {
  std::vector<char> buf(1 << 16);
  while (true) {
    std::size_t n = std::fread(buf.data(), 1, buf.size(), stdin);
    if (n == 0) break;
    if (out->size() + n > limit) return false;
    out->append(buf.data(), n);
  }
  return true;
}

}  // namespace

void AddPatternCommands(CLI::App* app, CommonOptions* common, int* exit_code) {
  CLI::App* pattern = app->add_subcommand("pattern", "compile and try regex patterns");
  pattern->require_subcommand(1);

  struct MatchArgs {
    std::string regex;
    std::string flags;
    bool all = false;
    bool no_jit = false;
    std::size_t max_input = 256u << 20;
  };
  auto margs = std::make_shared<MatchArgs>();
  CLI::App* match = pattern->add_subcommand(
      "match", "print the leftmost-longest match of REGEX in standard input as `start-end`");
  match->add_option("REGEX", margs->regex, "the pattern, RE2 syntax")->required();
  match->add_option("--flags", margs->flags, "i (case-insensitive), s (dot matches \\n), m");
  match->add_flag("--all", margs->all, "print every non-overlapping match");
  match->add_flag("--no-jit", margs->no_jit, "scan with the table interpreter");
  match->add_option("--max-input", margs->max_input, "largest accepted input in bytes")
      ->capture_default_str();
  match->callback([=] {
    CompiledPatterns c = CompilePatterns({PatternSource{margs->regex, margs->flags}},
                                         common->compiler);
    if (!c.ok) {
      PrintRegexError(margs->regex, c);
      *exit_code = 2;
      return;
    }
    std::string text;
    if (!ReadStdin(margs->max_input, &text)) {
      std::cerr << "kt: input exceeds " << margs->max_input << " bytes (--max-input)\n";
      *exit_code = 2;
      return;
    }
    PatternSet set(std::move(c.tables));
    std::string err;
    if (!margs->no_jit && !set.Jit(&err)) {
      std::cerr << "kt: JIT unavailable, interpreting: " << err << "\n";
    }
    std::vector<PatternMatch> matches;
    if (margs->all) {
      matches = set.AllMatches(text);
    } else if (PatternMatch m; set.FirstMatch(text, 0, &m)) {
      matches.push_back(m);
    }
    if (matches.empty()) {
      std::cout << "no match\n";
      *exit_code = 1;
      return;
    }
    for (const PatternMatch& m : matches) std::cout << m.start << "-" << m.end << "\n";
    *exit_code = 0;
  });

  struct ExplainArgs {
    std::vector<std::string> regexes;
    std::string flags;
    bool llvm = false;
  };
  auto eargs = std::make_shared<ExplainArgs>();
  CLI::App* explain = pattern->add_subcommand(
      "explain", "compile REGEX... into one automaton and print its size and costs");
  explain->add_option("REGEX", eargs->regexes, "patterns, RE2 syntax")->required();
  explain->add_option("--flags", eargs->flags, "flags applied to every pattern");
  explain->add_flag("--llvm", eargs->llvm, "also print the generated LLVM IR");
  explain->callback([=] {
    std::vector<PatternSource> sources;
    for (const std::string& r : eargs->regexes) sources.push_back(PatternSource{r, eargs->flags});
    CompiledPatterns c = CompilePatterns(sources, common->compiler);
    if (!c.ok) {
      PrintRegexError(eargs->regexes[std::min(c.error_pattern, eargs->regexes.size() - 1)], c);
      *exit_code = 2;
      return;
    }
    const PatternSetStats& st = c.stats;
    PatternSet set(std::move(c.tables));
    std::string err;
    bool jitted = set.Jit(&err);
    std::cout << "patterns:         " << sources.size() << "\n"
              << "nfa states:       " << st.nfa_states << "\n";
    if (st.lazy) {
      std::cout << "dfa:              lazy: states are built while scanning (eager construction "
                   "stopped at "
                << st.dfa_states << " states)\n"
                << "memory:           " << st.memory_bytes << " bytes of NFA, plus a DFA cache of at most "
                << common->compiler.dfa_memory_budget << " bytes per automaton\n";
    } else {
      std::cout << "dfa:              eager\n"
                << "dfa states:       " << st.dfa_states << " (subset construction), "
                << st.dfa_states_minimized << " (minimised)\n"
                << "byte classes:     " << (st.byte_classes > 0 ? st.byte_classes - 1 : 0)
                << " (+1 end of text)\n"
                << "memory:           " << st.memory_bytes << " bytes (forward, anchored, reverse)\n";
    }
    std::cout << "compile:          " << st.compile_ms << " ms\n";
    if (jitted) {
      std::cout << "jit:              " << set.jit_ms() << " ms\n";
    } else {
      std::cout << "jit:              unavailable (" << err << ")\n";
    }
    for (std::size_t g = 0; g < set.tables().groups.size(); ++g) {
      const abi::DfaGroup& grp = set.tables().groups[g];
      if (grp.lazy) {
        std::cout << "group " << g << ": " << grp.pattern_ids.size() << " patterns, lazy, nfa "
                  << grp.forward_nfa.insts.size() << " instructions\n";
        continue;
      }
      std::cout << "group " << g << ": " << grp.pattern_ids.size() << " patterns, forward "
                << grp.forward.num_states << " states x " << grp.forward.num_classes
                << " classes, anchored " << grp.anchored.num_states << ", reverse "
                << grp.reverse.num_states << "\n";
    }
    if (eargs->llvm && jitted) std::cout << set.jit_ir();
    *exit_code = 0;
  });
}

}  // namespace kt::cli
