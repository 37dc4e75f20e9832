#include "gateway/internal/reply.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

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

// Money as people read it: $0.0042, $12.50.
std::string Usd(int64_t nanos) {
  char buf[48];
  std::snprintf(buf, sizeof buf, nanos != 0 && std::llabs(nanos) < 10000000 ? "%.6f" : "%.2f",
                static_cast<double>(nanos) / kNanosPerUsd);
  return buf;
}

std::string IsoTime(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Ms(double s) { return std::to_string(static_cast<int64_t>(std::ceil(s * 1000))); }

// A limit: which window, how long until it has room.
std::string LimitMessage(const LimitConfig& limit, Headers* h, const Remaining& left) {
  if (limit.requests > 0) {
    h->emplace_back("x-ratelimit-limit-requests", std::to_string(limit.requests));
    h->emplace_back("x-ratelimit-remaining-requests", "0");
    h->emplace_back("x-ratelimit-reset-requests", Ms(left.reset_s) + "ms");
  }
  std::string what = limit.requests > 0 ? std::to_string(limit.requests) + " requests"
                                        : std::to_string(limit.tokens) + " tokens";
  return "rate limit `" + limit.name + "` exceeded: " + what + " per " + limit.period;
}

// A budget: what it allows, what is left, when it resets.
std::string BudgetMessage(const LimitConfig& budget, Headers* h, const Remaining& left) {
  if (left.tokens >= 0) {
    h->emplace_back("x-ratelimit-limit-tokens", std::to_string(budget.tokens));
    h->emplace_back("x-ratelimit-remaining-tokens", std::to_string(left.tokens));
    h->emplace_back("x-ratelimit-reset-tokens", Ms(left.reset_s) + "ms");
  }
  if (left.nanos >= 0) h->emplace_back("x-kt-budget-remaining-usd", Usd(left.nanos));
  std::string what = budget.usd > 0 ? "$" + Usd(int64_t(budget.usd * kNanosPerUsd))
                                    : std::to_string(budget.tokens) + " tokens";
  std::string left_text = left.nanos >= 0 ? "$" + Usd(left.nanos) : std::to_string(left.tokens) +
                                                                         " tokens";
  return "budget `" + budget.name + "` exceeded: " + what + " per " + budget.period + ", " +
         left_text + " left, not enough for this request's worst case";
}

}  // namespace

Headers BudgetHeaders(const LimitConfig& budget, const Remaining& left) {
  Headers h;
  if (left.tokens >= 0) h.emplace_back("x-ratelimit-remaining-tokens", std::to_string(left.tokens));
  if (left.nanos >= 0) h.emplace_back("x-kt-budget-remaining-usd", Usd(left.nanos));
  if (!h.empty()) h.emplace_back("x-kt-budget", budget.name);
  return h;
}

std::string FormatUsd(int64_t nanos) { return Usd(nanos); }

Response RateLimitResponse(Gateway* g, Exchange* x, const LimitConfig& limit,
                           const Admission& a, bool keep_alive) {
  const Remaining left = a.remaining.empty() ? Remaining{} : a.remaining[0];
  const char* code = limit.budget ? "budget_exceeded" : "rate_limit_exceeded";
  x->outcome = limit.budget ? "budget_exceeded" : "rate_limited";
  x->decisions.push_back({{"stage", "limit"}, {"limit", limit.name}, {"verdict", x->outcome}});
  g->metrics.CountRateLimited(limit.name);
  const double retry = std::max(a.retry_after_s, 0.001);
  Headers h = {{"retry-after", std::to_string(static_cast<int64_t>(std::ceil(retry)))},
               {"retry-after-ms", Ms(retry)}};
  std::string message =
      limit.budget ? BudgetMessage(limit, &h, left) : LimitMessage(limit, &h, left);
  x->status = 429;
  x->error_code = code;
  x->error_message = message;
  WriteAudit(g, *x);
  Json envelope = ErrorEnvelope("rate_limit", code, message, x->request_id);
  envelope["error"][limit.budget ? "budget" : "limit"] = limit.name;
  if (limit.budget) {
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    envelope["error"]["resets_at"] = IsoTime(now + static_cast<int64_t>(std::ceil(left.reset_s)));
    envelope["error"]["resets_in_s"] = static_cast<int64_t>(std::ceil(left.reset_s));
  }
  return BodyResponse(x, 429, Dump(envelope), "application/json", keep_alive, h);
}

}  // namespace kt::gateway
