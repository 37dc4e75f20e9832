// The Redis client: a pool of pipelined connections on one io_context.
//
// A call is a `RedisCall` whose steady_timer is both its deadline and its
// wake-up: the calling coroutine waits on the timer; the connection that
// gets the reply (or fails) stores the outcome and cancels the timer. When
// the timer expires instead, the call has timed out: if its request was
// never written it is simply dropped from its connection's queue, otherwise
// the connection is closed (the late reply would answer the next request)
// and every call on it fails.
//
// A connection (`RedisConn`) is shared by the pool and by its own
// coroutines (connect, read loop, write loop), so it outlives the client
// when handlers are still queued. Its queue holds the calls in request
// order: the first `sent_` are on the wire and the replies answer them
// front to back; the rest wait for the connection to be ready.
//
// Backoff: a failed connect (refused, timed out, TLS, AUTH refused) stamps
// `RedisHealth::retry_at`; until then no new connection is opened and calls
// without a live connection fail fast. A connection lost after it was up
// does not: the next call reconnects at once, and only if that fails does
// the backoff start.
#include "gateway/internal/redis.h"

#include <array>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdio>
#include <deque>
#include <exception>
#include <new>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

namespace kt::gateway {

namespace {

using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;
using tcp = asio::ip::tcp;

auto Redirect(ErrorCode& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

Clock::duration Ms(double ms) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
}

std::string FormatMs(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", ms);
  return buf;
}

// ------------------------------------------------------------ URLs

bool UrlError(std::string* error, std::string message) {
  if (error != nullptr) *error = "redis url: " + std::move(message);
  return false;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = HexValue(in[i + 1]);
    const int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool ParseInt(std::string_view s, int lo, int hi, int* out) {
  int v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || p != end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// `user:password` or `:password`; a lone word is refused rather than
// guessed at (taken for a user name, a password would reach the logs).
bool ParseUserInfo(std::string_view info, RedisUrl* out, std::string* error) {
  const std::size_t colon = info.find(':');
  if (colon == std::string_view::npos) {
    return UrlError(error, "the user info must be `user:password` or `:password`");
  }
  if (!PercentDecode(info.substr(0, colon), &out->username) ||
      !PercentDecode(info.substr(colon + 1), &out->password)) {
    return UrlError(error, "bad percent-encoding in the user info");
  }
  return true;
}

bool ParseHostPort(std::string_view hp, RedisUrl* out, std::string* error) {
  std::string_view host = hp;
  std::string_view port;
  bool has_port = false;
  if (!hp.empty() && hp[0] == '[') {
    const std::size_t close = hp.find(']');
    if (close == std::string_view::npos) return UrlError(error, "unclosed `[` in the host");
    host = hp.substr(1, close - 1);
    std::string_view rest = hp.substr(close + 1);
    if (!rest.empty() && rest[0] != ':') return UrlError(error, "junk after the host `]`");
    has_port = !rest.empty();
    if (has_port) port = rest.substr(1);
  } else if (const std::size_t colon = hp.rfind(':'); colon != std::string_view::npos) {
    if (hp.find(':') != colon) return UrlError(error, "an IPv6 host must be in brackets");
    host = hp.substr(0, colon);
    port = hp.substr(colon + 1);
    has_port = true;
  }
  if (host.empty()) return UrlError(error, "the URL has no host");
  out->host = std::string(host);
  if (has_port && !ParseInt(port, 1, 65535, &out->port)) {
    return UrlError(error, "bad port `" + std::string(port) + "`");
  }
  return true;
}

bool ParseQuery(std::string_view query, RedisUrl* out, std::string* error) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const std::size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    if (key == "ca") {
      if (!PercentDecode(value, &out->ca_file) || out->ca_file.empty()) {
        return UrlError(error, "bad `ca` path");
      }
    } else if (key == "verify") {
      if (value != "0" && value != "1") return UrlError(error, "`verify` must be 0 or 1");
      out->verify = value == "1";
    } else {
      return UrlError(error, "unknown parameter `" + std::string(key) + "`");
    }
  }
  if (!out->tls && (!out->ca_file.empty() || !out->verify)) {
    return UrlError(error, "`ca` and `verify` need rediss://");
  }
  return true;
}

}  // namespace

bool ParseRedisUrl(std::string_view url, RedisUrl* out, std::string* error) {
  RedisUrl parsed;
  std::string_view rest;
  if (url.substr(0, 8) == "redis://") {
    rest = url.substr(8);
  } else if (url.substr(0, 9) == "rediss://") {
    rest = url.substr(9);
    parsed.tls = true;
  } else {
    return UrlError(error, "must start with redis:// or rediss://");
  }
  // The last `@`: a password with a raw `@` still parses.
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    if (!ParseUserInfo(rest.substr(0, at), &parsed, error)) return false;
    rest = rest.substr(at + 1);
  }
  const std::size_t q = rest.find('?');
  std::string_view query = q == std::string_view::npos ? "" : rest.substr(q + 1);
  rest = rest.substr(0, q);
  const std::size_t slash = rest.find('/');
  std::string_view db = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (!ParseHostPort(rest.substr(0, slash), &parsed, error)) return false;
  if (!db.empty() && !ParseInt(db, 0, INT_MAX, &parsed.db)) {
    return UrlError(error, "bad database number `" + std::string(db) + "`");
  }
  if (!ParseQuery(query, &parsed, error)) return false;
  *out = std::move(parsed);
  return true;
}

std::string RedactedUrl(const RedisUrl& url) {
  std::string s = url.tls ? "rediss://" : "redis://";
  if (!url.username.empty() || !url.password.empty()) {
    s += url.username;
    if (!url.password.empty()) s += ":***";
    s += "@";
  }
  const bool v6 = url.host.find(':') != std::string::npos;
  s += v6 ? "[" + url.host + "]" : url.host;
  s += ":" + std::to_string(url.port);
  if (url.db != 0) s += "/" + std::to_string(url.db);
  std::string query;
  if (!url.ca_file.empty()) query += "&ca=" + url.ca_file;
  if (!url.verify) query += "&verify=0";
  if (!query.empty()) s += "?" + query.substr(1);
  return s;
}

std::string RedisScriptSha(std::string_view script) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(script.data(), script.size(), md, &n, EVP_sha1(), nullptr) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

namespace {

// ------------------------------------------------------------ replies

// hiredis builds RedisReply trees directly through these callbacks. A
// child lives inside its parent's `elements` (sized when the array header
// is read), so only a root is ever allocated, and hiredis frees only roots.
// Every callback charges the reader's budget: a reply larger than
// max_reply_bytes is refused while it is being parsed.
struct ReplyBudget {
  std::size_t limit = 0;
  std::size_t used = 0;
  bool exceeded = false;
};

bool Charge(const redisReadTask* task, std::size_t bytes) {
  auto* budget = static_cast<ReplyBudget*>(task->privdata);
  if (bytes > budget->limit - budget->used) {
    budget->exceeded = true;
    return false;
  }
  budget->used += bytes;
  return true;
}

RedisReply* Place(const redisReadTask* task) {
  if (task->parent == nullptr) return new (std::nothrow) RedisReply;
  auto* parent = static_cast<RedisReply*>(task->parent->obj);
  if (task->idx < 0 || static_cast<std::size_t>(task->idx) >= parent->elements.size()) {
    return nullptr;
  }
  return &parent->elements[static_cast<std::size_t>(task->idx)];
}

void* CreateString(const redisReadTask* task, char* s, size_t len) {
  if (!Charge(task, len)) return nullptr;
  RedisReply* r = Place(task);
  if (r == nullptr) return nullptr;
  r->type = task->type == REDIS_REPLY_ERROR    ? RedisReply::Type::kError
            : task->type == REDIS_REPLY_STATUS ? RedisReply::Type::kStatus
                                               : RedisReply::Type::kString;
  try {
    r->str.assign(s, len);
  } catch (const std::bad_alloc&) {
    return nullptr;  // hiredis reports it as out of memory
  }
  return r;
}

void* CreateArray(const redisReadTask* task, int elements) {
  if (elements < 0) return nullptr;
  const auto n = static_cast<std::size_t>(elements);
  if (!Charge(task, n * sizeof(RedisReply))) return nullptr;
  RedisReply* r = Place(task);
  if (r == nullptr) return nullptr;
  r->type = RedisReply::Type::kArray;
  try {
    r->elements.resize(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
  return r;
}

void* CreateInteger(const redisReadTask* task, long long value) {
  RedisReply* r = Place(task);
  if (r == nullptr) return nullptr;
  r->type = RedisReply::Type::kInteger;
  r->integer = value;
  return r;
}

void* CreateNil(const redisReadTask* task) {
  RedisReply* r = Place(task);
  if (r != nullptr) r->type = RedisReply::Type::kNil;
  return r;
}

void FreeReply(void* reply) { delete static_cast<RedisReply*>(reply); }

redisReplyObjectFunctions kReplyFunctions = {CreateString, CreateArray, CreateInteger, CreateNil,
                                             FreeReply};

// hiredis's parser over the bytes one connection receives.
class ReplyReader {
 public:
  enum class Next { kReply, kNeedMore, kError };

  explicit ReplyReader(std::size_t max_bytes)
      : reader_(redisReaderCreateWithFunctions(&kReplyFunctions)) {
    budget_.limit = max_bytes;
    if (reader_ != nullptr) {
      reader_->privdata = &budget_;  // (hiredis's setter macro casts through int)
      // Keep at most this much buffer while idle (hiredis frees the rest).
      reader_->maxbuf = 64 << 10;
    }
  }
  ~ReplyReader() { redisReaderFree(reader_); }
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  bool Feed(const char* data, std::size_t n, std::string* error) {
    if (reader_ == nullptr || redisReaderFeed(reader_, data, n) != REDIS_OK) {
      *error = "redis: out of memory reading a reply";
      return false;
    }
    return true;
  }

  Next Pop(RedisReply* out, std::string* error);

 private:
  redisReader* reader_;
  ReplyBudget budget_;
};

ReplyReader::Next ReplyReader::Pop(RedisReply* out, std::string* error) {
  const auto too_large = [this] {
    return "redis: a reply exceeds " + std::to_string(budget_.limit) + " bytes";
  };
  void* raw = nullptr;
  if (reader_ == nullptr) {
    *error = "redis: out of memory reading a reply";
    return Next::kError;
  }
  if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
    *error = budget_.exceeded ? too_large()
                              : "redis: protocol error: " + std::string(reader_->errstr);
    return Next::kError;
  }
  if (raw == nullptr) {
    // A bulk string is buffered whole before hiredis parses it: bound that.
    if (reader_->len - reader_->pos > budget_.limit) {
      *error = too_large();
      return Next::kError;
    }
    return Next::kNeedMore;
  }
  std::unique_ptr<RedisReply> reply(static_cast<RedisReply*>(raw));
  budget_.used = 0;
  *out = std::move(*reply);
  return Next::kReply;
}

bool EncodeCommand(const std::vector<std::string>& argv, std::string* out) {
  if (argv.empty() || argv.size() > static_cast<std::size_t>(INT_MAX)) return false;
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  const int n =
      redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  if (n < 0 || cmd == nullptr) return false;
  out->assign(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
  return true;
}

// ------------------------------------------------------------ calls

struct RedisCall {
  explicit RedisCall(const asio::any_io_executor& ex) : timer(ex) {}

  // The first outcome wins; the waiting coroutine wakes up.
  void Finish(bool call_ok, RedisReply call_reply, std::string call_error) {
    if (done) return;
    done = true;
    ok = call_ok;
    reply = std::move(call_reply);
    error = std::move(call_error);
    timer.cancel();
  }

  asio::steady_timer timer;
  bool done = false;
  bool ok = false;
  RedisReply reply;
  std::string error;
};

// What every connection of a client shares.
struct RedisConfig {
  RedisUrl url;
  RedisOptions options;
  asio::ssl::context* tls = nullptr;
  std::unique_ptr<asio::ssl::context> own_tls;
  std::string setup_error;  // non-empty: every call fails with it
};

struct RedisHealth {
  Clock::time_point retry_at{};  // no new connect before this
  std::string last_error;        // why the last connect failed
};

// ------------------------------------------------------------ connections

class RedisConn : public std::enable_shared_from_this<RedisConn> {
 public:
  RedisConn(asio::any_io_executor ex, std::shared_ptr<const RedisConfig> config,
            std::shared_ptr<RedisHealth> health)
      : config_(std::move(config)),
        health_(std::move(health)),
        tcp_(ex),
        resolver_(ex),
        connect_timer_(ex),
        reader_(config_->options.max_reply_bytes) {
    if (config_->url.tls) {
      tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(ex, *config_->tls);
    }
  }

  void Start();
  bool closed() const { return state_ == State::kClosed; }
  std::size_t load() const { return pending_.size(); }
  void Enqueue(std::shared_ptr<RedisCall> call, std::string payload);
  // A call's deadline passed: dropped when its request is still queued;
  // otherwise the connection closes (the late reply would mismatch).
  void Abandon(const std::shared_ptr<RedisCall>& call, const std::string& why);
  // Fails every pending call with `error`. A failed connect also starts
  // the backoff.
  void Close(const std::string& error, bool connect_failure);

 private:
  enum class State { kConnecting, kReady, kClosed };
  struct Pending {
    std::shared_ptr<RedisCall> call;
    std::string payload;  // emptied once handed to the writer
  };

  asio::awaitable<void> Run(std::shared_ptr<RedisConn> self);
  asio::awaitable<bool> Connect(std::string* error);
  asio::awaitable<bool> Handshake(std::string* error);
  asio::awaitable<bool> Setup(std::string* error);
  asio::awaitable<bool> ReadReply(RedisReply* reply, std::string* error);
  asio::awaitable<void> ReadLoop();
  asio::awaitable<void> WriteLoop(std::shared_ptr<RedisConn> self);
  asio::awaitable<std::size_t> ReadSome(ErrorCode* ec);
  asio::awaitable<void> WriteAll(const std::string& bytes, ErrorCode* ec);
  void ConnectExpired();
  void Kick();
  bool Deliver(RedisReply reply);
  tcp::socket& Socket() { return tls_ ? tls_->next_layer() : tcp_; }
  std::string Where() const {
    return config_->url.host + ":" + std::to_string(config_->url.port);
  }

  std::shared_ptr<const RedisConfig> config_;
  std::shared_ptr<RedisHealth> health_;
  tcp::socket tcp_;  // plain connections; TLS ones use tls_'s own socket
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
  tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  ReplyReader reader_;
  std::array<char, 16 << 10> read_buf_{};
  State state_ = State::kConnecting;
  bool connect_expired_ = false;
  bool writing_ = false;
  std::deque<Pending> pending_;
  std::size_t sent_ = 0;  // pending_[0, sent_) are written (or being written)
};

void RedisConn::Start() {
  connect_timer_.expires_after(Ms(config_->options.timeout_ms));
  std::weak_ptr<RedisConn> weak = shared_from_this();
  connect_timer_.async_wait([weak](const ErrorCode& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->ConnectExpired();
  });
  asio::co_spawn(tcp_.get_executor(), Run(shared_from_this()), asio::detached);
}

void RedisConn::ConnectExpired() {
  if (state_ != State::kConnecting) return;
  connect_expired_ = true;
  ErrorCode ignored;
  resolver_.cancel();
  Socket().close(ignored);
}

asio::awaitable<void> RedisConn::Run(std::shared_ptr<RedisConn> self) {
  std::string what;
  bool up = co_await Connect(&what);
  connect_timer_.cancel();
  if (connect_expired_) {
    up = false;
    what = "connect to " + Where() + " timed out after " +
           FormatMs(config_->options.timeout_ms) + " ms";
  }
  if (state_ == State::kClosed) co_return;  // the client closed it meanwhile
  if (!up) {
    health_->last_error = what;
    Close("redis: unreachable (" + what + ")", true);
    co_return;
  }
  state_ = State::kReady;
  Kick();
  co_await ReadLoop();
  (void)self;  // held so the connection lives as long as its read loop
}

// Resolve, connect, TLS, then AUTH and SELECT. `*error` says which failed.
asio::awaitable<bool> RedisConn::Connect(std::string* error) {
  ErrorCode ec;
  const std::string port = std::to_string(config_->url.port);
  auto results = co_await resolver_.async_resolve(config_->url.host, port, Redirect(ec));
  if (ec) {
    *error = "cannot resolve `" + config_->url.host + "`: " + ec.message();
    co_return false;
  }
  co_await asio::async_connect(Socket(), results, Redirect(ec));
  if (ec) {
    *error = "cannot connect to " + Where() + ": " + ec.message();
    co_return false;
  }
  ErrorCode ignored;
  Socket().set_option(tcp::no_delay(true), ignored);
  if (tls_) {
    const bool secured = co_await Handshake(error);
    if (!secured) co_return false;
  }
  const bool ready = co_await Setup(error);
  co_return ready;
}

asio::awaitable<bool> RedisConn::Handshake(std::string* error) {
  const RedisUrl& url = config_->url;
  ErrorCode ec;
  if (url.verify) {
    tls_->set_verify_mode(asio::ssl::verify_peer, ec);
    if (!ec) tls_->set_verify_callback(asio::ssl::host_name_verification(url.host), ec);
  } else {
    tls_->set_verify_mode(asio::ssl::verify_none, ec);
  }
  // SNI for names only (RFC 6066 forbids IP literals there).
  ErrorCode not_ip;
  asio::ip::make_address(url.host, not_ip);
  if (!ec && not_ip && !SSL_set_tlsext_host_name(tls_->native_handle(), url.host.c_str())) {
    ec = asio::error::invalid_argument;
  }
  if (!ec) co_await tls_->async_handshake(asio::ssl::stream_base::client, Redirect(ec));
  if (ec) {
    *error = "TLS handshake with " + Where() + " failed: " + ec.message();
    co_return false;
  }
  co_return true;
}

// AUTH (when there is a password) and SELECT (when db != 0) go first, so
// no queued call runs unauthenticated or in the wrong database.
asio::awaitable<bool> RedisConn::Setup(std::string* error) {
  const RedisUrl& url = config_->url;
  std::vector<std::string> names;
  std::string bytes;
  std::string encoded;
  if (!url.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!url.username.empty()) auth.push_back(url.username);
    auth.push_back(url.password);
    EncodeCommand(auth, &encoded);
    bytes += encoded;
    names.push_back("AUTH");
  }
  if (url.db != 0) {
    EncodeCommand({"SELECT", std::to_string(url.db)}, &encoded);
    bytes += encoded;
    names.push_back("SELECT " + std::to_string(url.db));
  }
  if (bytes.empty()) co_return true;
  ErrorCode ec;
  co_await WriteAll(bytes, &ec);
  if (ec) {
    *error = "cannot write to " + Where() + ": " + ec.message();
    co_return false;
  }
  for (const std::string& name : names) {
    RedisReply reply;
    const bool got = co_await ReadReply(&reply, error);
    if (!got) co_return false;
    if (reply.type == RedisReply::Type::kError) {
      *error = name + " refused: " + reply.str;
      co_return false;
    }
  }
  co_return true;
}

// One reply during setup (before the read loop owns the reader).
asio::awaitable<bool> RedisConn::ReadReply(RedisReply* reply, std::string* error) {
  for (;;) {
    const ReplyReader::Next next = reader_.Pop(reply, error);
    if (next == ReplyReader::Next::kReply) co_return true;
    if (next == ReplyReader::Next::kError) co_return false;
    ErrorCode ec;
    const std::size_t n = co_await ReadSome(&ec);
    if (ec) {
      *error = "connection to " + Where() + " lost during setup: " + ec.message();
      co_return false;
    }
    if (!reader_.Feed(read_buf_.data(), n, error)) co_return false;
  }
}

asio::awaitable<void> RedisConn::ReadLoop() {
  for (;;) {
    std::string error;
    RedisReply reply;
    ReplyReader::Next next = reader_.Pop(&reply, &error);
    for (; next == ReplyReader::Next::kReply; next = reader_.Pop(&reply, &error)) {
      if (!Deliver(std::move(reply))) {
        Close("redis: " + Where() + " sent a reply nobody asked for", false);
        co_return;
      }
      reply = RedisReply();
    }
    if (next == ReplyReader::Next::kError) {
      Close(error, false);
      co_return;
    }
    ErrorCode ec;
    const std::size_t n = co_await ReadSome(&ec);
    if (ec) {
      Close("redis: connection to " + Where() + " lost (" + ec.message() + ")", false);
      co_return;
    }
    if (!reader_.Feed(read_buf_.data(), n, &error)) {
      Close(error, false);
      co_return;
    }
  }
}

bool RedisConn::Deliver(RedisReply reply) {
  if (sent_ == 0) return false;
  std::shared_ptr<RedisCall> call = std::move(pending_.front().call);
  pending_.pop_front();
  --sent_;
  call->Finish(true, std::move(reply), {});
  return true;
}

asio::awaitable<std::size_t> RedisConn::ReadSome(ErrorCode* ec) {
  std::size_t n = 0;
  asio::mutable_buffer buf = asio::buffer(read_buf_);
  if (tls_) {
    n = co_await tls_->async_read_some(buf, Redirect(*ec));
  } else {
    n = co_await tcp_.async_read_some(buf, Redirect(*ec));
  }
  co_return n;
}

asio::awaitable<void> RedisConn::WriteAll(const std::string& bytes, ErrorCode* ec) {
  asio::const_buffer buf = asio::buffer(bytes);
  if (tls_) {
    co_await asio::async_write(*tls_, buf, Redirect(*ec));
  } else {
    co_await asio::async_write(tcp_, buf, Redirect(*ec));
  }
}

void RedisConn::Enqueue(std::shared_ptr<RedisCall> call, std::string payload) {
  pending_.push_back({std::move(call), std::move(payload)});
  Kick();
}

void RedisConn::Kick() {
  if (state_ != State::kReady || writing_ || sent_ == pending_.size()) return;
  writing_ = true;
  asio::co_spawn(tcp_.get_executor(), WriteLoop(shared_from_this()), asio::detached);
}

// Everything queued goes out in one write (the pipeline); what is queued
// meanwhile goes in the next.
asio::awaitable<void> RedisConn::WriteLoop(std::shared_ptr<RedisConn> self) {
  std::string batch;
  while (state_ == State::kReady && sent_ < pending_.size()) {
    batch.clear();
    for (; sent_ < pending_.size(); ++sent_) {
      batch += pending_[sent_].payload;
      std::string().swap(pending_[sent_].payload);
    }
    ErrorCode ec;
    co_await WriteAll(batch, &ec);
    if (ec) {
      Close("redis: connection to " + Where() + " lost (" + ec.message() + ")", false);
      break;
    }
  }
  writing_ = false;
  (void)self;
}

void RedisConn::Abandon(const std::shared_ptr<RedisCall>& call, const std::string& why) {
  for (std::size_t i = sent_; i < pending_.size(); ++i) {
    if (pending_[i].call == call) {
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
  Close(why, false);
}

void RedisConn::Close(const std::string& error, bool connect_failure) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  ErrorCode ignored;
  connect_timer_.cancel();
  resolver_.cancel();
  Socket().close(ignored);
  if (connect_failure) {
    health_->retry_at = Clock::now() + Ms(config_->options.reconnect_backoff_ms);
  }
  std::deque<Pending> failed;
  failed.swap(pending_);
  sent_ = 0;
  for (Pending& p : failed) p.call->Finish(false, {}, error);
}

}  // namespace

// ------------------------------------------------------------ the pool

class RedisPool {
 public:
  RedisPool(asio::any_io_executor ex, RedisUrl url, RedisOptions options,
            asio::ssl::context* tls);
  asio::awaitable<bool> Call(const std::vector<std::string>& argv, RedisReply* reply,
                             std::string* error);
  void Shutdown();
  bool healthy() const { return healthy_; }

 private:
  std::string Admit(const std::vector<std::string>& argv, std::string* payload) const;
  std::shared_ptr<RedisConn> Pick(std::string* error);

  asio::any_io_executor ex_;
  std::shared_ptr<RedisConfig> config_;
  std::shared_ptr<RedisHealth> health_ = std::make_shared<RedisHealth>();
  std::vector<std::shared_ptr<RedisConn>> conns_;
  std::size_t in_flight_ = 0;
  bool healthy_ = true;
  bool shut_down_ = false;
};

namespace {

// rediss:// without the caller's context: our own, TLS 1.2 or later,
// trusting the URL's CA file or the system's.
void OwnTlsContext(RedisConfig* c) {
  try {
    c->own_tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  } catch (const std::exception& e) {
    c->setup_error = std::string("redis: cannot create a TLS context: ") + e.what();
    return;
  }
  SSL_CTX_set_min_proto_version(c->own_tls->native_handle(), TLS1_2_VERSION);
  ErrorCode ec;
  if (c->url.ca_file.empty()) {
    c->own_tls->set_default_verify_paths(ec);
  } else {
    c->own_tls->load_verify_file(c->url.ca_file, ec);
  }
  if (ec) {
    c->setup_error = "redis: cannot load the CA file `" + c->url.ca_file + "`: " + ec.message();
  }
  c->tls = c->own_tls.get();
}

}  // namespace

RedisPool::RedisPool(asio::any_io_executor ex, RedisUrl url, RedisOptions options,
                     asio::ssl::context* tls)
    : ex_(std::move(ex)), config_(std::make_shared<RedisConfig>()) {
  config_->url = std::move(url);
  config_->options = options;
  if (config_->options.pool_size == 0) config_->options.pool_size = 1;
  config_->tls = tls;
  if (config_->url.tls && tls == nullptr) OwnTlsContext(config_.get());
  conns_.resize(config_->options.pool_size);
}

// Why the call cannot even be queued ("" when it can), and its bytes.
std::string RedisPool::Admit(const std::vector<std::string>& argv, std::string* payload) const {
  if (shut_down_) return "redis: client closed";
  if (!config_->setup_error.empty()) return config_->setup_error;
  if (in_flight_ >= config_->options.max_queued) {
    return "redis: queue full (" + std::to_string(in_flight_) + " calls in flight)";
  }
  if (!EncodeCommand(argv, payload)) return "redis: cannot encode an empty command";
  return "";
}

// An idle live connection; else a new one while the pool has room (and
// the backoff allows); else the least loaded live one (pipelining).
std::shared_ptr<RedisConn> RedisPool::Pick(std::string* error) {
  std::shared_ptr<RedisConn> best;
  std::size_t free_slot = conns_.size();
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    const std::shared_ptr<RedisConn>& c = conns_[i];
    if (c == nullptr || c->closed()) {
      if (free_slot == conns_.size()) free_slot = i;
    } else if (best == nullptr || c->load() < best->load()) {
      best = c;
    }
  }
  if (best != nullptr && (best->load() == 0 || free_slot == conns_.size())) return best;
  if (free_slot < conns_.size() && Clock::now() >= health_->retry_at) {
    conns_[free_slot] = std::make_shared<RedisConn>(ex_, config_, health_);
    conns_[free_slot]->Start();
    return conns_[free_slot];
  }
  if (best != nullptr) return best;
  *error = "redis: unreachable (" + health_->last_error + ")";
  return nullptr;
}

asio::awaitable<bool> RedisPool::Call(const std::vector<std::string>& argv, RedisReply* reply,
                                      std::string* error) {
  std::string payload;
  std::string refused = Admit(argv, &payload);
  std::shared_ptr<RedisConn> conn;
  if (refused.empty()) conn = Pick(&refused);
  if (conn == nullptr) {
    healthy_ = false;
    *error = std::move(refused);
    co_return false;
  }
  auto call = std::make_shared<RedisCall>(ex_);
  call->timer.expires_after(Ms(config_->options.timeout_ms));
  ++in_flight_;
  conn->Enqueue(call, std::move(payload));
  if (!call->done) {
    ErrorCode ec;
    co_await call->timer.async_wait(Redirect(ec));
  }
  --in_flight_;
  if (!call->done) {
    const std::string after = FormatMs(config_->options.timeout_ms) + " ms";
    call->Finish(false, {}, "redis: timed out after " + after);
    conn->Abandon(call, "redis: connection reset (a call on it timed out after " + after + ")");
  }
  healthy_ = call->ok;
  if (call->ok) {
    *reply = std::move(call->reply);
  } else {
    *error = call->error;
  }
  co_return call->ok;
}

void RedisPool::Shutdown() {
  shut_down_ = true;
  for (std::shared_ptr<RedisConn>& c : conns_) {
    if (c != nullptr) c->Close("redis: client closed", false);
  }
  conns_.clear();
}

// ------------------------------------------------------------ the client

RedisClient::RedisClient(asio::any_io_executor ex, RedisUrl url, RedisOptions options,
                         asio::ssl::context* tls)
    : pool_(std::make_shared<RedisPool>(std::move(ex), std::move(url), options, tls)) {}

RedisClient::~RedisClient() { pool_->Shutdown(); }

bool RedisClient::healthy() const { return pool_->healthy(); }

asio::awaitable<bool> RedisClient::Command(std::vector<std::string> argv, RedisReply* reply,
                                           std::string* error) {
  // Held here: the client may be destroyed while this call is suspended.
  std::shared_ptr<RedisPool> pool = pool_;
  bool ok = false;
  try {
    ok = co_await pool->Call(argv, reply, error);
  } catch (const std::exception& e) {
    *error = std::string("redis: ") + e.what();
  }
  co_return ok;
}

namespace {

bool IsNoScript(const RedisReply& reply) {
  return reply.type == RedisReply::Type::kError && reply.str.rfind("NOSCRIPT", 0) == 0;
}

}  // namespace

asio::awaitable<bool> RedisClient::Eval(const std::string& script,
                                        const std::vector<std::string>& keys,
                                        const std::vector<std::string>& args, RedisReply* reply,
                                        std::string* error) {
  std::shared_ptr<RedisPool> pool = pool_;
  std::vector<std::string> argv = {"EVALSHA", RedisScriptSha(script),
                                   std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  std::string body = script;  // the caller's references may not outlive the first suspension
  bool ok = false;
  try {
    ok = co_await pool->Call(argv, reply, error);
    if (ok && IsNoScript(*reply)) {
      argv[0] = "EVAL";
      argv[1] = std::move(body);
      ok = co_await pool->Call(argv, reply, error);
    }
  } catch (const std::exception& e) {
    *error = std::string("redis: ") + e.what();
  }
  co_return ok;
}

}  // namespace kt::gateway
