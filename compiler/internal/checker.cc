// The checker: one pass per module, in dependency order.
//
// For each module it (1) collects declarations and reports duplicates,
// (2) checks pattern and let declarations, lazily and with cycle detection,
// (3) checks policies once per stage they run on, so a name that exists on
// one stage but not another is reported precisely, (4) checks limits, tests
// and providers, and finally (5) reports unused imports and declarations.
// Every expression's type is memoised in `types_`, keyed by node address.
#include "compiler/internal/checker.h"

#include <algorithm>
#include <filesystem>
#include <functional>

#include "compiler/internal/automata.h"
#include "compiler/internal/automata_cache.h"
#include "compiler/internal/regex.h"

namespace kt::internal {
namespace {

enum class BuiltinId {
#define KT_BUILTIN(id, name, min_args, max_args, sig, doc) id,
#include "compiler/internal/builtins.def"
#undef KT_BUILTIN
};

struct BuiltinInfo {
  BuiltinId id;
  const char* name;
  int min_args;
  int max_args;
  const char* signature;
};

constexpr BuiltinInfo kBuiltins[] = {
#define KT_BUILTIN(id, name, min_args, max_args, sig, doc) \
  {BuiltinId::id, name, min_args, max_args, sig},
#include "compiler/internal/builtins.def"
#undef KT_BUILTIN
};

const BuiltinInfo* FindBuiltin(const std::string& name) {
  for (const BuiltinInfo& b : kBuiltins) {
    if (name == b.name) return &b;
  }
  return nullptr;
}

const char* StageName(Stage s) {
  switch (s) {
    case Stage::kInput:
      return "input";
    case Stage::kToolCall:
      return "tool_call";
    case Stage::kOutput:
      return "output";
    case Stage::kNone:
      break;
  }
  return "none";
}

// Where an expression is being checked.
enum class Context { kPolicy, kLimit, kConstant, kProvider, kTestPath };

struct Env {
  Stage stage = Stage::kNone;
  Context context = Context::kConstant;
  std::vector<std::pair<std::string, const Type*>> locals;
};

class Checker {
 public:
  Checker(Program* program, const Options& options, DiagnosticSink* sink, bool build_pir)
      : program_(program), options_(options), sink_(sink), build_pir_(build_pir) {}

  CheckResult Run();

 private:
  using Kind = Type::Kind;

  // --- declarations -------------------------------------------------------
  void CollectSymbols(Module* m);
  void CheckModule(Module* m);
  const Type* DeclType(Module* m, const Decl* d);
  void CheckPolicy(Module* m, const PolicyDecl& p);
  void CheckLimit(Module* m, const LimitDecl& l);
  void CheckLimitExpr(Module* m, const LimitClause& c);
  void CheckCountClause(Module* m, const LimitDecl& l, const LimitClause& c);
  void CheckWindowUnit(Module* m, const LimitDecl& l, const Name& unit);
  void CheckAmountClause(Module* m, const LimitDecl& l, const LimitClause& c);
  void CheckPrice(Module* m, const PriceDecl& p);
  bool IsStdlibModule(const Module& m) const;
  void CheckBudgetsPriced();
  void CheckTest(Module* m, const TestDecl& t);
  void CheckProvider(Module* m, const ProviderDecl& p);
  void CheckProviderApis(Module* m, const Expr& v);
  void CheckTestExpectations();
  void ReportUnused(Module* m);

  // --- expressions --------------------------------------------------------
  const Type* Check(Module* m, const Expr& e, Env* env);
  const Type* CheckName(Module* m, const Expr& e, Env* env);
  const Type* CheckField(Module* m, const Expr& e, Env* env);
  const Type* CheckCall(Module* m, const Expr& e, Env* env);
  const Type* CheckPatternOperand(Module* m, const Expr& e, Env* env);
  void CheckRegexLiteral(Module* m, const Expr& e);
  bool QualifiedMember(Module* m, const Expr& e, Env* env, const Type** out);
  bool IsConstant(Module* m, const Expr& e, const Env& env) const;
  bool RootAvailable(const std::string& name, Stage stage, const Type** type,
                     std::string* stages);
  std::vector<std::string> NameCandidates(Module* m, const Env& env) const;
  void CheckObjectAgainst(Module* m, const Expr& obj, const RecordType& record,
                          const std::vector<std::string>& required);
  void CheckValueAgainst(Module* m, const Expr& value, const Type* type);
  bool IsMonotone(const Expr& e) const;
  bool ReferencesOutput(const Expr& e) const;

  // --- helpers ------------------------------------------------------------
  Diagnostic& Report(Module* m, DiagId id, Span span, std::string message,
                     std::string help = {}) {
    return sink_->Report(id, m->path, span, std::move(message), std::move(help));
  }
  static bool IsNumeric(const Type* t) {
    return t->kind == Kind::kInt || t->kind == Kind::kFloat;
  }
  static bool IsError(const Type* t) { return t->kind == Kind::kError; }
  bool Compatible(const Type* a, const Type* b) const;
  const Type* Unify(const Type* a, const Type* b);

  Program* program_;
  const Options& options_;
  DiagnosticSink* sink_;
  bool build_pir_;
  Types types_;
  std::map<const Expr*, const Type*> expr_types_;
  std::map<const Decl*, const Type*> decl_types_;
  std::set<const Decl*> in_progress_;
  std::map<const Expr*, bool> monotone_;
  CheckResult result_;

  // Pattern trees: owned per literal expression, and per pattern declaration
  // the list of trees its union denotes. Names resolve through `resolved_`.
  std::map<const Expr*, RegexNode*> literal_trees_;  // owned by tree_store_
  std::shared_ptr<std::vector<std::unique_ptr<RegexNode>>> tree_store_ =
      std::make_shared<std::vector<std::unique_ptr<RegexNode>>>();
  std::shared_ptr<Resolution> resolution_ = std::make_shared<Resolution>();
  std::map<const Decl*, std::vector<const RegexNode*>> decl_trees_;
  std::map<const Expr*, std::pair<Module*, const Decl*>> resolved_;
  void CollectTrees(Module* m, const Expr& e, std::vector<const RegexNode*>* out);

  // --- PIR ----------------------------------------------------------------
  std::shared_ptr<PirProgram> BuildPir();
  struct PirContext {
    Module* module;
    PirStage* stage;
    std::vector<std::pair<std::string, std::string>> vars;  // quantifier var -> list path
    std::vector<std::pair<uint32_t, uint32_t>> refs;        // patterns the condition uses
  };
  std::string PirExpr(const Expr& e, PirContext* ctx);
  std::string PirPath(const Expr& e, PirContext* ctx);
  std::string PirPatternRef(const Expr& pattern, const std::string& subject, PirContext* ctx,
                            uint32_t* set_out = nullptr, uint32_t* slot_out = nullptr);
  std::string PatternLabel(const Expr& e) const;
  void CompileCheck(Module* m, Span span, const std::string& what,
                    const std::vector<const RegexNode*>& trees);

  struct PolicyRef {
    Module* module;
    const PolicyDecl* decl;
  };
  std::map<std::string, PolicyRef> policies_;
  std::map<std::string, std::pair<Module*, Span>> limits_;
  struct PriceRef {
    Module* module;
    Span span;
    bool shipped;  // from the stdlib: a default that others override
    const PriceDecl* decl;
  };
  std::map<std::string, PriceRef> prices_;
  struct UsdBudget {
    Module* module;
    Span span;
    std::string name;
  };
  std::vector<UsdBudget> usd_budgets_;
  std::map<std::string, std::pair<Module*, Span>> providers_;
  struct PendingExpectation {
    Module* module;
    const TestClause* clause;
  };
  std::vector<PendingExpectation> expectations_;
};

// ------------------------------------------------------------------------
// Declarations

void Checker::CollectSymbols(Module* m) {
  std::map<std::string, Span> tests;
  for (const Decl& d : m->ast->decls) {
    const Name* name = nullptr;
    if (d.kind == DeclKind::kPattern) name = &d.pattern->name;
    if (d.kind == DeclKind::kLet) name = &d.let->name;
    if (name != nullptr) {
      auto [it, inserted] = m->symbols.emplace(name->text, &d);
      if (!inserted) {
        const Decl* first = it->second;
        Span first_span =
            first->kind == DeclKind::kPattern ? first->pattern->name.span : first->let->name.span;
        Report(m, DiagId::kDuplicateName, name->span, "`" + name->text + "` is declared twice",
               "rename one of the declarations")
            .labels.push_back(Label{m->path, first_span, "first declared here"});
      }
      if (FindBuiltin(name->text) != nullptr || name->text == "input" || name->text == "output" ||
          name->text == "tool") {
        Report(m, DiagId::kDuplicateName, name->span,
               "`" + name->text + "` is a built-in name and cannot be redeclared");
      }
    }
    if (d.kind == DeclKind::kTest) {
      auto [it, inserted] = tests.emplace(d.test->name.value, d.test->name.span);
      if (!inserted) {
        Report(m, DiagId::kDuplicateName, d.test->name.span,
               "test `" + d.test->name.value + "` is declared twice in this file")
            .labels.push_back(Label{m->path, it->second, "first declared here"});
      }
    }
  }
}

const Type* Checker::DeclType(Module* m, const Decl* d) {
  if (auto it = decl_types_.find(d); it != decl_types_.end()) return it->second;
  if (in_progress_.count(d)) {
    const Name& n = d->kind == DeclKind::kPattern ? d->pattern->name : d->let->name;
    Report(m, DiagId::kNotConstant, n.span, "`" + n.text + "` is defined in terms of itself");
    return types_.error();
  }
  in_progress_.insert(d);
  Env env;
  env.context = Context::kConstant;
  const Type* t = types_.error();
  if (d->kind == DeclKind::kPattern) {
    const Expr& value = *d->pattern->value;
    t = CheckPatternOperand(m, value, &env);
    if (!IsError(t)) {
      t = types_.pattern();
      std::vector<const RegexNode*> trees;
      CollectTrees(m, value, &trees);
      decl_trees_[d] = trees;
      CompileCheck(m, d->pattern->name.span, "pattern `" + d->pattern->name.text + "`", trees);
    }
  } else {
    const Expr& value = *d->let->value;
    t = Check(m, value, &env);
    if (!IsError(t) && !IsConstant(m, value, env)) {
      Report(m, DiagId::kNotConstant, value.span,
             "the value of `" + d->let->name.text + "` is not constant",
             "`let` names a constant; use the expression directly in the policy");
      t = types_.error();
    }
  }
  in_progress_.erase(d);
  decl_types_[d] = t;
  return t;
}

void Checker::CheckModule(Module* m) {
  CollectSymbols(m);
  for (const Decl& d : m->ast->decls) {
    switch (d.kind) {
      case DeclKind::kImport:
        break;
      case DeclKind::kPattern:
      case DeclKind::kLet:
        DeclType(m, &d);
        break;
      case DeclKind::kPolicy:
        CheckPolicy(m, *d.policy);
        break;
      case DeclKind::kLimit:
        CheckLimit(m, *d.limit);
        break;
      case DeclKind::kPrice:
        CheckPrice(m, *d.price);
        break;
      case DeclKind::kTest:
        CheckTest(m, *d.test);
        break;
      case DeclKind::kProvider:
        CheckProvider(m, *d.provider);
        break;
    }
  }
}

void Checker::CheckPolicy(Module* m, const PolicyDecl& p) {
  const std::string& name = p.name.value;
  if (name.empty()) {
    Report(m, DiagId::kMissingClause, p.name.span, "policy name is empty");
  }
  auto [it, inserted] = policies_.emplace(name, PolicyRef{m, &p});
  if (!inserted) {
    Report(m, DiagId::kDuplicateName, p.name.span, "policy `" + name + "` is declared twice",
           "policy names identify decisions in the audit trail; make them unique")
        .labels.push_back(
            Label{it->second.module->path, it->second.decl->name.span, "first declared here"});
  }

  const PolicyClause* on = nullptr;
  const PolicyClause* mode = nullptr;
  const PolicyClause* when = nullptr;
  const PolicyClause* then = nullptr;
  for (const PolicyClause& c : p.clauses) {
    const PolicyClause** slot = c.kind == ClauseKind::kOn     ? &on
                                : c.kind == ClauseKind::kMode ? &mode
                                : c.kind == ClauseKind::kWhen ? &when
                                                              : &then;
    if (*slot != nullptr) {
      static const char* kNames[] = {"on", "mode", "when", "then"};
      Report(m, DiagId::kDuplicateClause, c.span,
             std::string("`") + kNames[static_cast<int>(c.kind)] + "` clause given twice",
             c.kind == ClauseKind::kWhen ? "combine the conditions with `and`"
                                         : "keep one of the clauses")
          .labels.push_back(Label{m->path, (*slot)->span, "first given here"});
      continue;
    }
    *slot = &c;
  }

  PolicySummary summary;
  summary.name = name;
  summary.file = m->path;
  summary.span = p.span;
  summary.mode = "enforce";

  std::vector<Stage> stages;
  if (on == nullptr) {
    Report(m, DiagId::kMissingClause, p.name.span, "policy `" + name + "` has no `on` clause",
           "add `on input`, `on tool_call` or `on output`");
  } else {
    static const std::vector<std::string> kStages = {"input", "tool_call", "output"};
    for (const Name& s : on->names) {
      Stage st = s.text == "input"       ? Stage::kInput
                 : s.text == "tool_call" ? Stage::kToolCall
                 : s.text == "output"    ? Stage::kOutput
                                         : Stage::kNone;
      if (st == Stage::kNone) {
        std::string help = SuggestName(s.text, kStages);
        if (help.empty()) help = "stages are `input`, `tool_call` and `output`";
        Report(m, DiagId::kUnknownStage, s.span, "unknown stage `" + s.text + "`", help);
        continue;
      }
      if (std::find(stages.begin(), stages.end(), st) != stages.end()) {
        Report(m, DiagId::kDuplicateClause, s.span, "stage `" + s.text + "` is listed twice");
        continue;
      }
      stages.push_back(st);
      summary.stages.push_back(s.text);
    }
  }
  if (mode != nullptr) {
    const Name& mname = mode->names[0];
    if (mname.text != "enforce" && mname.text != "observe") {
      std::string help = SuggestName(mname.text, {"enforce", "observe"});
      if (help.empty()) help = "modes are `enforce` and `observe`";
      Report(m, DiagId::kUnknownMode, mname.span, "unknown mode `" + mname.text + "`", help);
    } else {
      summary.mode = mname.text;
    }
  }
  if (then == nullptr) {
    Report(m, DiagId::kMissingClause, p.name.span, "policy `" + name + "` has no `then` clause",
           "add `then block \"message\"`, `then redact PATTERN with \"…\"` or `then flag`");
  }

  // With no valid stage, still check the body once with every name in
  // scope, so its other mistakes are reported in the same run.
  std::vector<Stage> check_stages = stages;
  if (check_stages.empty()) check_stages.push_back(Stage::kNone);
  for (Stage st : check_stages) {
    Env env;
    env.stage = st;
    env.context = Context::kPolicy;
    if (when != nullptr) {
      const Type* t = Check(m, *when->condition, &env);
      if (!IsError(t) && t->kind != Kind::kBool) {
        Report(m, DiagId::kTypeMismatch, when->condition->span,
               "condition must be `bool`, found `" + Types::Name(t) + "`");
      }
    }
    if (then != nullptr) {
      const Action& a = then->action;
      if (a.kind == ActionKind::kRedact && st == Stage::kToolCall) {
        Report(m, DiagId::kActionNotOnStage, a.keyword_span,
               "`redact` is not available on stage `tool_call`",
               "tool calls are blocked or flagged, never rewritten; use `block`");
      }
      for (const RedactItem& item : a.items) {
        CheckPatternOperand(m, *item.pattern, &env);
      }
    }
  }
  if (then != nullptr) {
    summary.action = then->action.kind == ActionKind::kBlock   ? "block"
                     : then->action.kind == ActionKind::kFlag ? "flag"
                                                               : "redact";
  }
  if (when != nullptr && when->condition->kind == ExprKind::kBool &&
      !when->condition->bool_value) {
    Report(m, DiagId::kNeverFires, when->condition->span,
           "policy `" + name + "` can never fire: its condition is `false`",
           "delete the policy, or set `mode observe` to keep it recorded");
  }
  if (std::find(stages.begin(), stages.end(), Stage::kOutput) != stages.end()) {
    bool monotone = when == nullptr || IsMonotone(*when->condition);
    summary.output_class = monotone ? "monotone" : "final-only";
  }
  result_.policies.push_back(std::move(summary));
}

void Checker::CheckLimit(Module* m, const LimitDecl& l) {
  const std::string what = std::string(l.budget ? "budget" : "limit") + " `" + l.name.value + "`";
  // Limits and budgets share one namespace: audit records, 429s and
  // `kt limits show` name a counter by it.
  auto [it, inserted] = limits_.emplace(l.name.value, std::make_pair(m, l.name.span));
  if (!inserted) {
    Report(m, DiagId::kDuplicateName, l.name.span, what + " is declared twice")
        .labels.push_back(Label{it->second.first->path, it->second.second, "first declared here"});
  }
  std::map<std::string, const LimitClause*> seen;
  for (const LimitClause& c : l.clauses) {
    std::string clause_key = c.kind == LimitClauseKind::kAmount ? "amount:" + c.word.text
                                                                 : std::to_string(int(c.kind));
    auto [sit, fresh] = seen.emplace(clause_key, &c);
    if (!fresh) {
      Report(m, DiagId::kDuplicateClause, c.span, "clause given twice in " + what)
          .labels.push_back(Label{m->path, sit->second->span, "first given here"});
      continue;
    }
    if (c.kind == LimitClauseKind::kKey || c.kind == LimitClauseKind::kWhen) {
      CheckLimitExpr(m, c);
    } else if (c.kind == LimitClauseKind::kAmount) {
      CheckAmountClause(m, l, c);
    } else {
      CheckCountClause(m, l, c);
    }
  }
  auto has = [&](const char* k) { return seen.count(k) > 0; };
  const std::string requests = std::to_string(int(LimitClauseKind::kRequests));
  const std::string tokens = std::to_string(int(LimitClauseKind::kTokens));
  if (l.budget && !has("amount:usd") && !seen.count(tokens)) {
    Report(m, DiagId::kMissingClause, l.name.span, what + " has neither `usd` nor `tokens`",
           "add `usd 200 per month`");
  } else if (!l.budget && !seen.count(requests) && !seen.count(tokens)) {
    Report(m, DiagId::kMissingClause, l.name.span, what + " has neither `requests` nor `tokens`",
           "add `requests N per minute`");
  }
  if (l.budget && has("amount:usd")) usd_budgets_.push_back({m, l.name.span, l.name.value});
  if (l.budget && has("amount:usd") && seen.count(tokens)) {
    const LimitClause& usd = *seen["amount:usd"];
    const LimitClause& tok = *seen[tokens];
    if (!usd.unit.text.empty() && usd.unit.text != tok.unit.text) {
      Report(m, DiagId::kBadLimit, tok.unit.span,
             what + " counts `usd` per " + usd.unit.text + " but `tokens` per " + tok.unit.text,
             "a budget has one period; declare a second budget for the other");
    }
  }
}

void Checker::CheckLimitExpr(Module* m, const LimitClause& c) {
  Env env;
  env.stage = Stage::kInput;
  env.context = Context::kLimit;
  const Type* t = Check(m, *c.expr, &env);
  if (IsError(t)) return;
  if (c.kind == LimitClauseKind::kKey && t->kind != Kind::kString) {
    Report(m, DiagId::kTypeMismatch, c.expr->span,
           "limit key must be `string`, found `" + Types::Name(t) + "`",
           t->kind == Kind::kOptional ? "give a default: `header(\"…\") ?? \"anonymous\"`" : "");
  } else if (c.kind == LimitClauseKind::kWhen && t->kind != Kind::kBool) {
    Report(m, DiagId::kTypeMismatch, c.expr->span,
           "condition must be `bool`, found `" + Types::Name(t) + "`");
  }
}

// `requests N per UNIT` and `tokens N per UNIT`. A limit's window slides;
// a budget's period is a calendar one (UTC), so it also takes week and month.
void Checker::CheckCountClause(Module* m, const LimitDecl& l, const LimitClause& c) {
  if (l.budget && c.kind == LimitClauseKind::kRequests) {
    Report(m, DiagId::kBadLimit, c.span, "a budget counts spend and tokens, not requests",
           "count requests with `limit \"" + l.name.value + "\" { requests … }`");
    return;
  }
  if (c.amount <= 0) {
    Report(m, DiagId::kBadLimit, c.amount_span, "a limit must allow at least 1 per window");
  }
  CheckWindowUnit(m, l, c.unit);
}

void Checker::CheckWindowUnit(Module* m, const LimitDecl& l, const Name& unit_name) {
  static const std::vector<std::string> kWindows = {"second", "minute", "hour", "day"};
  static const std::vector<std::string> kPeriods = {"minute", "hour", "day", "week", "month"};
  const std::vector<std::string>& units = l.budget ? kPeriods : kWindows;
  const std::string& unit = unit_name.text;
  if (std::find(units.begin(), units.end(), unit) != units.end()) return;
  std::string help = SuggestName(unit, units);
  if (!unit.empty() && unit.back() == 's' &&
      std::find(units.begin(), units.end(), unit.substr(0, unit.size() - 1)) != units.end()) {
    help = "write the unit in the singular: `per " + unit.substr(0, unit.size() - 1) + "`";
  }
  if (help.empty() && !l.budget && (unit == "week" || unit == "month")) {
    help = "a `limit` window slides and is at most a day; a `budget` counts per week or month";
  }
  if (help.empty()) {
    help = l.budget ? "periods are `minute`, `hour`, `day`, `week` and `month`"
                    : "windows are `second`, `minute`, `hour` and `day`";
  }
  Report(m, DiagId::kBadLimit, unit_name.span,
         std::string("unknown ") + (l.budget ? "budget period" : "time window") + " `" + unit + "`",
         help);
}

// `usd 200 per month` (a budget's spend) and `reserve 4096` (the output
// tokens a budget reserves for a request that names no maximum).
void Checker::CheckAmountClause(Module* m, const LimitDecl& l, const LimitClause& c) {
  static const std::vector<std::string> kWords = {"usd", "reserve"};
  const std::string& word = c.word.text;
  if (std::find(kWords.begin(), kWords.end(), word) == kWords.end()) {
    std::string help = SuggestName(word, kWords);
    Report(m, DiagId::kBadLimit, c.word.span, "unknown clause `" + word + "`",
           help.empty() ? "clauses are `key`, `when`, `requests`, `tokens`, `usd` and `reserve`"
                        : help);
    return;
  }
  if (!l.budget) {
    Report(m, DiagId::kBadLimit, c.word.span, "`" + word + "` belongs to a budget",
           "spend is counted by `budget \"" + l.name.value + "\" { usd 200 per month }`");
    return;
  }
  if (c.value <= 0) {
    Report(m, DiagId::kBadLimit, c.amount_span, "`" + word + "` must be greater than 0");
  }
  if (word == "usd") {
    if (c.unit.text.empty()) {
      Report(m, DiagId::kBadLimit, c.span, "`usd` needs a period", "write `usd 200 per month`");
    } else {
      CheckWindowUnit(m, l, c.unit);
    }
    return;
  }
  if (!c.integral || !c.unit.text.empty()) {
    Report(m, DiagId::kBadLimit, c.span, "`reserve` takes a whole number of output tokens",
           "write `reserve 4096`");
  }
}

// `price "model" { input 2.50/1M  output 10.00/1M  cached_input 1.25/1M }`.
// A price in the shipped table (the stdlib) is a default: a price of the
// same name anywhere else overrides it.
void Checker::CheckPrice(Module* m, const PriceDecl& p) {
  const bool shipped = IsStdlibModule(*m);
  auto it = prices_.find(p.name.value);
  if (it != prices_.end() && !shipped && !it->second.shipped) {
    Report(m, DiagId::kDuplicateName, p.name.span, "price `" + p.name.value + "` is declared twice")
        .labels.push_back(Label{it->second.module->path, it->second.span, "first declared here"});
  } else if (it == prices_.end() || !shipped) {
    prices_[p.name.value] = PriceRef{m, p.name.span, shipped, &p};
  }
  static const std::vector<std::string> kWords = {"input", "output", "cached_input"};
  std::map<std::string, const PriceClause*> seen;
  for (const PriceClause& c : p.clauses) {
    if (std::find(kWords.begin(), kWords.end(), c.word.text) == kWords.end()) {
      std::string help = SuggestName(c.word.text, kWords);
      Report(m, DiagId::kBadLimit, c.word.span, "unknown price `" + c.word.text + "`",
             help.empty() ? "prices are `input`, `output` and `cached_input`" : help);
      continue;
    }
    auto [sit, fresh] = seen.emplace(c.word.text, &c);
    if (!fresh) {
      Report(m, DiagId::kDuplicateClause, c.span,
             "`" + c.word.text + "` given twice in price `" + p.name.value + "`")
          .labels.push_back(Label{m->path, sit->second->span, "first given here"});
    }
  }
  for (const char* need : {"input", "output"}) {
    if (!seen.count(need)) {
      Report(m, DiagId::kMissingClause, p.name.span,
             "price `" + p.name.value + "` has no `" + need + "` price",
             std::string("add `") + need + " 2.50/1M`");
    }
  }
}

bool Checker::IsStdlibModule(const Module& m) const {
  std::error_code ec;
  for (const std::string& root : options_.stdlib_paths) {
    std::string r = std::filesystem::weakly_canonical(root, ec).string();
    if (!r.empty() && m.key.rfind(r + "/", 0) == 0) return true;
  }
  return false;
}

// Spend needs prices: a USD budget in a program without any `price` could
// never count a request, so it is an error rather than a silent pass.
void Checker::CheckBudgetsPriced() {
  if (!prices_.empty()) return;
  for (const UsdBudget& b : usd_budgets_) {
    Report(b.module, DiagId::kMissingClause, b.span,
           "budget `" + b.name + "` counts `usd`, but no `price` is declared",
           "`import std.prices` for the shipped table, or declare `price \"model\" { … }`");
  }
}

void Checker::CheckValueAgainst(Module* m, const Expr& value, const Type* type) {
  if (type->kind == Kind::kOptional) {
    if (value.kind == ExprKind::kNull) return;
    type = type->elem;
  }
  if (type->kind == Kind::kJson) return;  // any literal is valid json
  if (type->kind == Kind::kRecord) {
    if (value.kind != ExprKind::kObject) {
      Report(m, DiagId::kTypeMismatch, value.span,
             "expected a `" + type->record->name + "` object `{ … }`");
      return;
    }
    std::vector<std::string> required;
    if (type->record == &types_.message()) required = {"role", "content"};
    if (type->record == &types_.tool_def()) required = {"name"};
    CheckObjectAgainst(m, value, *type->record, required);
    return;
  }
  if (type->kind == Kind::kList) {
    if (value.kind != ExprKind::kList) {
      Report(m, DiagId::kTypeMismatch, value.span,
             "expected a list `[ … ]` of `" + Types::Name(type->elem) + "`");
      return;
    }
    for (const ExprPtr& item : value.children) CheckValueAgainst(m, *item, type->elem);
    return;
  }
  Env env;
  const Type* actual = Check(m, value, &env);
  if (!IsError(actual) && !Compatible(type, actual)) {
    Report(m, DiagId::kTypeMismatch, value.span,
           "expected `" + Types::Name(type) + "`, found `" + Types::Name(actual) + "`");
  }
}

void Checker::CheckObjectAgainst(Module* m, const Expr& obj, const RecordType& record,
                                 const std::vector<std::string>& required) {
  std::set<std::string> present;
  for (std::size_t i = 0; i < obj.keys.size(); ++i) {
    const std::string& key = obj.keys[i];
    if (!present.insert(key).second) {
      Report(m, DiagId::kDuplicateClause, obj.key_spans[i], "field `" + key + "` given twice");
      continue;
    }
    const RecordField* f = record.Find(key);
    if (f == nullptr) {
      Report(m, DiagId::kUnknownField, obj.key_spans[i],
             "`" + record.name + "` has no field `" + key + "`",
             SuggestName(key, record.FieldNames()));
      continue;
    }
    CheckValueAgainst(m, *obj.children[i], f->type);
  }
  for (const std::string& r : required) {
    if (!present.count(r)) {
      Report(m, DiagId::kBadTest, obj.span,
             "`" + record.name + "` object is missing the field `" + r + "`");
    }
  }
}

void Checker::CheckTest(Module* m, const TestDecl& t) {
  static const std::vector<std::string> kGivens = {"input", "output", "tool_call", "headers"};
  bool has_stage = false;
  bool has_expect = false;
  std::map<std::string, const TestClause*> seen;
  for (const TestClause& c : t.clauses) {
    if (c.is_expect) {
      has_expect = true;
      expectations_.push_back(PendingExpectation{m, &c});
      continue;
    }
    const std::string& g = c.given.text;
    if (std::find(kGivens.begin(), kGivens.end(), g) == kGivens.end()) {
      std::string help = SuggestName(g, kGivens);
      if (help.empty()) help = "a test gives `input`, `output`, `tool_call` or `headers`";
      Report(m, DiagId::kBadTest, c.given.span, "unknown test clause `" + g + "`", help);
      continue;
    }
    auto [it, fresh] = seen.emplace(g, &c);
    if (!fresh) {
      Report(m, DiagId::kDuplicateClause, c.span, "`" + g + "` given twice in this test")
          .labels.push_back(Label{m->path, it->second->span, "first given here"});
      continue;
    }
    const Expr& v = *c.value;
    if (g == "input") {
      has_stage = true;
      if (v.kind != ExprKind::kObject) {
        Report(m, DiagId::kBadTest, v.span, "`input` takes a request object `{ messages: [...] }`");
      } else {
        CheckObjectAgainst(m, v, types_.request(), {"messages"});
      }
    } else if (g == "output") {
      has_stage = true;
      if (v.kind == ExprKind::kObject) {
        CheckObjectAgainst(m, v, types_.output(), {"text"});
      } else if (v.kind != ExprKind::kString) {
        Report(m, DiagId::kBadTest, v.span,
               "`output` takes a string or an object `{ text: \"…\" }`");
      }
    } else if (g == "tool_call") {
      has_stage = true;
      if (v.kind != ExprKind::kObject) {
        Report(m, DiagId::kBadTest, v.span,
               "`tool_call` takes an object `{ name: \"…\", args: { … } }`");
      } else {
        CheckObjectAgainst(m, v, types_.tool_call(), {"name"});
      }
    } else if (g == "headers") {
      if (v.kind != ExprKind::kObject) {
        Report(m, DiagId::kBadTest, v.span, "`headers` takes an object `{ \"name\": \"value\" }`");
      } else {
        for (const ExprPtr& hv : v.children) {
          if (hv->kind != ExprKind::kString) {
            Report(m, DiagId::kTypeMismatch, hv->span, "header values must be strings");
          }
        }
      }
    }
  }
  if (!has_stage) {
    Report(m, DiagId::kBadTest, t.name.span, "test `" + t.name.value + "` gives no stage input",
           "add `input { … }`, `output \"…\"` or `tool_call { … }`");
  }
  if (!has_expect) {
    Report(m, DiagId::kBadTest, t.name.span, "test `" + t.name.value + "` expects nothing",
           "add `expect allow`, `expect block \"policy\"`, …");
  }
}

void Checker::CheckTestExpectations() {
  std::vector<std::string> names;
  for (const auto& [n, _] : policies_) names.push_back(n);
  for (const PendingExpectation& pe : expectations_) {
    const TestClause& c = *pe.clause;
    Module* m = pe.module;
    if (c.expect == ExpectKind::kBlock || c.expect == ExpectKind::kRedact ||
        c.expect == ExpectKind::kFlag) {
      if (!policies_.count(c.policy.value)) {
        std::string help = SuggestName(c.policy.value, names);
        Report(m, DiagId::kUnknownPolicy, c.policy.span,
               "no policy named `" + c.policy.value + "` in this policy set", help);
      }
    } else if (c.expect == ExpectKind::kValue) {
      Env env;
      env.context = Context::kTestPath;
      env.stage = Stage::kOutput;
      const Type* t = Check(m, *c.value, &env);
      if (!IsError(t) && t->kind != Kind::kString && t->kind != Kind::kRecord) {
        Report(m, DiagId::kBadTest, c.value->span,
               "expected value must be a text field, found `" + Types::Name(t) + "`");
      }
    }
  }
}

// `apis`: the wire surfaces a provider speaks itself (the gateway translates
// the others to chat); each must be one the gateway knows.
void Checker::CheckProviderApis(Module* m, const Expr& v) {
  static const std::vector<std::string> kApis = {"chat", "responses", "embeddings", "completions",
                                                 "messages"};
  if (v.kind != ExprKind::kList) return;
  for (const ExprPtr& item : v.children) {
    if (item->kind != ExprKind::kString) continue;
    if (std::find(kApis.begin(), kApis.end(), item->text) != kApis.end()) continue;
    std::string help = SuggestName(item->text, kApis);
    if (help.empty()) help = "apis are `chat`, `responses`, `embeddings`, `completions` and `messages`";
    Report(m, DiagId::kBadProvider, item->span, "unknown api `" + item->text + "`", help);
  }
}

void Checker::CheckProvider(Module* m, const ProviderDecl& p) {
  auto [it, inserted] = providers_.emplace(p.name.text, std::make_pair(m, p.name.span));
  if (!inserted) {
    Report(m, DiagId::kDuplicateName, p.name.span, "provider `" + p.name.text + "` is declared twice")
        .labels.push_back(Label{it->second.first->path, it->second.second, "first declared here"});
  }
  static const std::vector<std::string> kFields = {"kind",    "base_url",   "models",
                                                   "api_key", "chunk_size", "latency",
                                                   "timeout", "auth_header", "apis"};
  static const std::vector<std::string> kKinds = {"openai", "anthropic", "mock"};
  std::map<std::string, const ProviderField*> seen;
  std::string kind;
  for (const ProviderField& f : p.fields) {
    const std::string& n = f.name.text;
    if (std::find(kFields.begin(), kFields.end(), n) == kFields.end()) {
      std::string help = SuggestName(n, kFields);
      if (help.empty()) help = "provider fields are kind, base_url, models, apis, api_key, timeout, auth_header, chunk_size and latency";
      Report(m, DiagId::kBadProvider, f.name.span, "unknown provider field `" + n + "`", help);
      continue;
    }
    auto [sit, fresh] = seen.emplace(n, &f);
    if (!fresh) {
      Report(m, DiagId::kDuplicateClause, f.span, "field `" + n + "` given twice")
          .labels.push_back(Label{m->path, sit->second->span, "first given here"});
      continue;
    }
    const Expr& v = *f.value;
    Env env;
    env.context = Context::kProvider;
    if (n == "kind") {
      std::string value = v.kind == ExprKind::kName ? v.text : v.kind == ExprKind::kString ? v.text : "";
      if (std::find(kKinds.begin(), kKinds.end(), value) == kKinds.end()) {
        std::string help = SuggestName(value, kKinds);
        if (help.empty()) help = "kinds are `openai`, `anthropic` and `mock`";
        Report(m, DiagId::kBadProvider, v.span, "unknown provider kind `" + value + "`", help);
      }
      kind = value;
      continue;
    }
    const Type* t = Check(m, v, &env);
    if (IsError(t)) continue;
    const Type* want = n == "models" || n == "apis"               ? types_.List(types_.string())
                       : n == "chunk_size"                        ? types_.integer()
                       : (n == "latency" || n == "timeout")       ? types_.duration()
                                                                  : types_.string();
    if (!Compatible(want, t)) {
      Report(m, DiagId::kTypeMismatch, v.span,
             "`" + n + "` must be `" + Types::Name(want) + "`, found `" + Types::Name(t) + "`");
    }
    if (n == "apis") CheckProviderApis(m, v);
    if (n == "api_key" && v.kind == ExprKind::kString) {
      Report(m, DiagId::kUntestedLiteralKey, v.span,
             "api key written into the policy source",
             "read it from the environment: `api_key: env(\"OPENAI_API_KEY\")`");
    }
  }
  if (!seen.count("models")) {
    Report(m, DiagId::kBadProvider, p.name.span, "provider `" + p.name.text + "` has no `models`",
           "add `models: [\"gpt-*\"]`: the model-name globs routed to it");
  }
  if (kind.empty() && !seen.count("kind")) {
    Report(m, DiagId::kBadProvider, p.name.span, "provider `" + p.name.text + "` has no `kind`",
           "add `kind: openai`, `kind: anthropic` or `kind: mock`");
  }
}

void Checker::ReportUnused(Module* m) {
  for (const Decl& d : m->ast->decls) {
    if (d.kind != DeclKind::kImport) continue;
    auto target = m->imports.find(d.import->alias);
    if (target == m->imports.end() || target->second == nullptr) continue;  // reported
    // Importing a price table is its use: its prices apply to budgets.
    const FileAst* imported = target->second->ast.get();
    bool prices = imported != nullptr &&
                  std::any_of(imported->decls.begin(), imported->decls.end(),
                              [](const Decl& x) { return x.kind == DeclKind::kPrice; });
    if (!m->used_imports.count(d.import->alias) && !prices) {
      Report(m, DiagId::kUnusedImport, d.import->span,
             "import `" + d.import->alias + "` is never used", "remove the import");
    }
  }
  // A file without policies, limits or providers is a library module: its
  // patterns and lets are exports, so an unused one is not a mistake.
  bool is_library = std::none_of(m->ast->decls.begin(), m->ast->decls.end(), [](const Decl& d) {
    return d.kind == DeclKind::kPolicy || d.kind == DeclKind::kLimit ||
           d.kind == DeclKind::kProvider;
  });
  if (is_library) return;
  for (const Decl& d : m->ast->decls) {
    if (d.kind == DeclKind::kPattern && !m->used_symbols.count(&d)) {
      Report(m, DiagId::kUnusedPattern, d.pattern->name.span,
             "pattern `" + d.pattern->name.text + "` is never used");
    }
    if (d.kind == DeclKind::kLet && !m->used_symbols.count(&d)) {
      Report(m, DiagId::kUnusedLet, d.let->name.span,
             "`" + d.let->name.text + "` is never used");
    }
  }
}

// ------------------------------------------------------------------------
// Expressions

bool Checker::Compatible(const Type* want, const Type* got) const {
  if (want == got) return true;
  if (IsError(want) || IsError(got)) return true;
  if (got->kind == Kind::kAny || want->kind == Kind::kAny) return true;
  if (IsNumeric(want) && IsNumeric(got)) return true;
  if (want->kind == Kind::kOptional) {
    return got->kind == Kind::kNull || Compatible(want->elem, got);
  }
  if (want->kind == Kind::kList && got->kind == Kind::kList) {
    return Compatible(want->elem, got->elem);
  }
  if (want->kind == Kind::kPattern && got->kind == Kind::kString) return true;
  return false;
}

const Type* Checker::Unify(const Type* a, const Type* b) {
  if (a == b) return a;
  if (a->kind == Kind::kAny) return b;
  if (b->kind == Kind::kAny) return a;
  if (IsNumeric(a) && IsNumeric(b)) return types_.floating();
  if (a->kind == Kind::kList && b->kind == Kind::kList) {
    const Type* e = Unify(a->elem, b->elem);
    return e == nullptr ? nullptr : types_.List(e);
  }
  return nullptr;
}

bool Checker::RootAvailable(const std::string& name, Stage stage, const Type** type,
                            std::string* stages) {
  if (name == "input") {
    *type = types_.RecordOf(types_.request());
    *stages = "input, tool_call, output";
    return true;
  }
  if (name == "tool") {
    *type = types_.RecordOf(types_.tool_call());
    *stages = "tool_call";
    return stage == Stage::kToolCall;
  }
  if (name == "output") {
    *type = types_.RecordOf(types_.output());
    *stages = "output";
    return stage == Stage::kOutput;
  }
  if (name == "source" || name == "correlation_id") {
    *type = types_.string();
    *stages = "input, tool_call, output";
    return true;
  }
  *type = nullptr;
  return false;
}

std::vector<std::string> Checker::NameCandidates(Module* m, const Env& env) const {
  std::vector<std::string> c = {"input", "tool", "output", "source", "correlation_id"};
  for (const auto& [n, _] : env.locals) c.push_back(n);
  for (const auto& [n, _] : m->symbols) c.push_back(n);
  for (const auto& [n, _] : m->imports) c.push_back(n);
  return c;
}

const Type* Checker::CheckName(Module* m, const Expr& e, Env* env) {
  const std::string& n = e.text;
  for (auto it = env->locals.rbegin(); it != env->locals.rend(); ++it) {
    if (it->first == n) return it->second;
  }
  if (auto it = m->symbols.find(n); it != m->symbols.end()) {
    m->used_symbols.insert(it->second);
    resolved_[&e] = {m, it->second};
    resolution_->decls[&e] = it->second;
    return DeclType(m, it->second);
  }
  const Type* root = nullptr;
  std::string stages;
  bool available = RootAvailable(n, env->stage, &root, &stages);
  if (root != nullptr) {
    if (env->context == Context::kConstant || env->context == Context::kProvider) {
      Report(m, DiagId::kNotConstant, e.span,
             "`" + n + "` depends on the request and cannot be used here",
             "patterns, lets and providers must be known when the policy compiles");
      return types_.error();
    }
    if (env->context == Context::kTestPath) {
      if (n != "input" && n != "output" && n != "tool") {
        Report(m, DiagId::kBadTest, e.span, "an expectation checks `input` or `output` text");
        return types_.error();
      }
      return root;
    }
    if (!available && env->stage != Stage::kNone) {
      Report(m, DiagId::kWrongStage, e.span,
             "`" + n + "` is not available on stage `" + StageName(env->stage) + "`",
             "`" + n + "` is available on: " + stages);
      return types_.error();
    }
    return root;
  }
  if (n == "std" || m->imports.count(n)) {
    Report(m, DiagId::kUnknownName, e.span, "`" + n + "` is a module, not a value",
           "name one of its declarations: `" + n + ".NAME`");
    return types_.error();
  }
  std::string help = SuggestName(n, NameCandidates(m, *env));
  Report(m, DiagId::kUnknownName, e.span, "unknown name `" + n + "`", help);
  return types_.error();
}

// Resolves `a.b.c` against import aliases ("std.pii" + member "email").
// Returns false when `e` is not a qualified reference to an imported module.
bool Checker::QualifiedMember(Module* m, const Expr& e, Env* env, const Type** out) {
  std::vector<const Expr*> chain;
  const Expr* cur = &e;
  while (cur->kind == ExprKind::kField) {
    chain.push_back(cur);
    cur = cur->children[0].get();
  }
  if (cur->kind != ExprKind::kName) return false;
  const std::string& root = cur->text;
  for (const auto& [n, _] : env->locals) {
    if (n == root) return false;
  }
  if (m->symbols.count(root)) return false;
  const Type* t = nullptr;
  std::string stages;
  RootAvailable(root, env->stage, &t, &stages);
  if (t != nullptr) return false;

  // Build "root.f1.f2…" prefixes, innermost first, and find an import alias.
  std::string path = root;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const Expr* field = *it;
    auto imp = m->imports.find(path);
    if (imp != m->imports.end()) {
      m->used_imports.insert(path);
      Module* target = imp->second;
      if (field != &e) {
        Report(m, DiagId::kUnknownField, (*std::prev(chain.rend()))->text_span,
               "a declaration of `" + path + "` has no fields");
        *out = types_.error();
        return true;
      }
      if (target == nullptr || target->ast == nullptr) {
        *out = types_.error();  // the import itself was reported
        return true;
      }
      auto sym = target->symbols.find(field->text);
      if (sym == target->symbols.end()) {
        std::vector<std::string> names;
        for (const auto& [sn, _] : target->symbols) names.push_back(sn);
        Report(m, DiagId::kUnknownName, field->text_span,
               "module `" + path + "` has no declaration `" + field->text + "`",
               SuggestName(field->text, names));
        *out = types_.error();
        return true;
      }
      target->used_symbols.insert(sym->second);
      resolved_[&e] = {target, sym->second};
      resolution_->decls[&e] = sym->second;
      *out = DeclType(target, sym->second);
      return true;
    }
    path += "." + field->text;
  }
  if (root == "std") {
    std::vector<std::string> aliases;
    for (const auto& [a, _] : m->imports) aliases.push_back(a);
    std::string prefix = root + "." + chain.back()->text;
    std::string help = SuggestName(prefix, aliases);
    if (help.empty()) help = "add `import " + prefix + "` at the top of the file";
    Report(m, DiagId::kUnknownName, Span{cur->span.begin, chain.back()->text_span.end},
           "module `" + prefix + "` is not imported", help);
    *out = types_.error();
    return true;
  }
  return false;
}

const Type* Checker::CheckField(Module* m, const Expr& e, Env* env) {
  const Type* q = nullptr;
  if (QualifiedMember(m, e, env, &q)) return q;
  const Type* base = Check(m, *e.children[0], env);
  if (IsError(base)) return base;
  if (base->kind == Kind::kJson) return types_.json();
  if (base->kind == Kind::kRecord) {
    const RecordField* f = base->record->Find(e.text);
    if (f == nullptr) {
      Report(m, DiagId::kUnknownField, e.text_span,
             "`" + base->record->name + "` has no field `" + e.text + "`",
             SuggestName(e.text, base->record->FieldNames()));
      return types_.error();
    }
    return f->type;
  }
  Report(m, DiagId::kBadOperand, e.text_span,
         "`" + Types::Name(base) + "` has no field `" + e.text + "`",
         base->kind == Kind::kOptional ? "give a default with `??` first" : "");
  return types_.error();
}

void Checker::CheckRegexLiteral(Module* m, const Expr& e) {
  RegexFlags flags;
  std::size_t bad = ParseRegexFlags(e.flags, &flags);
  if (bad != std::string_view::npos) {
    uint32_t at = e.text_span.end + 1 + static_cast<uint32_t>(bad);
    Report(m, DiagId::kRegexFlag, Span{at, at + 1},
           std::string("unknown regex flag `") + e.flags[bad] + "`",
           "flags are `i` (case-insensitive), `s` (dot matches newline) and `m` (multi-line)");
    return;
  }
  RegexLimits limits;
  limits.max_bytes = options_.max_regex_bytes;
  limits.max_repeat = options_.max_repeat;
  limits.max_depth = options_.max_nesting_depth;
  ParsedRegex parsed = ParseRegex(e.text, flags, limits);
  if (parsed.error) {
    uint32_t at = e.text_span.begin + static_cast<uint32_t>(parsed.error->offset);
    uint32_t end = std::min<uint32_t>(at + static_cast<uint32_t>(parsed.error->length),
                                      e.text_span.end);
    if (end <= at) end = at + 1;
    if (parsed.error->unsupported) {
      Report(m, DiagId::kRegexUnsupported, Span{at, end}, parsed.error->message,
             "rewrite the pattern without it, or match the parts separately and combine them "
             "with `and`");
    } else if (parsed.error->message.find("exceeds") != std::string::npos ||
               parsed.error->message.find("limit") != std::string::npos) {
      Report(m, DiagId::kRegexTooLarge, Span{at, end}, parsed.error->message);
    } else {
      Report(m, DiagId::kRegexSyntax, Span{at, end}, parsed.error->message);
    }
    return;
  }
  if (CanMatchEmpty(*parsed.root)) {
    Report(m, DiagId::kEmptyMatch, e.span,
           "pattern `" + std::string(e.text) + "` can match the empty string",
           "it would match every text; require at least one character, e.g. `+` instead of `*`");
  }
}

// Checks an operand that must be a compile-time pattern: a regex, a literal,
// words(…), a pattern name, or a union of those.
const Type* Checker::CheckPatternOperand(Module* m, const Expr& e, Env* env) {
  const Type* t = Check(m, e, env);
  if (IsError(t)) return t;
  if (t->kind != Kind::kPattern && t->kind != Kind::kString) {
    Report(m, DiagId::kTypeMismatch, e.span,
           "expected a pattern, found `" + Types::Name(t) + "`",
           "write a regex `/…/`, a literal `\"…\"`, or the name of a pattern");
    return types_.error();
  }
  if (!IsConstant(m, e, *env)) {
    Report(m, DiagId::kNotConstant, e.span, "a pattern must be known when the policy compiles",
           "use a literal or a `pattern` declaration, not a value from the request");
    return types_.error();
  }
  if ((e.kind == ExprKind::kString || e.kind == ExprKind::kIString) && e.text.empty()) {
    Report(m, DiagId::kEmptyMatch, e.span, "the empty literal matches every text");
    return types_.error();
  }
  if (e.kind == ExprKind::kRegex && env->context != Context::kConstant && !sink_->HasErrors()) {
    std::vector<const RegexNode*> trees;
    CollectTrees(m, e, &trees);
    CompileCheck(m, e.span, "regex", trees);
  }
  if (env->context != Context::kConstant) {
    std::vector<const RegexNode*> trees;
    CollectTrees(m, e, &trees);
    resolution_->pattern_trees[&e] = std::move(trees);
  }
  return types_.pattern();
}

void Checker::CollectTrees(Module* m, const Expr& e, std::vector<const RegexNode*>* out) {
  switch (e.kind) {
    case ExprKind::kParen:
    case ExprKind::kUnion:
      for (const ExprPtr& c : e.children) CollectTrees(m, *c, out);
      return;
    case ExprKind::kName:
    case ExprKind::kField: {
      auto it = resolved_.find(&e);
      if (it == resolved_.end()) return;
      const Decl* d = it->second.second;
      if (d->kind == DeclKind::kPattern) {
        auto trees = decl_trees_.find(d);
        if (trees != decl_trees_.end()) out->insert(out->end(), trees->second.begin(), trees->second.end());
      } else if (d->kind == DeclKind::kLet) {
        CollectTrees(it->second.first, *d->let->value, out);
      }
      return;
    }
    default:
      break;
  }
  RegexNode*& slot = literal_trees_[&e];
  if (slot == nullptr) {
    std::unique_ptr<RegexNode> built;
    if (e.kind == ExprKind::kRegex) {
      RegexFlags flags;
      if (ParseRegexFlags(e.flags, &flags) != std::string_view::npos) return;
      RegexLimits limits;
      limits.max_bytes = options_.max_regex_bytes;
      limits.max_repeat = options_.max_repeat;
      limits.max_depth = options_.max_nesting_depth;
      ParsedRegex parsed = ParseRegex(e.text, flags, limits);
      if (parsed.error) return;
      built = std::move(parsed.root);
    } else if (e.kind == ExprKind::kString || e.kind == ExprKind::kIString) {
      built = LiteralRegex(e.text, e.kind == ExprKind::kIString);
    } else if (e.kind == ExprKind::kCall && e.text == "words") {
      // words("a", "b"): \b(a|b)\b, case-insensitive.
      auto alt = std::make_unique<RegexNode>();
      alt->kind = RegexKind::kAlt;
      for (const ExprPtr& w : e.children) alt->children.push_back(LiteralRegex(w->text, true));
      auto concat = std::make_unique<RegexNode>();
      concat->kind = RegexKind::kConcat;
      for (int side = 0; side < 3; ++side) {
        if (side == 1) {
          concat->children.push_back(std::move(alt));
          continue;
        }
        auto b = std::make_unique<RegexNode>();
        b->kind = RegexKind::kAssert;
        b->assertion = AssertKind::kWordBoundary;
        concat->children.push_back(std::move(b));
      }
      built = std::move(concat);
    } else {
      return;
    }
    slot = built.get();
    tree_store_->push_back(std::move(built));
  }
  out->push_back(slot);
}

// Builds the automaton now, at lint time, so a pattern that would blow the
// DFA memory budget is reported with its size where it is written.
void Checker::CompileCheck(Module* m, Span span, const std::string& what,
                           const std::vector<const RegexNode*>& trees) {
  if (trees.empty()) return;
  AutomataLimits limits;
  limits.dfa_memory_budget = options_.dfa_memory_budget;
  limits.check_only = true;
  AutomataResult r = BuildAutomataCached(trees, limits, options_.object_cache_dir);
  if (!r.ok) {
    Report(m, DiagId::kRegexTooLarge, span, what + ": " + r.error,
           "split the pattern or reduce its repetition counts");
    return;
  }
  if (r.stats.lazy && r.stats.budget_exceeded) {
    Report(m, DiagId::kPatternSetSplit, span,
           what + " runs on a lazy DFA: an eager one needs more than " +
               std::to_string(r.stats.dfa_states) + " states (" +
               std::to_string(r.stats.memory_bytes_reached) + " bytes), over the " +
               std::to_string(options_.dfa_memory_budget) + "-byte budget",
           "states are then built while scanning, in a bounded cache; a count over a class "
           "that can also start a new match (`sk-[A-Za-z0-9-]{20,}`) is the usual cause");
  }
}

bool Checker::IsConstant(Module* m, const Expr& e, const Env& env) const {
  switch (e.kind) {
    case ExprKind::kName: {
      for (const auto& [n, _] : env.locals) {
        if (n == e.text) return false;
      }
      if (m->symbols.count(e.text)) return true;
      return e.text != "input" && e.text != "output" && e.text != "tool" && e.text != "source" &&
             e.text != "correlation_id";
    }
    case ExprKind::kCall:
      if (e.text == "header" || e.text == "api_key_id") return false;
      break;
    default:
      break;
  }
  for (const ExprPtr& c : e.children) {
    if (!IsConstant(m, *c, env)) return false;
  }
  return true;
}

const Type* Checker::CheckCall(Module* m, const Expr& e, Env* env) {
  const BuiltinInfo* b = FindBuiltin(e.text);
  if (b == nullptr) {
    std::vector<std::string> names;
    for (const BuiltinInfo& bi : kBuiltins) names.push_back(bi.name);
    std::string help = SuggestName(e.text, names);
    if (help.empty()) help = "functions are len, lower, upper, header, count, words, env and api_key_id";
    Report(m, DiagId::kUnknownFunction, e.text_span, "unknown function `" + e.text + "`", help);
    return types_.error();
  }
  int n = static_cast<int>(e.children.size());
  if (n < b->min_args || (b->max_args >= 0 && n > b->max_args)) {
    Report(m, DiagId::kArgumentCount, e.span,
           "`" + e.text + "` takes " +
               (b->min_args == b->max_args
                    ? std::to_string(b->min_args)
                    : b->max_args < 0 ? "at least " + std::to_string(b->min_args)
                                      : std::to_string(b->min_args) + " to " +
                                            std::to_string(b->max_args)) +
               " argument" + (b->max_args == 1 && b->min_args == 1 ? "" : "s") + ", found " +
               std::to_string(n),
           std::string("signature: ") + b->signature);
    return types_.error();
  }
  auto expect_string = [&](const Expr& arg) {
    const Type* t = Check(m, arg, env);
    if (!IsError(t) && t->kind != Kind::kString) {
      Report(m, DiagId::kTypeMismatch, arg.span,
             "expected `string`, found `" + Types::Name(t) + "`",
             t->kind == Kind::kOptional ? "give a default: `… ?? \"\"`"
                                        : std::string("signature: ") + b->signature);
      return false;
    }
    return !IsError(t);
  };
  switch (b->id) {
    case BuiltinId::kLen: {
      const Type* t = Check(m, *e.children[0], env);
      if (!IsError(t) && t->kind != Kind::kString && t->kind != Kind::kList) {
        Report(m, DiagId::kTypeMismatch, e.children[0]->span,
               "`len` takes a string or a list, found `" + Types::Name(t) + "`");
      }
      return types_.integer();
    }
    case BuiltinId::kLower:
    case BuiltinId::kUpper:
      expect_string(*e.children[0]);
      return types_.string();
    case BuiltinId::kHeader:
    case BuiltinId::kApiKeyId:
      if (env->context == Context::kConstant || env->context == Context::kProvider) {
        Report(m, DiagId::kNotConstant, e.span,
               "`" + e.text + "` depends on the request and cannot be used here");
        return types_.error();
      }
      if (b->id == BuiltinId::kHeader) {
        expect_string(*e.children[0]);
        return types_.Optional(types_.string());
      }
      return types_.string();
    case BuiltinId::kCount: {
      const Expr& arg = *e.children[0];
      if (arg.kind != ExprKind::kIn || arg.bool_value) {
        Report(m, DiagId::kTypeMismatch, arg.span, "`count` takes `PATTERN in TEXT`",
               "for example `count(std.pii.email in output.text)`");
        return types_.error();
      }
      CheckPatternOperand(m, *arg.children[0], env);
      expect_string(*arg.children[1]);
      return types_.integer();
    }
    case BuiltinId::kWords:
      for (const ExprPtr& arg : e.children) {
        if (arg->kind != ExprKind::kString) {
          Report(m, DiagId::kTypeMismatch, arg->span, "`words` takes string literals");
        } else if (arg->text.empty()) {
          Report(m, DiagId::kEmptyMatch, arg->span, "the empty word matches every text");
        }
      }
      return types_.pattern();
    case BuiltinId::kEnv:
      if (env->context != Context::kProvider) {
        Report(m, DiagId::kNotConstant, e.span, "`env` is only available in provider declarations",
               "policies must not depend on the gateway's environment");
        return types_.error();
      }
      if (e.children[0]->kind != ExprKind::kString) {
        Report(m, DiagId::kTypeMismatch, e.children[0]->span,
               "`env` takes the variable name as a string literal");
      }
      return types_.string();
  }
  return types_.error();
}

const Type* Checker::Check(Module* m, const Expr& e, Env* env) {
  const Type* t = types_.error();
  switch (e.kind) {
    case ExprKind::kInt:
      t = types_.integer();
      break;
    case ExprKind::kFloat:
      t = types_.floating();
      break;
    case ExprKind::kDuration:
      t = types_.duration();
      break;
    case ExprKind::kString:
      t = types_.string();
      break;
    case ExprKind::kIString:
      t = types_.pattern();
      break;
    case ExprKind::kRegex:
      CheckRegexLiteral(m, e);
      t = types_.pattern();
      break;
    case ExprKind::kBool:
      t = types_.boolean();
      break;
    case ExprKind::kNull:
      t = types_.null();
      break;
    case ExprKind::kName:
      t = CheckName(m, e, env);
      break;
    case ExprKind::kField:
      t = CheckField(m, e, env);
      break;
    case ExprKind::kCall:
      t = CheckCall(m, e, env);
      break;
    case ExprKind::kParen:
      t = Check(m, *e.children[0], env);
      break;
    case ExprKind::kIndex: {
      const Type* base = Check(m, *e.children[0], env);
      const Type* idx = Check(m, *e.children[1], env);
      if (IsError(base) || IsError(idx)) break;
      if (base->kind == Kind::kList) {
        if (idx->kind != Kind::kInt) {
          Report(m, DiagId::kTypeMismatch, e.children[1]->span,
                 "list index must be `int`, found `" + Types::Name(idx) + "`");
          break;
        }
        t = base->elem;
      } else if (base->kind == Kind::kJson) {
        if (idx->kind != Kind::kInt && idx->kind != Kind::kString) {
          Report(m, DiagId::kTypeMismatch, e.children[1]->span,
                 "json index must be `int` or `string`, found `" + Types::Name(idx) + "`");
          break;
        }
        t = types_.json();
      } else {
        Report(m, DiagId::kBadOperand, e.span, "`" + Types::Name(base) + "` cannot be indexed");
      }
      break;
    }
    case ExprKind::kCast: {
      const Type* base = Check(m, *e.children[0], env);
      static const std::vector<std::string> kTargets = {"string", "int", "float", "bool"};
      const Type* target = e.text == "string"  ? types_.string()
                           : e.text == "int"   ? types_.integer()
                           : e.text == "float" ? types_.floating()
                           : e.text == "bool"  ? types_.boolean()
                                               : nullptr;
      if (target == nullptr) {
        std::string help = SuggestName(e.text, kTargets);
        if (help.empty()) help = "`as` converts to `string`, `int`, `float` or `bool`";
        Report(m, DiagId::kBadConversion, e.text_span, "unknown type `" + e.text + "`", help);
        break;
      }
      if (IsError(base)) break;
      if (base->kind != Kind::kJson) {
        Report(m, DiagId::kBadConversion, e.span,
               "only `json` values can be converted with `as`; this is `" + Types::Name(base) +
                   "`");
        break;
      }
      t = target;
      break;
    }
    case ExprKind::kNeg: {
      const Type* v = Check(m, *e.children[0], env);
      if (IsError(v)) break;
      if (!IsNumeric(v) && v->kind != Kind::kDuration) {
        Report(m, DiagId::kBadOperand, e.span, "cannot negate `" + Types::Name(v) + "`");
        break;
      }
      t = v;
      break;
    }
    case ExprKind::kUnion: {
      bool ok = true;
      for (const ExprPtr& c : e.children) {
        ok = !IsError(CheckPatternOperand(m, *c, env)) && ok;
      }
      t = ok ? types_.pattern() : types_.error();
      break;
    }
    case ExprKind::kCoalesce: {
      std::vector<const Type*> ts;
      for (const ExprPtr& c : e.children) ts.push_back(Check(m, *c, env));
      if (std::any_of(ts.begin(), ts.end(), IsError)) break;
      const Type* result = ts.back();
      // A json value stays json: the default only fills in for null.
      if (std::any_of(ts.begin(), ts.end() - 1,
                      [](const Type* x) { return x->kind == Kind::kJson; })) {
        result = types_.json();
      }
      bool ok = true;
      for (std::size_t i = 0; i + 1 < ts.size(); ++i) {
        const Type* l = ts[i];
        if (l->kind != Kind::kOptional && l->kind != Kind::kJson && l->kind != Kind::kNull) {
          Report(m, DiagId::kBadOperand, e.children[i]->span,
                 "left side of `??` is `" + Types::Name(l) + "`, which is never null",
                 "remove the `??`");
          ok = false;
          continue;
        }
        const Type* inner = l->kind == Kind::kOptional ? l->elem : l;
        if (inner->kind != Kind::kJson && !Compatible(inner, result) &&
            !Compatible(result, inner)) {
          Report(m, DiagId::kTypeMismatch, e.children.back()->span,
                 "default of `??` is `" + Types::Name(result) + "`, expected `" +
                     Types::Name(inner) + "`");
          ok = false;
        }
      }
      if (ok) t = result;
      break;
    }
    case ExprKind::kCompare: {
      const Type* l = Check(m, *e.children[0], env);
      const Type* r = Check(m, *e.children[1], env);
      if (IsError(l) || IsError(r)) {
        t = types_.boolean();
        break;
      }
      bool equality = e.text == "==" || e.text == "!=";
      auto json_help = [&](const Type* other) {
        std::string target = other->kind == Kind::kInt     ? "int"
                             : other->kind == Kind::kFloat ? "float"
                             : other->kind == Kind::kBool  ? "bool"
                                                           : "string";
        return "convert the json value first: `… as " + target + "`";
      };
      if (l->kind == Kind::kJson || r->kind == Kind::kJson) {
        if (!(l->kind == Kind::kNull || r->kind == Kind::kNull)) {
          Report(m, DiagId::kTypeMismatch, e.span, "cannot compare `json` directly",
                 json_help(l->kind == Kind::kJson ? r : l));
          t = types_.boolean();
          break;
        }
      } else if (equality) {
        if (!Compatible(l, r) && !Compatible(r, l)) {
          Report(m, DiagId::kTypeMismatch, e.span,
                 "cannot compare `" + Types::Name(l) + "` with `" + Types::Name(r) + "`");
        } else if (l->kind == Kind::kPattern || r->kind == Kind::kPattern) {
          Report(m, DiagId::kBadOperand, e.text_span, "patterns cannot be compared with `" + e.text + "`",
                 "use `matches` or `fullmatches`");
        }
      } else {
        bool ok = (IsNumeric(l) && IsNumeric(r)) ||
                  (l->kind == Kind::kDuration && r->kind == Kind::kDuration);
        if (!ok) {
          Report(m, DiagId::kBadOperand, e.text_span,
                 "`" + e.text + "` compares numbers or durations, not `" + Types::Name(l) +
                     "` and `" + Types::Name(r) + "`");
        }
      }
      t = types_.boolean();
      break;
    }
    case ExprKind::kIn: {
      const Type* l = Check(m, *e.children[0], env);
      const Type* r = Check(m, *e.children[1], env);
      t = types_.boolean();
      if (IsError(l) || IsError(r)) break;
      if (r->kind != Kind::kList) {
        Report(m, DiagId::kNotAList, e.children[1]->span,
               "right side of `" + e.text + "` must be a list, found `" + Types::Name(r) + "`",
               r->kind == Kind::kString ? "to search a string, use `contains`" : "");
        break;
      }
      if (l->kind == Kind::kJson) {
        Report(m, DiagId::kTypeMismatch, e.children[0]->span, "cannot look up a `json` value",
               "convert it first: `… as string`");
        break;
      }
      if (!Compatible(r->elem, l) && !Compatible(l, r->elem)) {
        Report(m, DiagId::kTypeMismatch, e.span,
               "`" + Types::Name(l) + "` cannot be in a `" + Types::Name(r) + "`");
      }
      break;
    }
    case ExprKind::kMatch: {
      t = types_.boolean();
      const Type* l = Check(m, *e.children[0], env);
      bool pattern_op = e.text == "matches" || e.text == "fullmatches";
      if (pattern_op) {
        CheckPatternOperand(m, *e.children[1], env);
      } else {
        const Type* r = Check(m, *e.children[1], env);
        if (!IsError(r) && r->kind != Kind::kString) {
          Report(m, DiagId::kTypeMismatch, e.children[1]->span,
                 "`" + e.text + "` takes a string on the right, found `" + Types::Name(r) + "`",
                 r->kind == Kind::kPattern ? "to search for a pattern, use `matches`" : "");
        }
      }
      if (!IsError(l) && l->kind != Kind::kString) {
        std::string help;
        if (l->kind == Kind::kOptional) help = "give a default: `… ?? \"\"`";
        if (l->kind == Kind::kJson) help = "convert it first: `… as string`";
        if (l->kind == Kind::kList) help = "use `any x in LIST: x " + e.text + " …`";
        Report(m, DiagId::kTypeMismatch, e.children[0]->span,
               "`" + e.text + "` searches a `string`, found `" + Types::Name(l) + "`", help);
      }
      break;
    }
    case ExprKind::kNot: {
      const Type* v = Check(m, *e.children[0], env);
      if (!IsError(v) && v->kind != Kind::kBool) {
        Report(m, DiagId::kTypeMismatch, e.children[0]->span,
               "`not` takes a `bool`, found `" + Types::Name(v) + "`");
      }
      t = types_.boolean();
      break;
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      for (const ExprPtr& c : e.children) {
        const Type* v = Check(m, *c, env);
        if (!IsError(v) && v->kind != Kind::kBool) {
          Report(m, DiagId::kTypeMismatch, c->span,
                 std::string("`") + (e.kind == ExprKind::kAnd ? "and" : "or") +
                     "` takes `bool` operands, found `" + Types::Name(v) + "`");
        }
      }
      t = types_.boolean();
      break;
    }
    case ExprKind::kQuant: {
      const Type* list = Check(m, *e.children[0], env);
      const Type* elem = types_.error();
      if (!IsError(list)) {
        if (list->kind != Kind::kList) {
          Report(m, DiagId::kNotAList, e.children[0]->span,
                 std::string("`") + (e.bool_value ? "all" : "any") +
                     "` ranges over a list, found `" + Types::Name(list) + "`");
        } else {
          elem = list->elem;
        }
      }
      env->locals.emplace_back(e.text, elem);
      const Type* body = Check(m, *e.children[1], env);
      env->locals.pop_back();
      if (!IsError(body) && body->kind != Kind::kBool) {
        Report(m, DiagId::kTypeMismatch, e.children[1]->span,
               "quantifier body must be `bool`, found `" + Types::Name(body) + "`");
      }
      t = types_.boolean();
      break;
    }
    case ExprKind::kList: {
      const Type* elem = types_.any();
      bool ok = true;
      for (const ExprPtr& c : e.children) {
        const Type* ct = Check(m, *c, env);
        if (IsError(ct)) {
          ok = false;
          continue;
        }
        const Type* u = Unify(elem, ct);
        if (u == nullptr) {
          Report(m, DiagId::kTypeMismatch, c->span,
                 "list elements must share one type: `" + Types::Name(elem) + "` and `" +
                     Types::Name(ct) + "`");
          ok = false;
          continue;
        }
        elem = u;
      }
      t = ok ? types_.List(elem) : types_.error();
      break;
    }
    case ExprKind::kObject:
      Report(m, DiagId::kBadOperand, e.span,
             "object literals are only allowed in tests and provider declarations");
      break;
  }
  expr_types_[&e] = t;
  Resolution::TypeInfo info;
  const Type* base = t->kind == Kind::kOptional ? t->elem : t;
  info.optional = t->kind == Kind::kOptional;
  info.shape = base->kind == Kind::kString   ? Resolution::Shape::kString
               : base->kind == Kind::kInt    ? Resolution::Shape::kInt
               : base->kind == Kind::kFloat  ? Resolution::Shape::kFloat
               : base->kind == Kind::kBool   ? Resolution::Shape::kBool
               : base->kind == Kind::kList   ? Resolution::Shape::kList
               : base->kind == Kind::kJson   ? Resolution::Shape::kJson
                                             : Resolution::Shape::kOther;
  resolution_->types[&e] = info;
  return t;
}

bool Checker::ReferencesOutput(const Expr& e) const {
  if (e.kind == ExprKind::kName && e.text == "output") return true;
  return std::any_of(e.children.begin(), e.children.end(),
                     [this](const ExprPtr& c) { return ReferencesOutput(*c); });
}

// Monotone conditions can only go from false to true as the output grows, so
// they may fire mid-stream; everything else waits for the end of the stream.
bool Checker::IsMonotone(const Expr& e) const {
  if (!ReferencesOutput(e)) return true;
  switch (e.kind) {
    case ExprKind::kParen:
      return IsMonotone(*e.children[0]);
    case ExprKind::kAnd:
    case ExprKind::kOr:
      return std::all_of(e.children.begin(), e.children.end(),
                         [this](const ExprPtr& c) { return IsMonotone(*c); });
    case ExprKind::kMatch:
      return (e.text == "matches" || e.text == "contains") && !ReferencesOutput(*e.children[1]);
    case ExprKind::kCompare: {
      if (e.text != ">=" && e.text != ">") return false;
      const Expr& l = *e.children[0];
      bool grows = l.kind == ExprKind::kCall && (l.text == "count" || l.text == "len");
      return grows && !ReferencesOutput(*e.children[1]);
    }
    case ExprKind::kQuant:
      return !e.bool_value && !ReferencesOutput(*e.children[0]) && IsMonotone(*e.children[1]);
    default:
      return false;
  }
}

CheckResult Checker::Run() {
  for (auto& m : program_->modules) {
    if (m->ast != nullptr) CheckModule(m.get());
  }
  CheckTestExpectations();
  CheckBudgetsPriced();
  for (auto& [name, ref] : prices_) result_.prices[name] = ref.decl;
  for (auto& m : program_->modules) {
    if (m->ast != nullptr) ReportUnused(m.get());
  }
  if (build_pir_ && !sink_->HasErrors()) result_.pir = BuildPir();
  resolution_->trees = tree_store_;
  result_.resolution = resolution_;
  return std::move(result_);
}

// ------------------------------------------------------------------------
// PIR construction

std::string QuoteString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += c;
    }
  }
  return out + "\"";
}

std::string Checker::PatternLabel(const Expr& e) const {
  switch (e.kind) {
    case ExprKind::kRegex:
      return "/" + e.text + "/" + e.flags;
    case ExprKind::kString:
      return QuoteString(e.text);
    case ExprKind::kIString:
      return QuoteString(e.text) + "i";
    case ExprKind::kName:
      return e.text;
    case ExprKind::kField:
      return PatternLabel(*e.children[0]) + "." + e.text;
    case ExprKind::kParen:
      return "(" + PatternLabel(*e.children[0]) + ")";
    case ExprKind::kCall: {
      std::string s = e.text + "(";
      for (std::size_t i = 0; i < e.children.size(); ++i) {
        s += (i ? ", " : "") + PatternLabel(*e.children[i]);
      }
      return s + ")";
    }
    case ExprKind::kUnion: {
      std::string s;
      for (std::size_t i = 0; i < e.children.size(); ++i) {
        s += (i ? " | " : "") + PatternLabel(*e.children[i]);
      }
      return s;
    }
    default:
      return "?";
  }
}

// Finds or adds the set for `subject` in the stage and the slot for this
// pattern in it; returns `S<set>#<slot>`.
std::string Checker::PirPatternRef(const Expr& pattern, const std::string& subject, PirContext* ctx,
                                   uint32_t* set_out, uint32_t* slot_out) {
  std::vector<PirPatternSet>& sets = ctx->stage->sets;
  uint32_t set = 0;
  while (set < sets.size() && sets[set].subject != subject) ++set;
  if (set == sets.size()) sets.push_back(PirPatternSet{subject, {}});
  std::string label = PatternLabel(pattern);
  std::vector<PirPattern>& pats = sets[set].patterns;
  uint32_t slot = 0;
  while (slot < pats.size() && pats[slot].label != label) ++slot;
  if (slot == pats.size()) {
    PirPattern p;
    p.label = label;
    CollectTrees(ctx->module, pattern, &p.trees);
    pats.push_back(std::move(p));
  }
  if (set_out != nullptr) *set_out = set;
  if (slot_out != nullptr) *slot_out = slot;
  ctx->refs.emplace_back(set, slot);
  return "S" + std::to_string(set) + "#" + std::to_string(slot);
}

// The canonical path of a subject: quantifier variables replaced by the
// list they range over, `[*]` for "every element".
std::string Checker::PirPath(const Expr& e, PirContext* ctx) {
  switch (e.kind) {
    case ExprKind::kName:
      for (auto it = ctx->vars.rbegin(); it != ctx->vars.rend(); ++it) {
        if (it->first == e.text) return it->second + "[*]";
      }
      return e.text;
    case ExprKind::kField:
      return PirPath(*e.children[0], ctx) + "." + e.text;
    case ExprKind::kParen:
      return PirPath(*e.children[0], ctx);
    default:
      return PirExpr(e, ctx);
  }
}

std::string Checker::PirExpr(const Expr& e, PirContext* ctx) {
  auto join = [&](const char* sep) {
    std::string s;
    for (std::size_t i = 0; i < e.children.size(); ++i) {
      s += (i ? sep : "") + PirExpr(*e.children[i], ctx);
    }
    return s;
  };
  switch (e.kind) {
    case ExprKind::kInt:
    case ExprKind::kFloat:
    case ExprKind::kDuration:
      return e.text;
    case ExprKind::kString:
      return QuoteString(e.text);
    case ExprKind::kIString:
    case ExprKind::kRegex:
      return PatternLabel(e);
    case ExprKind::kBool:
      return e.bool_value ? "true" : "false";
    case ExprKind::kNull:
      return "null";
    case ExprKind::kName: {
      // A constant `let` is inlined, so the IR needs no symbol table.
      auto it = resolved_.find(&e);
      if (it != resolved_.end() && it->second.second->kind == DeclKind::kLet) {
        return PirExpr(*it->second.second->let->value, ctx);
      }
      return e.text;
    }
    case ExprKind::kField: {
      auto it = resolved_.find(&e);
      if (it != resolved_.end() && it->second.second->kind == DeclKind::kLet) {
        return PirExpr(*it->second.second->let->value, ctx);
      }
      return PirExpr(*e.children[0], ctx) + "." + e.text;
    }
    case ExprKind::kCall:
      if (e.text == "count" && e.children[0]->kind == ExprKind::kIn) {
        const Expr& in = *e.children[0];
        std::string subject = PirPath(*in.children[1], ctx);
        return "count(" + PirPatternRef(*in.children[0], subject, ctx) + " in " +
               PirExpr(*in.children[1], ctx) + ")";
      }
      return e.text + "(" + join(", ") + ")";
    case ExprKind::kIndex:
      return PirExpr(*e.children[0], ctx) + "[" + PirExpr(*e.children[1], ctx) + "]";
    case ExprKind::kCast:
      return PirExpr(*e.children[0], ctx) + " as " + e.text;
    case ExprKind::kNeg:
      return "-" + PirExpr(*e.children[0], ctx);
    case ExprKind::kUnion:
      return join(" | ");
    case ExprKind::kCoalesce:
      return join(" ?? ");
    case ExprKind::kCompare:
      return PirExpr(*e.children[0], ctx) + " " + e.text + " " + PirExpr(*e.children[1], ctx);
    case ExprKind::kIn:
      return PirExpr(*e.children[0], ctx) + (e.bool_value ? " not in " : " in ") +
             PirExpr(*e.children[1], ctx);
    case ExprKind::kMatch:
      if (e.text == "matches" || e.text == "fullmatches") {
        std::string subject = PirPath(*e.children[0], ctx);
        return PirExpr(*e.children[0], ctx) + " " + e.text + " " +
               PirPatternRef(*e.children[1], subject, ctx);
      }
      return PirExpr(*e.children[0], ctx) + " " + e.text + " " + PirExpr(*e.children[1], ctx);
    case ExprKind::kNot:
      return "not (" + PirExpr(*e.children[0], ctx) + ")";
    case ExprKind::kAnd:
      return "(" + join(" and ") + ")";
    case ExprKind::kOr:
      return "(" + join(" or ") + ")";
    case ExprKind::kQuant: {
      std::string list = PirExpr(*e.children[0], ctx);
      ctx->vars.emplace_back(e.text, PirPath(*e.children[0], ctx));
      std::string body = PirExpr(*e.children[1], ctx);
      ctx->vars.pop_back();
      return std::string(e.bool_value ? "all " : "any ") + e.text + " in " + list + ": " + body;
    }
    case ExprKind::kList:
      return "[" + join(", ") + "]";
    case ExprKind::kObject:
      return "{…}";
    case ExprKind::kParen:
      return PirExpr(*e.children[0], ctx);
  }
  return "?";
}

std::shared_ptr<PirProgram> Checker::BuildPir() {
  auto pir = std::make_shared<PirProgram>();
  const char* kStageNames[] = {"input", "tool_call", "output"};
  for (const char* name : kStageNames) pir->stages.push_back(PirStage{name, {}, {}});
  std::size_t summary_index = 0;
  for (Module* m : program_->roots) {
    if (m->ast == nullptr) continue;
    for (const Decl& d : m->ast->decls) {
      if (d.kind != DeclKind::kPolicy) continue;
      const PolicyDecl& p = *d.policy;
      // The summaries were produced in the same order while checking.
      const PolicySummary* summary = nullptr;
      for (std::size_t i = summary_index; i < result_.policies.size(); ++i) {
        if (result_.policies[i].name == p.name.value && result_.policies[i].file == m->path) {
          summary = &result_.policies[i];
          summary_index = i + 1;
          break;
        }
      }
      if (summary == nullptr) continue;
      const PolicyClause* when = nullptr;
      const PolicyClause* then = nullptr;
      for (const PolicyClause& c : p.clauses) {
        if (c.kind == ClauseKind::kWhen) when = &c;
        if (c.kind == ClauseKind::kThen) then = &c;
      }
      for (const std::string& stage_name : summary->stages) {
        PirStage* stage = nullptr;
        for (PirStage& st : pir->stages) {
          if (st.name == stage_name) stage = &st;
        }
        PirContext ctx{m, stage, {}, {}};
        PirRule rule;
        rule.policy = p.name.value;
        rule.file = m->path;
        rule.mode = summary->mode;
        rule.action = summary->action;
        if (stage_name == "output") rule.stream_class = summary->output_class;
        rule.condition = when == nullptr ? "true" : PirExpr(*when->condition, &ctx);
        rule.pattern_refs = std::move(ctx.refs);
        const Action& a = then->action;
        rule.code = a.code.value;
        rule.message = a.message.value;
        std::string subject =
            stage_name == "input" ? "input.messages[*].content" : "output.text";
        for (const RedactItem& item : a.items) {
          PirRedaction r;
          PirPatternRef(*item.pattern, subject, &ctx, &r.set, &r.slot);
          r.replacement = item.replacement.value;
          rule.redactions.push_back(std::move(r));
        }
        stage->rules.push_back(std::move(rule));
      }
    }
  }
  pir->trees = tree_store_;
  return pir;
}

}  // namespace

CheckResult CheckProgram(Program* program, const Options& options, DiagnosticSink* sink,
                         bool build_pir) {
  Checker checker(program, options, sink, build_pir);
  return checker.Run();
}

}  // namespace kt::internal
