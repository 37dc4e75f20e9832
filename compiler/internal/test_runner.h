// The policy test runner behind `kt policy test`.
#ifndef KT_COMPILER_INTERNAL_TEST_RUNNER_H_
#define KT_COMPILER_INTERNAL_TEST_RUNNER_H_

#include "compiler/compiler.h"
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compiler/internal/checker.h"
#include "runtime/runtime.h"

namespace kt::internal {

class PolicyProgram;  // codegen.h
struct NativeRun;

// How the interpreter matches patterns: kt's automata by default; the tests
// plug in RE2 as an independent oracle (the reference evaluator).
class PatternMatcher {
 public:
  virtual ~PatternMatcher() = default;
  // The leftmost-longest, non-overlapping matches of the union of `trees`;
  // `pattern` is the index of the tree that matched.
  virtual std::vector<PatternMatch> AllMatches(const std::vector<const RegexNode*>& trees,
                                               std::string_view text) = 0;
  // Whether any of `trees` occurs in `text`.
  virtual bool Contains(const std::vector<const RegexNode*>& trees, std::string_view text) {
    return !AllMatches(trees, text).empty();
  }
};

using Json = nlohmann::json;
using Value = std::optional<Json>;  // nullopt: a failed conversion

// Evaluation could not be completed (a pattern set over its budget): the
// caller decides, and the gateway fails closed.
class EvaluationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// kt's automata as a PatternMatcher. Thread-safe (see test_runner.cc).
class KtMatcher : public PatternMatcher {
 public:
  // `jit`: compile each set's scan loops to native code (the gateway's
  // engine, which lives long enough to repay the milliseconds it costs).
  explicit KtMatcher(const Options& options, bool jit = false) : options_(options), jit_(jit) {}
  std::vector<PatternMatch> AllMatches(const std::vector<const RegexNode*>& trees,
                                       std::string_view text) override {
    return Set(trees).AllMatches(text);
  }
  bool Contains(const std::vector<const RegexNode*>& trees, std::string_view text) override {
    return Set(trees).Contains(text);
  }
  // The compiled set of `trees` (compiled now if it is the first use).
  const PatternSet& Set(const std::vector<const RegexNode*>& trees);

 private:
  const Options options_;
  const bool jit_;
  std::shared_mutex mu_;
  std::map<std::vector<const RegexNode*>, std::unique_ptr<PatternSet>> sets_;
};

struct Hit {
  const PolicyDecl* policy;
  std::string action;  // block | flag | redact
  bool enforced;
  std::string code;
  std::string message;
};

struct StageInput {
  const Module* scope = nullptr;  // the test's file: its policies and its imports' apply
  std::string stage;  // input | tool_call | output
  // Null until set (a default object would cost an allocation per
  // evaluation on the gateway's path, which borrows instead).
  Json request;
  Json tool;
  Json output;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string api_key_id;                      // what `api_key_id()` returns
  // Borrowed instead of copied (the gateway's path, which must not copy a
  // request to evaluate it): when set, read in place of the fields above.
  const Json* request_ref = nullptr;
  const std::map<std::string, std::string>* headers_ref = nullptr;
  const std::string* api_key_ref = nullptr;
  const Json& Request() const { return request_ref != nullptr ? *request_ref : request; }
  const std::map<std::string, std::string>& Headers() const {
    return headers_ref != nullptr ? *headers_ref : headers;
  }
  const std::string& ApiKeyId() const { return api_key_ref != nullptr ? *api_key_ref : api_key_id; }
  // When set, only these policies run (the stream evaluator's mid-stream
  // pass runs the monotone blocks alone).
  const std::set<const PolicyDecl*>* only = nullptr;
};

// The interpreter. `Evaluate` is safe to call from many threads at once when
// the matcher is (KtMatcher is): all per-call state lives on the stack.
class Evaluator {
 public:
  Evaluator(const Program& program, const Resolution& resolution, const Options& options,
            PatternMatcher* matcher = nullptr)
      : program_(program), res_(resolution),
        own_matcher_(matcher == nullptr ? std::make_unique<KtMatcher>(options) : nullptr),
        matcher_(matcher != nullptr ? matcher : own_matcher_.get()) {}

  // The decision for one stage: hits in order, and the redacted texts.
  struct Outcome {
    std::vector<Hit> hits;
    bool blocked = false;
    const Hit* block = nullptr;
    // Set only when an enforced redaction changed the texts (`redacted`);
    // otherwise the stage's input stands as it came.
    bool redacted = false;
    Json request;
    Json output;
  };
  Outcome Evaluate(const StageInput& in);
  // Whether the policy's `when` holds (true without one).
  bool Holds(const PolicyDecl& policy, const StageInput& in);
  // Any checked expression of the stage (a limit's key or condition).
  Value EvalIn(const Expr& e, const StageInput& in) {
    Env env{&in, {}};
    return Eval(e, &env);
  }
  // The stage's policies in evaluation order (all loaded files when
  // `scope` is null).
  std::vector<const PolicyDecl*> PoliciesOn(const std::string& stage, const Module* scope) const;

  Json Literal(const Expr& e) const;

  // Evaluates conditions with a compiled program (it must have been built
  // from this evaluator's program) instead of walking the AST.
  void set_program(const PolicyProgram* code) { code_ = code; }

 private:
  struct StageRun {
    const StageInput* in;
    Outcome* out;
    std::vector<const RegexNode*> redact_trees;  // enforced redactions, in order
    std::vector<std::string> redact_with;
    NativeRun* native = nullptr;  // the native run, when code evaluates
  };
  // Records the hit of a policy whose condition holds; true ends the stage.
  bool Fire(const PolicyDecl& policy, StageRun* run);
  void RunNative(int stage, const StageInput& in, StageRun* run);
  struct Env {
    const StageInput* in;
    // Quantifier variables, bound to the list items they range over (the
    // list outlives the binding).
    std::vector<std::pair<std::string, const Json*>> vars;
  };
  Value Eval(const Expr& e, Env* env);
  // The value of a path into the stage's data (`input.messages`, `m.content`,
  // a bound variable) without copying it, or null when the expression is not
  // such a path or names a missing field (Eval then gives its zero value).
  const Json* Ref(const Expr& e, Env* env) const;
  Value Field(const Expr& e, Env* env);
  bool Truthy(const Value& v) const { return v && v->is_boolean() && v->get<bool>(); }
  const std::vector<const RegexNode*>* TreesFor(const Expr& pattern) const {
    auto it = res_.pattern_trees.find(&pattern);
    return it == res_.pattern_trees.end() ? nullptr : &it->second;
  }
  Json ZeroFor(const Expr& e) const;

  const Program& program_;
  const Resolution& res_;
  std::unique_ptr<KtMatcher> own_matcher_;
  PatternMatcher* matcher_;
  const PolicyProgram* code_ = nullptr;
};

// Runs every `test` block of the program's root files. The program must have
// passed the checker without errors. `matcher` defaults to kt's automata.
// With `program`, conditions run as its native code (the engine the gateway
// uses); `matcher` must then be the KtMatcher the program was built with.
TestRun RunTests(const Program& program, const Resolution& resolution, const Options& options,
                 const SourceMap& sources, PatternMatcher* matcher = nullptr,
                 const PolicyProgram* program_code = nullptr);

// Evaluates the whole policy set on OpenAI-format bodies (a chat-completions
// request, a response, or a tool call), keeping compiled patterns between
// calls. Not thread-safe.
class RequestEvaluator {
 public:
  RequestEvaluator(const Program& program, const Resolution& resolution, const Options& options);
  ~RequestEvaluator();
  // The decision for one stage, as JSON; empty with `*error` set on a bad body.
  std::string Evaluate(const std::string& stage, const std::string& body, std::string* error);

 private:
  std::string EvaluateChecked(const std::string& stage, const std::string& body,
                              std::string* error);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_TEST_RUNNER_H_
