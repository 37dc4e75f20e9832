#include "gateway/internal/admin.h"

#include <algorithm>
#include <cstdio>

#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {

Response ModelsResponse(Gateway* g, Exchange* x, bool keep_alive) {
  std::shared_ptr<const PolicyState> state = g->Current();
  const PolicyEngine* engine = state == nullptr ? nullptr : state->engine.get();
  Json data = Json::array();
  if (engine != nullptr) {
    for (const ProviderConfig& p : engine->providers()) {
      for (const std::string& m : p.models) {
        data.push_back({{"id", m}, {"object", "model"}, {"created", 0}, {"owned_by", p.name}});
      }
    }
  }
  Json list = {{"object", "list"}, {"data", std::move(data)}};
  return BodyResponse(x, 200, Dump(list), "application/json", keep_alive);
}

Response ReloadResponse(Gateway* g, Exchange* x, bool keep_alive, bool trusted) {
  if (!trusted) {
    return ErrorResponse(g, x, 403, "invalid_request_error", "forbidden",
                         "reloads are accepted from loopback, or with --admin-token", keep_alive);
  }
  std::string error;
  bool reloaded = Reload(g, &error);
  Json body = {{"ok", reloaded}};
  std::shared_ptr<const PolicyState> st = g->Current();
  if (st != nullptr) body["policy_version"] = st->engine->version();
  if (!reloaded) body["error"] = error;
  return BodyResponse(x, reloaded ? 200 : 422, Dump(body), "application/json", keep_alive);
}

}  // namespace

std::shared_ptr<PolicyState> LoadState(const Options& options, std::string* error) {
  kt::Options compile;
  compile.stdlib_paths = options.stdlib_paths;
  compile.object_cache_dir = options.object_cache_dir;
  compile.native = !options.interpret;
  std::vector<Diagnostic> missing;
  std::vector<std::string> files;
  for (std::string& f : CollectPolicyFiles(options.policy_paths, &missing)) {
    // A file named twice (itself, then in its directory) loads once, first.
    if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(std::move(f));
  }
  SourceMap sources;
  if (!missing.empty()) {
    *error = RenderText(missing, sources, false);
    return nullptr;
  }
  LintResult lint;
  std::shared_ptr<const PolicyEngine> engine = PolicyEngine::Load(files, compile, &sources, &lint);
  if (engine == nullptr) {
    *error = RenderText(lint.diagnostics, sources, false);
    return nullptr;
  }
  auto state = std::make_shared<PolicyState>();
  state->engine = engine;
  state->files = files.size();
  return state;
}

Json ProgramJson(const PolicyEngine& engine) {
  const PolicyEngine::ProgramInfo& p = engine.program_info();
  Json j = {{"engine", p.native ? "native" : "interpreter"},
            {"from_cache", p.from_cache},
            {"load_ms", p.load_ms},
            {"check_ms", p.check_ms},
            {"codegen_ms", p.codegen_ms},
            {"compile_ms", p.compile_ms},
            {"link_ms", p.link_ms}};
  if (!p.cache_key.empty()) j["cache_key"] = p.cache_key;
  if (!p.note.empty()) j["note"] = p.note;
  return j;
}

std::string ProgramSummary(const PolicyEngine& engine) {
  const PolicyEngine::ProgramInfo& p = engine.program_info();
  char buf[256];
  if (!p.native) {
    std::snprintf(buf, sizeof buf, "interpreted: loaded in %.1f ms; ", p.load_ms);
    return buf + p.note;
  }
  if (p.from_cache) {
    std::snprintf(buf, sizeof buf,
                  "native code from the object cache: loaded in %.1f ms (parse + check %.1f ms, "
                  "patterns + program %.1f ms), compilation skipped",
                  p.load_ms, p.check_ms, p.load_ms - p.check_ms);
  } else {
    std::snprintf(buf, sizeof buf,
                  "native code, compiled: loaded in %.1f ms (parse + check %.1f ms, patterns + "
                  "program %.1f ms, of which program codegen %.2f ms, compile %.1f ms, link %.2f ms)",
                  p.load_ms, p.check_ms, p.load_ms - p.check_ms, p.codegen_ms, p.compile_ms,
                  p.link_ms);
  }
  std::string out = buf;
  if (!p.note.empty()) out += "; " + p.note;
  return out;
}

bool Reload(Gateway* g, std::string* error) {
  std::lock_guard serial(g->reload_mu);
  std::shared_ptr<const PolicyState> old = g->Current();
  std::shared_ptr<PolicyState> fresh = LoadState(g->options, error);
  const bool ok = fresh != nullptr;
  Json record = {{"ok", ok}, {"at_us", NowMicros()}};
  if (ok) {
    record["policy_version"] = fresh->engine->version();
    record["policies"] = fresh->engine->policy_count();
    record["program"] = ProgramJson(*fresh->engine);
    g->Install(std::move(fresh));
  } else {
    record["error"] = *error;
    if (old != nullptr) record["kept_policy_version"] = old->engine->version();
  }
  {
    std::lock_guard lock(g->last_reload_mu);
    g->last_reload = record;
  }
  g->metrics.CountReload(ok);
  Json event = record;
  event["event"] = "reload";
  event["ts_us"] = NowMicros();
  g->audit.Write(std::move(event));
  return ok;
}

Json HealthJson(Gateway* g) {
  std::shared_ptr<const PolicyState> st = g->Current();
  Json h = {{"status", st == nullptr ? "starting" : "ok"},
            {"version", std::string(Version())},
            {"uptime_s", static_cast<double>(NowMicros() - g->started_us) / 1e6}};
  if (st != nullptr) {
    h["policy_version"] = st->engine->version();
    h["policies"] = st->engine->policy_count();
    h["policy_files"] = st->files;
    h["program"] = ProgramJson(*st->engine);
    h["limits"] = st->engine->limits().size();
    Json providers = Json::array();
    if (!g->options.upstream.empty()) {
      providers.push_back(
          {{"name", "upstream"}, {"kind", "openai"}, {"base_url", g->options.upstream}});
    }
    for (const ProviderConfig& p : st->engine->providers()) {
      providers.push_back({{"name", p.name}, {"kind", p.kind}, {"models", p.models}});
    }
    h["providers"] = providers;
  }
  {
    std::lock_guard lock(g->last_reload_mu);
    if (!g->last_reload.is_null()) {
      h["last_reload"] = g->last_reload;
      // Serving an older set than the files say is worth a dashboard's
      // attention.
      if (!g->last_reload.value("ok", true)) h["status"] = "degraded";
    }
  }
  h["audit"] = {{"path", g->options.audit_log},
                {"head", g->audit.head()},
                {"lines_written", g->audit.written()}};
  h["active_streams"] = g->metrics.active_streams.load();
  h["in_flight"] = g->in_flight.load();
  return h;
}

Response AdminResponse(Gateway* g, Handler handler, Exchange* x, bool keep_alive, bool trusted) {
  x->path.clear();  // not audited
  switch (handler) {
    case Handler::kModels:
      return ModelsResponse(g, x, keep_alive);
    case Handler::kHealth:
      return BodyResponse(x, 200, Dump(HealthJson(g)), "application/json", keep_alive);
    case Handler::kMetrics: {
      std::shared_ptr<const PolicyState> st = g->Current();
      std::string text =
          g->metrics.Render(std::string(Version()), st == nullptr ? "" : st->engine->version()) +
          Metrics::RenderLimits(g->limit_guard, g->limit_store->SpendGauges());
      return BodyResponse(x, 200, std::move(text), "text/plain; version=0.0.4; charset=utf-8",
                          keep_alive);
    }
    case Handler::kReload:
      return ReloadResponse(g, x, keep_alive, trusted);
    case Handler::kReadyz: {
      bool ready = g->Current() != nullptr;
      return BodyResponse(x, ready ? 200 : 503,
                          ready ? R"({"status":"ready"})" : R"({"status":"not ready"})",
                          "application/json", keep_alive);
    }
    default:
      return BodyResponse(x, 200, R"({"status":"ok"})", "application/json", keep_alive);
  }
}

asio::awaitable<Response> LimitsResponse(Gateway* g, Exchange* x, bool keep_alive, bool trusted) {
  x->path.clear();  // not audited
  if (!trusted) {
    co_return ErrorResponse(g, x, 403, "permission_error", "forbidden",
                            "GET /admin/limits is for loopback callers or --admin-token holders",
                            keep_alive);
  }
  std::shared_ptr<const PolicyState> st = g->Current();
  std::vector<LimitConfig> configs;
  if (st != nullptr) configs = st->engine->limits();
  std::vector<UsageRow> rows = co_await g->limit_store->Show(configs);
  Json out = {{"backend", g->limit_store->name()}, {"counters", Json::array()}};
  for (const LimitConfig& c : configs) {
    Json limit = {{"name", c.name}, {"kind", c.budget ? "budget" : "limit"}, {"per", c.period}};
    if (c.requests > 0) limit["requests"] = c.requests;
    if (c.tokens > 0) limit["tokens"] = c.tokens;
    if (c.usd > 0) limit["usd"] = c.usd;
    out["limits"].push_back(std::move(limit));
  }
  for (const UsageRow& r : rows) {
    Json row = {{"name", r.name}, {"key", r.key}, {"kind", r.kind}};
    if (r.kind == "limit") row["requests"] = r.requests;
    row["tokens"] = r.tokens;
    if (r.kind == "budget") {
      row["spent_usd"] = FormatUsd(r.nanos);
      row["reserved_usd"] = FormatUsd(r.reserved_nanos);
    }
    out["counters"].push_back(std::move(row));
  }
  co_return BodyResponse(x, 200, Dump(out), "application/json", keep_alive);
}

}  // namespace kt::gateway
