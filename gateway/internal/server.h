// The gateway's shared state and its HTTP handlers.
#ifndef KT_GATEWAY_INTERNAL_SERVER_H_
#define KT_GATEWAY_INTERNAL_SERVER_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include "compiler/compiler.h"
#include "gateway/gateway.h"
#include "gateway/internal/audit.h"
#include "gateway/internal/upstream.h"

namespace kt::gateway {

// Where a model goes.
struct Route {
  std::string provider;  // the provider's name ("upstream" for --upstream)
  std::string kind;      // openai | anthropic | mock
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
  asio::io_context io;
  std::unique_ptr<UpstreamPool> pool;
  AuditLog audit;

  // The policy set in force. Requests take a reference for their whole
  // life, so a reload never changes the rules under a request.
  std::shared_ptr<const PolicyEngine> Engine() const {
    std::lock_guard lock(engine_mu);
    return engine;
  }
  mutable std::mutex engine_mu;
  std::shared_ptr<const PolicyEngine> engine;

  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
  std::atomic<int> sessions{0};

  // Idle keep-alive connections, closed at shutdown so draining does not
  // wait out their idle timeout.
  std::mutex idle_mu;
  std::set<beast::tcp_stream*> idle;

  int64_t started_us = 0;
};

// Serves one client connection until it closes (or the gateway stops).
asio::awaitable<void> Session(asio::ip::tcp::socket socket, Gateway* g);

// The route for a model, or false when no provider serves it.
bool RouteFor(const Gateway& g, const PolicyEngine& engine, const std::string& model, Route* out);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_SERVER_H_
