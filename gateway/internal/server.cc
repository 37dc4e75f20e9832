// HTTP handling: one coroutine per client connection (HTTP/1.1 keep-alive),
// and the chat-completions pipeline: validate → input stage → route →
// upstream or mock → tool-call and output stages → client, with an audit
// record written before the response completes.
#include "gateway/internal/server.h"

#include <algorithm>
#include <iostream>
#include <optional>

#include "gateway/internal/exchange.h"
#include "gateway/internal/mock.h"
#include "gateway/internal/sse.h"
#include "gateway/internal/stream_relay.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

using Json = nlohmann::json;
using tcp = asio::ip::tcp;

namespace {

auto Redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

void SetCommonHeaders(http::fields* h, const Exchange& x) {
  h->set(http::field::server, "kt");
  h->set("x-request-id", x.request_id);
  if (!x.correlation_id.empty()) h->set("x-correlation-id", x.correlation_id);
  if (!x.request_source.empty()) h->set("x-request-source", x.request_source);
}

using Response = http::response<http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// Responses are built by plain functions and written by one coroutine that
// takes them by reference: GCC 12 can destroy temporaries inside a co_await
// expression twice, so no co_await here has a temporary with a destructor.
Response BodyResponse(Exchange* x, int status, std::string body, std::string_view content_type,
                      bool keep_alive, const Headers& extra = {}) {
  Response res{static_cast<http::status>(status), 11};
  SetCommonHeaders(&res, *x);
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  for (const auto& [k, v] : extra) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  x->status = status;
  return res;
}

// A gateway-made error: the envelope, and its audit record (written before
// the response goes out).
Response ErrorResponse(Gateway* g, Exchange* x, int status, std::string_view type,
                       std::string_view code, std::string_view message, bool keep_alive,
                       std::string_view policy = {}, Headers extra = {}) {
  x->status = status;
  x->error_code = code;
  x->error_message = message;
  if (x->outcome == "allowed") x->outcome = "error";
  if (status == 409) extra.emplace_back("x-should-retry", "false");
  if (!x->path.empty()) WriteAudit(g, *x);
  return BodyResponse(x, status, Dump(ErrorEnvelope(type, code, message, x->request_id, policy)),
                      "application/json", keep_alive, extra);
}

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

// The route of a request target: its path, without the query. RFC 9112
// §3.2.2 has a server accept the absolute form (`http://host/v1/…`) as well
// as the origin form (`/v1/…`); the route is the same.
std::string RoutePath(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() &&
        beast::iequals(beast::string_view(target.data(), scheme.size()),
                       beast::string_view(scheme.data(), scheme.size()))) {
      std::size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? "/" : target.substr(slash);
      break;
    }
  }
  return std::string(target.substr(0, target.find('?')));
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

// What a handler did: filled in the response for the caller to write, or
// streamed its own (and the connection ends).
enum class Handled { kReply, kStreamed, kStreamedOpen };

int UpstreamStatusOf(UpstreamFailure f) { return f == UpstreamFailure::kTimeout ? 504 : 502; }
// Headers of an upstream response that clients act on: retry hints on
// errors, and the rate-limit state, which providers send on every answer
// (clients that pace themselves read it on successes).
std::vector<std::pair<std::string, std::string>> PassThroughHeaders(const UpstreamExchange& ex) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* h :
       {"retry-after", "retry-after-ms", "x-should-retry", "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}) {
    std::string v = ex.header(h);
    if (!v.empty()) out.emplace_back(h, v);
  }
  return out;
}

// The stages after the model: tool calls and content of a whole response.
// Returns the blocking decision, if any; rewrites redacted content in place.
std::optional<Decision> JudgeResponse(const PolicyEngine& engine, const Json& request,
                                      const EvalContext& ctx, Json* response, Exchange* x,
                                      bool fail_open, bool* modified) {
  if (!response->contains("choices") || !(*response)["choices"].is_array()) return std::nullopt;
  for (Json& choice : (*response)["choices"]) {
    if (!choice.is_object() || !choice.contains("message") || !choice["message"].is_object()) {
      continue;
    }
    Json& message = choice["message"];
    if (message.contains("tool_calls") && message["tool_calls"].is_array()) {
      int index = 0;
      for (const Json& call : message["tool_calls"]) {
        const Json* fn = FieldOf(call, "function");
        const Json none = Json::object();
        if (fn == nullptr) fn = &none;
        int64_t t = MonoMicros();
        Decision d = engine.EvaluateToolCall(request, StringField(*fn, "name"),
                                             StringField(*fn, "arguments"), StringField(call, "id"),
                                             index++, ctx);
        x->policy_us += MonoMicros() - t;
        Record(x, d);
        if (d.blocked || (d.error && !fail_open)) return d;
      }
    }
    if (message.contains("content") && message["content"].is_string()) {
      std::string text = message["content"].get<std::string>();
      int64_t t = MonoMicros();
      Decision d =
          engine.EvaluateOutput(request, &text, StringField(choice, "finish_reason"), ctx);
      x->policy_us += MonoMicros() - t;
      Record(x, d);
      if (d.blocked || (d.error && !fail_open)) return d;
      if (!d.error && text != message["content"].get_ref<const std::string&>()) {
        message["content"] = text;
        *modified = true;
      }
    }
  }
  return std::nullopt;
}

asio::awaitable<bool> WriteChunk(beast::tcp_stream& stream, const std::string& data) {
  if (data.empty()) co_return true;
  beast::error_code ec;
  auto chunk = http::make_chunk(asio::buffer(data));
  co_await asio::async_write(stream, chunk, Redirect(ec));
  co_return !ec;
}

// A request that hit a defect in the gateway (an exception): it costs this
// request, never the connection's answer or the process. Fails closed: a
// 500 with its audit record, or, when the stream's header is already out,
// an error frame to end the stream. The connection then closes.
asio::awaitable<Handled> Defect(Gateway* g, beast::tcp_stream& stream, Exchange* x,
                                const std::string& what, Response* res) {
  std::cerr << "kt gateway: internal error in request " << x->request_id << ": " << what
            << std::endl;
  ++g->metrics.internal_errors;
  x->outcome = "error";
  const char* message = "the gateway failed on this request (an internal error, in its log)";
  if (!x->stream_started) {
    *res = ErrorResponse(g, x, 500, "internal_error", "internal_error", message, false);
    co_return Handled::kReply;
  }
  x->error_code = "internal_error";
  x->error_message = message;
  WriteAudit(g, *x);
  std::string frame =
      "data: " + Dump(ErrorEnvelope("internal_error", "internal_error", message, x->request_id)) +
      "\n\n";
  if (co_await WriteChunk(stream, frame)) {
    beast::error_code ec;
    auto last = http::make_chunk_last();
    co_await asio::async_write(stream, last, Redirect(ec));
  }
  co_return Handled::kStreamed;
}

asio::awaitable<void> Sleep(double ms) {
  if (ms <= 0) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
  beast::error_code ec;
  co_await timer.async_wait(Redirect(ec));
}

// ------------------------------------------------------- chat completions

// 429: which limit, and when to come back (seconds, and milliseconds for the
// SDKs that read retry-after-ms).
Response RateLimitResponse(Gateway* g, Exchange* x, const LimitConfig& limit,
                           const LimitCounter::Verdict& v, bool keep_alive) {
  x->outcome = "rate_limited";
  x->decisions.push_back({{"stage", "limit"}, {"limit", limit.name}, {"verdict", "rate_limited"}});
  g->metrics.CountRateLimited(limit.name);
  const double retry = std::max(v.retry_after_s, 0.001);
  Headers h = {{"retry-after", std::to_string(static_cast<int64_t>(std::ceil(retry)))},
               {"retry-after-ms", std::to_string(static_cast<int64_t>(std::ceil(retry * 1000)))}};
  if (limit.requests > 0) {
    h.emplace_back("x-ratelimit-limit-requests", std::to_string(limit.requests));
    h.emplace_back("x-ratelimit-remaining-requests", "0");
    h.emplace_back("x-ratelimit-reset-requests",
                   std::to_string(static_cast<int64_t>(std::ceil(v.reset_s * 1000))) + "ms");
  }
  std::string what = limit.requests > 0 ? std::to_string(limit.requests) + " requests"
                                        : std::to_string(limit.tokens) + " tokens";
  std::string window = limit.window_s == 1      ? "second"
                       : limit.window_s == 60   ? "minute"
                       : limit.window_s == 3600 ? "hour"
                                                : "day";
  std::string message = "rate limit `" + limit.name + "` exceeded: " + what + " per " + window;
  x->status = 429;
  x->error_code = "rate_limit_exceeded";
  x->error_message = message;
  WriteAudit(g, *x);
  Json envelope = ErrorEnvelope("rate_limit", "rate_limit_exceeded", message, x->request_id);
  envelope["error"]["limit"] = limit.name;
  return BodyResponse(x, 429, Dump(envelope), "application/json", keep_alive, h);
}

void CountTokens(const std::vector<std::pair<LimitCounter*, std::string>>& acquired,
                 const Json& usage) {
  if (!usage.is_object() || !usage.contains("total_tokens") ||
      !usage["total_tokens"].is_number_integer()) {
    return;
  }
  const int64_t tokens = usage["total_tokens"].get<int64_t>();
  for (const auto& [counter, key] : acquired) counter->AddTokens(key, tokens, MonoMicros());
}

asio::awaitable<Handled> ChatCompletions(Gateway* g, beast::tcp_stream& stream,
                                         http::request<http::string_body>& req, Exchange* x,
                                         bool keep_alive, Response* res) {
  std::shared_ptr<const PolicyState> state = g->Current();
  const PolicyEngine* engine = state == nullptr ? nullptr : state->engine.get();
  if (engine == nullptr) {
    *res = ErrorResponse(g, x, 503, "unavailable", "not_ready",
                         "the gateway has no policy set loaded yet", keep_alive);
    co_return Handled::kReply;
  }
  x->policy_version = engine->version();
  Json body;
  std::string parse_error;
  if (!ParseJsonStrict(req.body(), &body, &parse_error)) {
    *res = ErrorResponse(g, x, 422, "validation_error", "invalid_json",
                         "the request body is not valid JSON: " + parse_error, keep_alive);
    co_return Handled::kReply;
  }
  std::string invalid = ValidateChatRequest(body);
  if (!invalid.empty()) {
    *res = ErrorResponse(g, x, 422, "validation_error", "invalid_request", invalid, keep_alive);
    co_return Handled::kReply;
  }
  x->model = body["model"].get<std::string>();
  x->stream = body.contains("stream") && body["stream"].is_boolean() && body["stream"].get<bool>();
  if (g->options.audit_prompts) x->prompt = body["messages"];
  const EvalContext ctx = ContextOf(*x, req);

  // Rate limits: before the policies and before any upstream call.
  std::vector<LimitKey> limit_keys;
  std::vector<std::pair<LimitCounter*, std::string>> acquired;
  std::string error;
  if (!engine->LimitsFor(body, ctx, &limit_keys, &error) && !g->options.fail_open) {
    x->outcome = "not_evaluated";
    *res = ErrorResponse(g, x, 500, "policy_error", "policy_evaluation_failed", error, keep_alive);
    co_return Handled::kReply;
  }
  const int64_t now = MonoMicros();
  for (const LimitKey& k : limit_keys) {
    LimitCounter* counter = state->limits[k.limit].get();
    LimitCounter::Verdict v = counter->Acquire(k.key, now);
    if (v.admitted) {
      acquired.emplace_back(counter, k.key);
      continue;
    }
    for (auto& [c, key] : acquired) c->Release(key, now);
    *res = RateLimitResponse(g, x, counter->config(), v, keep_alive);
    co_return Handled::kReply;
  }

  // Input stage: before any upstream call.
  Json forward;
  int64_t t = MonoMicros();
  Decision in = engine->EvaluateInput(body, ctx, &forward);
  x->policy_us += MonoMicros() - t;
  Record(x, in);
  if (in.error) {
    if (!g->options.fail_open) {
      x->outcome = "not_evaluated";
      *res = ErrorResponse(g, x, 500, "policy_error", "policy_evaluation_failed",
                           "the request could not be evaluated: " + in.error_message, keep_alive);
      co_return Handled::kReply;
    }
    x->outcome = "not_evaluated";
  }
  if (in.blocked) {
    const PolicyHit* h = in.blocking();
    x->outcome = "blocked";
    *res = ErrorResponse(g, x, 409, "policy_violation", PolicyCode(*h, "input_blocked"), h->message,
                         keep_alive, h->policy);
    co_return Handled::kReply;
  }

  Route route;
  if (!RouteFor(*g, *engine, x->model, &route)) {
    *res = ErrorResponse(g, x, 404, "invalid_request_error", "model_not_found",
                         "no provider serves the model `" + x->model + "`", keep_alive);
    co_return Handled::kReply;
  }
  x->provider = route.provider;

  // The model's answer: from the mock, or from the upstream.
  std::unique_ptr<UpstreamExchange> ex;
  int64_t up0 = MonoMicros();
  MockReply mock;
  const std::string completion_id = NewId("chatcmpl-");
  if (route.kind == "mock") {
    mock = MockComplete(in.rewritten ? forward : body);
  } else {
    http::request<http::string_body> up{http::verb::post, route.url.path + "/chat/completions", 11};
    up.set(http::field::host, route.url.host);
    up.set(http::field::content_type, "application/json");
    up.set(http::field::user_agent, "kt-gateway");
    up.set(http::field::accept, x->stream ? "text/event-stream" : "application/json");
    // Policies read plain bytes: a compressed answer is refused, not guessed.
    up.set(http::field::accept_encoding, "identity");
    const std::string key = route.api_key.empty() ? x->client_key : route.api_key;
    if (!key.empty()) {
      if (route.auth_header.empty() || route.auth_header == "authorization") {
        up.set(http::field::authorization, "Bearer " + key);
      } else {
        up.set(route.auth_header, key);
      }
    }
    if (!x->traceparent.empty()) up.set("traceparent", x->traceparent);
    up.set("x-request-id", x->request_id);
    up.keep_alive(true);
    // Unchanged requests go byte for byte as the client sent them.
    up.body() = in.rewritten ? Dump(forward) : req.body();
    UpstreamTimeouts timeouts;
    timeouts.connect_ms = g->options.connect_timeout_ms;
    timeouts.first_byte_ms = g->options.first_byte_timeout_ms;
    timeouts.total_ms = route.timeout_ms > 0 ? route.timeout_ms : g->options.total_timeout_ms;
    timeouts.first_byte_ms = std::min(timeouts.first_byte_ms, timeouts.total_ms);
    ex = std::make_unique<UpstreamExchange>(x->pool, route.url, g->options.max_upstream_body_bytes);
    bool started = co_await ex->Start(std::move(up), timeouts);
    if (!started) {
      x->upstream_us = MonoMicros() - up0;
      *res = ErrorResponse(g, x, UpstreamStatusOf(ex->failure()), "upstream_error",
                           UpstreamCodeOf(ex->failure()), ex->error(), keep_alive);
      co_return Handled::kReply;
    }
    if (ex->status() >= 300 && ex->status() <= 399) {
      // Never followed: a redirect would send the request (and its key)
      // somewhere no operator configured.
      x->upstream_us = MonoMicros() - up0;
      ex->Cancel();
      *res = ErrorResponse(g, x, 502, "upstream_error", "upstream_redirect",
                           "the upstream answered " + std::to_string(ex->status()) +
                               " (redirect to `" + ex->header("location").substr(0, 200) +
                               "`); the gateway does not follow redirects",
                           keep_alive);
      co_return Handled::kReply;
    }
    if (ex->status() < 200 || ex->status() > 299) {
      // The upstream's own error, passed through faithfully.
      std::string err_body;
      bool ok = co_await ex->ReadAll(&err_body);
      x->upstream_us = MonoMicros() - up0;
      if (!ok) {
        *res = ErrorResponse(g, x, UpstreamStatusOf(ex->failure()), "upstream_error",
                             UpstreamCodeOf(ex->failure()), ex->error(), keep_alive);
        co_return Handled::kReply;
      }
      x->status = ex->status();
      x->outcome = "upstream_error";
      x->error_code = "upstream_status_" + std::to_string(ex->status());
      WriteAudit(g, *x);
      std::string ct = ex->header("content-type");
      *res =
          BodyResponse(x, ex->status(), std::move(err_body), ct.empty() ? "application/json" : ct,
                       keep_alive, PassThroughHeaders(*ex));
      co_return Handled::kReply;
    }
  }

  if (!x->stream) {
    Json response;
    std::string text;  // the upstream's bytes, sent as they are when nothing changed
    if (ex == nullptr) {
      response = MockResponse(mock, x->model, completion_id, NowMicros() / 1000000);
      co_await Sleep(route.latency_ms);
    } else {
      bool ok = co_await ex->ReadAll(&text);
      x->upstream_us = MonoMicros() - up0;
      if (!ok) {
        *res = ErrorResponse(g, x, UpstreamStatusOf(ex->failure()), "upstream_error",
                             UpstreamCodeOf(ex->failure()), ex->error(), keep_alive);
        co_return Handled::kReply;
      }
      std::string parse_error;
      if (!ParseJsonStrict(text, &response, &parse_error) || !response.is_object()) {
        *res = ErrorResponse(
            g, x, 502, "upstream_error", "invalid_upstream_response",
            "the upstream response is not a JSON object" +
                (parse_error.empty() ? std::string() : ": " + parse_error),
            keep_alive);
        co_return Handled::kReply;
      }
      // What the stages cannot read must not reach the client unjudged.
      if (std::string shape = ValidateCompletion(response); !shape.empty()) {
        *res = ErrorResponse(g, x, 502, "upstream_error", "invalid_upstream_response",
                             "the upstream response cannot be judged: " + shape, keep_alive);
        co_return Handled::kReply;
      }
    }
    x->upstream_us = MonoMicros() - up0;
    if (response.contains("usage") && response["usage"].is_object()) x->usage = response["usage"];
    bool modified = ex == nullptr;
    std::optional<Decision> blocked =
        JudgeResponse(*engine, body, ctx, &response, x, g->options.fail_open, &modified);
    if (blocked && blocked->error && !blocked->blocked) {
      x->outcome = "not_evaluated";
      *res = ErrorResponse(g, x, 500, "policy_error", "policy_evaluation_failed",
                           "the response could not be evaluated: " + blocked->error_message,
                           keep_alive);
      co_return Handled::kReply;
    }
    if (blocked) {
      const PolicyHit* h = blocked->blocking();
      x->outcome = "blocked";
      *res = ErrorResponse(
          g, x, 409, "policy_violation",
          PolicyCode(*h, blocked->stage == "tool_call" ? "tool_blocked" : "output_blocked"),
          h->message, keep_alive, h->policy);
      co_return Handled::kReply;
    }
    x->status = 200;
    CountTokens(acquired, x->usage);
    WriteAudit(g, *x);
    *res = BodyResponse(x, 200, modified ? Dump(response) : std::move(text), "application/json",
                        keep_alive, ex == nullptr ? Headers{} : PassThroughHeaders(*ex));
    co_return Handled::kReply;
  }

  // Streamed: headers now, then frames as they are judged.
  x->stream_started = true;
  http::response<http::empty_body> head{http::status::ok, 11};
  SetCommonHeaders(&head, *x);
  head.set(http::field::content_type, "text/event-stream; charset=utf-8");
  head.set(http::field::cache_control, "no-cache");
  if (ex != nullptr) {
    for (const auto& [k, v] : PassThroughHeaders(*ex)) head.set(k, v);
  }
  head.keep_alive(keep_alive);
  head.chunked(true);
  http::response_serializer<http::empty_body> sr{head};
  beast::error_code ec;
  co_await http::async_write_header(stream, sr, Redirect(ec));
  x->status = 200;
  StreamRelay relay(g, *engine, body, ctx, x);
  ++g->metrics.active_streams;
  struct StreamGauge {
    Gateway* g;
    ~StreamGauge() { --g->metrics.active_streams; }
  } gauge{g};
  bool client_ok = !ec;
  bool open = client_ok;
  if (ex == nullptr) {
    bool include_usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                         body["stream_options"].value("include_usage", false);
    std::vector<std::string> events = MockStream(
        mock, x->model, completion_id, NowMicros() / 1000000,
        route.chunk_size > 0 ? static_cast<std::size_t>(route.chunk_size) : 16, include_usage);
    for (std::size_t i = 0; open && i < events.size(); ++i) {
      co_await Sleep(route.latency_ms);
      std::string out;
      open = relay.OnEvent(SseEvent{"", events[i]}, &out);
      client_ok = co_await WriteChunk(stream, out);
      open = open && client_ok;
    }
  } else {
    SseParser parser(1 << 20);
    std::vector<SseEvent> events;
    bool clean = true;
    while (open) {
      std::string bytes;
      bool more = co_await ex->ReadSome(&bytes);
      std::string out;
      if (!parser.Feed(bytes, &events)) {
        relay.UpstreamFailed(UpstreamFailure::kProtocol, "an upstream stream event is too large",
                             &out);
        open = false;
      }
      for (const SseEvent& ev : events) {
        if (!open) break;
        open = relay.OnEvent(ev, &out);
      }
      events.clear();
      if (open && !more) {
        if (ex->failure() != UpstreamFailure::kNone) {
          relay.UpstreamFailed(ex->failure(), ex->error(), &out);
          clean = false;
        } else {
          relay.OnEnd(clean, &out);
        }
        open = false;
      }
      client_ok = co_await WriteChunk(stream, out);
      if (!client_ok) {
        // The client went away: stop the upstream's work too.
        ex->Cancel();
        x->outcome = "client_disconnected";
        break;
      }
    }
    x->upstream_us = MonoMicros() - up0;
    if (ex->failure() == UpstreamFailure::kNone && !ex->done()) {
      if (relay.finished() && client_ok) {
        // The stream ended normally: read the upstream's last bytes (the
        // chunked terminator) so its connection goes back to the pool.
        std::string rest;
        for (int i = 0; i < 4 && !ex->done(); ++i) {
          bool more = co_await ex->ReadSome(&rest);
          if (!more) break;
        }
      }
      if (!ex->done()) ex->Cancel();  // a block or a disconnect: stop the upstream's work
    }
  }
  x->upstream_us = MonoMicros() - up0;
  if (!client_ok && x->outcome == "allowed") x->outcome = "client_disconnected";
  CountTokens(acquired, x->usage);
  WriteAudit(g, *x);
  if (client_ok) {
    auto last = http::make_chunk_last();
    co_await asio::async_write(stream, last, Redirect(ec));
  }
  co_return client_ok&& keep_alive ? Handled::kStreamedOpen : Handled::kStreamed;
}

Response ModelsResponse(Gateway* g, Exchange* x, bool keep_alive) {
  std::shared_ptr<const PolicyState> state = g->Current();
  const PolicyEngine* engine = state == nullptr ? nullptr : state->engine.get();
  Json data = Json::array();
  if (engine != nullptr) {
    for (const ProviderConfig& p : engine->providers()) {
      for (const std::string& m : p.models) {
        data.push_back({{"id", m}, {"object", "model"}, {"created", 0}, {"owned_by", p.name}});
      }
    }
  }
  Json list = {{"object", "list"}, {"data", std::move(data)}};
  return BodyResponse(x, 200, Dump(list), "application/json", keep_alive);
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

}  // namespace

std::shared_ptr<PolicyState> LoadState(const Options& options, const PolicyState* previous,
                                       std::string* error) {
  kt::Options compile;
  compile.stdlib_paths = options.stdlib_paths;
  compile.object_cache_dir = options.object_cache_dir;
  compile.native = !options.interpret;
  std::vector<Diagnostic> missing;
  std::vector<std::string> files;
  for (std::string& f : CollectPolicyFiles(options.policy_paths, &missing)) {
    // A file named twice (itself, then in its directory) loads once, first.
    if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(std::move(f));
  }
  SourceMap sources;
  if (!missing.empty()) {
    *error = RenderText(missing, sources, false);
    return nullptr;
  }
  LintResult lint;
  std::shared_ptr<const PolicyEngine> engine = PolicyEngine::Load(files, compile, &sources, &lint);
  if (engine == nullptr) {
    *error = RenderText(lint.diagnostics, sources, false);
    return nullptr;
  }
  auto state = std::make_shared<PolicyState>();
  state->engine = engine;
  state->files = files.size();
  for (const LimitConfig& l : engine->limits()) {
    std::shared_ptr<LimitCounter> counter;
    // An unchanged limit keeps its counters across a reload: a reload must
    // not hand every caller a fresh budget.
    if (previous != nullptr) {
      for (const auto& old : previous->limits) {
        const LimitConfig& c = old->config();
        if (c.name == l.name && c.requests == l.requests && c.tokens == l.tokens &&
            c.window_s == l.window_s && c.keyed == l.keyed) {
          counter = old;
        }
      }
    }
    state->limits.push_back(counter != nullptr ? counter : std::make_shared<LimitCounter>(l));
  }
  return state;
}

Json ProgramJson(const PolicyEngine& engine) {
  const PolicyEngine::ProgramInfo& p = engine.program_info();
  Json j = {{"engine", p.native ? "native" : "interpreter"},
            {"from_cache", p.from_cache},
            {"load_ms", p.load_ms},
            {"check_ms", p.check_ms},
            {"codegen_ms", p.codegen_ms},
            {"compile_ms", p.compile_ms},
            {"link_ms", p.link_ms}};
  if (!p.cache_key.empty()) j["cache_key"] = p.cache_key;
  if (!p.note.empty()) j["note"] = p.note;
  return j;
}

std::string ProgramSummary(const PolicyEngine& engine) {
  const PolicyEngine::ProgramInfo& p = engine.program_info();
  char buf[256];
  if (!p.native) {
    std::snprintf(buf, sizeof buf, "interpreted: loaded in %.1f ms; ", p.load_ms);
    return buf + p.note;
  }
  if (p.from_cache) {
    std::snprintf(buf, sizeof buf,
                  "native code from the object cache: loaded in %.1f ms (parse + check %.1f ms, "
                  "patterns + program %.1f ms), compilation skipped",
                  p.load_ms, p.check_ms, p.load_ms - p.check_ms);
  } else {
    std::snprintf(buf, sizeof buf,
                  "native code, compiled: loaded in %.1f ms (parse + check %.1f ms, patterns + "
                  "program %.1f ms, of which program codegen %.2f ms, compile %.1f ms, link %.2f ms)",
                  p.load_ms, p.check_ms, p.load_ms - p.check_ms, p.codegen_ms, p.compile_ms,
                  p.link_ms);
  }
  std::string out = buf;
  if (!p.note.empty()) out += "; " + p.note;
  return out;
}

bool Reload(Gateway* g, std::string* error) {
  std::lock_guard serial(g->reload_mu);
  std::shared_ptr<const PolicyState> old = g->Current();
  std::shared_ptr<PolicyState> fresh = LoadState(g->options, old.get(), error);
  const bool ok = fresh != nullptr;
  Json record = {{"ok", ok}, {"at_us", NowMicros()}};
  if (ok) {
    record["policy_version"] = fresh->engine->version();
    record["policies"] = fresh->engine->policy_count();
    record["program"] = ProgramJson(*fresh->engine);
    g->Install(std::move(fresh));
  } else {
    record["error"] = *error;
    if (old != nullptr) record["kept_policy_version"] = old->engine->version();
  }
  {
    std::lock_guard lock(g->last_reload_mu);
    g->last_reload = record;
  }
  g->metrics.CountReload(ok);
  Json event = record;
  event["event"] = "reload";
  event["ts_us"] = NowMicros();
  g->audit.Write(std::move(event));
  return ok;
}

Json HealthJson(Gateway* g) {
  std::shared_ptr<const PolicyState> st = g->Current();
  Json h = {{"status", st == nullptr ? "starting" : "ok"},
            {"version", std::string(Version())},
            {"uptime_s", static_cast<double>(NowMicros() - g->started_us) / 1e6}};
  if (st != nullptr) {
    h["policy_version"] = st->engine->version();
    h["policies"] = st->engine->policy_count();
    h["policy_files"] = st->files;
    h["program"] = ProgramJson(*st->engine);
    h["limits"] = st->engine->limits().size();
    Json providers = Json::array();
    if (!g->options.upstream.empty()) {
      providers.push_back(
          {{"name", "upstream"}, {"kind", "openai"}, {"base_url", g->options.upstream}});
    }
    for (const ProviderConfig& p : st->engine->providers()) {
      providers.push_back({{"name", p.name}, {"kind", p.kind}, {"models", p.models}});
    }
    h["providers"] = providers;
  }
  {
    std::lock_guard lock(g->last_reload_mu);
    if (!g->last_reload.is_null()) {
      h["last_reload"] = g->last_reload;
      // Serving an older set than the files say is worth a dashboard's
      // attention.
      if (!g->last_reload.value("ok", true)) h["status"] = "degraded";
    }
  }
  h["audit"] = {{"path", g->options.audit_log},
                {"head", g->audit.head()},
                {"lines_written", g->audit.written()}};
  h["active_streams"] = g->metrics.active_streams.load();
  h["in_flight"] = g->in_flight.load();
  return h;
}

bool RouteFor(const Gateway& g, const PolicyEngine& engine, const std::string& model, Route* out) {
  if (!g.options.upstream.empty()) {
    Route r;
    r.provider = "upstream";
    r.kind = "openai";
    if (!ParseUrl(g.options.upstream, &r.url)) return false;
    r.api_key = g.options.upstream_api_key;
    *out = r;
    return true;
  }
  for (const ProviderConfig& p : engine.providers()) {
    for (const std::string& glob : p.models) {
      if (!GlobMatch(glob, model)) continue;
      Route r;
      r.provider = p.name;
      r.kind = p.kind;
      r.api_key = p.api_key;
      r.auth_header = p.auth_header;
      r.chunk_size = p.chunk_size;
      r.latency_ms = p.latency_ms;
      r.timeout_ms = p.timeout_ms;
      if (p.kind != "mock") {
        std::string base = p.base_url;
        if (base.empty()) {
          base =
              p.kind == "anthropic" ? "https://api.anthropic.com/v1" : "https://api.openai.com/v1";
        }
        if (!ParseUrl(base, &r.url)) continue;
      }
      *out = r;
      return true;
    }
  }
  return false;
}

asio::awaitable<void> Session(tcp::socket socket, Gateway* g, UpstreamPool* pool) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
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
  } leave{g, &stream};
  bool first = true;
  while (!g->stopping.load()) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(g->options.max_header_bytes));
    parser.body_limit(g->options.max_body_bytes);
    beast::error_code ec;
    {
      std::lock_guard lock(g->idle_mu);
      g->idle.insert(&stream);
    }
    // Waiting for the next request on a kept-alive connection is idle time;
    // reading it, once it starts, is bounded by the client timeout.
    stream.expires_after(std::chrono::milliseconds(
        static_cast<int64_t>(first ? g->options.client_timeout_ms : g->options.idle_timeout_ms)));
    std::string line_error = co_await ReadHeader(stream, buffer, parser, ec);
    {
      std::lock_guard lock(g->idle_mu);
      g->idle.erase(&stream);
    }
    first = false;
    Exchange x;
    x.pool = pool;
    x.t0 = MonoMicros();
    x.request_id = NewId("req_");
    if (ec == http::error::header_limit) {
      // What was parsed of the request line, so the refusal is audited too.
      x.method = std::string(parser.get().method_string());
      x.path = std::string(parser.get().target());
      if (x.path.empty()) x.path = "(unparsed)";
      x.correlation_id = NewId("corr_");
      Response r = ErrorResponse(
          g, &x, 431, "validation_error", "headers_too_large",
          "the request headers exceed " + std::to_string(g->options.max_header_bytes) + " bytes",
          false);
      co_await Write(stream, r);
      break;
    }
    // A Content-Length over the limit fails the header read already.
    // A request whose headers started but never finished gets its 408 below;
    // an idle keep-alive connection that times out just closes.
    const bool started = buffer.size() > 0;
    if (ec && ec != http::error::body_limit && !IsMalformed(ec) &&
        !(ec == beast::error::timeout && started)) {
      break;  // closed, or idle
    }
    std::string framing = !line_error.empty() ? line_error : ec ? "" : FramingError(parser.get());
    stream.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(g->options.client_timeout_ms)));
    auto& head = parser.get();
    if (!ec && framing.empty() && !parser.is_done() &&
        beast::iequals(head[http::field::expect], "100-continue")) {
      // A client that asks first (curl, for large bodies) would otherwise
      // wait its timeout (a second for curl) before sending the body.
      http::response<http::empty_body> go_on{http::status::continue_, 11};
      co_await http::async_write(stream, go_on, Redirect(ec));
    }
    if (!ec && framing.empty()) {
      co_await http::async_read(stream, buffer, parser, Redirect(ec));
    }
    // Ids and correlation headers first: every answer, errors included,
    // carries them.
    auto h = [&](const char* name) {
      auto it = head.find(name);
      return it == head.end() ? std::string() : std::string(it->value());
    };
    x.method = std::string(head.method_string());
    x.path = std::string(head.target());
    if (std::string rid = h("x-request-id"); !rid.empty() && rid.size() <= 200) x.request_id = rid;
    x.correlation_id = h("x-correlation-id");
    if (x.correlation_id.empty() || x.correlation_id.size() > 200)
      x.correlation_id = NewId("corr_");
    x.request_source = h("x-request-source").substr(0, 200);
    x.traceparent = h("traceparent").substr(0, 200);
    x.client_key = BearerToken(h("authorization"));
    if (x.client_key.empty()) x.client_key = h("api-key");
    x.key_fingerprint = KeyFingerprint(x.client_key);
    if (ec == http::error::body_limit) {
      Response r = ErrorResponse(
          g, &x, 413, "validation_error", "request_too_large",
          "the request body exceeds " + std::to_string(g->options.max_body_bytes) + " bytes",
          false);
      co_await Write(stream, r);
      co_await Linger(stream, buffer);
      co_return;
    }
    if (!framing.empty() || IsMalformed(ec)) {
      // Not one well-framed request: answered, audited, and the connection
      // closed (what follows cannot be trusted to start a request).
      if (x.path.empty()) x.path = "(unparsed)";
      const bool te = framing.rfind("Transfer-Encoding `", 0) == 0;  // an unknown coding
      if (framing.empty()) {
        framing = ec == http::error::partial_message
                      ? "the connection closed before the request was complete"
                      : "malformed HTTP request: " + ec.message();
      }
      Response r =
          ErrorResponse(g, &x, te ? 501 : 400, "invalid_request_error",
                        te ? "unsupported_transfer_encoding" : "bad_request", framing, false);
      co_await Write(stream, r);
      co_await Linger(stream, buffer);
      co_return;
    }
    if (ec == beast::error::timeout) {
      if (x.path.empty()) x.path = "(unparsed)";  // stalled in the request line: audited too
      Response r = ErrorResponse(g, &x, 408, "validation_error", "request_timeout",
                                 "the request was not received in time", false);
      co_await Write(stream, r);
      break;
    }
    if (ec) break;
    auto& req = parser.get();
    bool keep_alive = req.keep_alive() && !g->stopping.load();
    std::string target = RoutePath(x.path);
    Response res;
    Handled handled = Handled::kReply;
    if (target == "/v1/chat/completions" || target == "/chat/completions") {
      if (req.method() != http::verb::post) {
        res = ErrorResponse(g, &x, 405, "invalid_request_error", "method_not_allowed",
                            "use POST for chat completions", keep_alive, {}, {{"allow", "POST"}});
      } else if (g->in_flight.load() >= g->options.max_concurrency) {
        res = ErrorResponse(g, &x, 503, "unavailable", "overloaded", "too many requests in flight",
                            keep_alive, {}, {{"retry-after", "1"}});
      } else {
        ++g->in_flight;
        struct Done {
          Gateway* g;
          ~Done() { --g->in_flight; }
        } done{g};
        std::string defect;
        try {
          handled = co_await ChatCompletions(g, stream, req, &x, keep_alive, &res);
        } catch (const std::exception& e) {
          defect = e.what();
        }
        if (!defect.empty()) {
          handled = co_await Defect(g, stream, &x, defect, &res);
        }
      }
    } else if (target == "/v1/models" && req.method() == http::verb::get) {
      x.path.clear();  // not audited
      res = ModelsResponse(g, &x, keep_alive);
    } else if (target == "/health" && req.method() == http::verb::get) {
      x.path.clear();
      res = BodyResponse(&x, 200, Dump(HealthJson(g)), "application/json", keep_alive);
    } else if (target == "/metrics" && req.method() == http::verb::get) {
      x.path.clear();
      std::shared_ptr<const PolicyState> st = g->Current();
      res = BodyResponse(
          &x, 200,
          g->metrics.Render(std::string(Version()), st == nullptr ? "" : st->engine->version()),
          "text/plain; version=0.0.4; charset=utf-8", keep_alive);
    } else if (target == "/admin/reload" && req.method() == http::verb::post) {
      x.path.clear();
      beast::error_code rec;
      auto remote = stream.socket().remote_endpoint(rec);
      bool loopback = !rec && remote.address().is_loopback();
      bool token_ok = !g->options.admin_token.empty() &&
                      ConstantTimeEqual(x.client_key, g->options.admin_token);
      if (!loopback && !token_ok) {
        res =
            ErrorResponse(g, &x, 403, "invalid_request_error", "forbidden",
                          "reloads are accepted from loopback, or with --admin-token", keep_alive);
      } else {
        std::string error;
        bool reloaded = Reload(g, &error);
        Json body = {{"ok", reloaded}};
        std::shared_ptr<const PolicyState> st = g->Current();
        if (st != nullptr) body["policy_version"] = st->engine->version();
        if (!reloaded) body["error"] = error;
        res = BodyResponse(&x, reloaded ? 200 : 422, Dump(body), "application/json", keep_alive);
      }
    } else if (target == "/healthz") {
      x.path.clear();
      res = BodyResponse(&x, 200, R"({"status":"ok"})", "application/json", keep_alive);
    } else if (target == "/readyz") {
      x.path.clear();
      bool ready = g->Current() != nullptr;
      res = BodyResponse(&x, ready ? 200 : 503,
                         ready ? R"({"status":"ready"})" : R"({"status":"not ready"})",
                         "application/json", keep_alive);
    } else {
      x.path.clear();
      res = ErrorResponse(g, &x, 404, "invalid_request_error", "not_found",
                          "no route for " + std::string(req.method_string()) + " " + target,
                          keep_alive);
    }
    if (handled == Handled::kStreamed) break;
    if (handled == Handled::kStreamedOpen) continue;
    bool ok = co_await Write(stream, res);
    if (!ok) break;
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.socket().close(ec);
}

}  // namespace kt::gateway
