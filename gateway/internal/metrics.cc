#include "gateway/internal/metrics.h"

#include <cstdio>

namespace kt::gateway {

namespace {
// Label values are escaped as the exposition format requires.
std::string Label(const std::string& v) {
  std::string out;
  for (char c : v.substr(0, 200)) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
}  // namespace

void Histogram::Observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void Histogram::Render(const std::string& name, const std::string& help, std::string* out) const {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    *out += name + "_bucket{le=\"" + Num(kBounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_[kBounds.size()].load(std::memory_order_relaxed);
  *out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  *out += name + "_sum " + Num(static_cast<double>(sum_ns_.load()) / 1e9) + "\n";
  *out += name + "_count " + std::to_string(cumulative) + "\n";
}

void Metrics::CountRequest(int status, const std::string& model, const std::string& provider) {
  std::lock_guard lock(mu_);
  ++requests_[{status, model.substr(0, 100), provider}];
}

void Metrics::CountDecision(const std::string& policy, const std::string& action,
                            const std::string& mode) {
  std::lock_guard lock(mu_);
  ++decisions_[{policy, action, mode}];
}

void Metrics::CountUpstreamError(const std::string& code) {
  std::lock_guard lock(mu_);
  ++upstream_errors_[code];
}

void Metrics::CountRateLimited(const std::string& limit) {
  std::lock_guard lock(mu_);
  ++rate_limited_[limit];
}

void Metrics::CountReload(bool ok) {
  std::lock_guard lock(mu_);
  ++(ok ? reloads_ok_ : reloads_failed_);
}

std::string Metrics::Render(const std::string& version, const std::string& policy_version) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    out +=
        "# HELP kt_requests_total Chat-completion requests, by response status, model and "
        "provider.\n";
    out += "# TYPE kt_requests_total counter\n";
    for (const auto& [k, n] : requests_) {
      out += "kt_requests_total{status=\"" + std::to_string(std::get<0>(k)) + "\",model=\"" +
             Label(std::get<1>(k)) + "\",provider=\"" + Label(std::get<2>(k)) + "\"} " +
             std::to_string(n) + "\n";
    }
    out += "# HELP kt_policy_decisions_total Policy hits, by policy, action and mode.\n";
    out += "# TYPE kt_policy_decisions_total counter\n";
    for (const auto& [k, n] : decisions_) {
      out += "kt_policy_decisions_total{policy=\"" + Label(std::get<0>(k)) + "\",action=\"" +
             Label(std::get<1>(k)) + "\",mode=\"" + Label(std::get<2>(k)) + "\"} " +
             std::to_string(n) + "\n";
    }
    out += "# HELP kt_upstream_errors_total Upstream failures, by error code.\n";
    out += "# TYPE kt_upstream_errors_total counter\n";
    for (const auto& [k, n] : upstream_errors_) {
      out += "kt_upstream_errors_total{code=\"" + Label(k) + "\"} " + std::to_string(n) + "\n";
    }
    out += "# HELP kt_rate_limited_total Requests refused with 429, by limit.\n";
    out += "# TYPE kt_rate_limited_total counter\n";
    for (const auto& [k, n] : rate_limited_) {
      out += "kt_rate_limited_total{limit=\"" + Label(k) + "\"} " + std::to_string(n) + "\n";
    }
    out += "# HELP kt_policy_reloads_total Policy reloads, by result.\n";
    out += "# TYPE kt_policy_reloads_total counter\n";
    out += "kt_policy_reloads_total{result=\"ok\"} " + std::to_string(reloads_ok_) + "\n";
    out += "kt_policy_reloads_total{result=\"error\"} " + std::to_string(reloads_failed_) + "\n";
  }
  policy_latency.Render("kt_policy_latency_seconds", "Time spent evaluating policies per request.",
                        &out);
  upstream_latency.Render("kt_upstream_latency_seconds",
                          "Time spent waiting on the upstream per request.", &out);
  total_latency.Render("kt_request_latency_seconds", "Total time per request.", &out);
  out +=
      "# HELP kt_active_streams Streamed responses in progress.\n# TYPE kt_active_streams gauge\n";
  out += "kt_active_streams " + std::to_string(active_streams.load()) + "\n";
  out +=
      "# HELP kt_stream_held_bytes Streamed output held back right now.\n# TYPE "
      "kt_stream_held_bytes gauge\n";
  out += "kt_stream_held_bytes " + std::to_string(held_bytes.load()) + "\n";
  out += "# HELP kt_stream_hold_capped_total Streams whose hold-back reached the cap.\n";
  out += "# TYPE kt_stream_hold_capped_total counter\n";
  out += "kt_stream_hold_capped_total " + std::to_string(hold_capped.load()) + "\n";
  out += "# HELP kt_internal_errors_total Requests failed by a defect in the gateway (see its log).\n";
  out += "# TYPE kt_internal_errors_total counter\n";
  out += "kt_internal_errors_total " + std::to_string(internal_errors.load()) + "\n";
  out += "# HELP kt_info The running version and policy-set version.\n# TYPE kt_info gauge\n";
  out += "kt_info{version=\"" + Label(version) + "\",policy_version=\"" + Label(policy_version) +
         "\"} 1\n";
  return out;
}

std::string Metrics::RenderLimits(const GuardCounters& guard,
                                  const std::map<std::string, double>& spend) {
  std::string out;
  out += "# HELP kt_limits_unavailable_total Admissions the shared limits backend did not answer.\n";
  out += "# TYPE kt_limits_unavailable_total counter\n";
  out += "kt_limits_unavailable_total " + std::to_string(guard.unavailable.load()) + "\n";
  out += "# HELP kt_limits_fail_mode_total Admissions decided by the fail mode, by mode.\n";
  out += "# TYPE kt_limits_fail_mode_total counter\n";
  out += "kt_limits_fail_mode_total{mode=\"closed\"} " +
         std::to_string(guard.refused_closed.load()) + "\n";
  out += "kt_limits_fail_mode_total{mode=\"open\"} " + std::to_string(guard.degraded_open.load()) +
         "\n";
  out += "kt_limits_fail_mode_total{mode=\"local\"} " +
         std::to_string(guard.degraded_local.load()) + "\n";
  out += "# HELP kt_budget_spend_usd Settled spend this period, by budget.\n";
  out += "# TYPE kt_budget_spend_usd gauge\n";
  for (const auto& [name, usd] : spend) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9f", usd);
    out += "kt_budget_spend_usd{budget=\"" + Label(name) + "\"} " + buf + "\n";
  }
  return out;
}

}  // namespace kt::gateway
