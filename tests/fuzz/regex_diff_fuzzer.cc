// libFuzzer differential target: kt's automata against RE2 (longest match).
// Input: the first line is a regex, the rest is the text. Cases either
// engine rejects are skipped, as are inputs that reach into areas where the
// two legitimately differ: Unicode property classes (table versions) and
// `(?i)` inside an alternation (an RE2 2022-06-01 folding defect, see
// docs/testing.md). Any other difference in match/no-match or in the
// leftmost-longest span aborts.
#include <re2/re2.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "compiler/compiler.h"
#include "runtime/runtime.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::size_t nl = input.find('\n');
  if (nl == std::string::npos || nl == 0 || nl > 200) return 0;
  std::string regex = input.substr(0, nl);
  std::string text = input.substr(nl + 1);
  if (regex.find("\\p") != std::string::npos || regex.find("\\P") != std::string::npos) return 0;
  // Groups: `(?:` anywhere, flags only as a leading `(?i)`.
  for (std::size_t pos = regex.find("(?"); pos != std::string::npos;
       pos = regex.find("(?", pos + 1)) {
    if (regex.compare(pos, 3, "(?:") == 0) continue;
    if (pos == 0 && regex.compare(0, 4, "(?i)") == 0) continue;
    return 0;
  }
  RE2::Options o;
  o.set_longest_match(true);
  o.set_log_errors(false);
  o.set_max_mem(8 << 20);
  RE2 re2(regex, o);
  if (!re2.ok()) return 0;
  kt::Options options;
  options.dfa_memory_budget = 1 << 20;
  kt::CompiledPatterns c = kt::CompilePatterns({kt::PatternSource{regex, ""}}, options);
  if (!c.ok) return 0;  // kt rejects backreferences etc.; RE2 may accept \C
  kt::PatternSet set(std::move(c.tables));
  re2::StringPiece sub;
  bool re2_found = re2.Match(text, 0, text.size(), RE2::UNANCHORED, &sub, 1);
  kt::PatternMatch m;
  bool kt_found = set.FirstMatch(text, 0, &m);
  if (re2_found != kt_found) std::abort();
  if (re2_found) {
    std::size_t start = static_cast<std::size_t>(sub.data() - text.data());
    if (start != m.start || start + sub.size() != m.end) std::abort();
  }
  std::vector<bool> occ;
  if (set.Scan(text, &occ) != kt_found) std::abort();
  return 0;
}
