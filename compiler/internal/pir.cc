#include "compiler/internal/pir.h"

namespace kt::internal {

std::string PrintPir(const PirProgram& program) {
  std::string out;
  for (const PirStage& stage : program.stages) {
    if (stage.rules.empty()) continue;
    out += "stage " + stage.name + "\n";
    for (std::size_t s = 0; s < stage.sets.size(); ++s) {
      const PirPatternSet& set = stage.sets[s];
      out += "  set S" + std::to_string(s) + " on " + set.subject + "\n";
      for (std::size_t k = 0; k < set.patterns.size(); ++k) {
        out += "    #" + std::to_string(k) + " " + set.patterns[k].label + "\n";
      }
    }
    for (const PirRule& r : stage.rules) {
      out += "  rule \"" + r.policy + "\" " + r.mode + " " + r.action;
      if (!r.code.empty()) out += " code \"" + r.code + "\"";
      if (!r.stream_class.empty()) out += " [" + r.stream_class + "]";
      out += "\n    when " + r.condition + "\n";
      for (const PirRedaction& red : r.redactions) {
        out += "    redact S" + std::to_string(red.set) + "#" + std::to_string(red.slot) +
               " with \"" + red.replacement + "\"\n";
      }
    }
  }
  return out;
}

std::vector<std::string> VerifyPir(const PirProgram& program) {
  std::vector<std::string> problems;
  for (const PirStage& stage : program.stages) {
    for (std::size_t s = 0; s < stage.sets.size(); ++s) {
      const PirPatternSet& set = stage.sets[s];
      if (set.patterns.empty()) problems.push_back(stage.name + ": set S" + std::to_string(s) + " is empty");
      for (const PirPattern& p : set.patterns) {
        if (p.trees.empty()) {
          problems.push_back(stage.name + ": pattern " + p.label + " has no automaton input");
        }
      }
    }
    for (const PirRule& r : stage.rules) {
      if (r.action != "block" && r.action != "flag" && r.action != "redact") {
        problems.push_back(r.policy + ": unknown action `" + r.action + "`");
      }
      if (r.action == "redact" && stage.name == "tool_call") {
        problems.push_back(r.policy + ": redact on tool_call");
      }
      if (r.action == "redact" && r.redactions.empty()) {
        problems.push_back(r.policy + ": redact without patterns");
      }
      if (r.mode != "enforce" && r.mode != "observe") {
        problems.push_back(r.policy + ": unknown mode `" + r.mode + "`");
      }
      if ((stage.name == "output") != !r.stream_class.empty()) {
        problems.push_back(r.policy + ": stream class present off the output stage, or missing on it");
      }
      for (const PirRedaction& red : r.redactions) {
        if (red.set >= stage.sets.size() || red.slot >= stage.sets[red.set].patterns.size()) {
          problems.push_back(r.policy + ": redaction refers to a missing pattern");
        }
      }
      for (const auto& [set, slot] : r.pattern_refs) {
        if (set >= stage.sets.size() || slot >= stage.sets[set].patterns.size()) {
          problems.push_back(r.policy + ": condition refers to a missing pattern S" +
                             std::to_string(set) + "#" + std::to_string(slot));
        }
      }
    }
  }
  return problems;
}

}  // namespace kt::internal
