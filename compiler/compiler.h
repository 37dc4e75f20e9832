// kt compiler facade: the only header other layers include from compiler/.
//
// Purpose. Turns `.ktp` policy sources into checked programs, and reports every
// problem in them as a `Diagnostic` (data, not text). Also hosts the canonical
// formatter and the diagnostic renderers (text, JSON, SARIF 2.1.0).
//
// Error channels. Problems in a user's policy are diagnostics; they never
// throw. Failures of kt itself (a file that cannot be read) are reported as
// diagnostics too, with codes in the E00xx range, because to a policy author
// they are equally "why did my lint fail". No exception crosses this header.
//
// Thread-safety. A `Compiler` is not thread-safe; use one per thread. The
// results (`LintResult`, `SourceMap`) are immutable once returned and may be
// shared freely.
//
// Bounds. Every resource the front end spends is bounded by a field of
// `Options` with a documented default; hitting a bound yields a diagnostic.
#ifndef KT_COMPILER_COMPILER_H_
#define KT_COMPILER_COMPILER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/abi/automaton.h"

namespace kt {

// A half-open byte range [begin, end) within one source file.
struct Span {
  uint32_t begin = 0;
  uint32_t end = 0;
};

enum class Severity { kError, kWarning, kNote };

// A secondary location attached to a diagnostic ("first declared here").
struct Label {
  std::string file;
  Span span;
  std::string message;
};

// One problem in a user's policy. `code` is stable (E0xxx errors, W0xxx
// warnings) and documented in docs/diagnostics.md; `message` is one lowercase
// line without a trailing period, user input in backticks.
struct Diagnostic {
  Severity severity = Severity::kError;
  std::string code;
  std::string message;
  std::string file;
  Span span;
  std::vector<Label> labels;
  std::string help;
};

// Front-end limits. Each default is chosen to be far above any hand-written
// policy while keeping a hostile input from costing more than a few
// milliseconds or a few megabytes.
struct Options {
  // Largest accepted source file. A 50 MB file gets E0002, not a slow parse.
  std::size_t max_file_bytes = 4u << 20;
  // Deepest accepted nesting of brackets, prefix operators and quantifiers.
  // Guards ANTLR's recursive-descent parser and every recursive pass after it.
  int max_nesting_depth = 200;
  // Diagnostics reported per run before the rest are summarised.
  int max_errors = 100;
  // Longest accepted regex literal, in bytes.
  std::size_t max_regex_bytes = 16u << 10;
  // Largest repetition count in `{m,n}`; bounds automaton size up front.
  int max_repeat = 1000;
  // Directories searched for `import std.x` (the folder that contains std/).
  std::vector<std::string> stdlib_paths;
  // Largest transition table of one eager DFA, and the cache of a lazy one.
  // A pattern set that would need more runs on a lazy DFA, built while
  // scanning (reported as W0506). Default 8 MiB.
  std::size_t dfa_memory_budget = 8u << 20;
  // Evaluate with the policy program compiled to native code (LLVM ORC);
  // false: walk the checked AST (the interpreter, same semantics).
  bool native = true;
  // Where compiled policy programs are cached (see DefaultObjectCacheDir);
  // empty: no cache, every load compiles.
  std::string object_cache_dir;
};

// The object cache directory unless told otherwise: $KT_CACHE_DIR when set
// (set and empty: no cache), else $XDG_CACHE_HOME/kt, else ~/.cache/kt.
std::string DefaultObjectCacheDir();

// Owns the text of every file a run has read, for rendering diagnostics.
class SourceMap {
 public:
  struct File {
    std::string path;
    std::string text;
    std::vector<uint32_t> line_starts;
  };
  struct Position {
    uint32_t line = 1;    // 1-based
    uint32_t column = 1;  // 1-based, in Unicode code points
  };

  const File* Add(std::string path, std::string text);
  const File* Find(std::string_view path) const;
  static Position PositionOf(const File& file, uint32_t offset);
  static std::string_view LineText(const File& file, uint32_t line);

 private:
  std::map<std::string, std::unique_ptr<File>, std::less<>> files_;
};

// What the checker learned about one policy; consumed by `explain` and tests.
struct PolicySummary {
  std::string name;
  std::string file;
  Span span;
  std::vector<std::string> stages;
  std::string mode;    // "enforce" or "observe"
  std::string action;  // "block", "redact" or "flag"
  // For policies on the output stage: "monotone" (may fire mid-stream) or
  // "final-only" (judged when the stream ends). Empty otherwise.
  std::string output_class;
};

struct LintResult {
  std::vector<Diagnostic> diagnostics;  // sorted by file, then offset
  std::vector<std::string> files;       // every policy file checked
  std::vector<PolicySummary> policies;
  int error_count = 0;
  int warning_count = 0;
  int suppressed_count = 0;  // diagnostics beyond Options::max_errors
};

// Expands PATH arguments: files as given, directories recursively to their
// `*.ktp` files in sorted order. Unreadable paths become E0005 diagnostics.
std::vector<std::string> CollectPolicyFiles(const std::vector<std::string>& paths,
                                            std::vector<Diagnostic>* diagnostics);

// Parses and checks `files` as one policy set: names of policies, limits and
// providers are unique across the set; each file's imports are resolved.
LintResult Lint(const std::vector<std::string>& files, const Options& options,
                SourceMap* sources);

// What `kt policy explain` shows: the policy IR of a clean policy set, and
// each stage's pattern sets compiled, with their automaton sizes.
struct PatternSetReport {
  std::string stage;
  std::string name;     // S0, S1, … as in the IR
  std::string subject;  // the field the set scans, e.g. output.text
  std::size_t patterns = 0;
  std::size_t dfa_states = 0;  // forward DFA, minimised (0 for a lazy set)
  std::size_t memory_bytes = 0;
  bool lazy = false;
  double compile_ms = 0;
};

struct ExplainResult {
  LintResult lint;                   // diagnostics; no IR when there are errors
  std::string pir;                   // printed IR
  std::vector<PatternSetReport> sets;
  std::vector<std::string> ir_problems;  // from the IR verifier; empty unless kt has a bug
  // With `llvm`: the LLVM IR of the policy program (one entry point per
  // stage), then of every pattern set's JIT-compiled scan loop.
  std::string llvm;
};
ExplainResult Explain(const std::vector<std::string>& files, const Options& options,
                      SourceMap* sources, bool llvm = false);

// The redactions a stage of a policy set applies, compiled into one pattern
// set (pattern i is replaced by replacements[i]) for stream evaluation.
struct CompiledRedactions {
  bool ok = false;  // false when the files have errors (see lint)
  abi::PatternSetTables tables;
  std::vector<std::string> replacements;
  std::vector<std::string> policies;  // the policy of each pattern
  std::vector<std::string> labels;    // the pattern of each entry, as written
};
CompiledRedactions CompileRedactions(const std::vector<std::string>& files,
                                     const std::string& stage, const Options& options,
                                     SourceMap* sources);

// `kt policy test`: the result of every `test` block of a policy set.
struct TestCaseResult {
  std::string file;
  uint32_t line = 0;  // of the test's name
  std::string name;
  bool passed = false;
  std::string verdict;  // "block" or "allow"
  std::string policy;   // the enforced block, if any
  std::string code;
  std::string failure;         // why, when !passed
  uint32_t failure_line = 0;   // the failing expectation
};
struct TestRun {
  LintResult lint;  // tests run only when this has no errors
  std::vector<TestCaseResult> results;
  std::vector<std::string> untested;  // policies no test exercised
  int passed = 0;
  int failed = 0;
};
TestRun RunPolicyTests(const std::vector<std::string>& files, const Options& options,
                       SourceMap* sources,
                       const std::vector<std::pair<std::string, std::string>>& in_memory = {});
// The same for one in-memory source (the fuzzer's entry point).
TestRun RunPolicyTestsOnText(const std::string& path, std::string_view text,
                             const Options& options, SourceMap* sources);

// `kt policy eval`: the decision of a policy set for one stage on a body in
// OpenAI format, as JSON. On policy errors `lint` says why; on a bad body,
// `error` does.
struct EvalResult {
  LintResult lint;
  std::string error;
  std::string decision_json;
};
EvalResult EvalPolicies(const std::vector<std::string>& files, const std::string& stage,
                        const std::string& body, const Options& options, SourceMap* sources);

// A loaded policy set that evaluates many bodies (what `kt policy eval` does
// once). Not thread-safe. Null, with `lint` holding the errors, when the
// files have errors.
class PolicyInterpreter {
 public:
  static std::unique_ptr<PolicyInterpreter> Load(const std::vector<std::string>& files,
                                                 const Options& options, SourceMap* sources,
                                                 LintResult* lint);
  ~PolicyInterpreter();
  std::string Evaluate(const std::string& stage, const std::string& body, std::string* error);

 private:
  PolicyInterpreter();
  struct State;
  std::unique_ptr<State> state_;
};

// ------------------------------------------------------------------ engine
//
// The policy engine the gateway enforces with: a checked policy set, loaded
// once and shared by every request. `PolicyEngine` is immutable and
// thread-safe; an `OutputStream` is one streamed response's state (one
// thread at a time), and must not outlive the engine that started it.
// Evaluation failures are a distinct outcome (`Decision::error`), never an
// allow: the caller applies its fail mode.

// Where a pattern of a policy that fired matched: byte offsets in a field
// ("messages[1].content", "output.text", "tool.arguments").
struct MatchSpan {
  std::string field;
  std::size_t start = 0;
  std::size_t end = 0;
  std::string pattern;  // the pattern's name, or its literal source
};

// What one policy did on one stage.
struct PolicyHit {
  std::string policy;
  std::string action;  // block | redact | flag
  bool enforced = true;  // false: observe mode, recorded only
  std::string code;
  std::string message;
  std::vector<MatchSpan> spans;  // at most 16 per hit, in field order
};

struct Decision {
  std::string stage;   // input | tool_call | output
  bool blocked = false;
  int block = -1;      // index in `hits` of the enforced block
  std::vector<PolicyHit> hits;
  bool rewritten = false;  // input: a redaction changed the request
  bool error = false;  // evaluation could not complete: see error_message
  std::string error_message;
  const PolicyHit* blocking() const { return block >= 0 ? &hits[block] : nullptr; }
};

// A `provider` declaration with its values resolved (env() read at load).
struct ProviderConfig {
  std::string name;
  std::string kind;  // openai | anthropic | mock
  std::string base_url;
  std::vector<std::string> models;  // globs
  // The wire surfaces it speaks itself ("chat", "responses", "embeddings",
  // "completions", "messages"); empty: the kind's default.
  std::vector<std::string> apis;
  std::string api_key;              // empty: forward the client's key
  std::string auth_header;          // empty: Authorization: Bearer
  int64_t chunk_size = 0;           // mock: bytes of content per stream chunk
  double timeout_ms = 0;            // 0: the gateway's default
  double latency_ms = 0;            // mock: delay before each chunk
};

// A `limit` declaration: at most `requests` requests (and/or `tokens`
// tokens) per `window_s` seconds, per key, in a sliding window. Or a
// `budget`: at most `usd` of spend (and/or `tokens`) per calendar `period`
// (UTC), reserved before the call and settled from its usage.
struct LimitConfig {
  std::string name;
  int64_t requests = 0;  // 0: no request budget
  int64_t tokens = 0;    // 0: no token budget
  double window_s = 0;   // a limit's window; a budget's period, nominally (a month: 31 days)
  bool keyed = false;    // false: one global budget
  bool budget = false;
  std::string period;          // budget: minute, hour, day, week or month
  double usd = 0;              // budget: the spend allowed per period (0: none)
  int64_t reserve_output = 0;  // budget: output tokens assumed when a request names none
};

// Model globs (`gpt-4o*`, `claude-?-*`), as providers' `models` and prices
// name them: `*` any run of characters, `?` one.
bool GlobMatch(std::string_view glob, std::string_view text);

// A `price` declaration: USD per token, for a model name or glob.
struct PriceConfig {
  std::string model;
  double input = 0;
  double output = 0;
  double cached_input = -1;  // < 0: cached input tokens cost as input
};

// A limit that applies to one request, and the key it counts under.
struct LimitKey {
  std::size_t limit = 0;  // index in PolicyEngine::limits()
  std::string key;
};

// Request-scoped facts policies can read besides the body.
struct EvalContext {
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string api_key_id;                      // `api_key_id()`
};

class OutputStream;

class PolicyEngine {
 public:
  // Null, with `*lint` holding the errors, when the files do not check.
  static std::shared_ptr<const PolicyEngine> Load(const std::vector<std::string>& files,
                                                  const Options& options, SourceMap* sources,
                                                  LintResult* lint);
  ~PolicyEngine();

  // The input stage on a chat-completions request. When a redaction changed
  // it (`rewritten`), `*forward` is the request to send instead; otherwise
  // `*forward` is untouched and the request goes as it came.
  Decision EvaluateInput(const nlohmann::json& request, const EvalContext& ctx,
                         nlohmann::json* forward) const;
  // The tool-call stage on one tool call (`arguments` as the API sends them:
  // a JSON text).
  Decision EvaluateToolCall(const nlohmann::json& request, const std::string& name,
                            const std::string& arguments, const std::string& id, int index,
                            const EvalContext& ctx) const;
  // The output stage on a whole completion text; unless blocked, `*text` is
  // rewritten with enforced redactions.
  Decision EvaluateOutput(const nlohmann::json& request, std::string* text,
                          const std::string& finish_reason, const EvalContext& ctx) const;

  struct StreamOptions {
    std::size_t max_hold = 64u << 10;      // bytes held back before a forced release
    std::size_t max_output = 16u << 20;    // longest streamed text evaluated
  };
  std::unique_ptr<OutputStream> StartOutput(const nlohmann::json& request, const EvalContext& ctx,
                                            const StreamOptions& options) const;

  // The limits whose `when` holds for this request, with their keys.
  // False (with `*error`) when a key or condition cannot be evaluated.
  bool LimitsFor(const nlohmann::json& request, const EvalContext& ctx, std::vector<LimitKey>* out,
                 std::string* error) const;
  const std::vector<LimitConfig>& limits() const;
  // The price that applies to `model`: an exact name first, else the glob
  // with the longest text. Null when none does.
  const PriceConfig* PriceFor(std::string_view model) const;
  const std::vector<PriceConfig>& prices() const;

  const std::vector<ProviderConfig>& providers() const;
  std::size_t policy_count() const;
  // How the policy set was compiled: native code (and whether the object
  // cache served it), or the interpreter, and why.
  struct ProgramInfo {
    bool native = false;
    bool from_cache = false;
    double load_ms = 0;     // all of Load: parse, check, patterns, program
    double check_ms = 0;    // of which parsing and checking (the rest: compile + JIT)
    double codegen_ms = 0;  // AST -> LLVM IR
    double compile_ms = 0;  // optimisation + object emission (0 from the cache)
    double link_ms = 0;
    std::string cache_key;
    std::string note;  // why the interpreter runs, or a cache problem
  };
  const ProgramInfo& program_info() const;
  // A content hash of every loaded source: names the policy-set version.
  const std::string& version() const;
  bool has_stage(std::string_view stage) const;

 private:
  PolicyEngine();
  friend class OutputStream;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A streamed output's evaluation. Bytes are released only up to the last
// offset where no output pattern had a partial match in progress; monotone
// blocks are judged on every released prefix; final-only blocks (and
// redactions whose condition reads the output) make the stream hold
// everything until Finish().
class OutputStream {
 public:
  ~OutputStream();
  // Appends the bytes now safe to send to `*release`. Returns false once the
  // stream is blocked (or failed): see decision(); nothing more is released.
  bool Feed(std::string_view chunk, std::string* release);
  // Ends the text: judges every rule on the whole of it (`finish_reason` as
  // the answer gives it, "" for none), releases the rest.
  bool Finish(std::string* release, const std::string& finish_reason = "");
  // After Finish (or a block): the stage's decision on the whole text.
  const Decision& decision() const { return decision_; }
  std::size_t held() const { return raw_.size() - released_; }
  bool capped() const { return capped_; }        // the hold cap forced a release
  std::size_t max_held() const { return max_held_; }

 private:
  friend class PolicyEngine;
  OutputStream() = default;
  bool Advance(std::size_t upto, std::string* release);
  struct State;
  std::shared_ptr<const PolicyEngine::Impl> engine_;
  std::unique_ptr<State> state_;
  std::string raw_;
  std::size_t released_ = 0;  // raw bytes released so far
  std::size_t max_held_ = 0;
  bool capped_ = false;
  bool done_ = false;
  Decision decision_;
};

// Checks one in-memory source as a policy set of its own. Imports resolve
// against `options.stdlib_paths` and relative to `path`'s directory.
LintResult LintText(const std::string& path, std::string_view text, const Options& options,
                    SourceMap* sources);

// Formats one source text canonically. On a syntax error the text is not
// formatted and `ok` is false; the diagnostics say why.
struct FormatResult {
  bool ok = false;
  std::string text;
  std::vector<Diagnostic> diagnostics;
};
FormatResult Format(std::string_view path, std::string_view text, const Options& options);

// Renderers. `Text` is `file:line:col: error[E0xxx]: message` with the source
// line, a caret under the span and `help:`; JSON is an array of objects with
// the same fields; SARIF is a 2.1.0 log with one run.
std::string RenderText(const std::vector<Diagnostic>& diagnostics, const SourceMap& sources,
                       bool color);
std::string RenderJson(const LintResult& result, const SourceMap& sources);
std::string RenderSarif(const LintResult& result, const SourceMap& sources);

// The diagnostic code table (docs/diagnostics.md is checked against it).
struct DiagnosticCodeInfo {
  std::string_view code;
  Severity severity;
  std::string_view title;
};
const std::vector<DiagnosticCodeInfo>& DiagnosticCodes();

// ---------------------------------------------------------------- patterns

struct PatternSource {
  std::string regex;
  std::string flags;  // "i", "s", "m" in any combination
};

struct PatternSetStats {
  std::size_t nfa_states = 0;
  std::size_t dfa_states = 0;            // forward DFA before minimisation
  std::size_t dfa_states_minimized = 0;  // forward DFA after
  std::size_t byte_classes = 0;
  std::size_t memory_bytes = 0;  // all tables: forward, anchored, reverse
  std::size_t groups = 0;        // DFA groups (one per compiled set)
  bool lazy = false;             // too large for an eager DFA: built at scan time
  double compile_ms = 0;
};

struct CompiledPatterns {
  bool ok = false;
  // When !ok: which pattern, where in it, and why.
  std::size_t error_pattern = 0;
  std::size_t error_offset = 0;
  std::string error;
  abi::PatternSetTables tables;
  PatternSetStats stats;
};

// Parses the regexes and compiles them into one multi-pattern automaton
// (pattern ids are indexes into `patterns`).
CompiledPatterns CompilePatterns(const std::vector<PatternSource>& patterns,
                                 const Options& options);

std::string_view Version();

}  // namespace kt

#endif  // KT_COMPILER_COMPILER_H_
