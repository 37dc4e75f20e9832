// Prometheus metrics (text exposition format 0.0.4). Counters are updated
// where a request's audit record is written, so /metrics and the audit trail
// always agree.
#ifndef KT_GATEWAY_INTERNAL_METRICS_H_
#define KT_GATEWAY_INTERNAL_METRICS_H_

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "gateway/internal/limit_store.h"

namespace kt::gateway {

class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
  void Observe(double seconds);
  void Render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

struct Metrics {
  void CountRequest(int status, const std::string& model, const std::string& provider);
  void CountDecision(const std::string& policy, const std::string& action, const std::string& mode);
  void CountUpstreamError(const std::string& code);
  void CountRateLimited(const std::string& limit);
  void CountReload(bool ok);
  std::string Render(const std::string& version, const std::string& policy_version) const;
  // The limits backend's health and each budget's settled spend this
  // period (as this replica last saw it: from Redis, every replica's).
  static std::string RenderLimits(const GuardCounters& guard,
                                  const std::map<std::string, double>& spend);

  Histogram policy_latency;
  Histogram upstream_latency;
  Histogram total_latency;
  std::atomic<int64_t> active_streams{0};
  std::atomic<int64_t> held_bytes{0};    // streamed output held back right now
  std::atomic<uint64_t> hold_capped{0};  // streams that hit the hold cap
  std::atomic<uint64_t> internal_errors{0};  // requests that hit a gateway defect

 private:
  mutable std::mutex mu_;
  std::map<std::tuple<int, std::string, std::string>, uint64_t> requests_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> decisions_;
  std::map<std::string, uint64_t> upstream_errors_;
  std::map<std::string, uint64_t> rate_limited_;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
};

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_METRICS_H_
