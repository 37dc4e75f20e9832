// Name resolution, type checking, stage scoping and stream classification.
//
// The checker works on a `Program`: every file of one policy set plus the
// modules they import. Results live in side tables (expression types, the
// stream class of each output rule) rather than on the AST.
#ifndef KT_COMPILER_INTERNAL_CHECKER_H_
#define KT_COMPILER_INTERNAL_CHECKER_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "compiler/compiler.h"
#include "compiler/internal/ast.h"
#include "compiler/internal/diagnostics.h"
#include "compiler/internal/pir.h"
#include "compiler/internal/types.h"

namespace kt::internal {

struct Module {
  std::string path;  // as given or as resolved; the key of diagnostics
  std::string key;   // canonical identity: absolute path
  std::unique_ptr<FileAst> ast;  // null when the file failed to parse
  bool is_root = false;          // named on the command line, not only imported
  std::map<std::string, const Decl*> symbols;  // patterns and lets
  std::map<std::string, Module*> imports;      // alias -> module
  std::set<std::string> used_imports;
  std::set<const Decl*> used_symbols;
};

struct Program {
  std::vector<std::unique_ptr<Module>> modules;  // dependencies before dependents
  std::vector<Module*> roots;
};

enum class Stage { kNone, kInput, kToolCall, kOutput };

// What the checker resolved, for evaluating the checked AST directly (the
// policy test runner). Keyed by expression address; valid while the
// Program's ASTs live.
struct Resolution {
  enum class Shape { kOther, kString, kInt, kFloat, kBool, kList, kJson };
  struct TypeInfo {
    Shape shape = Shape::kOther;
    bool optional = false;
  };
  std::map<const Expr*, const Decl*> decls;  // names that denote a pattern or let
  std::map<const Expr*, std::vector<const RegexNode*>> pattern_trees;  // pattern operands
  std::map<const Expr*, TypeInfo> types;
  std::shared_ptr<const std::vector<std::unique_ptr<RegexNode>>> trees;  // owns literal trees
};

struct CheckResult {
  std::vector<PolicySummary> policies;
  std::shared_ptr<Resolution> resolution;
  // The policy IR of the root files, when the program has no errors.
  std::shared_ptr<PirProgram> pir;
  // The price table in force: by model name or glob, user prices over the
  // shipped ones.
  std::map<std::string, const PriceDecl*> prices;
};

// With `build_pir`, also lowers the root files to the policy IR (only
// `explain` and the engine need it; lint does not pay for it).
CheckResult CheckProgram(Program* program, const Options& options, DiagnosticSink* sink,
                         bool build_pir = false);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_CHECKER_H_
