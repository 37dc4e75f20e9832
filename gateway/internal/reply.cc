#include "gateway/internal/reply.h"

#include <algorithm>
#include <cmath>

#include "gateway/internal/util.h"

namespace kt::gateway {

void SetCommonHeaders(http::fields* h, const Exchange& x) {
  h->set(http::field::server, "kt");
  h->set("x-request-id", x.request_id);
  if (!x.correlation_id.empty()) h->set("x-correlation-id", x.correlation_id);
  if (!x.request_source.empty()) h->set("x-request-source", x.request_source);
}

Response BodyResponse(Exchange* x, int status, std::string body, std::string_view content_type,
                      bool keep_alive, const Headers& extra) {
  Response res{static_cast<http::status>(status), 11};
  SetCommonHeaders(&res, *x);
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  for (const auto& [k, v] : extra) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  x->status = status;
  return res;
}

Response ErrorResponse(Gateway* g, Exchange* x, int status, std::string_view type,
                       std::string_view code, std::string_view message, bool keep_alive,
                       std::string_view policy, Headers extra) {
  x->status = status;
  x->error_code = code;
  x->error_message = message;
  if (x->outcome == "allowed") x->outcome = "error";
  if (status == 409) extra.emplace_back("x-should-retry", "false");
  if (!x->path.empty()) WriteAudit(g, *x);
  return BodyResponse(x, status, Dump(ErrorEnvelope(type, code, message, x->request_id, policy)),
                      "application/json", keep_alive, extra);
}

namespace {

std::string WindowName(double window_s) {
  return window_s == 1      ? "second"
         : window_s == 60   ? "minute"
         : window_s == 3600 ? "hour"
                            : "day";
}

}  // namespace

Response RateLimitResponse(Gateway* g, Exchange* x, const LimitConfig& limit,
                           const LimitCounter::Verdict& v, bool keep_alive) {
  x->outcome = "rate_limited";
  x->decisions.push_back({{"stage", "limit"}, {"limit", limit.name}, {"verdict", "rate_limited"}});
  g->metrics.CountRateLimited(limit.name);
  const double retry = std::max(v.retry_after_s, 0.001);
  Headers h = {{"retry-after", std::to_string(static_cast<int64_t>(std::ceil(retry)))},
               {"retry-after-ms", std::to_string(static_cast<int64_t>(std::ceil(retry * 1000)))}};
  if (limit.requests > 0) {
    h.emplace_back("x-ratelimit-limit-requests", std::to_string(limit.requests));
    h.emplace_back("x-ratelimit-remaining-requests", "0");
    h.emplace_back("x-ratelimit-reset-requests",
                   std::to_string(static_cast<int64_t>(std::ceil(v.reset_s * 1000))) + "ms");
  }
  std::string what = limit.requests > 0 ? std::to_string(limit.requests) + " requests"
                                        : std::to_string(limit.tokens) + " tokens";
  std::string message =
      "rate limit `" + limit.name + "` exceeded: " + what + " per " + WindowName(limit.window_s);
  x->status = 429;
  x->error_code = "rate_limit_exceeded";
  x->error_message = message;
  WriteAudit(g, *x);
  Json envelope = ErrorEnvelope("rate_limit", "rate_limit_exceeded", message, x->request_id);
  envelope["error"]["limit"] = limit.name;
  return BodyResponse(x, 429, Dump(envelope), "application/json", keep_alive, h);
}

}  // namespace kt::gateway
