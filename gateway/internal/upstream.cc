#include "gateway/internal/upstream.h"

#include <boost/asio/ssl/host_name_verification.hpp>

namespace kt::gateway {

using Clock = std::chrono::steady_clock;

struct UpstreamPool::Conn {
  Conn(asio::io_context& io, asio::ssl::context& tls) : stream(io, tls) {}
  beast::ssl_stream<beast::tcp_stream> stream;
  bool tls = false;
  bool connected = false;
  bool reused = false;
  std::string key;
  beast::flat_buffer buffer;
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream); }
};

namespace {
std::string KeyOf(const Url& url) {
  return (url.tls ? "https://" : "http://") + url.host + ":" + url.port;
}
bool IsInterim(int status) { return status >= 100 && status < 200 && status != 101; }
std::chrono::milliseconds Ms(double ms) {
  return std::chrono::milliseconds(static_cast<int64_t>(ms < 1 ? 1 : ms));
}
}  // namespace

UpstreamPool::UpstreamPool(asio::io_context* io, const std::string& ca_file, std::string* error)
    : io_(io), tls_(asio::ssl::context::tls_client) {
  beast::error_code ec;
  tls_.set_default_verify_paths(ec);
  if (ec) *error = "cannot load the system CA certificates: " + ec.message();
  if (!ca_file.empty()) {
    tls_.load_verify_file(ca_file, ec);
    if (ec) *error = "cannot load CA file " + ca_file + ": " + ec.message();
  }
  tls_.set_verify_mode(asio::ssl::verify_peer);
}

UpstreamPool::~UpstreamPool() = default;

std::unique_ptr<UpstreamPool::Conn> UpstreamPool::Take(const Url& url) {
  std::lock_guard lock(mu_);
  auto it = idle_.find(KeyOf(url));
  if (it == idle_.end() || it->second.empty()) return nullptr;
  std::unique_ptr<Conn> c = std::move(it->second.back());
  it->second.pop_back();
  c->reused = true;
  return c;
}

std::unique_ptr<UpstreamPool::Conn> UpstreamPool::Fresh(const Url& url) {
  auto c = std::make_unique<Conn>(*io_, tls_);
  c->tls = url.tls;
  c->key = KeyOf(url);
  return c;
}

void UpstreamPool::Give(std::unique_ptr<Conn> conn) {
  // Bounded: a burst must not leave thousands of idle sockets behind.
  constexpr std::size_t kMaxIdlePerUpstream = 256;
  std::lock_guard lock(mu_);
  auto& idle = idle_[conn->key];
  if (idle.size() < kMaxIdlePerUpstream) idle.push_back(std::move(conn));
}

UpstreamExchange::UpstreamExchange(UpstreamPool* pool, Url url, std::size_t max_body)
    : pool_(pool), url_(std::move(url)), max_body_(max_body) {}

UpstreamExchange::~UpstreamExchange() {
  // Only a response read to its end, on a keep-alive connection with no
  // stray bytes after it, leaves a reusable connection; anything else is
  // closed, so no request ever reads another's answer.
  if (conn_ == nullptr) return;
  if (done_ && failure_ == UpstreamFailure::kNone && parser_ != nullptr && parser_->is_done() &&
      parser_->keep_alive() && conn_->buffer.size() == 0) {
    conn_->reused = false;
    pool_->Give(std::move(conn_));
    return;
  }
  beast::error_code ignored;
  conn_->tcp().socket().close(ignored);
}

bool UpstreamExchange::Fail(UpstreamFailure f, const beast::error_code& ec, std::string what) {
  // Past the operation's deadline, whatever the error says (a timer that
  // fired reports as a timeout or as a cancelled operation), it timed out.
  if (ec == beast::error::timeout ||
      (ec && op_deadline_ != Clock::time_point() && Clock::now() >= op_deadline_)) {
    f = UpstreamFailure::kTimeout;
  }
  failure_ = f;
  error_ = std::move(what) + (ec ? ": " + ec.message() : "");
  if (conn_ != nullptr) {
    beast::error_code ignored;
    conn_->tcp().socket().close(ignored);
  }
  return false;
}

void UpstreamExchange::Expire(std::chrono::milliseconds after) {
  op_deadline_ = Clock::now() + after;
  conn_->tcp().expires_after(after);
}

void UpstreamExchange::Cancel() {
  if (conn_ != nullptr) {
    beast::error_code ignored;
    conn_->tcp().socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    conn_->tcp().socket().close(ignored);
  }
  done_ = false;
}

namespace {
auto Redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }
}  // namespace

// Resolve, connect and (for https) the TLS handshake, within the connect
// timeout. False (failed) on any of them.
asio::awaitable<bool> UpstreamExchange::Connect(double connect_ms) {
  beast::error_code ec;
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  Expire(Ms(connect_ms));
  auto results = co_await resolver.async_resolve(url_.host, url_.port, Redirect(ec));
  if (ec) co_return Fail(UpstreamFailure::kConnect, ec, "cannot resolve " + url_.host);
  co_await conn_->tcp().async_connect(results, Redirect(ec));
  if (ec) {
    co_return Fail(UpstreamFailure::kConnect, ec,
                   "cannot connect to " + url_.host + ":" + url_.port);
  }
  if (conn_->tls) {
    if (!SSL_set_tlsext_host_name(conn_->stream.native_handle(), url_.host.c_str())) {
      co_return Fail(UpstreamFailure::kConnect, ec, "cannot set TLS SNI for " + url_.host);
    }
    conn_->stream.set_verify_callback(asio::ssl::host_name_verification(url_.host));
    co_await conn_->stream.async_handshake(asio::ssl::stream_base::client, Redirect(ec));
    if (ec) co_return Fail(UpstreamFailure::kConnect, ec, "TLS handshake with " + url_.host);
  }
  conn_->connected = true;
  co_return true;
}

// Sends the request and reads the response header. Interim responses (100
// Continue, 103 Early Hints) precede the real one: skipped, each with a
// fresh parser, within the same deadline. The error, if any, is in *ec.
asio::awaitable<void> UpstreamExchange::Exchange(http::request<http::string_body>& request,
                                                 beast::error_code* ec) {
  if (conn_->tls) {
    co_await http::async_write(conn_->stream, request, Redirect(*ec));
  } else {
    co_await http::async_write(conn_->tcp(), request, Redirect(*ec));
  }
  for (int interim = 0; !*ec && interim < 9; ++interim) {
    parser_ = NewParser();
    if (conn_->tls) {
      co_await http::async_read_header(conn_->stream, conn_->buffer, *parser_, Redirect(*ec));
    } else {
      co_await http::async_read_header(conn_->tcp(), conn_->buffer, *parser_, Redirect(*ec));
    }
    if (!IsInterim(status())) break;
  }
  if (!parser_) parser_ = NewParser();
}

// The header is in: refuse what policies could not read.
bool UpstreamExchange::CheckHead() {
  if (IsInterim(status()) || status() == 101) {
    return Fail(UpstreamFailure::kProtocol, {},
                "upstream " + url_.host + " answered " + std::to_string(status()) +
                    " instead of a response");
  }
  std::string encoding = header("content-encoding");
  if (!encoding.empty() && !beast::iequals(encoding, "identity")) {
    // kt asked for identity: compressed bytes are unreadable to policies.
    return Fail(UpstreamFailure::kProtocol, {},
                "upstream " + url_.host + " sent a `" + encoding +
                    "` body although the gateway asked for identity");
  }
  return true;
}

asio::awaitable<bool> UpstreamExchange::Start(http::request<http::string_body> request,
                                              UpstreamTimeouts timeouts) {
  deadline_ = Clock::now() + Ms(timeouts.total_ms);
  request.prepare_payload();
  // A pooled connection may have been closed by the upstream while idle;
  // when it fails before any response byte, retry once on a fresh one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    conn_ = attempt == 0 ? pool_->Take(url_) : nullptr;
    if (conn_ == nullptr) conn_ = pool_->Fresh(url_);
    if (!conn_->connected) {
      const bool connected = co_await Connect(timeouts.connect_ms);
      if (!connected) co_return false;
    }
    Expire(
        Ms(std::min(timeouts.first_byte_ms,
                    std::chrono::duration<double, std::milli>(deadline_ - Clock::now()).count())));
    beast::error_code ec;
    parser_.reset();
    co_await Exchange(request, &ec);
    if (!ec) co_return CheckHead();
    if (ec == http::error::body_limit) {
      co_return Fail(UpstreamFailure::kTooLarge, {},
                     "the upstream response exceeds " + std::to_string(max_body_) + " bytes");
    }
    bool stale = conn_->reused && ec != beast::error::timeout;
    if (!stale || attempt == 1) {
      co_return Fail(UpstreamFailure::kProtocol, ec, "upstream " + url_.host + " failed");
    }
    beast::error_code ignored;
    conn_->tcp().socket().close(ignored);
  }
  co_return Fail(UpstreamFailure::kProtocol, {}, "upstream " + url_.host + " failed");
}

std::unique_ptr<http::response_parser<http::buffer_body>> UpstreamExchange::NewParser() const {
  auto p = std::make_unique<http::response_parser<http::buffer_body>>();
  p->header_limit(64 << 10);
  // Boost 1.74's body_limit(boost::none) keeps the 8 MiB default (every
  // Content-Length answer failed over it): the bound must be explicit. A
  // Content-Length above it fails at the header, chunked bodies as read.
  p->body_limit(static_cast<std::uint64_t>(max_body_));
  return p;
}

int UpstreamExchange::status() const {
  return parser_ == nullptr ? 0 : static_cast<int>(parser_->get().result_int());
}

std::string UpstreamExchange::header(std::string_view name) const {
  if (parser_ == nullptr) return "";
  auto it = parser_->get().find(beast::string_view(name.data(), name.size()));
  return it == parser_->get().end() ? "" : std::string(it->value());
}

asio::awaitable<bool> UpstreamExchange::ReadSome(std::string* out) {
  if (done_ || failure_ != UpstreamFailure::kNone || parser_ == nullptr) co_return false;
  if (parser_->is_done()) {
    done_ = true;
    co_return false;
  }
  auto& body = parser_->get().body();
  body.data = read_buf_.data();
  body.size = read_buf_.size();
  auto remaining = deadline_ - Clock::now();
  if (remaining <= Clock::duration::zero()) {
    co_return Fail(UpstreamFailure::kTimeout, {}, "upstream total timeout");
  }
  Expire(std::chrono::duration_cast<std::chrono::milliseconds>(remaining));
  beast::error_code ec;
  if (conn_->tls) {
    co_await http::async_read_some(conn_->stream, conn_->buffer, *parser_,
                                   asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_read_some(conn_->tcp(), conn_->buffer, *parser_,
                                   asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec == http::error::need_buffer) ec = {};
  if (ec == http::error::body_limit) {
    co_return Fail(UpstreamFailure::kTooLarge, {},
                   "the upstream response exceeds " + std::to_string(max_body_) + " bytes");
  }
  if (ec) {
    co_return Fail(UpstreamFailure::kProtocol, ec, "reading the upstream response");
  }
  std::size_t n = read_buf_.size() - body.size;
  body_bytes_ += n;
  if (body_bytes_ > max_body_) {
    co_return Fail(UpstreamFailure::kTooLarge, {},
                   "the upstream response exceeds " + std::to_string(max_body_) + " bytes");
  }
  out->append(read_buf_.data(), n);
  if (parser_->is_done()) done_ = true;
  co_return true;
}

asio::awaitable<bool> UpstreamExchange::ReadAll(std::string* out) {
  // (co_await is kept out of conditions: GCC 12 miscompiles some of those.)
  while (!done_) {
    bool more = co_await ReadSome(out);
    if (!more) break;
  }
  co_return done_&& failure_ == UpstreamFailure::kNone;
}

}  // namespace kt::gateway
