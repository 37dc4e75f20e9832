#include "gateway/internal/exchange.h"

#include <algorithm>

#include "gateway/internal/util.h"

namespace kt::gateway {

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

EvalContext ContextOf(const Exchange& x, const http::request<http::string_body>& req) {
  EvalContext ctx;
  for (const auto& f : req) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name == "authorization" || name == "api-key" || name == "x-api-key") continue;
    ctx.headers[name] = std::string(f.value());
  }
  ctx.headers["x-correlation-id"] = x.correlation_id;
  ctx.api_key_id = x.key_fingerprint;
  return ctx;
}

void NotEvaluated(Exchange* x, std::string where, std::string reason) {
  // Bounded: a hostile request with ten thousand images is one record.
  if (x->not_evaluated.size() >= 32) return;
  x->not_evaluated.push_back({{"where", std::move(where)}, {"reason", std::move(reason)}});
}

void Record(Exchange* x, const Decision& d) {
  for (const PolicyHit& h : d.hits) {
    Json spans = Json::array();
    for (const MatchSpan& m : h.spans) {
      spans.push_back(
          {{"field", m.field}, {"start", m.start}, {"end", m.end}, {"pattern", m.pattern}});
    }
    x->decisions.push_back({{"stage", d.stage},
                            {"policy", h.policy},
                            {"action", h.action},
                            {"mode", h.enforced ? "enforce" : "observe"},
                            {"enforced", h.enforced},
                            {"verdict", h.action == "block" && h.enforced ? "block" : h.action},
                            {"code", h.code},
                            {"spans", std::move(spans)}});
    if (h.action == "redact" && h.enforced) x->redacted = true;
  }
  if (d.error) {
    x->decisions.push_back(
        {{"stage", d.stage}, {"verdict", "not_evaluated"}, {"error", d.error_message}});
  }
}

void WriteAudit(Gateway* g, const Exchange& x) {
  const int64_t now = NowMicros();
  auto base = [&](const char* event) {
    return Json{{"ts_us", now},
                {"event", event},
                {"request_id", x.request_id},
                {"correlation_id", x.correlation_id},
                {"request_source", x.request_source},
                {"model", x.model},
                {"provider", x.provider}};
  };
  std::vector<Json> events;
  for (const Json& d : x.decisions) {
    Json e = base("decision");
    e.update(d);
    events.push_back(std::move(e));
  }
  Json e = base("request");
  e["method"] = x.method;
  e["path"] = x.path;
  if (!x.surface.empty()) e["surface"] = x.surface;
  if (!x.upstream_api.empty()) e["upstream_api"] = x.upstream_api;
  e["stream"] = x.stream;
  e["status"] = x.status;
  e["outcome"] = x.outcome;
  if (!x.error_code.empty()) e["error"] = {{"code", x.error_code}, {"message", x.error_message}};
  e["key_fingerprint"] = x.key_fingerprint;
  e["policy_version"] = x.policy_version;
  e["redacted"] = x.redacted;
  const int64_t total = MonoMicros() - x.t0;
  e["latency_us"] = {{"policy", x.policy_us}, {"upstream", x.upstream_us}, {"total", total}};
  if (!x.usage.is_null()) e["usage"] = x.usage;
  if (!x.limits.is_null()) e["limits"] = x.limits;
  if (x.stream) e["stream_hold"] = {{"max_held_bytes", x.max_held}, {"capped", x.stream_capped}};
  if (!x.prompt.is_null()) e["prompt"] = x.prompt;
  if (!x.not_evaluated.empty()) e["not_evaluated"] = x.not_evaluated;
  events.push_back(std::move(e));
  g->audit.WriteAll(std::move(events));

  // Metrics from the same facts as the audit record.
  g->metrics.CountRequest(x.status, x.model, x.provider);
  for (const Json& d : x.decisions) {
    if (d.contains("policy")) {
      g->metrics.CountDecision(d.value("policy", ""), d.value("action", ""), d.value("mode", ""));
    }
  }
  if (x.error_code.rfind("upstream_", 0) == 0) g->metrics.CountUpstreamError(x.error_code);
  g->metrics.policy_latency.Observe(static_cast<double>(x.policy_us) / 1e6);
  if (x.upstream_us > 0)
    g->metrics.upstream_latency.Observe(static_cast<double>(x.upstream_us) / 1e6);
  g->metrics.total_latency.Observe(static_cast<double>(total) / 1e6);
  if (x.stream_capped) ++g->metrics.hold_capped;
}

const char* UpstreamCodeOf(UpstreamFailure f) {
  switch (f) {
    case UpstreamFailure::kTimeout:
      return "upstream_timeout";
    case UpstreamFailure::kConnect:
      return "upstream_unreachable";
    case UpstreamFailure::kTooLarge:
      return "upstream_response_too_large";
    default:
      return "upstream_error";
  }
}

std::string PolicyCode(const PolicyHit& h, const char* fallback) {
  return h.code.empty() ? fallback : h.code;
}

}  // namespace kt::gateway
