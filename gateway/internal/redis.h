// An asynchronous Redis client for the gateway's shared state (rate limits,
// budgets): RESP over plain TCP or TLS, with Boost.Asio doing the I/O and
// hiredis used only to encode commands and to parse replies (Debian's
// hiredis 0.14 has no TLS of its own).
//
// Threading: a RedisClient belongs to one io_context (the executor it is
// built with) and must be used only from that context's thread; it has no
// locks. The gateway builds one client per io thread.
//
// Pool: up to `pool_size` connections, opened lazily, each pipelining calls
// in FIFO order (the n-th reply answers the n-th request). A new connection
// sends AUTH and SELECT before any queued call.
//
// Error channel: no exception leaves Command or Eval. They return false with
// `*error` ("redis: …") on timeout, connection failure, protocol error or a
// full queue; a Redis error reply is an answer, not a failure (true, with
// RedisReply::Type::kError).
//
// Ownership: the client may be destroyed at any time, also while its
// io_context is stopped with calls suspended: connection state lives in
// shared objects the pending handlers hold, and destruction fails every
// pending call ("redis: client closed").
#ifndef KT_GATEWAY_INTERNAL_REDIS_H_
#define KT_GATEWAY_INTERNAL_REDIS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

namespace kt::gateway {

namespace asio = boost::asio;

struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string username;  // empty: AUTH with the password alone
  std::string password;  // empty: no AUTH
  bool tls = false;      // rediss://
  std::string ca_file;   // ?ca=/path: the CA bundle that verifies the server
  bool verify = true;    // ?verify=0 turns certificate verification off
};

// redis://[[user]:password@]host[:port][/db] and rediss://… (TLS), with an
// optional query `?ca=/path&verify=0` (rediss:// only). User and password
// may be percent-encoded; an IPv6 host is written in brackets. False with a
// one-line `*error` on anything else.
bool ParseRedisUrl(std::string_view url, RedisUrl* out, std::string* error);

// The URL for logs: the password is never printed (it shows as `***`).
std::string RedactedUrl(const RedisUrl& url);

struct RedisReply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus and kError
  std::vector<RedisReply> elements;
};

struct RedisOptions {
  std::size_t pool_size = 4;
  // Per call, covering everything: connect, AUTH/SELECT, send and reply.
  double timeout_ms = 50;
  // After a failed connect, no new connect is attempted for this long:
  // calls fail fast with "redis: unreachable (…)" instead.
  double reconnect_backoff_ms = 100;
  // Calls in flight on the whole client; more fail with "redis: queue full".
  std::size_t max_queued = 1024;
  // One reply's size (its bytes, plus its parsed elements): a server that
  // sends more is a protocol error and the connection is closed. Nesting is
  // bounded by hiredis itself (depth 7).
  std::size_t max_reply_bytes = 16u << 20;
};

class RedisPool;  // redis.cc

class RedisClient {
 public:
  // `tls` is used for rediss:// as configured (its CA store; the URL's
  // ca_file is then not read). When it is null, the client builds its own
  // context for rediss://: the URL's ca_file, or the system's CA paths.
  // Certificate and host-name verification follow url.verify either way.
  RedisClient(asio::any_io_executor ex, RedisUrl url, RedisOptions options,
              asio::ssl::context* tls);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // One command, e.g. {"INCRBY", key, "5"}.
  asio::awaitable<bool> Command(std::vector<std::string> argv, RedisReply* reply,
                                std::string* error);

  // EVALSHA with the script's SHA-1 (computed here), and EVAL once when the
  // server answers NOSCRIPT (each of the two has its own timeout_ms). The
  // arguments are copied before the first suspension.
  asio::awaitable<bool> Eval(const std::string& script, const std::vector<std::string>& keys,
                             const std::vector<std::string>& args, RedisReply* reply,
                             std::string* error);

  // The last call on this client succeeded (true before the first call).
  bool healthy() const;

 private:
  std::shared_ptr<RedisPool> pool_;
};

// Lower-case hex SHA-1, the name Redis gives a script.
std::string RedisScriptSha(std::string_view script);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_REDIS_H_
