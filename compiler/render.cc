// Diagnostic renderers: human text, JSON and SARIF 2.1.0.
#include <nlohmann/json.hpp>

#include "compiler/compiler.h"

namespace kt {
namespace {

const char* SeverityName(Severity s) {
  switch (s) {
    case Severity::kError:
      return "error";
    case Severity::kWarning:
      return "warning";
    case Severity::kNote:
      return "note";
  }
  return "error";
}

std::size_t CodePoints(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

std::string Location(const SourceMap& sources, const std::string& file, Span span) {
  const SourceMap::File* f = sources.Find(file);
  if (f == nullptr) return file;
  SourceMap::Position p = SourceMap::PositionOf(*f, span.begin);
  return file + ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
}

// Appends the source line of `span` and a caret line under it.
void AppendSnippet(const SourceMap::File& f, Span span, bool color, std::string* out) {
  SourceMap::Position p = SourceMap::PositionOf(f, span.begin);
  std::string_view line = SourceMap::LineText(f, p.line);
  std::string number = std::to_string(p.line);
  std::string gutter(number.size(), ' ');
  uint32_t line_start = f.line_starts[p.line - 1];
  uint32_t col_bytes = span.begin - line_start;
  uint32_t end = std::min<uint32_t>(span.end, line_start + static_cast<uint32_t>(line.size()));
  std::size_t width = end > span.begin ? CodePoints(line.substr(col_bytes, end - span.begin)) : 1;
  if (width == 0) width = 1;
  std::string pad;
  for (char c : line.substr(0, std::min<std::size_t>(col_bytes, line.size()))) {
    if ((static_cast<unsigned char>(c) & 0xC0) == 0x80) continue;
    pad += c == '\t' ? '\t' : ' ';
  }
  *out += " " + number + " | " + std::string(line) + "\n";
  *out += " " + gutter + " | " + pad + (color ? "\x1b[1;31m" : "") + std::string(width, '^') +
          (color ? "\x1b[0m" : "") + "\n";
}

nlohmann::json JsonPosition(const SourceMap& sources, const std::string& file, uint32_t offset) {
  const SourceMap::File* f = sources.Find(file);
  if (f == nullptr) return {{"line", 1}, {"column", 1}};
  SourceMap::Position p = SourceMap::PositionOf(*f, offset);
  return {{"line", p.line}, {"column", p.column}};
}

}  // namespace

std::string RenderText(const std::vector<Diagnostic>& diagnostics, const SourceMap& sources,
                       bool color) {
  std::string out;
  for (const Diagnostic& d : diagnostics) {
    std::string where = d.file.empty() ? "kt" : Location(sources, d.file, d.span);
    std::string sev = SeverityName(d.severity);
    if (color) {
      const char* c = d.severity == Severity::kError     ? "\x1b[1;31m"
                      : d.severity == Severity::kWarning ? "\x1b[1;33m"
                                                         : "\x1b[1;36m";
      sev = std::string(c) + sev;
    }
    out += where + ": " + sev + "[" + d.code + "]" + (color ? "\x1b[0m" : "") + ": " +
           d.message + "\n";
    if (const SourceMap::File* f = sources.Find(d.file); f != nullptr && !f->text.empty()) {
      AppendSnippet(*f, d.span, color, &out);
    }
    for (const Label& l : d.labels) {
      out += "  note: " + l.message + " at " + Location(sources, l.file, l.span) + "\n";
    }
    if (!d.help.empty()) out += "  help: " + d.help + "\n";
  }
  return out;
}

std::string RenderJson(const LintResult& result, const SourceMap& sources) {
  nlohmann::json diags = nlohmann::json::array();
  for (const Diagnostic& d : result.diagnostics) {
    nlohmann::json labels = nlohmann::json::array();
    for (const Label& l : d.labels) {
      labels.push_back({{"file", l.file},
                        {"span", {{"start", l.span.begin}, {"end", l.span.end}}},
                        {"start", JsonPosition(sources, l.file, l.span.begin)},
                        {"message", l.message}});
    }
    diags.push_back({{"severity", SeverityName(d.severity)},
                     {"code", d.code},
                     {"message", d.message},
                     {"file", d.file},
                     {"span", {{"start", d.span.begin}, {"end", d.span.end}}},
                     {"start", JsonPosition(sources, d.file, d.span.begin)},
                     {"end", JsonPosition(sources, d.file, d.span.end)},
                     {"labels", labels},
                     {"help", d.help}});
  }
  nlohmann::json out = {{"files", result.files},
                        {"diagnostics", diags},
                        {"errors", result.error_count},
                        {"warnings", result.warning_count}};
  return out.dump(2) + "\n";
}

std::string RenderSarif(const LintResult& result, const SourceMap& sources) {
  nlohmann::json rules = nlohmann::json::array();
  for (const DiagnosticCodeInfo& c : DiagnosticCodes()) {
    rules.push_back({{"id", std::string(c.code)},
                     {"shortDescription", {{"text", std::string(c.title)}}},
                     {"helpUri", "docs/diagnostics.md#" + std::string(c.code)},
                     {"defaultConfiguration", {{"level", SeverityName(c.severity)}}}});
  }
  nlohmann::json results = nlohmann::json::array();
  auto region = [&](const std::string& file, Span span) {
    nlohmann::json start = JsonPosition(sources, file, span.begin);
    nlohmann::json end = JsonPosition(sources, file, std::max(span.end, span.begin));
    return nlohmann::json{{"startLine", start["line"]},
                          {"startColumn", start["column"]},
                          {"endLine", end["line"]},
                          {"endColumn", end["column"]},
                          {"byteOffset", span.begin},
                          {"byteLength", span.end - std::min(span.end, span.begin)}};
  };
  for (const Diagnostic& d : result.diagnostics) {
    std::string text = d.message;
    if (!d.help.empty()) text += "\nhelp: " + d.help;
    nlohmann::json r = {
        {"ruleId", d.code},
        {"level", SeverityName(d.severity)},
        {"message", {{"text", text}}},
        {"locations",
         {{{"physicalLocation",
            {{"artifactLocation", {{"uri", d.file}}}, {"region", region(d.file, d.span)}}}}}}};
    if (!d.labels.empty()) {
      nlohmann::json related = nlohmann::json::array();
      int id = 0;
      for (const Label& l : d.labels) {
        related.push_back({{"id", id++},
                           {"message", {{"text", l.message}}},
                           {"physicalLocation",
                            {{"artifactLocation", {{"uri", l.file}}},
                             {"region", region(l.file, l.span)}}}});
      }
      r["relatedLocations"] = related;
    }
    results.push_back(std::move(r));
  }
  nlohmann::json log = {
      {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
      {"version", "2.1.0"},
      {"runs",
       {{{"tool",
          {{"driver",
            {{"name", "kt"},
             {"version", std::string(Version())},
             {"informationUri", "docs/diagnostics.md"},
             {"rules", rules}}}}},
         {"results", results}}}}};
  return log.dump(2) + "\n";
}

}  // namespace kt
