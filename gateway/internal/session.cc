#include "gateway/internal/session.h"

#include "gateway/internal/admin.h"
#include "gateway/internal/pipeline.h"
#include "gateway/internal/router.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

using tcp = asio::ip::tcp;

namespace {

auto Redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

asio::awaitable<bool> Write(beast::tcp_stream& stream, Response& res) {
  beast::error_code ec;
  co_await http::async_write(stream, res, Redirect(ec));
  co_return !ec && res.keep_alive();
}

// A request the parser refused as malformed HTTP, or one the client cut
// short (closed in its middle); not a close between requests or a timeout.
bool IsMalformed(const beast::error_code& ec) {
  static const auto& category = http::make_error_code(http::error::bad_value).category();
  return ec && ec.category() == category && ec != http::error::end_of_stream &&
         ec != http::error::body_limit && ec != http::error::header_limit &&
         ec != http::error::need_more;
}

// Framing the gateway refuses although the parser accepted it: a transfer
// coding other than exactly `chunked` (Beast reads `chunked, identity` as
// no body, so the body would be read as the next request: smuggling), more
// than one Transfer-Encoding field, or Transfer-Encoding with Content-Length.
std::string FramingError(const http::request_parser<http::string_body>::value_type& head) {
  std::size_t codings = head.count(http::field::transfer_encoding);
  if (codings == 0) return "";
  if (codings > 1) return "more than one Transfer-Encoding field";
  std::string_view te(head[http::field::transfer_encoding].data(),
                      head[http::field::transfer_encoding].size());
  while (!te.empty() && (te.front() == ' ' || te.front() == '\t')) te.remove_prefix(1);
  while (!te.empty() && (te.back() == ' ' || te.back() == '\t')) te.remove_suffix(1);
  if (!beast::iequals(beast::string_view(te.data(), te.size()), "chunked")) {
    return "Transfer-Encoding `" + std::string(te.substr(0, 64)) +
           "` is not supported (only `chunked`)";
  }
  if (head.count(http::field::content_length) > 0) {
    return "a request with both Transfer-Encoding and Content-Length";
  }
  return "";
}

// Where the header section in `bytes` ends (past its empty line), or npos
// while it has not all arrived. A bare LF counts as a line end here, so that
// such a request is refused at once instead of waiting for a CRLF CRLF.
std::size_t HeaderEnd(std::string_view bytes) {
  for (std::size_t i = bytes.find('\n'); i != std::string_view::npos; i = bytes.find('\n', i + 1)) {
    if (i + 1 < bytes.size() && bytes[i + 1] == '\n') return i + 2;
    if (i + 2 < bytes.size() && bytes[i + 1] == '\r' && bytes[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

// Line endings the gateway refuses in a header section although Beast would
// read it: obs-fold (a line starting with a space or tab, which Beast joins
// to the previous one) and a bare LF or CR. RFC 9112 (§2.2, §5.2) lets a
// server reject them, and a gateway must: a proxy in front that splits or
// joins these lines differently would see other header fields than kt.
std::string LineEndingError(std::string_view head) {
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (head[i] == '\r' && (i + 1 == head.size() || head[i + 1] != '\n')) {
      return "a bare CR in the request header (lines end in CRLF)";
    }
    if (head[i] != '\n') continue;
    if (i == 0 || head[i - 1] != '\r') return "a bare LF in the request header (lines end in CRLF)";
    if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) {
      return "obsolete line folding (a header line starting with a space or tab)";
    }
  }
  return "";
}

// http::async_read_header, with the header's bytes checked by
// LineEndingError before the parser reads them (Beast's parser consumes
// them whole once the header is complete, so they are still in `buffer`).
// Returns what LineEndingError found ("" when nothing); read errors are in
// `ec` as async_read_header reports them.
asio::awaitable<std::string> ReadHeader(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                        http::request_parser<http::string_body>& parser,
                                        beast::error_code& ec) {
  for (;;) {
    if (buffer.size() > 0) {
      std::string_view bytes(static_cast<const char*>(buffer.data().data()), buffer.size());
      if (std::size_t end = HeaderEnd(bytes); end != std::string_view::npos) {
        std::string error = LineEndingError(bytes.substr(0, end));
        if (!error.empty()) co_return error;
      }
      buffer.consume(parser.put(buffer.data(), ec));
      if (ec != http::error::need_more) co_return "";  // the header, or a parse error
      ec = {};
    }
    std::size_t n = co_await stream.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)),
                                                    Redirect(ec));
    buffer.commit(n);
    if (ec == asio::error::eof) {
      // As Beast's read: a close between requests, or one in the middle.
      if (!parser.got_some()) {
        ec = http::error::end_of_stream;
      } else {
        ec = {};
        parser.put_eof(ec);
      }
    }
    if (ec) co_return "";
  }
}

// Refuses the rest of a request the gateway will not read (too large), then
// closes: reading a bounded amount first lets the client see the response
// instead of a reset.
asio::awaitable<void> Linger(beast::tcp_stream& stream, beast::flat_buffer& buffer) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(2));
  std::size_t drained = 0;
  std::vector<char> sink(16 << 10);
  buffer.clear();
  while (!ec && drained < (64u << 20)) {
    std::size_t n = co_await stream.async_read_some(asio::buffer(sink), Redirect(ec));
    drained += n;
  }
  stream.socket().close(ec);
}

// The client of a request on this connection.
class SocketClient : public Client {
 public:
  explicit SocketClient(beast::tcp_stream& stream) : stream_(stream) {}
  asio::awaitable<bool> StartStream(http::response<http::empty_body>& head) override {
    http::response_serializer<http::empty_body> sr{head};
    beast::error_code ec;
    co_await http::async_write_header(stream_, sr, Redirect(ec));
    co_return !ec;
  }
  asio::awaitable<bool> Send(const std::string& bytes) override {
    if (bytes.empty()) co_return true;
    beast::error_code ec;
    auto chunk = http::make_chunk(asio::buffer(bytes));
    co_await asio::async_write(stream_, chunk, Redirect(ec));
    co_return !ec;
  }
  asio::awaitable<void> EndStream() override {
    beast::error_code ec;
    auto last = http::make_chunk_last();
    co_await asio::async_write(stream_, last, Redirect(ec));
  }

 private:
  beast::tcp_stream& stream_;
};

using Parser = http::request_parser<http::string_body>;

// Ids and correlation headers first: every answer, errors included,
// carries them.
void ReadIds(const Parser::value_type& head, Exchange* x) {
  auto h = [&](const char* name) {
    auto it = head.find(name);
    return it == head.end() ? std::string() : std::string(it->value());
  };
  x->method = std::string(head.method_string());
  x->path = std::string(head.target());
  if (std::string rid = h("x-request-id"); !rid.empty() && rid.size() <= 200) x->request_id = rid;
  x->correlation_id = h("x-correlation-id");
  if (x->correlation_id.empty() || x->correlation_id.size() > 200) {
    x->correlation_id = NewId("corr_");
  }
  x->request_source = h("x-request-source").substr(0, 200);
  x->traceparent = h("traceparent").substr(0, 200);
  x->client_key = BearerToken(h("authorization"));
  if (x->client_key.empty()) x->client_key = h("api-key");
  if (x->client_key.empty()) x->client_key = h("x-api-key");  // Anthropic clients
  x->anthropic_beta = h("anthropic-beta").substr(0, 1000);
  x->key_fingerprint = KeyFingerprint(x->client_key);
}

// What reading one request came to.
enum class Read { kRequest, kRefused, kRefusedLinger, kClosed };

class Connection {
 public:
  Connection(tcp::socket socket, Gateway* g, UpstreamPool* pool)
      : stream_(std::move(socket)), g_(g), pool_(pool), client_(stream_) {}

  asio::awaitable<void> Serve() {
    bool first = true;
    while (!g_->stopping.load()) {
      Parser parser;
      Exchange x;
      x.pool = pool_;
      x.request_id = NewId("req_");
      Response res;
      Read read = co_await ReadRequest(parser, first, &x, &res);
      first = false;
      if (read == Read::kClosed) break;
      if (read != Read::kRequest) {
        co_await Write(stream_, res);
        if (read == Read::kRefusedLinger) co_await Linger(stream_, buffer_);
        break;
      }
      Handled handled = co_await Dispatch(parser.get(), &x, &res);
      if (handled == Handled::kStreamed) break;
      if (handled == Handled::kStreamedOpen) continue;
      const bool open = co_await Write(stream_, res);
      if (!open) break;
    }
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream* stream() { return &stream_; }

 private:
  asio::awaitable<Read> ReadRequest(Parser& parser, bool first, Exchange* x, Response* res);
  Read Refusal(beast::error_code ec, std::string framing, Exchange* x, Response* res);
  asio::awaitable<Handled> Dispatch(http::request<http::string_body>& req, Exchange* x,
                                    Response* res);
  bool Trusted(const Exchange& x);

  void Idle(bool idle) {
    std::lock_guard lock(g_->idle_mu);
    if (idle) {
      g_->idle.insert(&stream_);
    } else {
      g_->idle.erase(&stream_);
    }
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  Gateway* g_;
  UpstreamPool* pool_;
  SocketClient client_;
};

asio::awaitable<Read> Connection::ReadRequest(Parser& parser, bool first, Exchange* x,
                                              Response* res) {
  parser.header_limit(static_cast<std::uint32_t>(g_->options.max_header_bytes));
  parser.body_limit(g_->options.max_body_bytes);
  beast::error_code ec;
  // Waiting for the next request on a kept-alive connection is idle time;
  // reading it, once it starts, is bounded by the client timeout.
  Idle(true);
  stream_.expires_after(std::chrono::milliseconds(
      static_cast<int64_t>(first ? g_->options.client_timeout_ms : g_->options.idle_timeout_ms)));
  std::string line_error = co_await ReadHeader(stream_, buffer_, parser, ec);
  Idle(false);
  x->t0 = MonoMicros();  // the request's time starts with its header, not the idle wait
  if (ec == http::error::header_limit) {
    // What was parsed of the request line, so the refusal is audited too.
    x->method = std::string(parser.get().method_string());
    x->path = std::string(parser.get().target());
    if (x->path.empty()) x->path = "(unparsed)";
    x->correlation_id = NewId("corr_");
    *res = ErrorResponse(
        g_, x, 431, "validation_error", "headers_too_large",
        "the request headers exceed " + std::to_string(g_->options.max_header_bytes) + " bytes",
        false);
    co_return Read::kRefused;
  }
  // A Content-Length over the limit fails the header read already. A
  // request whose headers started but never finished gets its 408 below; an
  // idle keep-alive connection that times out just closes.
  const bool started = buffer_.size() > 0;
  if (ec && ec != http::error::body_limit && !IsMalformed(ec) &&
      !(ec == beast::error::timeout && started)) {
    co_return Read::kClosed;
  }
  std::string framing = !line_error.empty() ? line_error : ec ? "" : FramingError(parser.get());
  stream_.expires_after(
      std::chrono::milliseconds(static_cast<int64_t>(g_->options.client_timeout_ms)));
  if (!ec && framing.empty() && !parser.is_done() &&
      beast::iequals(parser.get()[http::field::expect], "100-continue")) {
    // A client that asks first (curl, for large bodies) would otherwise
    // wait its timeout (a second for curl) before sending the body.
    http::response<http::empty_body> go_on{http::status::continue_, 11};
    co_await http::async_write(stream_, go_on, Redirect(ec));
  }
  if (!ec && framing.empty()) {
    co_await http::async_read(stream_, buffer_, parser, Redirect(ec));
  }
  ReadIds(parser.get(), x);
  co_return Refusal(ec, std::move(framing), x, res);
}

// The refusals after the header: a body over the limit, framing the gateway
// does not accept, malformed HTTP, a request not received in time.
Read Connection::Refusal(beast::error_code ec, std::string framing, Exchange* x, Response* res) {
  if (ec == http::error::body_limit) {
    *res = ErrorResponse(
        g_, x, 413, "validation_error", "request_too_large",
        "the request body exceeds " + std::to_string(g_->options.max_body_bytes) + " bytes",
        false);
    return Read::kRefusedLinger;
  }
  if (!framing.empty() || IsMalformed(ec)) {
    // Not one well-framed request: answered, audited, and the connection
    // closed (what follows cannot be trusted to start a request).
    if (x->path.empty()) x->path = "(unparsed)";
    const bool te = framing.rfind("Transfer-Encoding `", 0) == 0;  // an unknown coding
    if (framing.empty()) {
      framing = ec == http::error::partial_message
                    ? "the connection closed before the request was complete"
                    : "malformed HTTP request: " + ec.message();
    }
    *res = ErrorResponse(g_, x, te ? 501 : 400, "invalid_request_error",
                         te ? "unsupported_transfer_encoding" : "bad_request", framing, false);
    return Read::kRefusedLinger;
  }
  if (ec == beast::error::timeout) {
    if (x->path.empty()) x->path = "(unparsed)";  // stalled in the request line: audited too
    *res = ErrorResponse(g_, x, 408, "validation_error", "request_timeout",
                         "the request was not received in time", false);
    return Read::kRefused;
  }
  return ec ? Read::kClosed : Read::kRequest;
}

bool Connection::Trusted(const Exchange& x) {
  beast::error_code ec;
  auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec && remote.address().is_loopback()) return true;
  return !g_->options.admin_token.empty() && ConstantTimeEqual(x.client_key, g_->options.admin_token);
}

// The route table decides: a model surface goes through the pipeline, the
// rest to admin; an unknown path is a 404 naming it, a wrong method a 405.
asio::awaitable<Handled> Connection::Dispatch(http::request<http::string_body>& req, Exchange* x,
                                              Response* res) {
  const bool keep_alive = req.keep_alive() && !g_->stopping.load();
  const std::string target = RoutePath(x->path);
  bool method_ok = false;
  const auto method = req.method_string();
  const RouteInfo* route = FindRoute(target, std::string_view(method.data(), method.size()), &method_ok);
  if (route == nullptr) {
    x->path.clear();  // not audited
    *res = ErrorResponse(g_, x, 404, "invalid_request_error", "not_found",
                         "no route for " + std::string(req.method_string()) + " " + target,
                         keep_alive);
    co_return Handled::kReply;
  }
  if (!method_ok) {
    if (route->handler != Handler::kSurface) x->path.clear();  // only model surfaces are audited
    if (route->handler == Handler::kSurface) x->surface = route->surface->name();
    const std::string allow(route->method);
    *res = ErrorResponse(g_, x, 405, "invalid_request_error", "method_not_allowed",
                         "use " + allow + " for " + std::string(route->path), keep_alive, {},
                         {{"allow", allow}});
    co_return Handled::kReply;
  }
  if (route->handler == Handler::kLimits) {
    const bool trusted = Trusted(*x);
    Response limits = co_await LimitsResponse(g_, x, keep_alive, trusted);
    *res = std::move(limits);
    co_return Handled::kReply;
  }
  if (route->handler != Handler::kSurface) {
    *res = AdminResponse(g_, route->handler, x, keep_alive, Trusted(*x));
    co_return Handled::kReply;
  }
  const Handled handled =
      co_await ::kt::gateway::Serve(g_, *route->surface, req, x, &client_, keep_alive, res);
  co_return handled;
}

}  // namespace

asio::awaitable<void> Session(tcp::socket socket, Gateway* g, UpstreamPool* pool) {
  Connection c(std::move(socket), g, pool);
  ++g->sessions;
  struct Leave {
    Gateway* g;
    beast::tcp_stream* s;
    ~Leave() {
      {
        std::lock_guard lock(g->idle_mu);
        g->idle.erase(s);
      }
      --g->sessions;
    }
  } leave{g, c.stream()};
  co_await c.Serve();
}

}  // namespace kt::gateway
