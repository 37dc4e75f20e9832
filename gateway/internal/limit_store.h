// Where limits and budgets count: the counter backends behind the
// pipeline's limits step.
//
// A request is counted by a `Ticket`: one `Charge` per limit or budget that
// applies to it. `Admit` takes all of them or none (a refusal by one undoes
// the others), and reserves each budget's worst case for the request;
// `Settle` replaces the reservation by what the call really used (zero when
// it failed: a refund). Two backends implement this:
//
//   memory  in process, exact (limits.h's windows, budgets under a lock);
//   redis   shared by every replica (redis_limits.h), one round trip each.
//
// `GuardedStore` wraps the shared one with the operator's declared answer
// to its failure: closed (503), open (admit, uncounted) or local (per-replica
// counters, budgets divided by the replica count).
#ifndef KT_GATEWAY_INTERNAL_LIMIT_STORE_H_
#define KT_GATEWAY_INTERNAL_LIMIT_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>

#include "compiler/compiler.h"

namespace kt::gateway {

namespace asio = boost::asio;

// Spend is counted in whole nano-dollars (1e-9 USD): exact integer sums in
// every backend (Redis counts in integers too), and a $9M budget still fits
// a double's exact range in Lua.
constexpr double kNanosPerUsd = 1e9;

struct Charge {
  const LimitConfig* config = nullptr;  // owned by the engine the request holds
  std::string key;
  int64_t reserve_nanos = 0;   // budgets: the request's worst-case cost
  int64_t reserve_tokens = 0;  // budgets: its worst-case tokens
};

struct Ticket {
  std::vector<Charge> charges;
  std::string id;             // unique per request: names its reservations
  std::string backend;        // which store admitted it (memory, redis, local)
  bool counted = false;       // false: admitted uncounted (fail-open), nothing to settle
};

// What one charge has left after an admission.
struct Remaining {
  int64_t requests = -1;  // -1: the counter has no such cap
  int64_t tokens = -1;
  int64_t nanos = -1;
  double reset_s = 0;  // until the window has room again, or the period ends
};

struct Admission {
  enum class Kind { kAdmitted, kRefused, kUnavailable };
  Kind kind = Kind::kAdmitted;
  std::size_t refused = 0;  // kRefused: the index of the charge that refused
  double retry_after_s = 0;
  std::vector<Remaining> remaining;  // per charge (kAdmitted), or the refusing one's
  std::string error;                 // kUnavailable: why the backend did not answer
  std::string degraded;              // admitted by the fail mode: "open" or "local"
};

// What a call used, as its usage reported it (or zero: a refund).
struct Spend {
  int64_t tokens = 0;
  int64_t nanos = 0;
  bool reported = true;  // false: no usage came; charged as reserved
};

// One counter's state, for `kt limits show` and /metrics.
struct UsageRow {
  std::string name;
  std::string key;
  std::string kind;  // limit | budget
  int64_t requests = 0;
  int64_t tokens = 0;
  int64_t nanos = 0;
  int64_t reserved_nanos = 0;
  double reset_s = 0;
};

class LimitStore {
 public:
  virtual ~LimitStore() = default;
  virtual const char* name() const = 0;
  virtual asio::awaitable<Admission> Admit(Ticket* ticket) = 0;
  virtual asio::awaitable<void> Settle(const Ticket& ticket, const Spend& spend) = 0;
  virtual asio::awaitable<std::vector<UsageRow>> Show(const std::vector<LimitConfig>& configs) = 0;
  // Settled spend this period per budget name, as last seen by this replica.
  std::map<std::string, double> SpendGauges() const;

 protected:
  void NoteSpend(const std::string& budget, int64_t total_nanos);
  mutable std::mutex gauges_mu_;
  std::map<std::string, int64_t> gauges_;
};

// The in-process backend. `divisor` > 1 makes each budget and limit that
// share of its declared size (the local fallback of N replicas).
std::unique_ptr<LimitStore> NewMemoryStore(int divisor = 1);

// Calendar periods in UTC: the start of the period holding `unix_s`, and
// the start of the next one.
struct Period {
  int64_t start_s = 0;
  int64_t end_s = 0;
};
Period PeriodOf(const std::string& unit, int64_t unix_s);

enum class LimitsFailMode { kClosed, kOpen, kLocal };

struct GuardCounters {
  std::atomic<int64_t> unavailable{0};  // admissions the shared backend did not answer
  std::atomic<int64_t> degraded_open{0};
  std::atomic<int64_t> degraded_local{0};
  std::atomic<int64_t> refused_closed{0};
};

// The shared backend with its declared failure answer.
std::unique_ptr<LimitStore> NewGuardedStore(std::unique_ptr<LimitStore> shared,
                                            LimitsFailMode mode, int replicas,
                                            GuardCounters* counters);

// USD (in nano-dollars, rounded up) of a call's tokens at `price`; `cached`
// is the part of `input` served from the provider's prompt cache.
int64_t CostNanos(const PriceConfig& price, int64_t input, int64_t cached, int64_t output);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_LIMIT_STORE_H_
