// The gateway's shared state: the policy set in force, the io threads and
// their upstream pools, the audit log and the metrics, and where a model goes.
#ifndef KT_GATEWAY_INTERNAL_STATE_H_
#define KT_GATEWAY_INTERNAL_STATE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include "compiler/compiler.h"
#include "gateway/gateway.h"
#include "gateway/internal/audit.h"
#include "gateway/internal/limit_store.h"
#include "gateway/internal/metrics.h"
#include "gateway/internal/upstream.h"

namespace kt::gateway {

class ModelCall;
struct Exchange;
struct Gateway;
struct Route;
// Opens one call to the model a route names (model_call.h).
using CallOpener = std::function<std::unique_ptr<ModelCall>(Gateway*, const Route&, Exchange*)>;

struct PolicyState {
  std::shared_ptr<const PolicyEngine> engine;
  std::size_t files = 0;
};

// Where a model goes.
struct Route {
  std::string provider;  // the provider's name ("upstream" for --upstream)
  std::string kind;      // openai | anthropic | mock
  // The wire surfaces the provider speaks itself ("chat", "responses",
  // "embeddings", "completions"); a surface it lacks is translated to chat.
  std::vector<std::string> apis;
  Url url;
  std::string api_key;  // empty: forward the client's
  std::string auth_header;
  int64_t chunk_size = 0;
  double latency_ms = 0;
  double timeout_ms = 0;
};

struct Gateway {
  explicit Gateway(const Options& o) : options(o) {}
  Options options;
  // One io_context per worker thread, each with its own upstream pool: a
  // connection lives on one thread from accept to close, so handlers never
  // wake another thread (measured: one shared io_context run by two threads
  // was slower than one thread). io(0) also runs the acceptor and signals.
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::unique_ptr<UpstreamPool>> pools;
  asio::io_context& io(std::size_t i = 0) { return *ios[i]; }
  AuditLog audit;
  // Where limits and budgets count (limit_store.h), and how often the
  // shared backend failed.
  std::unique_ptr<LimitStore> limit_store = NewMemoryStore();
  GuardCounters limit_guard;

  // The policy set in force, with the counters of its limits. Requests take
  // a reference for their whole life, so a reload never changes the rules
  // under a request in flight.
  std::shared_ptr<const PolicyState> Current() const {
    std::lock_guard lock(state_mu);
    return state;
  }
  void Install(std::shared_ptr<const PolicyState> fresh) {
    std::lock_guard lock(state_mu);
    state = std::move(fresh);
  }
  mutable std::mutex state_mu;
  std::shared_ptr<const PolicyState> state;

  // The last reload's outcome, for /health.
  std::mutex reload_mu;  // one reload at a time
  mutable std::mutex last_reload_mu;
  nlohmann::json last_reload;

  Metrics metrics;

  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
  std::atomic<int> sessions{0};

  // Idle keep-alive connections, closed at shutdown so draining does not
  // wait out their idle timeout.
  std::mutex idle_mu;
  std::set<beast::tcp_stream*> idle;

  int64_t started_us = 0;

  // How a request reaches its model; empty: the upstream over HTTP, or the
  // mock in process. The pipeline's tests put a scripted model here.
  CallOpener open_call;
};

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_STATE_H_
