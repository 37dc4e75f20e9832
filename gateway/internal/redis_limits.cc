#include "gateway/internal/redis_limits.h"

#include <map>

namespace kt::gateway {

namespace {

// Calendar periods in UTC at the server's clock, as PeriodOf computes them
// in process (days_from_civil and civil_from_days: the proleptic Gregorian
// calendar).
constexpr const char* kPeriodLua = R"lua(
local function floor(x) return math.floor(x) end
local function civil(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function days(y, m)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5)
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end
local function period(unit, s)
  if unit == 'minute' then return s - s % 60, s - s % 60 + 60 end
  if unit == 'hour' then return s - s % 3600, s - s % 3600 + 3600 end
  local d = floor(s / 86400)
  if unit == 'day' then return d * 86400, (d + 1) * 86400 end
  if unit == 'week' then
    local monday = d - (d + 3) % 7
    return monday * 86400, (monday + 7) * 86400
  end
  local y, m = civil(d)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return days(y, m) * 86400, days(ny, nm) * 86400
end
local function held(v)
  local n, t, e = string.match(v, '^(%-?%d+):(%-?%d+):(%d+)$')
  return tonumber(n), tonumber(t), tonumber(e)
end
)lua";

// ADMIT. KEYS: three per charge (main, aux, total). ARGV[1]: the request
// id; ARGV[2]: seconds an unsettled reservation lives; then six per charge:
//   'l', requests cap, tokens cap, window µs, -, -
//   'b', nanos cap, tokens cap, period unit, reserve nanos, reserve tokens
// Answers {1, r1, t1, n1, reset_ms1, …} (what each charge has left), or
// {0, i, retry_ms, r, t, n, reset_ms} naming the charge that refused.
constexpr const char* kAdmitLua = R"lua(
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_us = now_s * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
local n = #KEYS / 3
local state = {}
for i = 1, n do
  local a = 3 + (i - 1) * 6
  local kind, cap1, cap2 = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local main, aux = KEYS[3 * i - 2], KEYS[3 * i - 1]
  if kind == 'l' then
    local window = tonumber(ARGV[a + 3])
    local count, tokens, retry = 0, 0, 0
    if cap1 > 0 then
      redis.call('ZREMRANGEBYSCORE', main, '-inf', now_us - window)
      count = redis.call('ZCARD', main)
      if count >= cap1 then
        local oldest = redis.call('ZRANGE', main, 0, 0, 'WITHSCORES')
        retry = tonumber(oldest[2]) + window - now_us
      end
    end
    if cap2 > 0 then
      local width = math.max(1, math.floor(window / 64))
      local b = redis.call('HGETALL', aux)
      for j = 1, #b, 2 do
        local start = tonumber(b[j]) * width
        if start > now_us - window then tokens = tokens + tonumber(b[j + 1])
        else redis.call('HDEL', aux, b[j]) end
      end
      if tokens >= cap2 then retry = math.max(retry, width) end
    end
    if retry > 0 then
      return {0, i, math.ceil(retry / 1000), 0, math.max(0, cap2 - tokens), -1, math.ceil(retry / 1000)}
    end
    state[i] = {kind, cap1 > 0 and cap1 - count - 1 or -1, cap2 > 0 and cap2 - tokens or -1, -1,
                cap1 > 0 and math.ceil(window / 1000) or 0}
  else
    local unit, rn, rt = ARGV[a + 3], tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
    local ps, pe = period(unit, now_s)
    local v = redis.call('HMGET', main, 'p', 'spent', 'tokens', 'reserved', 'rtokens')
    local spent, tokens = tonumber(v[2]) or 0, tonumber(v[3]) or 0
    local reserved, rtokens = tonumber(v[4]) or 0, tonumber(v[5]) or 0
    if tonumber(v[1]) ~= ps then spent, tokens = 0, 0 end
    local h = redis.call('HGETALL', aux)
    for j = 1, #h, 2 do
      local hn, ht, he = held(h[j + 1])
      if he <= now_s then
        reserved, rtokens = reserved - hn, rtokens - ht
        redis.call('HDEL', aux, h[j])
      end
    end
    local reset = (pe - now_s) * 1000
    local over = (cap1 > 0 and spent + reserved + rn > cap1) or (cap2 > 0 and tokens + rtokens + rt > cap2)
    if over then
      return {0, i, reset, -1, cap2 > 0 and math.max(0, cap2 - tokens - rtokens) or -1,
              cap1 > 0 and math.max(0, cap1 - spent - reserved) or -1, reset}
    end
    state[i] = {kind, -1, cap2 > 0 and cap2 - tokens - rtokens - rt or -1,
                cap1 > 0 and cap1 - spent - reserved - rn or -1, reset,
                ps, pe, spent, tokens, reserved + rn, rtokens + rt, rn, rt}
  end
end
local out = {1}
for i = 1, n do
  local s = state[i]
  local main, aux = KEYS[3 * i - 2], KEYS[3 * i - 1]
  if s[1] == 'l' then
    local window = tonumber(ARGV[3 + (i - 1) * 6 + 3])
    if s[2] >= 0 then
      redis.call('ZADD', main, now_us, ARGV[1])
      redis.call('PEXPIRE', main, math.ceil(window / 1000) + 1000)
    end
  else
    redis.call('HSET', main, 'p', s[6], 'spent', s[8], 'tokens', s[9], 'reserved', s[10], 'rtokens', s[11])
    redis.call('EXPIREAT', main, s[7] + ttl)
    redis.call('HSET', aux, ARGV[1], s[12] .. ':' .. s[13] .. ':' .. (now_s + ttl))
    redis.call('EXPIREAT', aux, math.max(s[7], now_s) + ttl)
  end
  for k = 2, 5 do out[#out + 1] = s[k] end
end
return out
)lua";

// SETTLE. KEYS as ADMIT's. ARGV[1]: the request id; ARGV[2]: tokens used;
// ARGV[3]: nanos used; ARGV[4]: 1 when the call reported its usage (else
// each budget is charged what it reserved); then six per charge as ADMIT's.
// Answers {total nanos of each budget charge this period, or -1}.
constexpr const char* kSettleLua = R"lua(
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_us = now_s * 1000000 + tonumber(t[2])
local used_t, used_n, reported = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local out = {}
for i = 1, #KEYS / 3 do
  local a = 5 + (i - 1) * 6
  local kind, cap2 = ARGV[a], tonumber(ARGV[a + 2])
  local main, aux, total = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if kind == 'l' then
    if cap2 > 0 and used_t > 0 then
      local window = tonumber(ARGV[a + 3])
      local width = math.max(1, math.floor(window / 64))
      redis.call('HINCRBY', aux, math.floor(now_us / width), used_t)
      redis.call('PEXPIRE', aux, math.ceil(window / 1000) + 1000)
    end
    out[#out + 1] = -1
  else
    local ps, pe = period(ARGV[a + 3], now_s)
    local hn, ht = 0, 0
    local h = redis.call('HGET', aux, ARGV[1])
    if h then
      hn, ht = held(h)
      redis.call('HDEL', aux, ARGV[1])
      redis.call('HINCRBY', main, 'reserved', -hn)
      redis.call('HINCRBY', main, 'rtokens', -ht)
    else
      hn, ht = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
    end
    local n = reported and used_n or hn
    local tk = reported and used_t or ht
    if tonumber(redis.call('HGET', main, 'p')) ~= ps then
      redis.call('HSET', main, 'p', ps, 'spent', 0, 'tokens', 0)
    end
    redis.call('HINCRBY', main, 'spent', n)
    redis.call('HINCRBY', main, 'tokens', tk)
    redis.call('EXPIREAT', main, pe + 3600)
    local sum = redis.call('HINCRBY', total, ps, n)
    redis.call('EXPIREAT', total, pe + 3600)
    out[#out + 1] = sum
  end
end
return out
)lua";

constexpr int64_t kReservationTtlS = 3600;

std::string Part(const std::string& s) { return std::to_string(s.size()) + ":" + s; }

class RedisStore : public LimitStore {
 public:
  RedisStore(const std::vector<asio::io_context*>& ios, const RedisLimitsOptions& o)
      : ns_(o.ns),
        admit_(std::string(kPeriodLua) + kAdmitLua),
        settle_(std::string(kPeriodLua) + kSettleLua) {
    for (asio::io_context* io : ios) {
      clients_[io] = std::make_unique<RedisClient>(io->get_executor(), o.url, o.client, nullptr);
    }
  }
  const char* name() const override { return "redis"; }

  asio::awaitable<Admission> Admit(Ticket* ticket) override {
    std::vector<std::string> keys, args = {ticket->id, std::to_string(kReservationTtlS)};
    for (const Charge& ch : ticket->charges) AddCharge(ch, &keys, &args);
    RedisReply reply;
    std::string error;
    RedisClient* client = co_await Client();
    const bool ok = co_await client->Eval(admit_, keys, args, &reply, &error);
    Admission a = ok ? ReadAdmission(reply) : Admission{};
    if (!ok) {
      a.kind = Admission::Kind::kUnavailable;
      a.error = error;
    }
    if (a.kind == Admission::Kind::kAdmitted) {
      ticket->backend = name();
      ticket->counted = true;
    }
    co_return a;
  }

  asio::awaitable<void> Settle(const Ticket& ticket, const Spend& spend) override {
    std::vector<std::string> keys,
        args = {ticket.id, std::to_string(spend.tokens), std::to_string(spend.nanos),
                spend.reported ? "1" : "0"};
    for (const Charge& ch : ticket.charges) AddCharge(ch, &keys, &args);
    RedisReply reply;
    std::string error;
    RedisClient* client = co_await Client();
    const bool ok = co_await client->Eval(settle_, keys, args, &reply, &error);
    // A settlement Redis did not take leaves its reservation to expire: the
    // budget stays safe (it counts the worst case) and heals on its own.
    if (!ok || reply.type != RedisReply::Type::kArray) co_return;
    for (std::size_t i = 0; i < reply.elements.size() && i < ticket.charges.size(); ++i) {
      if (ticket.charges[i].config->budget) {
        NoteSpend(ticket.charges[i].config->name, reply.elements[i].integer);
      }
    }
  }

  asio::awaitable<std::vector<UsageRow>> Show(const std::vector<LimitConfig>& configs) override;

 private:
  asio::awaitable<RedisClient*> Client() {
    auto ex = co_await asio::this_coro::executor;
    auto* ctx = &asio::query(ex, asio::execution::context);
    auto it = clients_.find(static_cast<asio::io_context*>(ctx));
    co_return it != clients_.end() ? it->second.get() : clients_.begin()->second.get();
  }

  void AddCharge(const Charge& ch, std::vector<std::string>* keys,
                 std::vector<std::string>* args) const {
    const LimitConfig& c = *ch.config;
    const std::string id = Part(c.name) + ":" + ch.key;
    if (c.budget) {
      *keys = Append(*keys, {ns_ + ":b:" + id, ns_ + ":br:" + id, ns_ + ":bt:" + Part(c.name)});
      *args = Append(*args, {"b", std::to_string(int64_t(c.usd * kNanosPerUsd)),
                             std::to_string(c.tokens), c.period, std::to_string(ch.reserve_nanos),
                             std::to_string(ch.reserve_tokens)});
    } else {
      *keys = Append(*keys, {ns_ + ":l:" + id, ns_ + ":lt:" + id, ns_ + ":lt:" + id});
      *args = Append(*args, {"l", std::to_string(c.requests), std::to_string(c.tokens),
                             std::to_string(int64_t(c.window_s * 1e6)), "0", "0"});
    }
  }

  static std::vector<std::string> Append(std::vector<std::string> v,
                                         std::initializer_list<std::string> more) {
    v.insert(v.end(), more.begin(), more.end());
    return v;
  }

  static Admission ReadAdmission(const RedisReply& reply) {
    Admission a;
    auto at = [&](std::size_t i) -> int64_t {
      return i < reply.elements.size() ? reply.elements[i].integer : 0;
    };
    if (reply.type != RedisReply::Type::kArray || reply.elements.empty()) {
      a.kind = Admission::Kind::kUnavailable;
      a.error = "redis: the admit script answered " +
                (reply.type == RedisReply::Type::kError ? reply.str : std::string("no array"));
      return a;
    }
    auto remaining = [&](std::size_t i) {
      return Remaining{at(i), at(i + 1), at(i + 2), static_cast<double>(at(i + 3)) / 1000};
    };
    if (at(0) == 0) {
      a.kind = Admission::Kind::kRefused;
      a.refused = static_cast<std::size_t>(std::max<int64_t>(1, at(1)) - 1);
      a.retry_after_s = static_cast<double>(at(2)) / 1000;
      a.remaining = {remaining(3)};
      return a;
    }
    for (std::size_t i = 1; i + 3 < reply.elements.size(); i += 4) {
      a.remaining.push_back(remaining(i));
    }
    return a;
  }

  std::string ns_;
  std::string admit_;
  std::string settle_;
  std::map<asio::io_context*, std::unique_ptr<RedisClient>> clients_;
};

// The counters of every key of the given limits and budgets, read with
// SCAN (never KEYS: a large keyspace must not stall Redis).
asio::awaitable<std::vector<UsageRow>> RedisStore::Show(const std::vector<LimitConfig>& configs) {
  std::vector<UsageRow> rows;
  RedisClient* client = co_await Client();
  RedisReply reply;
  std::string error;
  for (const LimitConfig& c : configs) {
    std::string prefix = ns_ + (c.budget ? ":b:" : ":l:") + Part(c.name) + ":";
    std::string pattern;
    for (char ch : prefix) {
      if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') pattern += '\\';
      pattern += ch;
    }
    pattern += "*";
    std::string cursor = "0";
    do {
      std::vector<std::string> scan = {"SCAN", cursor, "MATCH", pattern, "COUNT", "500"};
      const bool ok = co_await client->Command(scan, &reply, &error);
      if (!ok || reply.type != RedisReply::Type::kArray || reply.elements.size() != 2) break;
      cursor = reply.elements[0].str;
      std::vector<std::string> found;
      for (const RedisReply& k : reply.elements[1].elements) found.push_back(k.str);
      for (const std::string& key : found) {
        UsageRow row{c.name, key.substr(prefix.size()), c.budget ? "budget" : "limit", 0, 0, 0, 0, 0};
        std::vector<std::string> read =
            c.budget ? std::vector<std::string>{"HMGET", key, "spent", "tokens", "reserved"}
                     : std::vector<std::string>{"ZCARD", key};
        const bool got = co_await client->Command(read, &reply, &error);
        if (!got) continue;
        if (c.budget && reply.elements.size() == 3) {
          row.nanos = std::atoll(reply.elements[0].str.c_str());
          row.tokens = std::atoll(reply.elements[1].str.c_str());
          row.reserved_nanos = std::atoll(reply.elements[2].str.c_str());
        } else {
          row.requests = reply.integer;
        }
        rows.push_back(std::move(row));
      }
    } while (cursor != "0");
  }
  co_return rows;
}

}  // namespace

std::unique_ptr<LimitStore> NewRedisStore(const std::vector<asio::io_context*>& ios,
                                          const RedisLimitsOptions& options) {
  return std::make_unique<RedisStore>(ios, options);
}

}  // namespace kt::gateway
