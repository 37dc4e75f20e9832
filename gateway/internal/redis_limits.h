// The shared limits backend: every replica's counters in one Redis.
//
// One admission is one EVALSHA of the admit script over all the charges of
// a request (all or none, atomically, at Redis' own `TIME`), and one
// settlement one EVALSHA of the settle script. The scripts' contract is
// written out in docs/limits.md; the keys are
//
//   NS:l:<len>:<name>:<key>      requests in the sliding window (ZSET of µs)
//   NS:lt:<len>:<name>:<key>     tokens in the window (HASH of 64 buckets)
//   NS:b:<len>:<name>:<key>      a budget's period: p, spent, tokens, reserved, rtokens
//   NS:br:<len>:<name>:<key>     its open reservations (HASH id -> nanos:tokens:expiry)
//   NS:bt:<len>:<name>           settled spend of the whole budget per period
//
// and every key expires after its window or period. The gateway keeps one
// client per io thread: an admission never leaves its thread, and never
// blocks it.
#ifndef KT_GATEWAY_INTERNAL_REDIS_LIMITS_H_
#define KT_GATEWAY_INTERNAL_REDIS_LIMITS_H_

#include <memory>
#include <string>
#include <vector>

#include "gateway/internal/limit_store.h"
#include "gateway/internal/redis.h"

namespace kt::gateway {

struct RedisLimitsOptions {
  RedisUrl url;
  RedisOptions client;
  std::string ns = "kt";  // the key prefix
};

// One client per io_context in `ios` (the gateway's threads).
std::unique_ptr<LimitStore> NewRedisStore(const std::vector<asio::io_context*>& ios,
                                          const RedisLimitsOptions& options);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_REDIS_LIMITS_H_
