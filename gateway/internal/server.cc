// HTTP handling: one coroutine per client connection (HTTP/1.1 keep-alive),
// and the chat-completions pipeline: validate → input stage → route →
// upstream or mock → tool-call and output stages → client, with an audit
// record written before the response completes.
#include "gateway/internal/server.h"

#include <algorithm>
#include <optional>

#include "gateway/internal/mock.h"
#include "gateway/internal/sse.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

using Json = nlohmann::json;
using tcp = asio::ip::tcp;

namespace {

auto Redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Everything the audit trail and the response headers need about one request.
struct Exchange {
  UpstreamPool* pool = nullptr;  // the session's thread's upstream connections
  std::string request_id;
  std::string correlation_id;
  std::string request_source;
  std::string traceparent;
  std::string client_key;  // the bearer token; never logged
  std::string key_fingerprint;
  std::string method;
  std::string path;
  std::string model;
  std::string provider;
  bool stream = false;
  int status = 0;
  std::string outcome = "allowed";  // allowed | blocked | error | not_evaluated | …
  std::string error_code;
  std::string error_message;
  int64_t t0 = 0;
  int64_t policy_us = 0;
  int64_t upstream_us = 0;
  Json usage;
  Json decisions = Json::array();
  std::string policy_version;
  bool redacted = false;
  bool stream_capped = false;
  std::size_t max_held = 0;
  Json prompt;  // only with --audit-prompts
};

EvalContext ContextOf(const Exchange& x, const http::request<http::string_body>& req) {
  EvalContext ctx;
  for (const auto& f : req) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name == "authorization" || name == "api-key" || name == "x-api-key") continue;
    ctx.headers[name] = std::string(f.value());
  }
  ctx.headers["x-correlation-id"] = x.correlation_id;
  ctx.api_key_id = x.key_fingerprint;
  return ctx;
}

void Record(Exchange* x, const Decision& d) {
  for (const PolicyHit& h : d.hits) {
    Json spans = Json::array();
    for (const MatchSpan& m : h.spans) {
      spans.push_back(
          {{"field", m.field}, {"start", m.start}, {"end", m.end}, {"pattern", m.pattern}});
    }
    x->decisions.push_back({{"stage", d.stage},
                            {"policy", h.policy},
                            {"action", h.action},
                            {"mode", h.enforced ? "enforce" : "observe"},
                            {"enforced", h.enforced},
                            {"verdict", h.action == "block" && h.enforced ? "block" : h.action},
                            {"code", h.code},
                            {"spans", std::move(spans)}});
    if (h.action == "redact" && h.enforced) x->redacted = true;
  }
  if (d.error) {
    x->decisions.push_back(
        {{"stage", d.stage}, {"verdict", "not_evaluated"}, {"error", d.error_message}});
  }
}

void WriteAudit(Gateway* g, const Exchange& x) {
  const int64_t now = NowMicros();
  auto base = [&](const char* event) {
    return Json{{"ts_us", now},
                {"event", event},
                {"request_id", x.request_id},
                {"correlation_id", x.correlation_id},
                {"request_source", x.request_source},
                {"model", x.model},
                {"provider", x.provider}};
  };
  std::vector<Json> events;
  for (const Json& d : x.decisions) {
    Json e = base("decision");
    e.update(d);
    events.push_back(std::move(e));
  }
  Json e = base("request");
  e["method"] = x.method;
  e["path"] = x.path;
  e["stream"] = x.stream;
  e["status"] = x.status;
  e["outcome"] = x.outcome;
  if (!x.error_code.empty()) e["error"] = {{"code", x.error_code}, {"message", x.error_message}};
  e["key_fingerprint"] = x.key_fingerprint;
  e["policy_version"] = x.policy_version;
  e["redacted"] = x.redacted;
  const int64_t total = MonoMicros() - x.t0;
  e["latency_us"] = {{"policy", x.policy_us}, {"upstream", x.upstream_us}, {"total", total}};
  if (!x.usage.is_null()) e["usage"] = x.usage;
  if (x.stream) e["stream_hold"] = {{"max_held_bytes", x.max_held}, {"capped", x.stream_capped}};
  if (!x.prompt.is_null()) e["prompt"] = x.prompt;
  events.push_back(std::move(e));
  g->audit.WriteAll(std::move(events));

  // Metrics from the same facts as the audit record.
  g->metrics.CountRequest(x.status, x.model, x.provider);
  for (const Json& d : x.decisions) {
    if (d.contains("policy")) {
      g->metrics.CountDecision(d.value("policy", ""), d.value("action", ""), d.value("mode", ""));
    }
  }
  if (x.error_code.rfind("upstream_", 0) == 0) g->metrics.CountUpstreamError(x.error_code);
  g->metrics.policy_latency.Observe(static_cast<double>(x.policy_us) / 1e6);
  if (x.upstream_us > 0)
    g->metrics.upstream_latency.Observe(static_cast<double>(x.upstream_us) / 1e6);
  g->metrics.total_latency.Observe(static_cast<double>(total) / 1e6);
  if (x.stream_capped) ++g->metrics.hold_capped;
}

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

// What a handler did: filled in the response for the caller to write, or
// streamed its own (and the connection ends).
enum class Handled { kReply, kStreamed, kStreamedOpen };

int UpstreamStatusOf(UpstreamFailure f) { return f == UpstreamFailure::kTimeout ? 504 : 502; }
const char* UpstreamCodeOf(UpstreamFailure f) {
  switch (f) {
    case UpstreamFailure::kTimeout:
      return "upstream_timeout";
    case UpstreamFailure::kConnect:
      return "upstream_unreachable";
    case UpstreamFailure::kTooLarge:
      return "upstream_response_too_large";
    default:
      return "upstream_error";
  }
}

// Headers of an upstream error response that clients act on.
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

// Checks what the pipeline relies on; the message names the field.
std::string ValidateChatRequest(const Json& body) {
  if (!body.is_object()) return "the request body must be a JSON object";
  if (!body.contains("model") || !body["model"].is_string() ||
      body["model"].get<std::string>().empty()) {
    return "`model` must be a non-empty string";
  }
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return "`messages` must be a non-empty list";
  }
  for (std::size_t i = 0; i < body["messages"].size(); ++i) {
    const Json& m = body["messages"][i];
    std::string at = "`messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return at + "` must be an object";
    if (!m.contains("role") || !m["role"].is_string()) return at + ".role` must be a string";
    if (m.contains("content") && !m["content"].is_string() && !m["content"].is_array() &&
        !m["content"].is_null()) {
      return at + ".content` must be a string, a list of parts or null";
    }
  }
  if (body.contains("stream") && !body["stream"].is_boolean() && !body["stream"].is_null()) {
    return "`stream` must be a boolean";
  }
  if (body.contains("tools") && !body["tools"].is_array()) return "`tools` must be a list";
  return "";
}

std::string PolicyCode(const PolicyHit& h, const char* fallback) {
  return h.code.empty() ? fallback : h.code;
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
        const Json fn = call.value("function", Json::object());
        int64_t t = MonoMicros();
        Decision d = engine.EvaluateToolCall(request, fn.value("name", ""),
                                             fn.contains("arguments") && fn["arguments"].is_string()
                                                 ? fn["arguments"].get<std::string>()
                                                 : "",
                                             call.value("id", ""), index++, ctx);
        x->policy_us += MonoMicros() - t;
        Record(x, d);
        if (d.blocked || (d.error && !fail_open)) return d;
      }
    }
    if (message.contains("content") && message["content"].is_string()) {
      std::string text = message["content"].get<std::string>();
      int64_t t = MonoMicros();
      Decision d = engine.EvaluateOutput(request, &text,
                                         choice.value("finish_reason", Json("")).is_string()
                                             ? choice["finish_reason"].get<std::string>()
                                             : "",
                                         ctx);
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

// ------------------------------------------------------------ stream relay

// Relays one streamed completion, evaluating it on the way.
class StreamRelay {
 public:
  StreamRelay(Gateway* g, const PolicyEngine& engine, const Json& request, EvalContext ctx,
              Exchange* x)
      : g_(g), engine_(engine), request_(request), ctx_(std::move(ctx)), x_(x) {}

  // Turns one upstream event into the frames to send (appended to *out).
  // False when the stream must end: `*out` then ends with the error frame.
  bool OnEvent(const SseEvent& ev, std::string* out) {
    if (ev.data == "[DONE]") {
      saw_done_ = true;
      if (!FinishAll(out)) return false;
      if (!FlushHeld(out)) return false;
      *out += "data: [DONE]\n\n";
      return true;
    }
    Json chunk = Json::parse(ev.data, nullptr, false);
    if (chunk.is_discarded() || !chunk.is_object()) {
      return Fail(out, "upstream_error", "malformed_upstream_stream",
                  "the upstream sent a stream event that is not JSON");
    }
    if (chunk.contains("error")) {
      // The upstream's own error: relayed as it is, and the stream ends.
      x_->outcome = "upstream_error";
      x_->error_code = "upstream_stream_error";
      *out += "data: " + ev.data + "\n\n";
      return false;
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) x_->usage = chunk["usage"];
    bool hold = !held_.empty();
    bool finished_tools = false;
    bool modified = false;  // unmodified events go out byte for byte
    if (chunk.contains("choices") && chunk["choices"].is_array()) {
      for (Json& choice : chunk["choices"]) {
        if (!choice.is_object()) continue;
        int index = choice.value("index", 0);
        if (index < 0 || index > 127) index = 0;
        Json& delta = choice["delta"];
        if (!delta.is_object()) delta = Json::object();
        if (delta.contains("tool_calls") && delta["tool_calls"].is_array()) {
          hold = true;
          for (const Json& tc : delta["tool_calls"]) AccumulateTool(index, tc);
        }
        std::string release;
        if (delta.contains("content") && delta["content"].is_string()) {
          OutputStream* s = StreamFor(index, out);
          if (s == nullptr) return false;
          const std::string& content = delta["content"].get_ref<const std::string&>();
          if (!s->Feed(content, &release)) return Blocked(s->decision(), out);
          if (release != content) {
            delta["content"] = release;
            modified = true;
          }
        }
        if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) {
          release.clear();
          auto it = streams_.find(index);
          if (it != streams_.end() && !finished_.count(index)) {
            finished_.insert(index);
            int64_t t = MonoMicros();
            bool ok = it->second->Finish(&release);
            x_->policy_us += MonoMicros() - t;
            Note(*it->second);
            if (!ok) return Blocked(it->second->decision(), out);
            Record(x_, it->second->decision());
            if (!release.empty()) {
              delta["content"] = delta.value("content", Json("")).is_string()
                                     ? delta.value("content", std::string()) + release
                                     : release;
              modified = true;
            }
          }
          if (tools_.count(index)) finished_tools = true;
        }
      }
    }
    std::string frame = "data: " + (modified ? Dump(chunk) : ev.data) + "\n\n";
    if (hold) {
      held_ += frame;
      if (held_.size() > g_->options.max_upstream_body_bytes) {
        return Fail(out, "upstream_error", "upstream_response_too_large",
                    "the held tool-call stream exceeds the response bound");
      }
      if (finished_tools) {
        if (!JudgeTools(out)) return false;
        return FlushHeld(out);
      }
      return true;
    }
    *out += frame;
    return true;
  }

  // The upstream's body ended: anything unfinished is an error, never a
  // silently truncated answer.
  bool OnEnd(bool clean, std::string* out) {
    if (saw_done_) return true;
    if (!clean) return false;
    return Fail(out, "upstream_error", "upstream_stream_truncated",
                "the upstream stream ended before it was complete");
  }

  bool finished() const { return saw_done_; }

  // The error frame for an upstream failure in the middle of the stream.
  void UpstreamFailed(UpstreamFailure f, const std::string& why, std::string* out) {
    Fail(out, "upstream_error", UpstreamCodeOf(f), why);
  }

 private:
  OutputStream* StreamFor(int index, std::string* out) {
    auto it = streams_.find(index);
    if (it != streams_.end()) return it->second.get();
    PolicyEngine::StreamOptions so;
    so.max_hold = g_->options.stream_max_hold;
    so.max_output = g_->options.max_upstream_body_bytes;
    auto s = engine_.StartOutput(request_, ctx_, so);
    if (s->decision().error) {
      Blocked(s->decision(), out);
      return nullptr;
    }
    return (streams_[index] = std::move(s)).get();
  }

  void Note(const OutputStream& s) {
    x_->max_held = std::max(x_->max_held, s.max_held());
    x_->stream_capped = x_->stream_capped || s.capped();
  }

  void AccumulateTool(int choice, const Json& tc) {
    if (!tc.is_object()) return;
    int i = tc.value("index", 0);
    auto& call = tools_[choice][i];
    if (tc.contains("id") && tc["id"].is_string()) call.id = tc["id"].get<std::string>();
    if (tc.contains("function") && tc["function"].is_object()) {
      const Json& fn = tc["function"];
      if (fn.contains("name") && fn["name"].is_string()) call.name += fn["name"].get<std::string>();
      if (fn.contains("arguments") && fn["arguments"].is_string()) {
        call.arguments += fn["arguments"].get<std::string>();
      }
    }
  }

  bool JudgeTools(std::string* out) {
    for (auto& [choice, calls] : tools_) {
      for (auto& [index, call] : calls) {
        if (call.judged) continue;
        call.judged = true;
        int64_t t = MonoMicros();
        Decision d =
            engine_.EvaluateToolCall(request_, call.name, call.arguments, call.id, index, ctx_);
        x_->policy_us += MonoMicros() - t;
        Record(x_, d);
        if (d.blocked) return Blocked(d, out, false);
        if (d.error && !g_->options.fail_open) return Blocked(d, out, false);
      }
    }
    return true;
  }

  bool FinishAll(std::string* out) {
    for (auto& [index, s] : streams_) {
      if (finished_.count(index)) continue;
      finished_.insert(index);
      std::string release;
      bool ok = s->Finish(&release);
      Note(*s);
      if (!ok) return Blocked(s->decision(), out);
      Record(x_, s->decision());
      if (!release.empty()) {
        Json c = {{"object", "chat.completion.chunk"},
                  {"model", x_->model},
                  {"choices", Json::array({{{"index", index},
                                            {"delta", {{"content", release}}},
                                            {"finish_reason", nullptr}}})}};
        *out += "data: " + Dump(c) + "\n\n";
      }
    }
    return JudgeTools(out);
  }

  bool FlushHeld(std::string* out) {
    *out += held_;
    held_.clear();
    return true;
  }

  // Ends the stream on a decision: a block, or an evaluation error under
  // fail-closed. Held frames are dropped: they never reach the client.
  bool Blocked(const Decision& d, std::string* out, bool record = true) {
    if (record) Record(x_, d);
    held_.clear();
    if (d.error && !d.blocked) {
      if (g_->options.fail_open) return true;
      x_->outcome = "not_evaluated";
      return Fail(out, "policy_error", "policy_evaluation_failed",
                  "the output could not be evaluated: " + d.error_message);
    }
    const PolicyHit* h = d.blocking();
    x_->outcome = "blocked";
    const char* fallback = d.stage == "tool_call" ? "tool_blocked" : "output_blocked";
    std::string code = PolicyCode(*h, fallback);
    x_->error_code = code;
    x_->error_message = h->message;
    *out += "data: " +
            Dump(ErrorEnvelope("policy_violation", code, h->message, x_->request_id, h->policy)) +
            "\n\n";
    return false;
  }

  bool Fail(std::string* out, std::string_view type, std::string_view code,
            const std::string& message) {
    held_.clear();
    if (x_->outcome == "allowed") x_->outcome = "error";
    x_->error_code = code;
    x_->error_message = message;
    *out += "data: " + Dump(ErrorEnvelope(type, code, message, x_->request_id)) + "\n\n";
    return false;
  }

  struct ToolCall {
    std::string id;
    std::string name;
    std::string arguments;
    bool judged = false;
  };
  Gateway* g_;
  const PolicyEngine& engine_;
  const Json& request_;
  EvalContext ctx_;
  Exchange* x_;
  std::map<int, std::unique_ptr<OutputStream>> streams_;
  std::set<int> finished_;
  std::map<int, std::map<int, ToolCall>> tools_;
  std::string held_;  // frames held until their tool calls are judged
  bool saw_done_ = false;
};

asio::awaitable<bool> WriteChunk(beast::tcp_stream& stream, const std::string& data) {
  if (data.empty()) co_return true;
  beast::error_code ec;
  auto chunk = http::make_chunk(asio::buffer(data));
  co_await asio::async_write(stream, chunk, Redirect(ec));
  co_return !ec;
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
  Json body = Json::parse(req.body(), nullptr, false);
  if (body.is_discarded()) {
    *res = ErrorResponse(g, x, 422, "validation_error", "invalid_json",
                         "the request body is not valid JSON", keep_alive);
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
    ex = std::make_unique<UpstreamExchange>(x->pool, route.url,
                                            g->options.max_upstream_body_bytes);
    bool started = co_await ex->Start(std::move(up), timeouts);
    if (!started) {
      x->upstream_us = MonoMicros() - up0;
      *res = ErrorResponse(g, x, UpstreamStatusOf(ex->failure()), "upstream_error",
                           UpstreamCodeOf(ex->failure()), ex->error(), keep_alive);
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
      response = Json::parse(text, nullptr, false);
      if (response.is_discarded() || !response.is_object()) {
        *res = ErrorResponse(g, x, 502, "upstream_error", "invalid_upstream_response",
                             "the upstream response is not a JSON object", keep_alive);
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
                        keep_alive);
    co_return Handled::kReply;
  }

  // Streamed: headers now, then frames as they are judged.
  http::response<http::empty_body> head{http::status::ok, 11};
  SetCommonHeaders(&head, *x);
  head.set(http::field::content_type, "text/event-stream; charset=utf-8");
  head.set(http::field::cache_control, "no-cache");
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

bool Reload(Gateway* g, std::string* error) {
  std::lock_guard serial(g->reload_mu);
  std::shared_ptr<const PolicyState> old = g->Current();
  std::shared_ptr<PolicyState> fresh = LoadState(g->options, old.get(), error);
  const bool ok = fresh != nullptr;
  Json record = {{"ok", ok}, {"at_us", NowMicros()}};
  if (ok) {
    record["policy_version"] = fresh->engine->version();
    record["policies"] = fresh->engine->policy_count();
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
    co_await http::async_read_header(stream, buffer, parser, Redirect(ec));
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
    if (ec && ec != http::error::body_limit) break;  // closed, timed out, or not HTTP
    stream.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(g->options.client_timeout_ms)));
    auto& head = parser.get();
    if (!ec && !parser.is_done() &&
        beast::iequals(head[http::field::expect], "100-continue")) {
      // A client that asks first (curl, for large bodies) would otherwise
      // wait its timeout (a second for curl) before sending the body.
      http::response<http::empty_body> go_on{http::status::continue_, 11};
      co_await http::async_write(stream, go_on, Redirect(ec));
    }
    if (!ec) {
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
    if (ec == beast::error::timeout) {
      Response r = ErrorResponse(g, &x, 408, "validation_error", "request_timeout",
                                 "the request was not received in time", false);
      co_await Write(stream, r);
      break;
    }
    if (ec) break;
    auto& req = parser.get();
    bool keep_alive = req.keep_alive() && !g->stopping.load();
    std::string target = x.path.substr(0, x.path.find('?'));
    Response res;
    Handled handled = Handled::kReply;
    if (target == "/v1/chat/completions" || target == "/chat/completions") {
      if (req.method() != http::verb::post) {
        res = ErrorResponse(g, &x, 405, "invalid_request_error", "method_not_allowed",
                            "use POST for chat completions", keep_alive);
      } else if (g->in_flight.load() >= g->options.max_concurrency) {
        res = ErrorResponse(g, &x, 503, "unavailable", "overloaded", "too many requests in flight",
                            keep_alive, {}, {{"retry-after", "1"}});
      } else {
        ++g->in_flight;
        struct Done {
          Gateway* g;
          ~Done() { --g->in_flight; }
        } done{g};
        handled = co_await ChatCompletions(g, stream, req, &x, keep_alive, &res);
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
      bool token_ok = !g->options.admin_token.empty() && x.client_key == g->options.admin_token;
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
