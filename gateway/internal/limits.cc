#include "gateway/internal/limits.h"

#include <algorithm>
#include <functional>

#include "gateway/internal/limit_store.h"

namespace kt::gateway {

namespace {
constexpr int64_t kExactMax = 4096;
constexpr int kBuckets = 1024;
constexpr std::size_t kMaxKeysPerShard = 100000 / 16;
const char* kOverflowKey = "\x01overflow";
}  // namespace

// A sliding count over the last window: an exact ring of admission times for
// small budgets, or buckets for large budgets and tokens.
struct LimitCounter::Window {
  explicit Window(const LimitCounter& owner) : window_us(owner.window_us_) {
    int64_t n = owner.config_.requests;
    if (n > 0 && n <= kExactMax) ring.assign(static_cast<std::size_t>(n), INT64_MIN);
    if (n > kExactMax) request_buckets.assign(kBuckets, {0, 0});
    if (owner.config_.tokens > 0) token_buckets.assign(kBuckets, {0, 0});
  }
  int64_t window_us;
  // Exact: ring[head] is the oldest of the last N admissions.
  std::vector<int64_t> ring;
  std::size_t head = 0;
  // Bucketed: (bucket start, count), indexed by start / (window / kBuckets).
  std::vector<std::pair<int64_t, int64_t>> request_buckets;
  std::vector<std::pair<int64_t, int64_t>> token_buckets;
  int64_t last_us = 0;

  int64_t BucketUs() const { return std::max<int64_t>(1, window_us / kBuckets); }
  int64_t Sum(std::vector<std::pair<int64_t, int64_t>>& b, int64_t now) const {
    int64_t total = 0;
    for (auto& [start, count] : b) {
      if (start > now - window_us) total += count;
    }
    return total;
  }
  void Add(std::vector<std::pair<int64_t, int64_t>>& b, int64_t now, int64_t n) {
    int64_t w = BucketUs();
    int64_t start = now - now % w;
    auto& slot = b[static_cast<std::size_t>((start / w) % kBuckets)];
    if (slot.first != start) slot = {start, 0};
    slot.second += n;
  }
  // The oldest bucket still in the window, for retry-after.
  int64_t OldestStart(const std::vector<std::pair<int64_t, int64_t>>& b, int64_t now) const {
    int64_t oldest = now;
    for (const auto& [start, count] : b) {
      if (count > 0 && start > now - window_us) oldest = std::min(oldest, start);
    }
    return oldest;
  }
};

LimitCounter::LimitCounter(const LimitConfig& config)
    : config_(config), window_us_(static_cast<int64_t>(config.window_s * 1e6)) {}

LimitCounter::~LimitCounter() = default;

LimitCounter::Window& LimitCounter::WindowFor(Shard& shard, const std::string& key, int64_t now) {
  auto it = shard.keys.find(key);
  if (it != shard.keys.end()) return *it->second;
  if (shard.keys.size() >= kMaxKeysPerShard) {
    // Evict keys idle for a whole window: their counts are all expired.
    for (auto e = shard.keys.begin(); e != shard.keys.end();) {
      e = e->second->last_us <= now - window_us_ ? shard.keys.erase(e) : std::next(e);
    }
    if (shard.keys.size() >= kMaxKeysPerShard) {
      auto& overflow = shard.keys[kOverflowKey];
      if (overflow == nullptr) overflow = std::make_unique<Window>(*this);
      return *overflow;
    }
  }
  auto& slot = shard.keys[key];
  slot = std::make_unique<Window>(*this);
  return *slot;
}

LimitCounter::Verdict LimitCounter::Acquire(const std::string& key, int64_t now) {
  Shard& shard = shards_[std::hash<std::string>()(key) % shards_.size()];
  std::lock_guard lock(shard.mu);
  Window& w = WindowFor(shard, key, now);
  w.last_us = now;
  Verdict v;
  const double window_s = static_cast<double>(window_us_) / 1e6;
  // Refused until the oldest counted admission (or bucket) leaves the window.
  auto refuse = [&](int64_t oldest) {
    v.admitted = false;
    v.retry_after_s = static_cast<double>(oldest + window_us_ - now) / 1e6;
    v.reset_s = v.retry_after_s;
    return v;
  };
  if (config_.tokens > 0 && w.Sum(w.token_buckets, now) >= config_.tokens) {
    return refuse(w.OldestStart(w.token_buckets, now));
  }
  if (!w.ring.empty()) {
    int64_t oldest = w.ring[w.head];
    if (oldest > now - window_us_) return refuse(oldest);
    w.ring[w.head] = now;
    w.head = (w.head + 1) % w.ring.size();
    int64_t in_window = 0;
    for (int64_t t : w.ring) in_window += t > now - window_us_ ? 1 : 0;
    v.remaining = config_.requests - in_window;
    v.reset_s = static_cast<double>(
                    w.ring[w.head] > now - window_us_ ? w.ring[w.head] + window_us_ - now : 0) /
                1e6;
  } else if (!w.request_buckets.empty()) {
    int64_t used = w.Sum(w.request_buckets, now);
    if (used >= config_.requests) return refuse(w.OldestStart(w.request_buckets, now));
    w.Add(w.request_buckets, now, 1);
    v.remaining = config_.requests - used - 1;
    v.reset_s = window_s;
  }
  return v;
}

void LimitCounter::Release(const std::string& key, int64_t at) {
  Shard& shard = shards_[std::hash<std::string>()(key) % shards_.size()];
  std::lock_guard lock(shard.mu);
  auto it = shard.keys.find(key);
  if (it == shard.keys.end()) return;
  Window& w = *it->second;
  if (!w.ring.empty()) {
    // Undo the newest admission at `at`: step the head back over it.
    std::size_t prev = (w.head + w.ring.size() - 1) % w.ring.size();
    if (w.ring[prev] == at) {
      w.ring[prev] = INT64_MIN;
      w.head = prev;
    }
  } else if (!w.request_buckets.empty()) {
    w.Add(w.request_buckets, at, -1);
  }
}

void LimitCounter::AddTokens(const std::string& key, int64_t tokens, int64_t now) {
  if (config_.tokens <= 0 || tokens <= 0) return;
  Shard& shard = shards_[std::hash<std::string>()(key) % shards_.size()];
  std::lock_guard lock(shard.mu);
  Window& w = WindowFor(shard, key, now);
  w.Add(w.token_buckets, now, tokens);
}

void LimitCounter::Rows(int64_t now, std::vector<UsageRow>* out) {
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (auto& [key, w] : shard.keys) {
      UsageRow row{config_.name, key, "limit", 0, 0, 0, 0, 0};
      for (int64_t t : w->ring) row.requests += t > now - window_us_ ? 1 : 0;
      if (!w->request_buckets.empty()) row.requests = w->Sum(w->request_buckets, now);
      if (!w->token_buckets.empty()) row.tokens = w->Sum(w->token_buckets, now);
      if (row.requests > 0 || row.tokens > 0) out->push_back(std::move(row));
    }
  }
}

}  // namespace kt::gateway
