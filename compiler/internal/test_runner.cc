// `kt policy test`: runs the `test` blocks of a policy set.
//
// Evaluation here walks the checked AST directly (an interpreter), with the
// checker's resolution tables for names, types and pattern operands, and
// kt's own automata for patterns. It implements the decision semantics of
// docs/language.md: rules run in declaration order on the test's stage; the
// first enforced block ends the stage; observe-mode hits are recorded and
// change nothing; a redact rule hits when its condition holds and one of its
// patterns matches, and enforced redactions are applied together (leftmost-
// longest over all of them); a failed `as` conversion makes the whole
// condition false.
//
// Values are JSON values: requests, messages, tool calls and outputs are the
// objects the test literals describe, so missing optional fields read as
// null and missing required ones as their type's zero.
#include <algorithm>
#include <optional>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "compiler/compiler.h"
#include "compiler/internal/automata.h"
#include "compiler/internal/automata_cache.h"
#include "compiler/internal/checker.h"
#include "compiler/internal/codegen.h"
#include "compiler/internal/test_runner.h"
#include "runtime/runtime.h"

namespace kt::internal {

// The default matcher: kt's automata, one compiled set per tree list,
// compiled on first use and shared. Thread-safe: a compiled PatternSet is
// immutable, and the cache is read under a shared lock (compilation, once
// per distinct tree list, takes the exclusive one).
const PatternSet& KtMatcher::Set(const std::vector<const RegexNode*>& trees) {
  const PatternSet* set = nullptr;
  {
    std::shared_lock lock(mu_);
    auto it = sets_.find(trees);
    if (it != sets_.end()) set = it->second.get();
  }
  if (set == nullptr) {
    AutomataLimits limits;
    limits.dfa_memory_budget = options_.dfa_memory_budget;
    AutomataResult built = BuildAutomataCached(trees, limits, options_.object_cache_dir);
    if (!built.ok) {
      // The checker compiled every pattern already; failing here means a
      // set too large for its budget, which must not read as "no match".
      throw EvaluationError("a pattern set could not be compiled: " + built.error);
    }
    built.tables.lazy_cache_bytes = options_.dfa_memory_budget;
    auto fresh = std::make_unique<PatternSet>(std::move(built.tables));
    if (jit_) {
      JitOptions jit_options;
      jit_options.cache_dir = options_.object_cache_dir;
      fresh->Jit(nullptr, jit_options);  // on failure the set keeps its table interpreter
    }
    std::unique_lock lock(mu_);
    auto& slot = sets_[trees];
    if (slot == nullptr) slot = std::move(fresh);
    set = slot.get();
  }
  return *set;
}

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Json Evaluator::Literal(const Expr& e) const {
  switch (e.kind) {
    case ExprKind::kInt:
      return e.int_value;
    case ExprKind::kFloat:
      return e.float_value;
    case ExprKind::kDuration:
      return e.int_value;
    case ExprKind::kString:
    case ExprKind::kIString:
      return e.text;
    case ExprKind::kBool:
      return e.bool_value;
    case ExprKind::kNull:
      return nullptr;
    case ExprKind::kNeg: {
      Json v = Literal(*e.children[0]);
      if (v.is_number_integer()) return -v.get<int64_t>();
      if (v.is_number()) return -v.get<double>();
      return nullptr;
    }
    case ExprKind::kParen:
      return Literal(*e.children[0]);
    case ExprKind::kList: {
      Json a = Json::array();
      for (const ExprPtr& c : e.children) a.push_back(Literal(*c));
      return a;
    }
    case ExprKind::kObject: {
      Json o = Json::object();
      for (std::size_t i = 0; i < e.keys.size(); ++i) o[e.keys[i]] = Literal(*e.children[i]);
      return o;
    }
    default:
      return nullptr;
  }
}

Json Evaluator::ZeroFor(const Expr& e) const {
  auto it = res_.types.find(&e);
  if (it == res_.types.end() || it->second.optional) return nullptr;
  switch (it->second.shape) {
    case Resolution::Shape::kString:
      return "";
    case Resolution::Shape::kInt:
      return 0;
    case Resolution::Shape::kFloat:
      return 0.0;
    case Resolution::Shape::kBool:
      return false;
    case Resolution::Shape::kList:
      return Json::array();
    default:
      return nullptr;
  }
}

const Json* Evaluator::Ref(const Expr& e, Env* env) const {
  switch (e.kind) {
    case ExprKind::kParen:
      return Ref(*e.children[0], env);
    case ExprKind::kName:
      for (auto it = env->vars.rbegin(); it != env->vars.rend(); ++it) {
        if (it->first == e.text) return it->second;
      }
      if (res_.decls.count(&e)) return nullptr;  // a `let`: evaluated
      if (e.text == "input") return &env->in->Request();
      if (e.text == "tool") return &env->in->tool;
      if (e.text == "output") return &env->in->output;
      return nullptr;
    case ExprKind::kField: {
      if (res_.decls.count(&e)) return nullptr;
      const Json* base = Ref(*e.children[0], env);
      if (base == nullptr || !base->is_object()) return nullptr;
      auto it = base->find(e.text);
      return it == base->end() ? nullptr : &*it;
    }
    case ExprKind::kIndex: {
      const Expr& index = *e.children[1];
      if (index.kind != ExprKind::kInt || index.int_value < 0) return nullptr;
      const Json* base = Ref(*e.children[0], env);
      if (base == nullptr || !base->is_array() ||
          static_cast<std::size_t>(index.int_value) >= base->size()) {
        return nullptr;
      }
      return &(*base)[static_cast<std::size_t>(index.int_value)];
    }
    default:
      return nullptr;
  }
}

Value Evaluator::Field(const Expr& e, Env* env) {
  // Paths into the request are read in place: copying `input` to read one
  // field of it made evaluation cost grow with the request size.
  if (const Json* p = Ref(e, env)) return *p;
  Value base = Eval(*e.children[0], env);
  if (!base) return base;
  if (base->is_object() && base->contains(e.text)) return (*base)[e.text];
  return ZeroFor(e);
}

Value Evaluator::Eval(const Expr& e, Env* env) {
  switch (e.kind) {
    case ExprKind::kInt:
    case ExprKind::kFloat:
    case ExprKind::kDuration:
    case ExprKind::kString:
    case ExprKind::kBool:
    case ExprKind::kNull:
    case ExprKind::kList:
      if (e.kind != ExprKind::kList) return Literal(e);
      {
        Json a = Json::array();
        for (const ExprPtr& c : e.children) {
          Value v = Eval(*c, env);
          if (!v) return v;
          a.push_back(*v);
        }
        return a;
      }
    case ExprKind::kParen:
      return Eval(*e.children[0], env);
    case ExprKind::kName: {
      for (auto it = env->vars.rbegin(); it != env->vars.rend(); ++it) {
        if (it->first == e.text) return *it->second;
      }
      if (auto d = res_.decls.find(&e); d != res_.decls.end() && d->second->kind == DeclKind::kLet) {
        return Eval(*d->second->let->value, env);
      }
      if (e.text == "input") return env->in->Request();
      if (e.text == "tool") return env->in->tool;
      if (e.text == "output") return env->in->output;
      if (e.text == "source") {
        auto h = env->in->Headers().find("x-request-source");
        return h == env->in->Headers().end() ? Json("") : Json(h->second);
      }
      if (e.text == "correlation_id") {
        auto h = env->in->Headers().find("x-correlation-id");
        return h == env->in->Headers().end() ? Json("") : Json(h->second);
      }
      return Json(nullptr);
    }
    case ExprKind::kField: {
      if (auto d = res_.decls.find(&e); d != res_.decls.end() && d->second->kind == DeclKind::kLet) {
        return Eval(*d->second->let->value, env);
      }
      return Field(e, env);
    }
    case ExprKind::kIndex: {
      Value base = Eval(*e.children[0], env);
      Value idx = Eval(*e.children[1], env);
      if (!base || !idx) return std::nullopt;
      if (base->is_array() && idx->is_number_integer()) {
        int64_t i = idx->get<int64_t>();
        if (i >= 0 && static_cast<std::size_t>(i) < base->size()) return (*base)[i];
      } else if (base->is_object() && idx->is_string()) {
        auto key = idx->get<std::string>();
        if (base->contains(key)) return (*base)[key];
      }
      return ZeroFor(e);
    }
    case ExprKind::kCast: {
      Value v = Eval(*e.children[0], env);
      if (!v) return v;
      if (e.text == "string" && v->is_string()) return v;
      if (e.text == "int" && v->is_number_integer()) return v;
      if (e.text == "float" && v->is_number()) return Json(v->get<double>());
      if (e.text == "bool" && v->is_boolean()) return v;
      return std::nullopt;  // a failed conversion: the condition is false
    }
    case ExprKind::kNeg: {
      Value v = Eval(*e.children[0], env);
      if (!v) return v;
      if (v->is_number_integer()) return Json(-v->get<int64_t>());
      return Json(-v->get<double>());
    }
    case ExprKind::kCoalesce:
      for (const ExprPtr& c : e.children) {
        Value v = Eval(*c, env);
        if (!v) return v;
        if (!v->is_null()) return v;
      }
      return Json(nullptr);
    case ExprKind::kCompare: {
      Value l = Eval(*e.children[0], env);
      Value r = Eval(*e.children[1], env);
      if (!l || !r) return std::nullopt;
      const std::string& op = e.text;
      if (op == "==" || op == "!=") {
        bool eq = (l->is_number() && r->is_number()) ? l->get<double>() == r->get<double>() : *l == *r;
        return Json(op == "==" ? eq : !eq);
      }
      if (!l->is_number() || !r->is_number()) return Json(false);
      double a = l->get<double>(), b = r->get<double>();
      return Json(op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b);
    }
    case ExprKind::kIn: {
      Value l = Eval(*e.children[0], env);
      Value r = Eval(*e.children[1], env);
      if (!l || !r) return std::nullopt;
      bool found = r->is_array() && std::find(r->begin(), r->end(), *l) != r->end();
      return Json(e.bool_value ? !found : found);
    }
    case ExprKind::kMatch: {
      Value l = Eval(*e.children[0], env);
      if (!l) return l;
      std::string text = l->is_string() ? l->get<std::string>() : std::string();
      if (e.text == "matches" || e.text == "fullmatches") {
        const auto* trees = TreesFor(*e.children[1]);
        if (trees == nullptr) return std::nullopt;
        std::vector<PatternMatch> ms = matcher_->AllMatches(*trees, text);
        if (e.text == "matches") return Json(!ms.empty());
        // The leftmost-longest match from 0 covers the text iff any does.
        return Json(!ms.empty() && ms[0].start == 0 && ms[0].end == text.size());
      }
      Value r = Eval(*e.children[1], env);
      if (!r) return r;
      std::string needle = r->is_string() ? r->get<std::string>() : std::string();
      if (e.text == "contains") return Json(text.find(needle) != std::string::npos);
      if (e.text == "startswith") return Json(text.rfind(needle, 0) == 0);
      return Json(text.size() >= needle.size() &&
                  text.compare(text.size() - needle.size(), needle.size(), needle) == 0);
    }
    case ExprKind::kNot: {
      Value v = Eval(*e.children[0], env);
      if (!v) return v;
      return Json(!Truthy(v));
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      // An operand equal to the decisive value (false for `and`, true for
      // `or`) settles it; a failed conversion elsewhere fails the whole.
      const bool decisive = e.kind == ExprKind::kOr;
      bool failed = false;
      for (const ExprPtr& c : e.children) {
        Value v = Eval(*c, env);
        if (!v) {
          failed = true;
          continue;
        }
        if (Truthy(v) == decisive) return Json(decisive);
      }
      return failed ? Value(std::nullopt) : Value(Json(!decisive));
    }
    case ExprKind::kQuant: {
      // Range over the list in place when it is a path into the data.
      Value owned;
      const Json* list = Ref(*e.children[0], env);
      if (list == nullptr) {
        owned = Eval(*e.children[0], env);
        if (!owned) return owned;
        list = &*owned;
      }
      bool all = e.bool_value;
      bool failed = false;
      if (list->is_array()) {
        for (const Json& item : *list) {
          env->vars.emplace_back(e.text, &item);
          Value v = Eval(*e.children[1], env);
          env->vars.pop_back();
          if (!v) {
            failed = true;
            continue;
          }
          if (!all && Truthy(v)) return Json(true);
          if (all && !Truthy(v)) return Json(false);
        }
      }
      if (failed) return std::nullopt;
      return Json(all);
    }
    case ExprKind::kCall: {
      if (e.text == "count") {
        const Expr& in = *e.children[0];
        Value t = Eval(*in.children[1], env);
        if (!t) return t;
        const auto* trees = TreesFor(*in.children[0]);
        if (trees == nullptr) return std::nullopt;
        return Json(static_cast<int64_t>(
            matcher_->AllMatches(*trees, t->is_string() ? t->get<std::string>() : "").size()));
      }
      if (e.text == "api_key_id") return Json(env->in->ApiKeyId());
      std::vector<Json> args;
      for (const ExprPtr& c : e.children) {
        Value v = Eval(*c, env);
        if (!v) return v;
        args.push_back(*v);
      }
      if (e.text == "len") {
        if (args[0].is_string()) return Json(static_cast<int64_t>(args[0].get<std::string>().size()));
        if (args[0].is_array()) return Json(static_cast<int64_t>(args[0].size()));
        return Json(0);
      }
      if (e.text == "lower" || e.text == "upper") {
        std::string s = args[0].is_string() ? args[0].get<std::string>() : "";
        for (char& c : s) {
          c = static_cast<char>(e.text == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                                  : std::toupper(static_cast<unsigned char>(c)));
        }
        return Json(s);
      }
      if (e.text == "header") {
        std::string name = args[0].is_string() ? Lower(args[0].get<std::string>()) : "";
        auto h = env->in->Headers().find(name);
        return h == env->in->Headers().end() ? Json(nullptr) : Json(h->second);
      }
      return Json(nullptr);
    }
    default:
      return Json(nullptr);
  }
}

// A test exercises the policies of its own file and of the files it imports
// (transitively), in load order: examples and stdlib files are independent
// scenarios, and a test should not depend on which other files were loaded.
std::vector<const PolicyDecl*> Evaluator::PoliciesOn(const std::string& stage,
                                                     const Module* scope) const {
  std::set<const Module*> reach;
  std::vector<const Module*> todo = {scope};
  if (scope == nullptr) todo.assign(program_.roots.begin(), program_.roots.end());
  while (!todo.empty()) {
    const Module* m = todo.back();
    todo.pop_back();
    if (m == nullptr || !reach.insert(m).second) continue;
    for (const auto& [alias, dep] : m->imports) todo.push_back(dep);
  }
  std::vector<const PolicyDecl*> out;
  for (const auto& owned : program_.modules) {
    const Module* m = owned.get();
    if (m->ast == nullptr || !reach.count(m)) continue;
    for (const Decl& d : m->ast->decls) {
      if (d.kind != DeclKind::kPolicy) continue;
      for (const PolicyClause& c : d.policy->clauses) {
        if (c.kind != ClauseKind::kOn) continue;
        for (const Name& n : c.names) {
          if (n.text == stage) out.push_back(d.policy.get());
        }
      }
    }
  }
  return out;
}

bool Evaluator::Holds(const PolicyDecl& policy, const StageInput& in) {
  for (const PolicyClause& c : policy.clauses) {
    if (c.kind != ClauseKind::kWhen) continue;
    Env env{&in, {}};
    return Truthy(Eval(*c.condition, &env));
  }
  return true;
}

// The texts a redaction applies to, read in place.
template <typename Visit>
static void ForEachSubject(const StageInput& in, Visit visit) {
  if (in.stage == "output") {
    auto it = in.output.find("text");
    visit(it != in.output.end() && it->is_string() ? std::string_view(it->get_ref<const std::string&>())
                                                   : std::string_view());
    return;
  }
  auto ms = in.Request().find("messages");
  if (ms == in.Request().end() || !ms->is_array()) return;
  for (const Json& m : *ms) {
    auto c = m.is_object() ? m.find("content") : m.end();
    visit(m.is_object() && c != m.end() && c->is_string()
              ? std::string_view(c->get_ref<const std::string&>())
              : std::string_view());
  }
}

bool Evaluator::Fire(const PolicyDecl& p, StageRun* run) {
  const StageInput& in = *run->in;
  Outcome& out = *run->out;
  const PolicyClause* then = nullptr;
  std::string mode = "enforce";
  for (const PolicyClause& c : p.clauses) {
    if (c.kind == ClauseKind::kThen) then = &c;
    if (c.kind == ClauseKind::kMode) mode = c.names[0].text;
  }
  const Action& a = then->action;
  const bool enforced = mode == "enforce";
  if (a.kind == ActionKind::kRedact) {
    // A redaction that finds nothing is no hit.
    bool matched = false;
    for (const RedactItem& item : a.items) {
      const auto* trees = TreesFor(*item.pattern);
      if (trees == nullptr) continue;
      const int set = run->native != nullptr ? code_->SetFor(item.pattern.get()) : -1;
      ForEachSubject(in, [&](std::string_view t) {
        matched = matched || (set >= 0 ? code_->Occurs(run->native, static_cast<uint32_t>(set), t)
                                       : matcher_->Contains(*trees, t));
      });
    }
    if (!matched) return false;
    if (enforced) {
      for (const RedactItem& item : a.items) {
        for (const RegexNode* tree : res_.pattern_trees.at(item.pattern.get())) {
          run->redact_trees.push_back(tree);
          run->redact_with.push_back(item.replacement.value);
        }
      }
    }
  }
  // Only a hit pays for its strings.
  out.hits.push_back(Hit{&p,
                         a.kind == ActionKind::kBlock  ? "block"
                         : a.kind == ActionKind::kFlag ? "flag"
                                                       : "redact",
                         enforced, a.code.value, a.message.value});
  if (a.kind == ActionKind::kBlock && enforced) {
    out.blocked = true;
    return true;
  }
  return false;
}

void Evaluator::RunNative(int stage, const StageInput& in, StageRun* run) {
  const std::vector<const PolicyDecl*>& rules = code_->rules(stage);
  // Which rules run: all of them, or the test's scope and the stream
  // evaluator's subset. Per-thread scratch, so the gateway's path does not
  // allocate once warm.
  thread_local std::vector<uint8_t> enabled;
  thread_local std::vector<abi::MessageView> messages;
  thread_local std::vector<abi::ToolDefView> tools;
  enabled.assign(rules.size(), 1);
  if (in.scope != nullptr || in.only != nullptr) {
    std::vector<const PolicyDecl*> scoped;
    if (in.scope != nullptr) scoped = PoliciesOn(in.stage, in.scope);
    for (std::size_t i = 0; i < rules.size(); ++i) {
      bool on = in.scope == nullptr || std::find(scoped.begin(), scoped.end(), rules[i]) != scoped.end();
      if (in.only != nullptr && !in.only->count(rules[i])) on = false;
      enabled[i] = on;
    }
  }
  abi::RequestView view;
  BuildView(in, &view, &messages, &tools);
  thread_local NativeRun::Memo memo;
  memo.count = 0;
  memo.stride = code_->merged_words(stage);
  NativeRun native;
  native.program = code_;
  native.in = &in;
  native.view = &view;
  native.stage = stage;
  native.memo = &memo;
  run->native = &native;
  struct Ctx {
    Evaluator* self;
    StageRun* run;
    const std::vector<const PolicyDecl*>* rules;
  } ctx{this, run, &rules};
  native.fire = [](void* arg, uint32_t rule) {
    auto* c = static_cast<Ctx*>(arg);
    return c->self->Fire(*(*c->rules)[rule], c->run);
  };
  native.fire_arg = &ctx;
  abi::Frame frame;
  frame.enabled = enabled.data();
  frame.runtime = &native;
  code_->entry(stage)(&frame, &view);
  run->native = nullptr;
  if (native.failed) throw EvaluationError(native.error);
}

Evaluator::Outcome Evaluator::Evaluate(const StageInput& in) {
  Outcome out;
  StageRun run{&in, &out, {}, {}};
  const int stage = StageIndex(in.stage);
  if (code_ != nullptr && stage >= 0) {
    RunNative(stage, in, &run);
  } else {
    for (const PolicyDecl* p : PoliciesOn(in.stage, in.scope)) {
      if (in.only != nullptr && !in.only->count(p)) continue;
      if (Holds(*p, in) && Fire(*p, &run)) break;
    }
  }
  for (const Hit& h : out.hits) {
    if (h.action == "block" && h.enforced) out.block = &h;
  }
  if (!out.blocked && !run.redact_trees.empty()) {
    // Enforced redactions, applied together (leftmost-longest over all).
    auto redact = [&](const std::string& text) {
      std::string r;
      std::size_t pos = 0;
      for (const PatternMatch& m : matcher_->AllMatches(run.redact_trees, text)) {
        r += text.substr(pos, m.start - pos) + run.redact_with[m.pattern];
        pos = m.end;
      }
      return r + text.substr(pos);
    };
    out.redacted = true;
    out.request = in.Request();
    out.output = in.output;
    if (in.stage == "output") {
      out.output["text"] = redact(in.output.value("text", ""));
    } else if (out.request.contains("messages") && out.request["messages"].is_array()) {
      for (Json& m : out.request["messages"]) {
        if (m.contains("content") && m["content"].is_string()) {
          m["content"] = redact(m["content"].get<std::string>());
        }
      }
    }
  }
  return out;
}

struct RequestEvaluator::Impl {
  Impl(const Program& program, const Resolution& resolution, const Options& options)
      : matcher(options, /*jit=*/true), ev(program, resolution, options, &matcher) {
    if (!options.native) return;
    ProgramOptions po;
    po.cache_dir = options.object_cache_dir;
    code = PolicyProgram::Build(program, resolution, &matcher, po, &build_error);
    ev.set_program(code.get());
  }
  KtMatcher matcher;
  Evaluator ev;
  std::unique_ptr<PolicyProgram> code;
  std::string build_error;
};

RequestEvaluator::RequestEvaluator(const Program& program, const Resolution& resolution,
                                   const Options& options)
    : impl_(std::make_unique<Impl>(program, resolution, options)) {}
RequestEvaluator::~RequestEvaluator() = default;

std::string RequestEvaluator::Evaluate(const std::string& stage, const std::string& body,
                                       std::string* error) {
  if (!impl_->build_error.empty()) {
    *error = "the policy program could not be compiled: " + impl_->build_error;
    return {};
  }
  // A body of the wrong shape (a number where text belongs, say) is the
  // caller's error, reported, never a crash.
  try {
    return EvaluateChecked(stage, body, error);
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("the body does not have the expected shape: ") + e.what();
    return {};
  }
}

std::string RequestEvaluator::EvaluateChecked(const std::string& stage, const std::string& body,
                                              std::string* error) {
  Json doc = Json::parse(body, nullptr, false);
  if (doc.is_discarded()) {
    *error = "the request file is not valid JSON";
    return {};
  }
  // Check the shape first: a body policies cannot read must not pass as an
  // empty one (fail closed).
  auto bad = [&](const std::string& what) {
    *error = "the body is not a valid " +
             std::string(stage == "input"    ? "chat-completions request"
                         : stage == "output" ? "chat-completions response"
                                             : "tool call") +
             ": " + what;
    return std::string();
  };
  if (!doc.is_object()) return bad("expected a JSON object");
  if (stage == "input") {
    if (doc.contains("model") && !doc["model"].is_string()) return bad("`model` must be a string");
    if (!doc.contains("messages") || !doc["messages"].is_array()) {
      return bad("`messages` must be a list");
    }
    for (std::size_t i = 0; i < doc["messages"].size(); ++i) {
      const Json& m = doc["messages"][i];
      std::string at = "`messages[" + std::to_string(i) + "]";
      if (!m.is_object()) return bad(at + "` must be an object");
      if (!m.contains("role") || !m["role"].is_string()) return bad(at + ".role` must be a string");
      if (m.contains("content") && !m["content"].is_string() && !m["content"].is_array() &&
          !m["content"].is_null()) {
        return bad(at + ".content` must be a string or a list of parts");
      }
    }
  } else if (stage == "output") {
    if (!doc.contains("choices") || !doc["choices"].is_array() || doc["choices"].empty() ||
        !doc["choices"][0].is_object()) {
      return bad("`choices` must be a non-empty list");
    }
  } else {
    const Json& fn = doc.contains("function") ? doc["function"] : doc;
    if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string()) {
      return bad("the tool's `name` must be a string");
    }
  }
  StageInput in;
  in.stage = stage;
  // Message content may be a string or a list of parts; policies see text.
  auto text_of = [](const Json& content) {
    if (content.is_string()) return content.get<std::string>();
    std::string out;
    if (content.is_array()) {
      for (const Json& part : content) {
        if (part.is_object() && part.value("type", "") == "text") {
          out += (out.empty() ? "" : "\n") + part.value("text", "");
        }
      }
    }
    return out;
  };
  if (stage == "input") {
    in.request = doc;
    if (doc.contains("messages") && doc["messages"].is_array()) {
      for (Json& m : in.request["messages"]) {
        if (m.contains("content")) m["content"] = text_of(m["content"]);
      }
    }
  } else if (stage == "output") {
    // A chat-completions response: the first choice.
    const Json& choice = doc.contains("choices") && doc["choices"].is_array() && !doc["choices"].empty()
                             ? doc["choices"][0]
                             : Json::object();
    in.output = {{"text", choice.contains("message") ? text_of(choice["message"].value("content", Json(""))) : ""},
                 {"finish_reason", choice.value("finish_reason", Json(nullptr))},
                 {"model", doc.value("model", "")}};
  } else {
    // A tool call as the API returns it, or just {name, arguments}.
    const Json& fn = doc.contains("function") ? doc["function"] : doc;
    Json args = fn.contains("arguments") && fn["arguments"].is_string()
                    ? Json::parse(fn["arguments"].get<std::string>(), nullptr, false)
                    : fn.value("arguments", Json::object());
    if (args.is_discarded()) args = nullptr;
    in.tool = {{"name", fn.value("name", "")}, {"args", args}, {"index", doc.value("index", 0)},
               {"id", doc.value("id", "")}};
  }
  if (!in.request.contains("messages")) in.request["messages"] = Json::array();
  Evaluator::Outcome out = impl_->ev.Evaluate(in);
  Json decision = {{"stage", stage}, {"verdict", out.blocked ? "block" : "allow"}};
  Json hits = Json::array();
  for (const Hit& h : out.hits) {
    hits.push_back({{"policy", h.policy->name.value},
                    {"action", h.action},
                    {"mode", h.enforced ? "enforce" : "observe"},
                    {"enforced", h.enforced},
                    {"code", h.code}});
  }
  decision["policies"] = hits;
  if (out.block != nullptr) {
    decision["policy"] = out.block->policy->name.value;
    decision["code"] = out.block->code;
  }
  if (stage == "input" && !out.blocked) decision["request"] = out.redacted ? out.request : in.request;
  if (stage == "output" && !out.blocked) {
    decision["output"] = (out.redacted ? out.output : in.output).value("text", "");
  }
  return decision.dump(2);
}

TestRun RunTests(const Program& program, const Resolution& resolution, const Options& options,
                 const SourceMap& sources, PatternMatcher* matcher,
                 const PolicyProgram* program_code) {
  TestRun run;
  Evaluator ev(program, resolution, options, matcher);
  ev.set_program(program_code);
  std::set<std::string> exercised;
  std::vector<std::pair<std::string, std::string>> all_policies;  // name, file
  for (const Module* m : program.roots) {
    if (m->ast == nullptr) continue;
    for (const Decl& d : m->ast->decls) {
      if (d.kind == DeclKind::kPolicy) all_policies.emplace_back(d.policy->name.value, m->path);
    }
  }
  auto line_of = [&](const Module* m, Span span) -> uint32_t {
    const SourceMap::File* f = sources.Find(m->path);
    return f == nullptr ? 0 : SourceMap::PositionOf(*f, span.begin).line;
  };
  for (const Module* m : program.roots) {
    if (m->ast == nullptr) continue;
    for (const Decl& d : m->ast->decls) {
      if (d.kind != DeclKind::kTest) continue;
      const TestDecl& t = *d.test;
      StageInput in;
      in.scope = m;
      in.stage = "input";
      bool has_tool = false, has_output = false;
      for (const TestClause& c : t.clauses) {
        if (c.is_expect) continue;
        Json v = ev.Literal(*c.value);
        if (c.given.text == "input") in.request = v;
        if (c.given.text == "tool_call") {
          in.tool = v;
          has_tool = true;
        }
        if (c.given.text == "output") {
          in.output = v.is_string() ? Json{{"text", v}} : v;
          has_output = true;
        }
        if (c.given.text == "headers" && v.is_object()) {
          for (auto it = v.begin(); it != v.end(); ++it) {
            if (it.value().is_string()) in.headers[Lower(it.key())] = it.value().get<std::string>();
          }
        }
      }
      if (!in.request.contains("messages")) in.request["messages"] = Json::array();
      if (has_tool) in.stage = "tool_call";
      if (has_output) in.stage = "output";
      Evaluator::Outcome out = ev.Evaluate(in);
      for (const Hit& h : out.hits) exercised.insert(h.policy->name.value);

      TestCaseResult result;
      result.file = m->path;
      result.line = line_of(m, t.name.span);
      result.name = t.name.value;
      result.passed = true;
      result.verdict = out.blocked ? "block" : "allow";
      if (out.block != nullptr) {
        result.policy = out.block->policy->name.value;
        result.code = out.block->code;
      }
      std::string hits;
      for (const Hit& h : out.hits) {
        hits += (hits.empty() ? "" : ", ") + h.action + " \"" + h.policy->name.value + "\"" +
                (h.enforced ? "" : " (observe)");
      }
      auto fail = [&](const TestClause& c, std::string why) {
        if (!result.passed) return;
        result.passed = false;
        result.failure_line = line_of(m, c.span);
        result.failure = std::move(why) + "; decision: " + result.verdict +
                         (hits.empty() ? "" : " (hits: " + hits + ")");
      };
      for (const TestClause& c : t.clauses) {
        if (!c.is_expect) continue;
        auto find_hit = [&](const std::string& action) -> const Hit* {
          for (const Hit& h : out.hits) {
            if (h.policy->name.value == c.policy.value && h.action == action) return &h;
          }
          return nullptr;
        };
        switch (c.expect) {
          case ExpectKind::kAllow:
            if (out.blocked) fail(c, "expected allow");
            break;
          case ExpectKind::kBlock: {
            const Hit* h = find_hit("block");
            if (h == nullptr) {
              fail(c, "expected block \"" + c.policy.value + "\"");
            } else if (c.code.present && h->code != c.code.value) {
              fail(c, "expected code \"" + c.code.value + "\", got \"" + h->code + "\"");
            }
            break;
          }
          case ExpectKind::kRedact:
            if (find_hit("redact") == nullptr) fail(c, "expected redact \"" + c.policy.value + "\"");
            break;
          case ExpectKind::kFlag:
            if (find_hit("flag") == nullptr) fail(c, "expected flag \"" + c.policy.value + "\"");
            break;
          case ExpectKind::kValue: {
            Json actual;
            const Expr& path = *c.value;
            if (path.kind == ExprKind::kName && path.text == "output") {
              actual = (out.redacted ? out.output : in.output).value("text", "");
            } else {
              // Evaluate the path over the stage's result.
              struct Walker {
                static Json Walk(const Expr& e, const Json& request, const Json& output) {
                  switch (e.kind) {
                    case ExprKind::kName:
                      return e.text == "input" ? request : e.text == "output" ? output : Json();
                    case ExprKind::kField: {
                      Json b = Walk(*e.children[0], request, output);
                      return b.is_object() && b.contains(e.text) ? b[e.text] : Json();
                    }
                    case ExprKind::kIndex: {
                      Json b = Walk(*e.children[0], request, output);
                      const Expr& i = *e.children[1];
                      if (b.is_array() && i.kind == ExprKind::kInt && i.int_value >= 0 &&
                          static_cast<std::size_t>(i.int_value) < b.size()) {
                        return b[i.int_value];
                      }
                      return Json();
                    }
                    default:
                      return Json();
                  }
                }
              };
              actual = Walker::Walk(path, out.redacted ? out.request : in.request,
                                    out.redacted ? out.output : in.output);
            }
            std::string text = actual.is_string() ? actual.get<std::string>() : actual.dump();
            if (text != c.expected.value) {
              fail(c, "expected \"" + c.expected.value + "\", got \"" + text + "\"");
            }
            break;
          }
        }
      }
      (result.passed ? run.passed : run.failed)++;
      run.results.push_back(std::move(result));
    }
  }
  for (const auto& [name, file] : all_policies) {
    if (!exercised.count(name)) run.untested.push_back(name);
  }
  return run;
}

}  // namespace kt::internal
