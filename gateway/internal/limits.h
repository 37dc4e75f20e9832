// Rate limits: the counters behind `limit` declarations, in process.
//
// Each (limit, key) has a sliding window. Budgets up to 4,096 per window
// are exact: a ring of the admission times of the last N requests, so no
// window of the limit's length ever holds more than N admissions. Larger
// budgets (and token budgets) count in 1,024 buckets per window, so a
// window may hold up to 1/1,024 more than the budget. Keys are sharded over
// 16 locks; each limit keeps at most 100,000 keys, idle ones are evicted
// first, and past that the extra keys share one overflow budget (memory
// stays bounded, and the limit stays enforced).
#ifndef KT_GATEWAY_INTERNAL_LIMITS_H_
#define KT_GATEWAY_INTERNAL_LIMITS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "compiler/compiler.h"

namespace kt::gateway {

class LimitCounter {
 public:
  explicit LimitCounter(const LimitConfig& config);
  ~LimitCounter();
  const LimitConfig& config() const { return config_; }

  struct Verdict {
    bool admitted = true;
    int64_t remaining = 0;     // requests left in the window after this one
    double retry_after_s = 0;  // when refused: until a slot frees
    double reset_s = 0;        // until the window has room again (or is empty)
  };
  // Counts one request under `key` when the budgets allow it.
  Verdict Acquire(const std::string& key, int64_t now_us);
  // Takes back an admission (another limit refused the same request).
  void Release(const std::string& key, int64_t at_us);
  // Adds the tokens a completed request used.
  void AddTokens(const std::string& key, int64_t tokens, int64_t now_us);
  // Each key's counts in the window ending now (`kt limits show`).
  void Rows(int64_t now_us, std::vector<struct UsageRow>* out);

 private:
  struct Window;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::unique_ptr<Window>> keys;
  };
  Window& WindowFor(Shard& shard, const std::string& key, int64_t now_us);
  LimitConfig config_;
  int64_t window_us_;
  std::array<Shard, 16> shards_;
};

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_LIMITS_H_
