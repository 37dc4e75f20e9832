// The in-process limits backend: budgets reserve the worst case and settle
// to usage, limits and budgets are taken all or none, and calendar periods
// fall where a calendar says.
#include <gtest/gtest.h>

#include <thread>

#include <boost/asio.hpp>

#include "gateway/internal/limit_store.h"

namespace kt::gateway {
namespace {

int64_t Unix(int y, unsigned m, unsigned d, int hh = 0) {
  using namespace std::chrono;
  return duration_cast<seconds>(
             (sys_days{year{y} / month{m} / day{d}} + hours{hh}).time_since_epoch())
      .count();
}

TEST(PeriodOf, CalendarPeriodsInUtc) {
  EXPECT_EQ(PeriodOf("month", Unix(2026, 12, 15, 13)).start_s, Unix(2026, 12, 1));
  EXPECT_EQ(PeriodOf("month", Unix(2026, 12, 15, 13)).end_s, Unix(2027, 1, 1));
  EXPECT_EQ(PeriodOf("month", Unix(2028, 2, 10)).end_s, Unix(2028, 3, 1));  // leap year
  // 2026-12-03 is a Thursday: its ISO week starts on Monday 2026-11-30.
  EXPECT_EQ(PeriodOf("week", Unix(2026, 12, 3, 9)).start_s, Unix(2026, 11, 30));
  EXPECT_EQ(PeriodOf("week", Unix(2026, 11, 30)).start_s, Unix(2026, 11, 30));
  EXPECT_EQ(PeriodOf("day", Unix(2026, 12, 3, 23)).start_s, Unix(2026, 12, 3));
  EXPECT_EQ(PeriodOf("hour", Unix(2026, 12, 3, 5) + 59).start_s, Unix(2026, 12, 3, 5));
}

TEST(CostNanos, PricesInputCachedAndOutput) {
  PriceConfig p{"gpt-4o", 2.50e-6, 10.00e-6, 1.25e-6};
  // 1,000 prompt tokens (400 cached) and 200 output tokens:
  // 600 × 2.5 + 400 × 1.25 + 200 × 10 = 4,000 µ$ = 4,000,000 n$.
  EXPECT_EQ(CostNanos(p, 1000, 400, 200), 4000000);
  p.cached_input = -1;  // no cached price: cached tokens cost as input
  EXPECT_EQ(CostNanos(p, 1000, 400, 200), 4500000);
  EXPECT_EQ(CostNanos(p, 0, 0, 0), 0);
}

class MemoryStoreTest : public ::testing::Test {
 protected:
  Admission Admit(LimitStore* store, Ticket* t) {
    Admission out;
    boost::asio::co_spawn(
        io_, [&]() -> boost::asio::awaitable<void> { out = co_await store->Admit(t); },
        boost::asio::detached);
    io_.run();
    io_.restart();
    return out;
  }
  void Settle(LimitStore* store, const Ticket& t, Spend s) {
    boost::asio::co_spawn(
        io_, [&]() -> boost::asio::awaitable<void> { co_await store->Settle(t, s); },
        boost::asio::detached);
    io_.run();
    io_.restart();
  }
  Ticket Budget(const LimitConfig* c, const std::string& id, int64_t nanos) {
    Ticket t;
    t.id = id;
    t.charges.push_back(Charge{c, "team-a", nanos, 100});
    return t;
  }
  boost::asio::io_context io_;
};

TEST_F(MemoryStoreTest, BudgetReservesTheWorstCaseAndSettlesToUsage) {
  LimitConfig b;
  b.name = "team";
  b.budget = true;
  b.period = "month";
  b.usd = 1.0;
  auto store = NewMemoryStore();
  // Three reservations of $0.30 fit in $1; a fourth does not.
  std::vector<Ticket> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(Budget(&b, "r" + std::to_string(i), 300000000));
    EXPECT_EQ(Admit(store.get(), &held.back()).kind, Admission::Kind::kAdmitted);
  }
  Ticket fourth = Budget(&b, "r3", 300000000);
  Admission refused = Admit(store.get(), &fourth);
  ASSERT_EQ(refused.kind, Admission::Kind::kRefused);
  EXPECT_EQ(refused.remaining[0].nanos, 100000000);  // $0.10 left
  EXPECT_GT(refused.retry_after_s, 0);
  // The first call cost $0.05: its reservation's other $0.25 comes back.
  Settle(store.get(), held[0], Spend{50, 50000000, true});
  EXPECT_EQ(Admit(store.get(), &fourth).kind, Admission::Kind::kAdmitted);
  // A failed call is refunded whole.
  Settle(store.get(), held[1], Spend{0, 0, true});
  // No usage from a model that answered: charged as reserved.
  Settle(store.get(), held[2], Spend{0, 0, false});
  auto gauges = store->SpendGauges();
  EXPECT_DOUBLE_EQ(gauges["team"], 0.35);
}

TEST_F(MemoryStoreTest, ChargesAreTakenAllOrNone) {
  LimitConfig limit;
  limit.name = "rps";
  limit.requests = 2;
  limit.window_s = 60;
  limit.period = "minute";
  LimitConfig b;
  b.name = "team";
  b.budget = true;
  b.period = "month";
  b.usd = 0.5;
  auto store = NewMemoryStore();
  // The budget refuses a $1 worst case: the limit's slot must be given back,
  // so two cheap requests still pass the 2-per-minute limit afterwards.
  Ticket big;
  big.id = "big";
  big.charges = {Charge{&limit, "", 0, 0}, Charge{&b, "k", 1000000000, 0}};
  ASSERT_EQ(Admit(store.get(), &big).kind, Admission::Kind::kRefused);
  for (int i = 0; i < 2; ++i) {
    Ticket t;
    t.id = "small" + std::to_string(i);
    t.charges = {Charge{&limit, "", 0, 0}, Charge{&b, "k", 1000, 0}};
    EXPECT_EQ(Admit(store.get(), &t).kind, Admission::Kind::kAdmitted) << i;
  }
  Ticket third;
  third.id = "third";
  third.charges = {Charge{&limit, "", 0, 0}};
  Admission a = Admit(store.get(), &third);
  EXPECT_EQ(a.kind, Admission::Kind::kRefused);
  EXPECT_EQ(a.refused, 0u);
}

TEST_F(MemoryStoreTest, LocalFallbackDividesTheBudgetByReplicas) {
  LimitConfig b;
  b.name = "team";
  b.budget = true;
  b.period = "day";
  b.usd = 1.0;
  auto store = NewMemoryStore(/*divisor=*/4);  // each of 4 replicas: $0.25
  Ticket t = Budget(&b, "a", 200000000);
  EXPECT_EQ(Admit(store.get(), &t).kind, Admission::Kind::kAdmitted);
  Ticket u = Budget(&b, "b", 100000000);
  EXPECT_EQ(Admit(store.get(), &u).kind, Admission::Kind::kRefused);
  EXPECT_STREQ(store->name(), "local");
}

}  // namespace
}  // namespace kt::gateway
