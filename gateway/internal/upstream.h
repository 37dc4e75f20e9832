// The upstream client: HTTP/1.1 over TCP or TLS (OpenSSL, SNI, certificate
// and host-name verification), a keep-alive pool per upstream, and connect /
// first-byte / total timeouts. One `UpstreamExchange` is one request and its
// response, whose body is read incrementally (streams are relayed as they
// arrive).
#ifndef KT_GATEWAY_INTERNAL_UPSTREAM_H_
#define KT_GATEWAY_INTERNAL_UPSTREAM_H_

#include <array>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>

#include "gateway/internal/util.h"

namespace kt::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct UpstreamTimeouts {
  double connect_ms = 5000;
  double first_byte_ms = 60000;
  double total_ms = 600000;
};

enum class UpstreamFailure {
  kNone,
  kConnect,   // resolve, connect or TLS handshake failed: 502
  kTimeout,   // any of the timeouts: 504
  kProtocol,  // the upstream broke HTTP, or closed early: 502
  kTooLarge,  // the response body passed the bound: 502
};

class UpstreamPool {
 public:
  UpstreamPool(asio::io_context* io, const std::string& ca_file, std::string* error);
  struct Conn;
  std::unique_ptr<Conn> Take(const Url& url);  // a pooled connection, or null
  std::unique_ptr<Conn> Fresh(const Url& url);
  void Give(std::unique_ptr<Conn> conn);  // a connection that can be reused
  ~UpstreamPool();

 private:
  asio::io_context* io_;
  asio::ssl::context tls_;
  std::mutex mu_;
  std::map<std::string, std::deque<std::unique_ptr<Conn>>> idle_;
};

class UpstreamExchange {
 public:
  UpstreamExchange(UpstreamPool* pool, Url url, std::size_t max_body);
  ~UpstreamExchange();

  // Connects (or reuses a pooled connection), sends the request and reads
  // the response header. False on failure: see failure() and error().
  asio::awaitable<bool> Start(http::request<http::string_body> request, UpstreamTimeouts timeouts);
  int status() const;
  std::string header(std::string_view name) const;

  // Appends the next body bytes to `*out`. False at the end of the body
  // (done()) or on failure.
  asio::awaitable<bool> ReadSome(std::string* out);
  // The whole (remaining) body, bounded by max_body.
  asio::awaitable<bool> ReadAll(std::string* out);
  bool done() const { return done_; }

  UpstreamFailure failure() const { return failure_; }
  const std::string& error() const { return error_; }
  // Closes the connection now (the client went away): the upstream sees the
  // request cancelled.
  void Cancel();

 private:
  bool Fail(UpstreamFailure f, const beast::error_code& ec, std::string what);
  asio::awaitable<bool> Connect(double connect_ms);
  asio::awaitable<void> Exchange(http::request<http::string_body>& request, beast::error_code* ec);
  bool CheckHead();
  void Expire(std::chrono::milliseconds after);
  std::unique_ptr<http::response_parser<http::buffer_body>> NewParser() const;  // the timeout of the next operations
  UpstreamPool* pool_;
  Url url_;
  std::size_t max_body_;
  std::unique_ptr<UpstreamPool::Conn> conn_;
  std::unique_ptr<http::response_parser<http::buffer_body>> parser_;
  std::chrono::steady_clock::time_point deadline_;     // the whole exchange
  std::chrono::steady_clock::time_point op_deadline_;  // the current operation
  std::array<char, 16 << 10> read_buf_;
  std::size_t body_bytes_ = 0;
  bool done_ = false;
  UpstreamFailure failure_ = UpstreamFailure::kNone;
  std::string error_;
};

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_UPSTREAM_H_
