#include "compiler/internal/diagnostics.h"

#include <algorithm>

namespace kt::internal {
namespace {

struct CodeRow {
  const char* code;
  Severity severity;
};

constexpr CodeRow kRows[] = {
#define KT_DIAG(id, code, severity, title) {code, Severity::severity},
#include "compiler/internal/diagnostic_codes.def"
#undef KT_DIAG
};

std::size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
      // Adjacent transposition ("mesasges") counts as one edit.
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        cur[j] = std::min(cur[j], prev[j - 1]);
      }
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

Diagnostic& DiagnosticSink::Report(DiagId id, const std::string& file, Span span,
                                   std::string message, std::string help) {
  const CodeRow& row = kRows[static_cast<int>(id)];
  auto key = std::make_tuple(std::string(row.code), file, span.begin, span.end, message);
  if (!seen_.insert(key).second) {
    discarded_ = Diagnostic{};
    return discarded_;
  }
  Diagnostic d;
  d.severity = row.severity;
  d.code = row.code;
  d.message = std::move(message);
  d.file = file;
  d.span = span;
  d.help = std::move(help);
  if (d.severity == Severity::kError) ++error_count_;
  diagnostics_.push_back(std::move(d));
  return diagnostics_.back();
}

std::string SuggestName(const std::string& wrong, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = 0;
  for (const std::string& c : candidates) {
    if (c == wrong) continue;
    std::size_t d = EditDistance(wrong, c);
    // Allow roughly one edit per three characters, at least one.
    std::size_t limit = std::max<std::size_t>(1, std::max(wrong.size(), c.size()) / 3);
    if (d <= limit && d < wrong.size() && (best.empty() || d < best_distance)) {
      best = c;
      best_distance = d;
    }
  }
  if (best.empty()) return {};
  return "did you mean `" + best + "`?";
}

void SortAndCap(std::vector<Diagnostic>* diagnostics, int max_errors, int* suppressed) {
  std::stable_sort(diagnostics->begin(), diagnostics->end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     if (a.file != b.file) return a.file < b.file;
                     return a.span.begin < b.span.begin;
                   });
  *suppressed = 0;
  if (max_errors > 0 && static_cast<int>(diagnostics->size()) > max_errors) {
    *suppressed = static_cast<int>(diagnostics->size()) - max_errors;
    diagnostics->resize(max_errors);
    Diagnostic note;
    note.severity = Severity::kNote;
    note.code = "E0004";
    note.message = std::to_string(*suppressed) + " further diagnostics suppressed";
    note.help = "raise the limit with `--max-errors`";
    diagnostics->push_back(std::move(note));
  }
}

}  // namespace kt::internal

namespace kt {

const std::vector<DiagnosticCodeInfo>& DiagnosticCodes() {
  static const std::vector<DiagnosticCodeInfo> codes = {
#define KT_DIAG(id, code, severity, title) {code, Severity::severity, title},
#include "compiler/internal/diagnostic_codes.def"
#undef KT_DIAG
  };
  return codes;
}

}  // namespace kt
