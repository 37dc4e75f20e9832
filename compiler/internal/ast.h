// The .ktp abstract syntax tree.
//
// Nodes are plain data: no behaviour, no type information. Types, resolved
// symbols and stream classes live in the checker's side tables, keyed by
// `Expr::id`, so the tree stays what the user wrote (the formatter prints it
// back). Every node carries the byte span of its source text.
#ifndef KT_COMPILER_INTERNAL_AST_H_
#define KT_COMPILER_INTERNAL_AST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compiler/compiler.h"

namespace kt::internal {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kInt,
  kFloat,
  kDuration,
  kString,
  kIString,  // "literal"i: a case-insensitive literal pattern
  kRegex,
  kBool,
  kNull,
  kName,
  kCall,
  kField,
  kIndex,
  kCast,
  kNeg,
  kUnion,     // n-ary: P | Q | …
  kCoalesce,  // n-ary: a ?? b ?? …
  kCompare,
  kIn,
  kMatch,  // matches, fullmatches, contains, startswith, endswith
  kNot,
  kAnd,  // n-ary
  kOr,   // n-ary
  kQuant,
  kList,
  kObject,
  kParen,
};

struct Expr {
  ExprKind kind;
  uint32_t id = 0;  // unique within one file; keys the checker's side tables
  Span span;
  // kName: the name; kCall: the function; kField: the field; kCast: the target
  // type; kCompare/kMatch: the operator; kQuant: the bound variable;
  // literals: the decoded value (strings) or the source text (numbers).
  std::string text;
  std::string flags;  // kRegex: the flags after the closing slash
  Span text_span;  // where `text` was written (the field name, the operator…)
  int64_t int_value = 0;
  double float_value = 0;
  bool bool_value = false;  // kBool; kIn: negated (`not in`); kQuant: true = all
  std::vector<ExprPtr> children;
  std::vector<std::string> keys;  // kObject: keys, parallel to children
  std::vector<Span> key_spans;
};

struct Name {
  std::string text;
  Span span;
};

struct Import {
  Span span;
  bool is_file = false;
  std::string target;  // "std.pii" or the decoded file path
  Span target_span;
  std::string alias;  // the qualifier names use: "std.pii" or the `as` name
  Span alias_span;
};

struct PatternDecl {
  Span span;
  Name name;
  ExprPtr value;
};

struct LetDecl {
  Span span;
  Name name;
  ExprPtr value;
};

struct StringLit {
  std::string value;
  Span span;  // includes the quotes
  bool present = false;
};

struct RedactItem {
  Span span;
  ExprPtr pattern;
  StringLit replacement;
};

enum class ActionKind { kBlock, kFlag, kRedact };

struct Action {
  ActionKind kind = ActionKind::kBlock;
  Span keyword_span;
  StringLit message;
  StringLit code;
  std::vector<RedactItem> items;
};

enum class ClauseKind { kOn, kMode, kWhen, kThen };

struct PolicyClause {
  ClauseKind kind;
  Span span;
  std::vector<Name> names;  // kOn: stages; kMode: one mode
  ExprPtr condition;        // kWhen
  Action action;            // kThen
};

struct PolicyDecl {
  Span span;
  StringLit name;
  Span open_span;   // `{`
  Span close_span;  // `}`
  std::vector<PolicyClause> clauses;
};

// kAmount is a clause named by a word the checker validates: `usd 200 per
// month` (a budget's spend) or `reserve 4096` (output tokens assumed when a
// request names no maximum).
enum class LimitClauseKind { kKey, kRequests, kTokens, kWhen, kAmount };

struct LimitClause {
  LimitClauseKind kind;
  Span span;
  ExprPtr expr;  // kKey, kWhen
  int64_t amount = 0;
  Span amount_span;
  Name unit;         // empty for `reserve N`
  Name word;         // kAmount: `usd`, `reserve`
  double value = 0;  // kAmount: the number as written (integer or decimal)
  bool integral = true;
};

struct LimitDecl {
  bool budget = false;  // `budget "…"` rather than `limit "…"`
  Span span;
  StringLit name;
  Span open_span;
  Span close_span;
  std::vector<LimitClause> clauses;
};

// One rate of a `price` declaration: `input 2.50/1M` is 2.5e-6 USD a token.
struct PriceClause {
  Span span;
  Name word;  // input, output, cached_input
  std::string rate_text;
  Span rate_span;
  double usd_per_token = 0;
  bool valid = true;  // false: the rate's digits did not parse (reported)
};

struct PriceDecl {
  Span span;
  StringLit name;  // a model name or glob
  Span open_span;
  Span close_span;
  std::vector<PriceClause> clauses;
};

enum class ExpectKind { kAllow, kBlock, kRedact, kFlag, kValue };

struct TestClause {
  bool is_expect = false;
  Span span;
  // Given clauses: `input { … }`, `output "…"`, `tool_call { … }`, `headers { … }`.
  Name given;
  ExprPtr value;  // the given value, or kValue's path expression
  ExpectKind expect = ExpectKind::kAllow;
  StringLit policy;    // kBlock/kRedact/kFlag
  StringLit code;      // kBlock
  StringLit expected;  // kValue
};

struct TestDecl {
  Span span;
  StringLit name;
  Span open_span;
  Span close_span;
  std::vector<TestClause> clauses;
};

struct ProviderField {
  Name name;
  ExprPtr value;
  Span span;
};

struct ProviderDecl {
  Span span;
  Name name;
  Span open_span;
  Span close_span;
  std::vector<ProviderField> fields;
};

enum class DeclKind { kImport, kPattern, kLet, kPolicy, kLimit, kPrice, kTest, kProvider };

struct Decl {
  DeclKind kind;
  Span span;
  std::unique_ptr<Import> import;
  std::unique_ptr<PatternDecl> pattern;
  std::unique_ptr<LetDecl> let;
  std::unique_ptr<PolicyDecl> policy;
  std::unique_ptr<LimitDecl> limit;
  std::unique_ptr<PriceDecl> price;
  std::unique_ptr<TestDecl> test;
  std::unique_ptr<ProviderDecl> provider;
};

struct Comment {
  Span span;
  bool is_line = true;  // `//` rather than `/* */`
};

struct FileAst {
  std::string path;
  std::vector<Decl> decls;
  std::vector<Comment> comments;
  uint32_t node_count = 0;
};

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_AST_H_
