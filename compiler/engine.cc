// The policy engine: a checked policy set the gateway evaluates requests,
// tool calls and (streamed) outputs with.
//
// Conditions run as the policy program, compiled to native code when the
// engine loads (internal/codegen.h; the object cache makes a restart with
// the same policies skip compilation); the hits are recorded by the same
// code `kt policy test` runs, so a policy behaves in the gateway exactly as
// in its tests. Pattern sets are compiled at load too, not on the first
// request, and shared by all threads.
//
// Streams. The output stage of a streamed response is evaluated
// incrementally: every pattern any output rule uses is merged into one
// "hold" set whose streaming scanner says where no pattern has a partial
// match in progress. Bytes are released only up to that point, so a match
// (an email to redact, a phrase that blocks) is never split across a release.
// Before each release, the monotone enforced blocks are judged on the
// released prefix: a monotone condition that holds on a prefix holds on the
// whole text, so a block found later can never concern a released byte. Rules
// that can only be judged on the whole text (final-only blocks, redactions
// whose condition reads the output) make the stream hold everything until
// Finish(), which is the only way to keep their promise.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "compiler/compiler.h"
#include "compiler/internal/codegen.h"
#include "compiler/internal/driver.h"
#include "compiler/internal/test_runner.h"
#include "runtime/runtime.h"

namespace kt {

using internal::Json;

namespace {

// Message content may be a string or a list of parts; policies see text.
std::string TextOf(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array()) {
    for (const Json& part : content) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
          part["text"].is_string()) {
        if (!out.empty()) out += "\n";
        out += part["text"].get<std::string>();
      }
    }
  }
  return out;
}

// The request as policies see it: message contents as text.
Json PolicyView(const Json& request) {
  Json view = Json::object();
  if (request.contains("model") && request["model"].is_string()) view["model"] = request["model"];
  Json messages = Json::array();
  if (request.contains("messages") && request["messages"].is_array()) {
    for (const Json& m : request["messages"]) {
      if (!m.is_object()) continue;
      Json v = Json::object();
      v["role"] = m.contains("role") && m["role"].is_string() ? m["role"] : Json("");
      v["content"] = m.contains("content") ? TextOf(m["content"]) : "";
      if (m.contains("name") && m["name"].is_string()) v["name"] = m["name"];
      if (m.contains("tool_call_id") && m["tool_call_id"].is_string()) {
        v["tool_call_id"] = m["tool_call_id"];
      }
      messages.push_back(std::move(v));
    }
  }
  view["messages"] = std::move(messages);
  for (const char* key : {"temperature", "max_tokens", "stream", "user", "metadata"}) {
    if (request.contains(key)) view[key] = request[key];
  }
  if (request.contains("tools") && request["tools"].is_array()) {
    // As the language's ToolDef record: {name, description, parameters},
    // from the API's {type: "function", function: {...}}.
    Json tools = Json::array();
    for (const Json& t : request["tools"]) {
      const Json& fn = t.is_object() && t.contains("function") && t["function"].is_object()
                           ? t["function"]
                           : t;
      Json v = Json::object();
      if (fn.is_object()) {
        for (const char* key : {"name", "description", "parameters"}) {
          if (fn.contains(key)) v[key] = fn[key];
        }
      }
      tools.push_back(std::move(v));
    }
    view["tools"] = std::move(tools);
  }
  return view;
}

// Seconds, minutes… as the checker accepts them in provider durations.
double DurationMs(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  double n = std::atof(text.substr(0, i).c_str());
  std::string unit = text.substr(i);
  if (unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m" || unit == "min") return n * 60000;
  if (unit == "h") return n * 3600000;
  return n;
}

std::string StringValue(const internal::Expr& e) {
  if (e.kind == internal::ExprKind::kCall && e.text == "env" && !e.children.empty()) {
    const char* v = std::getenv(e.children[0]->text.c_str());
    return v == nullptr ? "" : v;
  }
  return e.text;
}

// How a pattern operand was written: a name (`std.pii.email`) or a literal.
std::string PatternLabel(const internal::Expr& e) {
  switch (e.kind) {
    case internal::ExprKind::kName:
      return e.text;
    case internal::ExprKind::kField:
      return e.children.empty() ? e.text : PatternLabel(*e.children[0]) + "." + e.text;
    case internal::ExprKind::kRegex:
      return "/" + e.text + "/" + e.flags;
    case internal::ExprKind::kIString:
      return "\"" + e.text + "\"i";
    default:
      return "\"" + e.text + "\"";
  }
}

bool IsOutputText(const internal::Expr& e) {
  return e.kind == internal::ExprKind::kField && e.text == "text" && !e.children.empty() &&
         e.children[0]->kind == internal::ExprKind::kName && e.children[0]->text == "output";
}

// True when every use of the output in `e` is `output.text` scanned by a
// pattern (`output.text matches P`, `count(P in output.text)`).
bool ReadsOutputOnlyByPatterns(const internal::Expr& e, const internal::Resolution& res) {
  using internal::ExprKind;
  if (e.kind == ExprKind::kName && e.text == "output") return false;
  if (IsOutputText(e)) return false;  // a bare use of the text
  if (e.kind == ExprKind::kMatch && e.text == "matches" && IsOutputText(*e.children[0]) &&
      res.pattern_trees.count(e.children[1].get())) {
    return true;
  }
  if (e.kind == ExprKind::kCall && e.text == "count" && !e.children.empty() &&
      e.children[0]->children.size() == 2 && IsOutputText(*e.children[0]->children[1])) {
    return true;
  }
  for (const internal::ExprPtr& c : e.children) {
    if (c != nullptr && !ReadsOutputOnlyByPatterns(*c, res)) return false;
  }
  return true;
}

bool ReadsOutput(const internal::Expr& e) {
  if (e.kind == internal::ExprKind::kName && e.text == "output") return true;
  for (const internal::ExprPtr& c : e.children) {
    if (c != nullptr && ReadsOutput(*c)) return true;
  }
  return false;
}

Decision ToDecision(const std::string& stage, const internal::Evaluator::Outcome& out) {
  Decision d;
  d.stage = stage;
  for (const internal::Hit& h : out.hits) {
    d.hits.push_back(PolicyHit{h.policy->name.value, h.action, h.enforced, h.code, h.message, {}});
    if (&h == out.block) d.block = static_cast<int>(d.hits.size()) - 1;
  }
  d.blocked = out.blocked;
  return d;
}

// The decision of a stage no policy is on: allow, nothing recorded.
Decision NoPolicies(const char* stage) {
  Decision d;
  d.stage = stage;
  return d;
}

Decision ErrorDecision(const std::string& stage, const std::string& why) {
  Decision d;
  d.stage = stage;
  d.error = true;
  d.error_message = why;
  return d;
}

}  // namespace

bool GlobMatch(std::string_view glob, std::string_view text) {
  // Iterative matcher with one backtrack point: linear for one `*`, and
  // O(glob × text) at worst, on names a few dozen bytes long.
  std::size_t g = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (g < glob.size() && (glob[g] == '?' || glob[g] == text[t])) {
      ++g;
      ++t;
    } else if (g < glob.size() && glob[g] == '*') {
      star = g++;
      mark = t;
    } else if (star != std::string_view::npos) {
      g = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
}

namespace {

double PeriodSeconds(const std::string& u) {
  return u == "second" ? 1
         : u == "minute" ? 60
         : u == "hour"   ? 3600
         : u == "day"    ? 86400
         : u == "week"   ? 7 * 86400
                         : 31 * 86400;
}

LimitConfig LimitConfigOf(const internal::LimitDecl& decl) {
  LimitConfig l;
  l.name = decl.name.value;
  l.budget = decl.budget;
  for (const internal::LimitClause& c : decl.clauses) {
    using K = internal::LimitClauseKind;
    if (c.kind == K::kKey) l.keyed = true;
    if (c.kind == K::kRequests) l.requests = c.amount;
    if (c.kind == K::kTokens) l.tokens = c.amount;
    if (c.kind == K::kAmount && c.word.text == "usd") l.usd = c.value;
    if (c.kind == K::kAmount && c.word.text == "reserve") l.reserve_output = c.amount;
    if (!c.unit.text.empty()) {
      l.period = c.unit.text;
      l.window_s = PeriodSeconds(c.unit.text);
    }
  }
  return l;
}

PriceConfig PriceConfigOf(const internal::PriceDecl& decl) {
  PriceConfig p;
  p.model = decl.name.value;
  for (const internal::PriceClause& c : decl.clauses) {
    if (c.word.text == "input") p.input = c.usd_per_token;
    if (c.word.text == "output") p.output = c.usd_per_token;
    if (c.word.text == "cached_input") p.cached_input = c.usd_per_token;
  }
  return p;
}

}  // namespace

struct PolicyEngine::Impl {
  Options options;
  internal::CheckedSet set;
  std::unique_ptr<internal::KtMatcher> matcher;
  std::unique_ptr<internal::Evaluator> evaluator;
  std::unique_ptr<internal::PolicyProgram> code;  // null: the interpreter runs
  ProgramInfo info;
  std::vector<ProviderConfig> providers;
  std::vector<LimitConfig> limits;
  std::vector<const internal::LimitDecl*> limit_decls;  // parallel to limits
  std::vector<PriceConfig> prices;
  std::string version;
  std::size_t policy_count = 0;
  std::set<std::string> stages;

  // The output stage, analysed for streaming.
  std::vector<const internal::PolicyDecl*> output_policies;
  std::set<const internal::PolicyDecl*> monotone_blocks;  // enforced
  // Whether some monotone block reads the output other than through pattern
  // scans (`len(output.text)`, `contains "…"`): those are judged at every
  // release; blocks that only scan the output for patterns can change only
  // where a pattern match ends, so they are judged only then.
  bool monotone_needs_every_release = false;
  // Enforced redactions whose condition does not read the output: their
  // patterns (one entry per tree) and replacements, in declaration order.
  struct StreamRedaction {
    const internal::PolicyDecl* policy;
    std::vector<const internal::RegexNode*> trees;
    std::vector<std::string> replacements;
  };
  std::vector<StreamRedaction> stream_redactions;
  bool hold_all = false;
  std::vector<const internal::RegexNode*> hold_trees;  // every output pattern
  std::vector<std::unique_ptr<internal::RegexNode>> literal_trees;  // `contains` phrases held
  const PatternSet* hold_set = nullptr;

  // The stage's input. With `borrow` (the caller keeps `request` and `ctx`
  // alive for the evaluation), nothing is copied when native code evaluates
  // and the request is already as policies see it (text contents): the
  // RequestView points into the caller's request.
  internal::StageInput Input(const std::string& stage, const Json& request, const EvalContext& ctx,
                             bool borrow = false) const {
    internal::StageInput in;
    in.stage = stage;
    if (borrow && code != nullptr && IsPolicyShaped(request)) {
      in.request_ref = &request;
    } else {
      in.request = PolicyView(request);
    }
    if (borrow) {
      in.headers_ref = &ctx.headers;
      in.api_key_ref = &ctx.api_key_id;
    } else {
      in.headers = ctx.headers;
      in.api_key_id = ctx.api_key_id;
    }
    return in;
  }

  // Whether the RequestView of `request` equals that of its PolicyView:
  // every message an object whose content is text (or absent).
  static bool IsPolicyShaped(const Json& request) {
    if (!request.is_object()) return false;
    auto ms = request.find("messages");
    if (ms == request.end() || !ms->is_array()) return false;
    for (const Json& m : *ms) {
      if (!m.is_object()) return false;
      auto c = m.find("content");
      if (c != m.end() && !c->is_string() && !c->is_null()) return false;
    }
    return true;
  }

  // Runs a stage; an evaluation failure is a decision of its own.
  bool Run(const internal::StageInput& in, internal::Evaluator::Outcome* out, Decision* d) const {
    try {
      *out = evaluator->Evaluate(in);
    } catch (const internal::EvaluationError& e) {
      *d = ErrorDecision(in.stage, e.what());
      return false;
    } catch (const nlohmann::json::exception& e) {
      *d = ErrorDecision(in.stage, std::string("evaluation failed: ") + e.what());
      return false;
    }
    *d = ToDecision(in.stage, *out);
    AddSpans(in, *out, d);
    return true;
  }

  // The patterns each policy uses (its condition's operands and its
  // redactions), labelled as written.
  std::map<const internal::PolicyDecl*,
           std::vector<std::pair<std::string, const std::vector<const internal::RegexNode*>*>>>
      policy_patterns;

  // Match spans of the hits' patterns in the stage's texts. Only hits pay
  // for this (a decision without hits scans nothing more).
  void AddSpans(const internal::StageInput& in, const internal::Evaluator::Outcome& out,
                Decision* d) const {
    if (out.hits.empty()) return;
    std::vector<std::pair<std::string, std::string>> texts;  // field, text
    if (in.stage == "output") {
      texts.emplace_back("output.text", in.output.value("text", ""));
    } else if (in.stage == "tool_call") {
      const Json& args = in.tool.contains("args") ? in.tool["args"] : Json();
      texts.emplace_back("tool.arguments", args.is_null() ? "" : args.dump());
    } else {
      const Json& messages = in.Request().at("messages");
      for (std::size_t i = 0; i < messages.size(); ++i) {
        const Json& c = messages[i]["content"];
        if (c.is_string())
          texts.emplace_back("messages[" + std::to_string(i) + "].content", c.get<std::string>());
      }
    }
    constexpr std::size_t kMaxSpans = 16;
    for (std::size_t h = 0; h < out.hits.size(); ++h) {
      auto it = policy_patterns.find(out.hits[h].policy);
      if (it == policy_patterns.end()) continue;
      std::vector<MatchSpan>& spans = d->hits[h].spans;
      for (const auto& [label, trees] : it->second) {
        for (const auto& [field, text] : texts) {
          for (const PatternMatch& m : matcher->Set(*trees).AllMatches(text)) {
            if (spans.size() >= kMaxSpans) break;
            spans.push_back(MatchSpan{field, m.start, m.end, label});
          }
        }
      }
    }
  }
};

PolicyEngine::PolicyEngine() = default;
PolicyEngine::~PolicyEngine() = default;

std::shared_ptr<const PolicyEngine> PolicyEngine::Load(const std::vector<std::string>& files,
                                                       const Options& options, SourceMap* sources,
                                                       LintResult* lint) {
  auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<PolicyEngine> engine(new PolicyEngine());
  engine->impl_ = std::make_unique<Impl>();
  Impl& im = *engine->impl_;
  im.options = options;
  im.set = internal::LoadAndCheck(files, options, sources);
  im.info.check_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  *lint = im.set.lint;
  if (im.set.error_count > 0 || im.set.checked.resolution == nullptr) return nullptr;
  const internal::Resolution& res = *im.set.checked.resolution;
  im.matcher = std::make_unique<internal::KtMatcher>(im.options, /*jit=*/true);
  im.evaluator =
      std::make_unique<internal::Evaluator>(*im.set.program, res, im.options, im.matcher.get());

  // Version: FNV-1a over every loaded source, in load order.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  for (const auto& m : im.set.program->modules) {
    mix(m->path);
    if (const SourceMap::File* f = sources->Find(m->path)) mix(f->text);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  im.version = hex;

  std::map<std::string, std::string> output_class;
  for (const PolicySummary& p : im.set.checked.policies) output_class[p.name] = p.output_class;
  for (const auto& [name, decl] : im.set.checked.prices) im.prices.push_back(PriceConfigOf(*decl));
  for (const auto& m : im.set.program->modules) {
    if (m->ast == nullptr) continue;
    for (const internal::Decl& d : m->ast->decls) {
      if (d.kind == internal::DeclKind::kPolicy) ++im.policy_count;
      if (d.kind == internal::DeclKind::kLimit) {
        LimitConfig l = LimitConfigOf(*d.limit);
        im.limits.push_back(std::move(l));
        im.limit_decls.push_back(d.limit.get());
        continue;
      }
      if (d.kind != internal::DeclKind::kProvider) continue;
      ProviderConfig p;
      p.name = d.provider->name.text;
      for (const internal::ProviderField& f : d.provider->fields) {
        const internal::Expr& v = *f.value;
        const std::string& n = f.name.text;
        if (n == "kind") p.kind = v.text;
        if (n == "base_url") p.base_url = StringValue(v);
        if (n == "api_key") p.api_key = StringValue(v);
        if (n == "auth_header") p.auth_header = StringValue(v);
        if (n == "chunk_size") p.chunk_size = v.int_value;
        if (n == "timeout") p.timeout_ms = DurationMs(v.text);
        if (n == "latency") p.latency_ms = DurationMs(v.text);
        if (n == "models") {
          for (const internal::ExprPtr& item : v.children) p.models.push_back(StringValue(*item));
        }
        if (n == "apis") {
          for (const internal::ExprPtr& item : v.children) p.apis.push_back(StringValue(*item));
        }
      }
      im.providers.push_back(std::move(p));
    }
  }
  for (const char* stage : {"input", "tool_call", "output"}) {
    if (!im.evaluator->PoliciesOn(stage, nullptr).empty()) im.stages.insert(stage);
  }

  // The output stage, for streams.
  im.output_policies = im.evaluator->PoliciesOn("output", nullptr);
  std::set<const internal::RegexNode*> seen_trees;
  std::function<void(const internal::Expr&)> collect = [&](const internal::Expr& e) {
    auto it = res.pattern_trees.find(&e);
    if (it != res.pattern_trees.end()) {
      for (const internal::RegexNode* t : it->second) {
        if (seen_trees.insert(t).second) im.hold_trees.push_back(t);
      }
    }
    // `contains "phrase"` compares a plain string, not a pattern; the stream
    // must still hold back a partial phrase, or a block on it would come
    // after its first bytes went out. The literal joins the hold set.
    if (e.kind == internal::ExprKind::kMatch && e.text == "contains" && e.children.size() == 2 &&
        e.children[1] != nullptr && e.children[1]->kind == internal::ExprKind::kString &&
        !e.children[1]->text.empty() && !res.pattern_trees.count(e.children[1].get())) {
      im.literal_trees.push_back(internal::LiteralRegex(e.children[1]->text, false));
      im.hold_trees.push_back(im.literal_trees.back().get());
    }
    for (const internal::ExprPtr& c : e.children) {
      if (c != nullptr) collect(*c);
    }
  };
  for (const internal::PolicyDecl* p : im.output_policies) {
    const internal::PolicyClause* when = nullptr;
    const internal::PolicyClause* then = nullptr;
    bool enforced = true;
    for (const internal::PolicyClause& c : p->clauses) {
      if (c.kind == internal::ClauseKind::kWhen) when = &c;
      if (c.kind == internal::ClauseKind::kThen) then = &c;
      if (c.kind == internal::ClauseKind::kMode) enforced = c.names[0].text == "enforce";
    }
    if (when != nullptr) collect(*when->condition);
    if (then == nullptr || !enforced) continue;
    const internal::Action& a = then->action;
    if (a.kind == internal::ActionKind::kBlock) {
      if (output_class[p->name.value] == "monotone") {
        im.monotone_blocks.insert(p);
        if (when != nullptr && !ReadsOutputOnlyByPatterns(*when->condition, res)) {
          im.monotone_needs_every_release = true;
        }
      } else {
        im.hold_all = true;
      }
    } else if (a.kind == internal::ActionKind::kRedact) {
      if (when != nullptr && ReadsOutput(*when->condition)) im.hold_all = true;
      Impl::StreamRedaction r{p, {}, {}};
      for (const internal::RedactItem& item : a.items) {
        collect(*item.pattern);
        auto it = res.pattern_trees.find(item.pattern.get());
        if (it == res.pattern_trees.end()) continue;
        for (const internal::RegexNode* t : it->second) {
          r.trees.push_back(t);
          r.replacements.push_back(item.replacement.value);
        }
      }
      im.stream_redactions.push_back(std::move(r));
    }
  }
  // Every policy's patterns, for the match spans of its hits.
  for (const char* stage : {"input", "tool_call", "output"}) {
    for (const internal::PolicyDecl* p : im.evaluator->PoliciesOn(stage, nullptr)) {
      if (im.policy_patterns.count(p)) continue;
      auto& list = im.policy_patterns[p];
      std::function<void(const internal::Expr&)> walk = [&](const internal::Expr& e) {
        auto it = res.pattern_trees.find(&e);
        if (it != res.pattern_trees.end()) {
          list.emplace_back(PatternLabel(e), &it->second);
          return;
        }
        for (const internal::ExprPtr& c : e.children) {
          if (c != nullptr) walk(*c);
        }
      };
      for (const internal::PolicyClause& c : p->clauses) {
        if (c.kind == internal::ClauseKind::kWhen) walk(*c.condition);
        if (c.kind == internal::ClauseKind::kThen) {
          for (const internal::RedactItem& item : c.action.items) walk(*item.pattern);
        }
      }
    }
  }

  // Compile every pattern set now: the first request must not pay for it,
  // and a set that cannot be built must fail the load, not a request.
  try {
    for (const auto& [expr, trees] : res.pattern_trees) im.matcher->Set(trees);
    if (!im.hold_trees.empty()) im.hold_set = &im.matcher->Set(im.hold_trees);
  } catch (const internal::EvaluationError& e) {
    Diagnostic d;
    d.severity = Severity::kError;
    d.code = "E0405";
    d.message = e.what();
    lint->diagnostics.push_back(d);
    ++lint->error_count;
    return nullptr;
  }

  // The policy program. Should code generation fail (it should not), the
  // interpreter evaluates instead: the same decisions, slower, and said so.
  if (im.options.native) {
    internal::ProgramOptions po;
    po.cache_dir = im.options.object_cache_dir;
    std::string error;
    im.code = internal::PolicyProgram::Build(*im.set.program, res, im.matcher.get(), po, &error);
    if (im.code != nullptr) {
      const internal::ProgramStats& st = im.code->stats();
      im.info.native = true;
      im.info.from_cache = st.from_cache;
      im.info.codegen_ms = st.codegen_ms;
      im.info.compile_ms = st.compile_ms;
      im.info.link_ms = st.link_ms;
      im.info.cache_key = st.cache_key;
      im.info.note = st.cache_error;
      im.evaluator->set_program(im.code.get());
    } else {
      im.info.note = "code generation failed, interpreting: " + error;
    }
  } else {
    im.info.note = "native code disabled (--interpret)";
  }
  im.info.load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return engine;
}

Decision PolicyEngine::EvaluateInput(const Json& request, const EvalContext& ctx,
                                     Json* forward) const {
  const Impl& im = *impl_;
  Decision d;
  d.stage = "input";
  if (!im.stages.count("input")) return d;  // nothing to evaluate, nothing to copy
  internal::StageInput in = im.Input("input", request, ctx, /*borrow=*/true);
  internal::Evaluator::Outcome out;
  if (!im.Run(in, &out, &d)) return d;
  if (forward == nullptr || d.blocked) return d;
  // Rewrite only the messages a redaction changed, keeping their shape:
  // a list of parts keeps its non-text parts.
  if (!out.redacted) return d;
  const Json& before = in.Request().at("messages");
  const Json& after = out.request["messages"];
  for (std::size_t i = 0; i < before.size() && i < after.size(); ++i) {
    if (before[i]["content"] == after[i]["content"]) continue;
    if (!d.rewritten) {
      *forward = request;
      d.rewritten = true;
    }
    Json& m = (*forward)["messages"][i];
    if (m["content"].is_array()) {
      Json parts = Json::array({{{"type", "text"}, {"text", after[i]["content"]}}});
      for (const Json& part : m["content"]) {
        if (!(part.is_object() && part.value("type", "") == "text")) parts.push_back(part);
      }
      m["content"] = std::move(parts);
    } else {
      m["content"] = after[i]["content"];
    }
  }
  return d;
}

Decision PolicyEngine::EvaluateToolCall(const Json& request, const std::string& name,
                                        const std::string& arguments, const std::string& id,
                                        int index, const EvalContext& ctx) const {
  const Impl& im = *impl_;
  if (!im.stages.count("tool_call")) return NoPolicies("tool_call");
  internal::StageInput in = im.Input("tool_call", request, ctx, /*borrow=*/true);
  // Arguments that are not JSON are null to policies: a policy that needs a
  // field then sees none (and an allowlist on names still applies).
  Json args = Json::parse(arguments.empty() ? "{}" : arguments, nullptr, false);
  if (args.is_discarded()) args = nullptr;
  in.tool = {{"name", name}, {"args", args}, {"id", id}, {"index", index}};
  internal::Evaluator::Outcome out;
  Decision d;
  im.Run(in, &out, &d);
  return d;
}

Decision PolicyEngine::EvaluateOutput(const Json& request, std::string* text,
                                      const std::string& finish_reason,
                                      const EvalContext& ctx) const {
  const Impl& im = *impl_;
  if (!im.stages.count("output")) return NoPolicies("output");
  internal::StageInput in = im.Input("output", request, ctx, /*borrow=*/true);
  in.output = {{"text", *text},
               {"finish_reason", finish_reason.empty() ? Json(nullptr) : Json(finish_reason)},
               {"model", request.value("model", "")}};
  internal::Evaluator::Outcome out;
  Decision d;
  if (!im.Run(in, &out, &d)) return d;
  if (!d.blocked && out.redacted) *text = out.output.value("text", *text);
  return d;
}

bool PolicyEngine::LimitsFor(const Json& request, const EvalContext& ctx,
                             std::vector<LimitKey>* out, std::string* error) const {
  const Impl& im = *impl_;
  out->clear();
  if (im.limits.empty()) return true;
  internal::StageInput in = im.Input("input", request, ctx, /*borrow=*/true);
  try {
    if (im.code != nullptr && im.code->limit_count() == im.limit_decls.size()) {
      for (std::size_t i = 0; i < im.limit_decls.size(); ++i) {
        LimitKey k{i, ""};
        bool applies = true;
        im.code->Limit(i, in, &applies, &k.key);
        if (applies) out->push_back(std::move(k));
      }
      return true;
    }
    if (in.request_ref != nullptr) {
      // The interpreter reads the request as policies see it.
      in.request = PolicyView(*in.request_ref);
      in.request_ref = nullptr;
    }
    for (std::size_t i = 0; i < im.limit_decls.size(); ++i) {
      LimitKey k{i, ""};
      bool applies = true;
      for (const internal::LimitClause& c : im.limit_decls[i]->clauses) {
        if (c.kind == internal::LimitClauseKind::kWhen) {
          internal::Value v = im.evaluator->EvalIn(*c.expr, in);
          // A condition that cannot be judged counts the request: a limit
          // must not be escaped by a request policies cannot read.
          applies = !v || (v->is_boolean() && v->get<bool>());
        }
        if (c.kind == internal::LimitClauseKind::kKey) {
          internal::Value v = im.evaluator->EvalIn(*c.expr, in);
          k.key = !v ? "" : v->is_string() ? v->get<std::string>() : v->dump();
        }
      }
      if (applies) out->push_back(std::move(k));
    }
  } catch (const std::exception& e) {
    *error = std::string("a limit could not be evaluated: ") + e.what();
    return false;
  }
  return true;
}

const std::vector<LimitConfig>& PolicyEngine::limits() const { return impl_->limits; }
const std::vector<PriceConfig>& PolicyEngine::prices() const { return impl_->prices; }

const PriceConfig* PolicyEngine::PriceFor(std::string_view model) const {
  const PriceConfig* best = nullptr;
  for (const PriceConfig& p : impl_->prices) {
    if (p.model == model) return &p;
    if (GlobMatch(p.model, model) && (best == nullptr || p.model.size() > best->model.size())) {
      best = &p;
    }
  }
  return best;
}
const std::vector<ProviderConfig>& PolicyEngine::providers() const { return impl_->providers; }
const PolicyEngine::ProgramInfo& PolicyEngine::program_info() const { return impl_->info; }
std::size_t PolicyEngine::policy_count() const { return impl_->policy_count; }
const std::string& PolicyEngine::version() const { return impl_->version; }
bool PolicyEngine::has_stage(std::string_view stage) const {
  return impl_->stages.count(std::string(stage)) > 0;
}

// ------------------------------------------------------------------ streams

struct OutputStream::State {
  const PolicyEngine* engine = nullptr;
  internal::StageInput in;
  PolicyEngine::StreamOptions options;
  std::unique_ptr<StreamScanner> scanner;
  std::vector<StreamScanner::MatchEnd> ends;  // scratch
  std::deque<std::size_t> unjudged_ends;      // match ends the monotone blocks have not seen
  const PatternSet* redact_set = nullptr;     // the redactions that apply
  std::vector<std::string> replacements;
};

std::unique_ptr<OutputStream> PolicyEngine::StartOutput(const Json& request, const EvalContext& ctx,
                                                        const StreamOptions& options) const {
  const Impl& im = *impl_;
  std::unique_ptr<OutputStream> s(new OutputStream());
  s->state_ = std::make_unique<OutputStream::State>();
  OutputStream::State& st = *s->state_;
  st.engine = this;
  st.in = im.Input("output", request, ctx);
  st.in.output = {{"text", ""}, {"finish_reason", nullptr}, {"model", request.value("model", "")}};
  st.options = options;
  if (im.hold_set != nullptr) st.scanner = std::make_unique<StreamScanner>(im.hold_set);
  // Which redactions apply is fixed by the request (their conditions do not
  // read the output; those that do make the stream hold everything).
  std::vector<const internal::RegexNode*> trees;
  try {
    for (const Impl::StreamRedaction& r : im.stream_redactions) {
      if (!im.evaluator->Holds(*r.policy, st.in)) continue;
      trees.insert(trees.end(), r.trees.begin(), r.trees.end());
      st.replacements.insert(st.replacements.end(), r.replacements.begin(), r.replacements.end());
    }
    if (!trees.empty()) st.redact_set = &im.matcher->Set(trees);
  } catch (const std::exception& e) {
    s->decision_ = ErrorDecision("output", e.what());
    s->done_ = true;
  }
  return s;
}

OutputStream::~OutputStream() = default;

// Releases raw bytes [released_, upto) after judging the monotone blocks on
// the prefix that ends at `upto`.
bool OutputStream::Advance(std::size_t upto, std::string* release) {
  State& st = *state_;
  const PolicyEngine::Impl& im = *st.engine->impl_;
  if (upto <= released_) return true;
  bool judge = im.monotone_needs_every_release;
  while (!st.unjudged_ends.empty() && st.unjudged_ends.front() <= upto) {
    judge = true;
    st.unjudged_ends.pop_front();
  }
  if (!im.monotone_blocks.empty() && judge) {
    internal::StageInput in = st.in;
    in.output["text"] = raw_.substr(0, upto);
    in.only = &im.monotone_blocks;
    internal::Evaluator::Outcome out;
    Decision d;
    if (!im.Run(in, &out, &d) || d.blocked) {
      decision_ = std::move(d);
      done_ = true;
      return false;
    }
  }
  std::string_view region(raw_.data() + released_, upto - released_);
  if (st.redact_set == nullptr) {
    release->append(region);
  } else {
    int prev = released_ == 0 ? -1 : static_cast<unsigned char>(raw_[released_ - 1]);
    std::size_t pos = 0;
    for (const PatternMatch& m : st.redact_set->AllMatches(region, prev)) {
      release->append(region.substr(pos, m.start - pos));
      release->append(st.replacements[m.pattern]);
      pos = m.end;
    }
    release->append(region.substr(pos));
  }
  released_ = upto;
  return true;
}

bool OutputStream::Feed(std::string_view chunk, std::string* release) {
  if (done_) return false;
  State& st = *state_;
  if (raw_.size() + chunk.size() > st.options.max_output) {
    decision_ = ErrorDecision("output", "the streamed output exceeds " +
                                            std::to_string(st.options.max_output) +
                                            " bytes, the most the stream evaluator holds");
    done_ = true;
    return false;
  }
  raw_.append(chunk);
  const PolicyEngine::Impl& im = *st.engine->impl_;
  if (im.hold_all) {
    max_held_ = std::max(max_held_, held());
    return true;  // judged as a whole at Finish()
  }
  std::size_t safe = raw_.size();
  if (st.scanner != nullptr) {
    st.ends.clear();
    st.scanner->Feed(chunk, &st.ends);
    for (const StreamScanner::MatchEnd& e : st.ends) st.unjudged_ends.push_back(e.end);
    safe = st.scanner->last_quiescent();
  }
  max_held_ = std::max(max_held_, raw_.size() - std::max(safe, released_));
  if (raw_.size() - std::max(safe, released_) > st.options.max_hold) {
    // A partial match longer than the cap: release what is known, and say so.
    capped_ = true;
    safe = raw_.size();
  }
  return Advance(safe, release);
}

bool OutputStream::Finish(std::string* release, const std::string& finish_reason) {
  if (done_) return false;
  done_ = true;
  State& st = *state_;
  const PolicyEngine::Impl& im = *st.engine->impl_;
  if (im.output_policies.empty()) {
    decision_.stage = "output";
    return Advance(raw_.size(), release);
  }
  // The whole text, every rule: the stage's decision (flags and observe-mode
  // hits included), and the last word on blocks.
  internal::StageInput in = st.in;
  in.output["text"] = raw_;
  in.output["finish_reason"] = finish_reason.empty() ? Json(nullptr) : Json(finish_reason);
  internal::Evaluator::Outcome out;
  if (!im.Run(in, &out, &decision_) || decision_.blocked) return false;
  if (im.hold_all) {
    // Everything was held: the whole-text result is exact.
    release->append(out.redacted ? out.output.value("text", raw_) : raw_);
    released_ = raw_.size();
    return true;
  }
  return Advance(raw_.size(), release);
}

}  // namespace kt
