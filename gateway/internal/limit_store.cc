#include "gateway/internal/limit_store.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>

#include "gateway/internal/limits.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {

// A reservation that was never settled (its request died with a defect)
// stops counting after this long: longer than any call may take.
constexpr int64_t kReservationTtlS = 3600;

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The identity of a counter: a reload that leaves a limit unchanged keeps
// its counts, and a changed one starts afresh.
std::string Signature(const LimitConfig& c) {
  return c.name + "|" + (c.budget ? "b" : "l") + "|" + std::to_string(c.requests) + "|" +
         std::to_string(c.tokens) + "|" + std::to_string(c.window_s) + "|" + c.period + "|" +
         std::to_string(c.usd) + "|" + (c.keyed ? "k" : "");
}

int64_t Scaled(int64_t n, int divisor) { return n <= 0 ? n : std::max<int64_t>(1, n / divisor); }

// A budget's counts per key, for one period, under one lock.
class BudgetBook {
 public:
  BudgetBook(const LimitConfig& c, int divisor)
      : config_(c),
        cap_nanos_(static_cast<int64_t>(std::floor(c.usd * kNanosPerUsd / divisor))),
        cap_tokens_(Scaled(c.tokens, divisor)) {}

  // Reserves the charge's worst case when it fits what is left.
  bool Reserve(const Charge& ch, const std::string& id, int64_t now_s, Remaining* left) {
    std::lock_guard lock(mu_);
    Entry& e = EntryFor(ch.key, now_s);
    Remaining r = Left(e, now_s);
    const bool over_spend = cap_nanos_ > 0 && e.spent + e.reserved + ch.reserve_nanos > cap_nanos_;
    const bool over_tokens =
        cap_tokens_ > 0 && e.tokens + e.reserved_tokens + ch.reserve_tokens > cap_tokens_;
    if (over_spend || over_tokens) {
      *left = r;
      return false;
    }
    e.reserved += ch.reserve_nanos;
    e.reserved_tokens += ch.reserve_tokens;
    e.holds[id] = Hold{ch.reserve_nanos, ch.reserve_tokens, now_s + kReservationTtlS};
    *left = Left(e, now_s);
    return true;
  }

  // The reservation out, what was used in. Returns the budget's settled
  // spend this period over all keys (for the gauge).
  int64_t Settle(const Charge& ch, const std::string& id, const Spend& s, int64_t now_s) {
    std::lock_guard lock(mu_);
    Entry& e = EntryFor(ch.key, now_s);
    Hold held{ch.reserve_nanos, ch.reserve_tokens, 0};
    if (auto it = e.holds.find(id); it != e.holds.end()) {
      e.reserved -= it->second.nanos;
      e.reserved_tokens -= it->second.tokens;
      e.holds.erase(it);
    }
    const int64_t nanos = s.reported ? s.nanos : held.nanos;
    const int64_t tokens = s.reported ? s.tokens : held.tokens;
    e.spent += nanos;
    e.tokens += tokens;
    if (total_period_ != e.period) {
      total_period_ = e.period;
      total_nanos_ = 0;
    }
    total_nanos_ += nanos;
    return total_nanos_;
  }

  void Rows(const std::string& name, int64_t now_s, std::vector<UsageRow>* out) {
    std::lock_guard lock(mu_);
    for (auto& [key, e] : keys_) {
      if (e.period != PeriodOf(config_.period, now_s).start_s) continue;
      UsageRow row{name, key, "budget", 0, e.tokens, e.spent, e.reserved, 0};
      row.reset_s = static_cast<double>(PeriodOf(config_.period, now_s).end_s - now_s);
      out->push_back(std::move(row));
    }
  }

 private:
  struct Hold {
    int64_t nanos = 0;
    int64_t tokens = 0;
    int64_t expires_s = 0;
  };
  struct Entry {
    int64_t period = -1;
    int64_t spent = 0, tokens = 0, reserved = 0, reserved_tokens = 0;
    std::unordered_map<std::string, Hold> holds;
  };

  // The key's entry in the current period. A new period starts spend and
  // tokens at zero; reservations in flight carry over and settle into it.
  Entry& EntryFor(const std::string& key, int64_t now_s) {
    Entry& e = keys_[key];
    const int64_t period = PeriodOf(config_.period, now_s).start_s;
    if (e.period != period) {
      e.period = period;
      e.spent = 0;
      e.tokens = 0;
    }
    for (auto it = e.holds.begin(); it != e.holds.end();) {
      if (it->second.expires_s > now_s) {
        ++it;
        continue;
      }
      e.reserved -= it->second.nanos;
      e.reserved_tokens -= it->second.tokens;
      it = e.holds.erase(it);
    }
    return e;
  }

  Remaining Left(const Entry& e, int64_t now_s) const {
    Remaining r;
    if (cap_nanos_ > 0) r.nanos = std::max<int64_t>(0, cap_nanos_ - e.spent - e.reserved);
    if (cap_tokens_ > 0) {
      r.tokens = std::max<int64_t>(0, cap_tokens_ - e.tokens - e.reserved_tokens);
    }
    r.reset_s = static_cast<double>(PeriodOf(config_.period, now_s).end_s - now_s);
    return r;
  }

  LimitConfig config_;
  int64_t cap_nanos_;
  int64_t cap_tokens_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> keys_;
  int64_t total_period_ = -1;
  int64_t total_nanos_ = 0;
};

class MemoryStore : public LimitStore {
 public:
  explicit MemoryStore(int divisor) : divisor_(std::max(1, divisor)) {}
  const char* name() const override { return divisor_ > 1 ? "local" : "memory"; }

  asio::awaitable<Admission> Admit(Ticket* ticket) override {
    Admission a;
    const int64_t now_us = MonoMicros();
    const int64_t now_s = UnixSeconds();
    std::vector<std::size_t> taken;
    for (std::size_t i = 0; i < ticket->charges.size(); ++i) {
      Remaining left;
      double retry = 0;
      if (!Take(ticket->charges[i], ticket->id, now_us, now_s, &left, &retry)) {
        for (std::size_t j : taken) Undo(ticket->charges[j], ticket->id, now_us, now_s);
        a.kind = Admission::Kind::kRefused;
        a.refused = i;
        a.retry_after_s = retry;
        a.remaining = {left};
        co_return a;
      }
      taken.push_back(i);
      a.remaining.push_back(left);
    }
    ticket->backend = name();
    ticket->counted = true;
    co_return a;
  }

  asio::awaitable<void> Settle(const Ticket& ticket, const Spend& spend) override {
    const int64_t now_s = UnixSeconds();
    for (const Charge& ch : ticket.charges) {
      if (ch.config->budget) {
        NoteSpend(ch.config->name, Book(*ch.config)->Settle(ch, ticket.id, spend, now_s));
      } else if (spend.reported) {
        Counter(*ch.config)->AddTokens(ch.key, spend.tokens, MonoMicros());
      }
    }
    co_return;
  }

  asio::awaitable<std::vector<UsageRow>> Show(const std::vector<LimitConfig>& configs) override {
    std::vector<UsageRow> rows;
    const int64_t now_s = UnixSeconds();
    for (const LimitConfig& c : configs) {
      if (c.budget) Book(c)->Rows(c.name, now_s, &rows);
      if (!c.budget) Counter(c)->Rows(MonoMicros(), &rows);
    }
    co_return rows;
  }

 private:
  bool Take(const Charge& ch, const std::string& id, int64_t now_us, int64_t now_s,
            Remaining* left, double* retry) {
    if (ch.config->budget) {
      bool ok = Book(*ch.config)->Reserve(ch, id, now_s, left);
      if (!ok) *retry = left->reset_s;
      return ok;
    }
    LimitCounter::Verdict v = Counter(*ch.config)->Acquire(ch.key, now_us);
    left->requests = ch.config->requests > 0 ? v.remaining : -1;
    left->reset_s = v.reset_s;
    *retry = v.retry_after_s;
    return v.admitted;
  }

  void Undo(const Charge& ch, const std::string& id, int64_t now_us, int64_t now_s) {
    if (!ch.config->budget) {
      Counter(*ch.config)->Release(ch.key, now_us);
      return;
    }
    Spend none;
    Book(*ch.config)->Settle(ch, id, none, now_s);
  }

  std::shared_ptr<LimitCounter> Counter(const LimitConfig& c) {
    std::lock_guard lock(mu_);
    auto& slot = counters_[Signature(c)];
    if (slot == nullptr) {
      LimitConfig scaled = c;
      scaled.requests = Scaled(c.requests, divisor_);
      scaled.tokens = Scaled(c.tokens, divisor_);
      slot = std::make_shared<LimitCounter>(scaled);
    }
    return slot;
  }

  std::shared_ptr<BudgetBook> Book(const LimitConfig& c) {
    std::lock_guard lock(mu_);
    auto& slot = books_[Signature(c)];
    if (slot == nullptr) slot = std::make_shared<BudgetBook>(c, divisor_);
    return slot;
  }

  int divisor_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<LimitCounter>> counters_;
  std::map<std::string, std::shared_ptr<BudgetBook>> books_;
};

// The shared backend, and what to do when it does not answer.
class GuardedStore : public LimitStore {
 public:
  GuardedStore(std::unique_ptr<LimitStore> shared, LimitsFailMode mode, int replicas,
               GuardCounters* counters)
      : shared_(std::move(shared)),
        local_(NewMemoryStore(replicas)),
        mode_(mode),
        counters_(counters) {}
  const char* name() const override { return shared_->name(); }

  asio::awaitable<Admission> Admit(Ticket* ticket) override {
    Admission a = co_await shared_->Admit(ticket);
    if (a.kind != Admission::Kind::kUnavailable) co_return a;
    ++counters_->unavailable;
    if (mode_ == LimitsFailMode::kClosed) {
      ++counters_->refused_closed;
      co_return a;
    }
    if (mode_ == LimitsFailMode::kOpen) {
      ++counters_->degraded_open;
      Admission open;
      open.degraded = "open";
      open.error = a.error;
      ticket->counted = false;
      ticket->backend = "none";
      co_return open;
    }
    ++counters_->degraded_local;
    Admission local = co_await local_->Admit(ticket);
    local.degraded = "local";
    local.error = a.error;
    co_return local;
  }

  asio::awaitable<void> Settle(const Ticket& ticket, const Spend& spend) override {
    if (!ticket.counted) co_return;
    if (ticket.backend == local_->name()) {
      co_await local_->Settle(ticket, spend);
    } else {
      co_await shared_->Settle(ticket, spend);
    }
  }

  asio::awaitable<std::vector<UsageRow>> Show(const std::vector<LimitConfig>& configs) override {
    std::vector<UsageRow> rows = co_await shared_->Show(configs);
    co_return rows;
  }

  std::unique_ptr<LimitStore> shared_;
  std::unique_ptr<LimitStore> local_;
  LimitsFailMode mode_;
  GuardCounters* counters_;
};

}  // namespace

std::map<std::string, double> LimitStore::SpendGauges() const {
  std::lock_guard lock(gauges_mu_);
  std::map<std::string, double> out;
  for (const auto& [name, nanos] : gauges_) out[name] = static_cast<double>(nanos) / kNanosPerUsd;
  return out;
}

void LimitStore::NoteSpend(const std::string& budget, int64_t total_nanos) {
  std::lock_guard lock(gauges_mu_);
  gauges_[budget] = total_nanos;
}

std::unique_ptr<LimitStore> NewMemoryStore(int divisor) {
  return std::make_unique<MemoryStore>(divisor);
}

std::unique_ptr<LimitStore> NewGuardedStore(std::unique_ptr<LimitStore> shared,
                                            LimitsFailMode mode, int replicas,
                                            GuardCounters* counters) {
  return std::make_unique<GuardedStore>(std::move(shared), mode, replicas, counters);
}

// Days from 1970-01-01 to a civil date, and back (proleptic Gregorian).
Period PeriodOf(const std::string& unit, int64_t unix_s) {
  using namespace std::chrono;
  const sys_seconds t{seconds{unix_s}};
  const sys_days day = floor<days>(t);
  auto at = [](auto tp) { return static_cast<int64_t>(duration_cast<seconds>(tp.time_since_epoch()).count()); };
  if (unit == "second") return {unix_s, unix_s + 1};
  if (unit == "minute") return {unix_s - unix_s % 60, unix_s - unix_s % 60 + 60};
  if (unit == "hour") return {unix_s - unix_s % 3600, unix_s - unix_s % 3600 + 3600};
  if (unit == "day") return {at(day), at(day + days{1})};
  if (unit == "week") {
    // ISO weeks start on Monday.
    const sys_days monday = day - (weekday{day} - Monday);
    return {at(monday), at(monday + days{7})};
  }
  const year_month_day ymd{day};
  const sys_days first{ymd.year() / ymd.month() / 1};
  const sys_days next{(ymd.year() / ymd.month() + months{1}) / 1};
  return {at(first), at(next)};
}

int64_t CostNanos(const PriceConfig& price, int64_t input, int64_t cached, int64_t output) {
  cached = std::clamp<int64_t>(cached, 0, input);
  const double cached_rate = price.cached_input >= 0 ? price.cached_input : price.input;
  const double usd = static_cast<double>(input - cached) * price.input +
                     static_cast<double>(cached) * cached_rate +
                     static_cast<double>(output) * price.output;
  return static_cast<int64_t>(std::ceil(usd * kNanosPerUsd - 1e-6));
}

}  // namespace kt::gateway
