#include "gateway/internal/model_call.h"

#include <algorithm>

#include "gateway/internal/anthropic.h"
#include "gateway/internal/exchange.h"
#include "gateway/internal/mock.h"

namespace kt::gateway {

namespace {

// What each kind speaks when its provider does not say: OpenAI serves every
// surface; the mock serves chat and embeddings (the rest is translated, which
// is what `make run` then shows); Anthropic, its Messages API (every OpenAI
// surface reaches it through chat).
std::vector<std::string> DefaultApis(std::string_view kind) {
  if (kind == "openai") return {"chat", "responses", "embeddings", "completions"};
  if (kind == "mock") return {"chat", "embeddings"};
  return {"messages"};  // anthropic: the Messages API
}

Route ProviderRoute(const ProviderConfig& p) {
  Route r;
  r.provider = p.name;
  r.kind = p.kind;
  r.apis = p.apis.empty() ? DefaultApis(p.kind) : p.apis;
  r.api_key = p.api_key;
  r.auth_header = p.auth_header;
  r.chunk_size = p.chunk_size;
  r.latency_ms = p.latency_ms;
  r.timeout_ms = p.timeout_ms;
  return r;
}

// An upstream over HTTP: the request with the route's credentials, the
// client's trace context and the gateway's bounds.
class HttpCall : public ModelCall {
 public:
  HttpCall(Gateway* g, const Route& route, Exchange* x)
      : g_(g), route_(route), x_(x), ex_(x->pool, route.url, g->options.max_upstream_body_bytes) {}

  asio::awaitable<bool> Start(ModelRequest* request) override {
    http::request<http::string_body> up{http::verb::post, route_.url.path + request->path, 11};
    up.set(http::field::host, route_.url.host);
    up.set(http::field::content_type, "application/json");
    up.set(http::field::user_agent, "kt-gateway");
    up.set(http::field::accept, request->stream ? "text/event-stream" : "application/json");
    // Policies read plain bytes: a compressed answer is refused, not guessed.
    up.set(http::field::accept_encoding, "identity");
    const std::string& key = route_.api_key.empty() ? x_->client_key : route_.api_key;
    if (route_.kind == "anthropic") {
      // The Messages API's own headers: its key header and version.
      up.set("anthropic-version", kAnthropicVersion);
      if (!x_->anthropic_beta.empty()) up.set("anthropic-beta", x_->anthropic_beta);
    }
    const bool x_api_key = route_.kind == "anthropic" && route_.auth_header.empty();
    if (!key.empty() && x_api_key) {
      up.set("x-api-key", key);
    } else if (!key.empty()) {
      if (route_.auth_header.empty() || route_.auth_header == "authorization") {
        up.set(http::field::authorization, "Bearer " + key);
      } else {
        up.set(route_.auth_header, key);
      }
    }
    if (!x_->traceparent.empty()) up.set("traceparent", x_->traceparent);
    up.set("x-request-id", x_->request_id);
    up.keep_alive(true);
    up.body() = std::move(request->body);
    UpstreamTimeouts timeouts;
    timeouts.connect_ms = g_->options.connect_timeout_ms;
    timeouts.total_ms = route_.timeout_ms > 0 ? route_.timeout_ms : g_->options.total_timeout_ms;
    timeouts.first_byte_ms = std::min(g_->options.first_byte_timeout_ms, timeouts.total_ms);
    const bool started = co_await ex_.Start(std::move(up), timeouts);
    co_return started;
  }
  int status() const override { return ex_.status(); }
  std::string header(std::string_view name) const override { return ex_.header(name); }
  asio::awaitable<bool> ReadSome(std::string* out) override { return ex_.ReadSome(out); }
  asio::awaitable<bool> ReadAll(std::string* out) override { return ex_.ReadAll(out); }
  bool done() const override { return ex_.done(); }
  UpstreamFailure failure() const override { return ex_.failure(); }
  const std::string& error() const override { return ex_.error(); }
  void Cancel() override { ex_.Cancel(); }

 private:
  Gateway* g_;
  Route route_;
  Exchange* x_;
  UpstreamExchange ex_;
};

asio::awaitable<void> Sleep(double ms) {
  if (ms <= 0) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
  beast::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// The built-in mock, answering in process as an upstream would over the
// wire: a JSON body, or SSE frames one per read after the route's latency.
class MockCall : public ModelCall {
 public:
  explicit MockCall(const Route& route) : route_(route) {}

  asio::awaitable<bool> Start(ModelRequest* request) override {
    Json body = Json::parse(request->body, nullptr, false);
    const std::string model = body.is_object() ? StringField(body, "model") : "";
    if (request->path == "/embeddings") {
      frames_.push_back(Dump(MockEmbeddings(body)));
    } else if (request->path != "/chat/completions") {
      status_ = 404;
      frames_.push_back(Dump(ErrorEnvelope("invalid_request_error", "not_found",
                                           "the mock serves chat completions and embeddings", "")));
    } else if (!request->stream) {
      frames_.push_back(Dump(MockResponse(MockComplete(body), model, NewId("chatcmpl-"),
                                          NowMicros() / 1000000)));
    } else {
      const Json* so = FieldOf(body, "stream_options");
      const bool usage = so != nullptr && FieldOf(*so, "include_usage") != nullptr &&
                         (*so)["include_usage"].is_boolean() && (*so)["include_usage"].get<bool>();
      const std::size_t chunk = route_.chunk_size > 0 ? route_.chunk_size : 16;
      for (std::string& e : MockStream(MockComplete(body), model, NewId("chatcmpl-"),
                                       NowMicros() / 1000000, chunk, usage)) {
        frames_.push_back("data: " + e + "\n\n");
      }
      stream_ = true;
    }
    co_return true;
  }
  int status() const override { return status_; }
  std::string header(std::string_view name) const override {
    if (name != "content-type") return "";
    return stream_ ? "text/event-stream" : "application/json";
  }
  asio::awaitable<bool> ReadSome(std::string* out) override {
    if (next_ >= frames_.size()) co_return false;
    // A stream's latency comes before each chunk; a JSON answer's once.
    co_await Sleep(route_.latency_ms);
    *out += frames_[next_++];
    co_return next_ < frames_.size();
  }
  asio::awaitable<bool> ReadAll(std::string* out) override {
    co_await Sleep(route_.latency_ms);
    for (; next_ < frames_.size(); ++next_) *out += frames_[next_];
    co_return true;
  }
  bool done() const override { return next_ >= frames_.size(); }
  UpstreamFailure failure() const override { return UpstreamFailure::kNone; }
  const std::string& error() const override { return error_; }
  void Cancel() override { next_ = frames_.size(); }

 private:
  Route route_;
  int status_ = 200;
  bool stream_ = false;
  std::vector<std::string> frames_;
  std::size_t next_ = 0;
  std::string error_;
};

}  // namespace

bool RouteFor(const Gateway& g, const PolicyEngine& engine, const std::string& model, Route* out) {
  if (!g.options.upstream.empty()) {
    Route r;
    r.provider = "upstream";
    r.kind = "openai";
    r.apis = g.options.upstream_apis.empty() ? DefaultApis("openai") : g.options.upstream_apis;
    if (!ParseUrl(g.options.upstream, &r.url)) return false;
    r.api_key = g.options.upstream_api_key;
    *out = r;
    return true;
  }
  for (const ProviderConfig& p : engine.providers()) {
    for (const std::string& glob : p.models) {
      if (!GlobMatch(glob, model)) continue;
      Route r = ProviderRoute(p);
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

bool Speaks(const Route& route, std::string_view api) {
  return std::find(route.apis.begin(), route.apis.end(), api) != route.apis.end();
}

std::unique_ptr<ModelCall> OpenCall(Gateway* g, const Route& route, Exchange* x) {
  if (g->open_call) return g->open_call(g, route, x);
  if (route.kind == "mock") return std::make_unique<MockCall>(route);
  return std::make_unique<HttpCall>(g, route, x);
}

}  // namespace kt::gateway
