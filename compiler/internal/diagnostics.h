// Diagnostic construction for the compiler's passes.
//
// Every pass reports through a `DiagnosticSink`, keyed by the ids of
// diagnostic_codes.def, so a code can never be misspelt and the severity of a
// code is defined in exactly one place.
#ifndef KT_COMPILER_INTERNAL_DIAGNOSTICS_H_
#define KT_COMPILER_INTERNAL_DIAGNOSTICS_H_

#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "compiler/compiler.h"

namespace kt::internal {

enum class DiagId {
#define KT_DIAG(id, code, severity, title) id,
#include "compiler/internal/diagnostic_codes.def"
#undef KT_DIAG
};

class DiagnosticSink {
 public:
  // Records a diagnostic unless an identical one (code, file, span, message)
  // was already recorded; a policy checked for two stages reports once.
  Diagnostic& Report(DiagId id, const std::string& file, Span span, std::string message,
                     std::string help = {});
  bool HasErrors() const { return error_count_ > 0; }
  int error_count() const { return error_count_; }
  std::vector<Diagnostic>& diagnostics() { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
  std::set<std::tuple<std::string, std::string, uint32_t, uint32_t, std::string>> seen_;
  Diagnostic discarded_;
  int error_count_ = 0;
};

// Formats "did you mean `x`?" for the closest candidate within a small edit
// distance, or returns an empty string.
std::string SuggestName(const std::string& wrong, const std::vector<std::string>& candidates);

// Sorts by file then offset, and caps the number of diagnostics, appending one
// E0004 note that says how many were left out.
void SortAndCap(std::vector<Diagnostic>* diagnostics, int max_errors, int* suppressed);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_DIAGNOSTICS_H_
