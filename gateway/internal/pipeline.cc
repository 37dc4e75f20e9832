#include "gateway/internal/pipeline.h"

#include <iostream>
#include <optional>

#include "gateway/internal/anthropic.h"
#include "gateway/internal/limit_store.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {

int UpstreamStatusOf(UpstreamFailure f) { return f == UpstreamFailure::kTimeout ? 504 : 502; }

// Headers of an upstream response that clients act on: retry hints on
// errors, and the rate-limit state, which providers send on every answer
// (clients that pace themselves read it on successes).
Headers PassThroughHeaders(const ModelCall& call) {
  Headers out;
  for (const char* h :
       {"retry-after", "retry-after-ms", "x-should-retry", "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}) {
    std::string v = call.header(h);
    if (!v.empty()) out.emplace_back(h, v);
  }
  return out;
}

// One request's way through the stages. Each step either moves the request
// on (true) or has left the answer in `*res_` (false).
class Flow {
 public:
  Flow(Gateway* g, const Surface& s, http::request<http::string_body>& req, Exchange* x,
       Client* client, bool keep_alive, Response* res)
      : g_(g), s_(s), req_(req), x_(x), client_(client), keep_alive_(keep_alive), res_(res) {}

  asio::awaitable<Handled> Run();

 private:
  // The error answer, audited; the request goes no further.
  bool Refuse(int status, std::string_view type, std::string_view code, std::string_view message,
              std::string_view policy = {}, Headers extra = {}) {
    NoteSettlement();
    *res_ = ErrorResponse(g_, x_, status, type, code, message, keep_alive_, policy,
                          std::move(extra));
    Reshape();
    return false;
  }
  // A gateway-made error in the envelope of the client's surface (the
  // Messages API's for Anthropic clients).
  void Reshape() {
    if (!s_.anthropic_errors()) return;
    Json envelope = Json::parse(res_->body(), nullptr, false);
    if (!envelope.is_object() || !envelope.contains("error")) return;
    res_->body() = Dump(OpenAIErrorToAnthropic(envelope));
    res_->prepare_payload();
  }
  bool Unevaluated(const std::string& stage, const std::string& why) {
    x_->outcome = "not_evaluated";
    return Refuse(500, "policy_error", "policy_evaluation_failed",
                  "the " + stage + " could not be evaluated: " + why);
  }

  bool Admit() {
    state_ = g_->Current();
    engine_ = state_ == nullptr ? nullptr : state_->engine.get();
    if (engine_ == nullptr) {
      return Refuse(503, "unavailable", "not_ready", "the gateway has no policy set loaded yet");
    }
    x_->policy_version = engine_->version();
    x_->surface = s_.name();
    std::string parse_error;
    if (!ParseJsonStrict(req_.body(), &body_, &parse_error)) {
      return Refuse(422, "validation_error", "invalid_json",
                    "the request body is not valid JSON: " + parse_error);
    }
    return true;
  }

  bool Read() {
    std::string invalid = s_.Read(body_, &sr_, x_);
    if (!invalid.empty()) return Refuse(422, "validation_error", "invalid_request", invalid);
    x_->model = sr_.model;
    x_->stream = sr_.stream;
    if (g_->options.audit_prompts) x_->prompt = sr_.canonical["messages"];
    ctx_ = ContextOf(*x_, req_);
    // A part no stage can read, while input policies would have read it,
    // fails closed unless the operator chose otherwise.
    if (sr_.unread && engine_->has_stage("input") && !g_->options.fail_open) {
      x_->outcome = "not_evaluated";
      const Json& first = x_->not_evaluated[0];
      return Refuse(422, "validation_error", "not_evaluable",
                    "the request has a part no policy can read (" + StringField(first, "where") +
                        ": " + StringField(first, "reason") +
                        "); with --fail-mode allow such parts pass, recorded as not evaluated");
    }
    return true;
  }

  // Rate limits and budgets: before the policies and before any upstream
  // call. Every charge is taken or none (limit_store.h); a budget reserves
  // the request's worst case, settled after the call.
  asio::awaitable<bool> Limits() {
    std::vector<LimitKey> keys;
    std::string error;
    if (!engine_->LimitsFor(sr_.canonical, ctx_, &keys, &error) && !g_->options.fail_open) {
      x_->outcome = "not_evaluated";
      co_return Refuse(500, "policy_error", "policy_evaluation_failed", error);
    }
    if (keys.empty()) co_return true;
    std::string unpriced = BuildTicket(keys);
    if (!unpriced.empty()) co_return Refuse(422, "validation_error", "unpriced_model", unpriced);
    Admission a = co_await g_->limit_store->Admit(&ticket_);
    x_->limits = LimitsRecord(a);
    if (a.kind == Admission::Kind::kUnavailable) {
      co_return Refuse(503, "unavailable", "limits_unavailable",
                       "the limits backend did not answer (" + a.error +
                           "); --limits-fail-mode closed refuses until it does");
    }
    if (a.kind == Admission::Kind::kRefused) {
      *res_ = RateLimitResponse(g_, x_, *ticket_.charges[a.refused].config, a, keep_alive_);
      Reshape();
      co_return false;
    }
    for (std::size_t i = 0; i < ticket_.charges.size() && i < a.remaining.size(); ++i) {
      if (!ticket_.charges[i].config->budget || !limit_headers_.empty()) continue;
      limit_headers_ = BudgetHeaders(*ticket_.charges[i].config, a.remaining[i]);
    }
    co_return true;
  }

  // The charges of this request. A budget in USD needs the model's price:
  // without one its cost cannot be known, and it is refused (fail closed).
  std::string BuildTicket(const std::vector<LimitKey>& keys) {
    ticket_.id = x_->request_id;
    const int64_t prompt = static_cast<int64_t>(req_.body().size() + 2) / 3;
    for (const LimitKey& k : keys) {
      Charge ch{&engine_->limits()[k.limit], k.key, 0, 0};
      if (ch.config->budget) {
        const int64_t output = MaxOutput(*ch.config);
        ch.reserve_tokens = prompt + output;
        if (ch.config->usd > 0) {
          price_ = engine_->PriceFor(x_->model);
          if (price_ == nullptr) {
            return "budget `" + ch.config->name + "` counts spend in USD, and no `price` names " +
                   "the model `" + x_->model + "`; declare `price \"" + x_->model +
                   "\" { input …/1M  output …/1M }`";
          }
          ch.reserve_nanos = CostNanos(*price_, prompt, 0, output);
        }
      }
      ticket_.charges.push_back(std::move(ch));
    }
    return {};
  }

  // The most output the request allows itself, as its surface names it; or
  // the budget's `reserve`; or 4,096 tokens.
  int64_t MaxOutput(const LimitConfig& budget) const {
    for (const char* f : {"max_completion_tokens", "max_tokens", "max_output_tokens"}) {
      const Json* v = FieldOf(body_, f);
      if (v != nullptr && v->is_number_integer() && v->get<int64_t>() > 0) return v->get<int64_t>();
    }
    return budget.reserve_output > 0 ? budget.reserve_output : 4096;
  }

  Json LimitsRecord(const Admission& a) const {
    Json j = {{"backend", ticket_.backend.empty() ? g_->limit_store->name() : ticket_.backend}};
    int64_t nanos = 0, tokens = 0;
    for (const Charge& ch : ticket_.charges) {
      nanos = std::max(nanos, ch.reserve_nanos);
      tokens = std::max(tokens, ch.reserve_tokens);
    }
    if (tokens > 0) j["reserved"] = {{"usd", FormatUsd(nanos)}, {"tokens", tokens}};
    if (!a.degraded.empty()) j["degraded"] = a.degraded;
    if (!a.error.empty()) j["error"] = a.error;
    return j;
  }

  // What the call cost, from its usage: settled after the answer (also an
  // answer a policy then blocked: the model did the work). No usage from a
  // model that answered charges the reservation, the worst case; a call the
  // model never answered is refunded.
  Spend SpendOf() const {
    Spend s;
    auto count = [&](const Json& from, const char* field) -> int64_t {
      const Json* v = FieldOf(from, field);
      return v != nullptr && v->is_number_integer() ? v->get<int64_t>() : 0;
    };
    const Json& u = x_->usage;
    int64_t input = count(u, "prompt_tokens") + count(u, "input_tokens") +
                    count(u, "cache_read_input_tokens") + count(u, "cache_creation_input_tokens");
    int64_t output = count(u, "completion_tokens") + count(u, "output_tokens");
    int64_t cached = count(u, "cache_read_input_tokens");
    for (const char* d : {"prompt_tokens_details", "input_tokens_details"}) {
      if (const Json* details = FieldOf(u, d)) cached += count(*details, "cached_tokens");
    }
    if (input + output == 0) {
      s.reported = !model_answered_;
      return s;
    }
    s.tokens = input + output;
    s.nanos = price_ != nullptr ? CostNanos(*price_, input, cached, output) : 0;
    return s;
  }

  // Records the settlement in the audit event before it is written.
  void NoteSettlement() {
    if (!ticket_.counted || settled_noted_) return;
    settled_noted_ = true;
    spend_ = SpendOf();
    if (!spend_.reported) {
      x_->limits["settled"] = "reservation";
    } else if (spend_.tokens == 0) {
      x_->limits["settled"] = "refunded";
    } else {
      x_->limits["settled"] = {{"usd", FormatUsd(spend_.nanos)}, {"tokens", spend_.tokens}};
    }
  }

  // The input stage: before any upstream call.  // The input stage: before any upstream call.
  bool Input() {
    Json forward;
    int64_t t = MonoMicros();
    Decision in = engine_->EvaluateInput(sr_.canonical, ctx_, &forward);
    x_->policy_us += MonoMicros() - t;
    Record(x_, in);
    if (in.error) {
      if (!g_->options.fail_open) return Unevaluated("request", in.error_message);
      x_->outcome = "not_evaluated";
    }
    if (in.blocked) {
      const PolicyHit* h = in.blocking();
      x_->outcome = "blocked";
      return Refuse(409, "policy_violation", PolicyCode(*h, "input_blocked"), h->message,
                    h->policy);
    }
    if (in.rewritten) {
      s_.Rewrite(sr_, forward, &body_);
      rewritten_ = true;
    }
    return true;
  }

  bool Route() {
    if (!RouteFor(*g_, *engine_, x_->model, &route_)) {
      return Refuse(404, "invalid_request_error", "model_not_found",
                    "no provider serves the model `" + x_->model + "`");
    }
    x_->provider = route_.provider;
    native_ = Speaks(route_, s_.api());
    if (native_) return true;
    // Translated to chat, and on to the Messages API when the provider
    // speaks that instead.
    via_messages_ = !Speaks(route_, "chat") && Speaks(route_, "messages");
    x_->upstream_api = via_messages_ ? "messages" : "chat";
    std::string why = Speaks(route_, "chat") || via_messages_ ? s_.ToChat(body_, &chat_)
                                                              : "it speaks no chat";
    if (why.empty() && via_messages_) why = ChatToMessagesRequest(chat_, &messages_);
    if (!why.empty()) {
      return Refuse(400, "invalid_request_error", "unsupported_by_provider",
                    "the provider `" + route_.provider + "` does not serve " +
                        std::string(s_.name()) + " requests, and this one has no chat form: " +
                        why);
    }
    return true;
  }

  // The model's answer head: errors and redirects end the request here.
  asio::awaitable<bool> Call() {
    ModelRequest request;
    request.stream = sr_.stream;
    request.path = native_        ? std::string(s_.upstream_path())
                   : via_messages_ ? "/messages"
                                   : "/chat/completions";
    // Unchanged requests go byte for byte as the client sent them.
    request.body = native_        ? (rewritten_ ? Dump(body_) : req_.body())
                   : via_messages_ ? Dump(messages_)
                                   : Dump(chat_);
    call_ = OpenCall(g_, route_, x_);
    up0_ = MonoMicros();
    const bool started = co_await call_->Start(&request);
    if (!started) co_return UpstreamFailed();
    const int status = call_->status();
    if (status >= 300 && status <= 399) {
      // Never followed: a redirect would send the request (and its key)
      // somewhere no operator configured.
      x_->upstream_us = MonoMicros() - up0_;
      call_->Cancel();
      co_return Refuse(502, "upstream_error", "upstream_redirect",
                       "the upstream answered " + std::to_string(status) + " (redirect to `" +
                           call_->header("location").substr(0, 200) +
                           "`); the gateway does not follow redirects");
    }
    if (status >= 200 && status <= 299) {
      model_answered_ = true;
      co_return true;
    }
    const bool passed = co_await PassError();
    co_return passed;
  }

  bool UpstreamFailed() {
    x_->upstream_us = MonoMicros() - up0_;
    return Refuse(UpstreamStatusOf(call_->failure()), "upstream_error",
                  UpstreamCodeOf(call_->failure()), call_->error());
  }

  // The upstream's own error, passed through faithfully.
  asio::awaitable<bool> PassError() {
    std::string body;
    bool ok = co_await call_->ReadAll(&body);
    if (!ok) co_return UpstreamFailed();
    x_->upstream_us = MonoMicros() - up0_;
    int status = call_->status();
    x_->outcome = "upstream_error";
    x_->error_code = "upstream_status_" + std::to_string(status);
    std::string ct = call_->header("content-type");
    if (via_messages_ || (!native_ && s_.anthropic_errors())) {
      // The error in the client's API: Anthropic's answer for an OpenAI
      // client, or the other way round.
      Json error = Json::parse(body, nullptr, false);
      body = Dump(via_messages_ ? AnthropicErrorToOpenAI(status, error, &status)
                                : OpenAIErrorToAnthropic(error));
      ct = "application/json";
    }
    x_->status = status;
    WriteAudit(g_, *x_);
    *res_ = BodyResponse(x_, status, std::move(body), ct.empty() ? "application/json" : ct,
                         keep_alive_, PassThroughHeaders(*call_));
    co_return false;
  }

  asio::awaitable<Handled> Whole() {
    std::string text;  // the upstream's bytes, sent as they are when nothing changed
    bool ok = co_await call_->ReadAll(&text);
    x_->upstream_us = MonoMicros() - up0_;
    if (!ok) {
      UpstreamFailed();
      co_return Handled::kReply;
    }
    Json answer;
    std::string parse_error;
    if (!ParseJsonStrict(text, &answer, &parse_error) || !answer.is_object()) {
      Refuse(502, "upstream_error", "invalid_upstream_response",
             "the upstream response is not a JSON object" +
                 (parse_error.empty() ? std::string() : ": " + parse_error));
      co_return Handled::kReply;
    }
    // What the stages cannot read must not reach the client unjudged.
    std::string shape;
    if (via_messages_) {
      Json chat;
      shape = MessagesToChatResponse(answer, &chat);
      answer = std::move(chat);
    }
    if (shape.empty()) shape = s_.AnswerOf(body_, native_, &answer);
    if (!shape.empty()) {
      Refuse(502, "upstream_error", "invalid_upstream_response",
             "the upstream response cannot be judged: " + shape);
      co_return Handled::kReply;
    }
    if (const Json* usage = FieldOf(answer, "usage"); usage != nullptr && usage->is_object()) {
      x_->usage = *usage;
    }
    bool modified = !native_;
    if (!Judge(&answer, &modified)) co_return Handled::kReply;
    x_->status = 200;
    NoteSettlement();
    WriteAudit(g_, *x_);
    *res_ = BodyResponse(x_, 200, modified ? Dump(answer) : std::move(text), "application/json",
                         keep_alive_, AnswerHeaders());
    co_return Handled::kReply;
  }

  // The stages after the model on a whole answer: its tool calls, then its
  // texts (rewritten in place by redactions).
  bool Judge(Json* answer, bool* modified) {
    AnswerView view;
    s_.View(answer, &view);
    for (auto& [where, why] : view.unread) NotEvaluated(x_, where, why);
    for (const AnswerView::Tool& t : view.tools) {
      int64_t at = MonoMicros();
      Decision d = engine_->EvaluateToolCall(sr_.canonical, t.name, t.arguments, t.id, t.index,
                                             ctx_);
      x_->policy_us += MonoMicros() - at;
      Record(x_, d);
      if (!Verdict(d, "tool_blocked")) return false;
    }
    for (const AnswerView::Text& t : view.texts) {
      std::string text = t.text->get<std::string>();
      int64_t at = MonoMicros();
      Decision d = engine_->EvaluateOutput(sr_.canonical, &text, t.finish_reason, ctx_);
      x_->policy_us += MonoMicros() - at;
      Record(x_, d);
      if (!Verdict(d, "output_blocked")) return false;
      if (!d.error && text != t.text->get_ref<const std::string&>()) {
        *t.text = text;
        *modified = true;
      }
    }
    return true;
  }

  bool Verdict(const Decision& d, const char* fallback) {
    if (d.error && !d.blocked && !g_->options.fail_open) {
      return Unevaluated("response", d.error_message);
    }
    if (!d.blocked) return true;
    const PolicyHit* h = d.blocking();
    x_->outcome = "blocked";
    return Refuse(409, "policy_violation", PolicyCode(*h, fallback), h->message, h->policy);
  }

  asio::awaitable<Handled> Stream();
  asio::awaitable<void> Settle();
  asio::awaitable<bool> Relay(SurfaceRelay* relay);
  bool Deliver(SurfaceRelay* relay, const SseEvent& ev, std::string* out);
  asio::awaitable<void> Drain(const SurfaceRelay& relay, bool client_ok);

  // The upstream's own rate-limit state, with this gateway's budget state
  // in place of the provider's token count where a budget applies.
  Headers AnswerHeaders() const {
    Headers h = PassThroughHeaders(*call_);
    for (const auto& [k, v] : limit_headers_) {
      std::erase_if(h, [&](const auto& e) { return e.first == k; });
      h.emplace_back(k, v);
    }
    return h;
  }

  Gateway* g_;
  const Surface& s_;
  http::request<http::string_body>& req_;
  Exchange* x_;
  Client* client_;
  bool keep_alive_;
  Response* res_;

  std::shared_ptr<const PolicyState> state_;
  const PolicyEngine* engine_ = nullptr;
  Json body_;  // the client's request (redactions written back)
  SurfaceRequest sr_;
  EvalContext ctx_;
  Ticket ticket_;
  const PriceConfig* price_ = nullptr;  // the model's, when a budget counts USD
  Headers limit_headers_;
  Spend spend_;
  bool settled_noted_ = false;
  bool model_answered_ = false;  // the upstream answered 2xx: the call costs
  bool rewritten_ = false;
  ::kt::gateway::Route route_;
  bool native_ = true;  // the provider speaks the surface (else: chat_, translated)
  bool via_messages_ = false;  // and chat_ goes on as messages_ (the Messages API)
  Json chat_;
  Json messages_;
  std::unique_ptr<MessagesToChatStream> messages_stream_;
  std::unique_ptr<ModelCall> call_;
  int64_t up0_ = 0;
};

// No co_await sits inside a condition (or is returned directly): written
// `if (!co_await Call())`, GCC 12 built this coroutine so that its first
// resume landed 8 bytes off its frame (an illegal instruction).
asio::awaitable<Handled> Flow::Run() {
  if (!Admit() || !Read()) co_return Handled::kReply;
  const bool admitted = co_await Limits();
  if (!admitted) co_return Handled::kReply;
  Handled handled = Handled::kReply;
  if (Input() && Route()) {
    const bool called = co_await Call();
    if (called && sr_.stream) {
      handled = co_await Stream();
    } else if (called) {
      handled = co_await Whole();
    }
  }
  co_await Settle();
  co_return handled;
}

// The reservation out, what the call used in (a refund when it failed).
asio::awaitable<void> Flow::Settle() {
  if (!ticket_.counted) co_return;
  NoteSettlement();
  co_await g_->limit_store->Settle(ticket_, spend_);
}

// Streamed: headers now, then frames as they are judged.
asio::awaitable<Handled> Flow::Stream() {
  x_->stream_started = true;
  http::response<http::empty_body> head{http::status::ok, 11};
  SetCommonHeaders(&head, *x_);
  head.set(http::field::content_type, "text/event-stream; charset=utf-8");
  head.set(http::field::cache_control, "no-cache");
  for (const auto& [k, v] : AnswerHeaders()) head.set(k, v);
  head.keep_alive(keep_alive_);
  head.chunked(true);
  bool client_ok = co_await client_->StartStream(head);
  x_->status = 200;
  StreamJudge judge(g_, *engine_, sr_.canonical, ctx_, x_);
  std::unique_ptr<SurfaceRelay> relay = s_.Relay(&judge, body_, native_);
  ++g_->metrics.active_streams;
  struct StreamGauge {
    Gateway* g;
    ~StreamGauge() { --g->metrics.active_streams; }
  } gauge{g_};
  if (client_ok) client_ok = co_await Relay(relay.get());
  x_->upstream_us = MonoMicros() - up0_;
  if (!client_ok && x_->outcome == "allowed") x_->outcome = "client_disconnected";
  NoteSettlement();
  WriteAudit(g_, *x_);
  if (client_ok) co_await client_->EndStream();
  // After the client has its whole answer: an upstream that stalls after
  // its terminal event costs the upstream connection, not the client's wait.
  co_await Drain(*relay, client_ok);
  co_return client_ok && keep_alive_ ? Handled::kStreamedOpen : Handled::kStreamed;
}

// Upstream bytes → events → the relay → the client, until the stream ends.
// False when the client went away.
asio::awaitable<bool> Flow::Relay(SurfaceRelay* relay) {
  SseParser parser(1 << 20);
  std::vector<SseEvent> events;
  for (bool open = true; open;) {
    std::string bytes;
    bool more = co_await call_->ReadSome(&bytes);
    std::string out;
    if (!parser.Feed(bytes, &events)) {
      relay->UpstreamFailed(UpstreamFailure::kProtocol, "an upstream stream event is too large",
                            &out);
      open = false;
    }
    for (const SseEvent& ev : events) {
      if (!open) break;
      open = Deliver(relay, ev, &out);
    }
    events.clear();
    // The terminal event ends the relay: what follows (the chunked
    // terminator, or a stall or failure after it) is Drain's, never an
    // error frame after a complete answer.
    if (open && relay->finished()) open = false;
    if (open && !more) {
      if (call_->failure() != UpstreamFailure::kNone) {
        relay->UpstreamFailed(call_->failure(), call_->error(), &out);
      } else {
        relay->OnEnd(true, &out);
      }
      open = false;
    }
    const bool sent = co_await client_->Send(out);
    if (!sent) {
      // The client went away: stop the upstream's work too.
      call_->Cancel();
      x_->outcome = "client_disconnected";
      co_return false;
    }
  }
  co_return true;
}

// One upstream event to the relay; from the Messages API, as chat chunks.
bool Flow::Deliver(SurfaceRelay* relay, const SseEvent& ev, std::string* out) {
  if (!via_messages_) return relay->OnEvent(ev, out);
  if (messages_stream_ == nullptr) messages_stream_ = std::make_unique<MessagesToChatStream>(x_->model);
  std::vector<SseEvent> chunks;
  std::string error;
  if (!messages_stream_->Feed(ev, &chunks, &error)) {
    relay->UpstreamFailed(UpstreamFailure::kProtocol, error, out);
    return false;
  }
  for (const SseEvent& chunk : chunks) {
    if (!relay->OnEvent(chunk, out)) return false;
  }
  return true;
}

// After a stream: a normal end reads the upstream's last bytes (the chunked
// terminator) so its connection goes back to the pool; a block or a
// disconnect stops the upstream's work.
asio::awaitable<void> Flow::Drain(const SurfaceRelay& relay, bool client_ok) {
  if (call_->failure() != UpstreamFailure::kNone || call_->done()) co_return;
  if (relay.finished() && client_ok) {
    std::string rest;
    for (int i = 0; i < 4 && !call_->done(); ++i) {
      const bool more = co_await call_->ReadSome(&rest);
      if (!more) break;
    }
  }
  if (!call_->done()) call_->Cancel();
}

// A request that hit a defect in the gateway (an exception): it costs this
// request, never the connection's answer or the process. Fails closed: a
// 500 with its audit record, or, when the stream's header is already out,
// an error frame to end the stream. The connection then closes.
asio::awaitable<Handled> Defect(Gateway* g, Exchange* x, Client* client, const std::string& what,
                                Response* res) {
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
  StreamJudge::Stop stop{"internal_error", "internal_error", message, ""};
  std::string frame = ErrorFrame(stop, x->request_id);
  const bool sent = co_await client->Send(frame);
  if (sent) co_await client->EndStream();
  co_return Handled::kStreamed;
}

}  // namespace

asio::awaitable<Handled> Serve(Gateway* g, const Surface& surface,
                               http::request<http::string_body>& req, Exchange* x, Client* client,
                               bool keep_alive, Response* res) {
  if (g->in_flight.load() >= g->options.max_concurrency) {
    *res = ErrorResponse(g, x, 503, "unavailable", "overloaded", "too many requests in flight",
                         keep_alive, {}, {{"retry-after", "1"}});
    co_return Handled::kReply;
  }
  ++g->in_flight;
  struct Done {
    Gateway* g;
    ~Done() { --g->in_flight; }
  } done{g};
  std::string defect;
  Handled handled = Handled::kReply;
  auto flow = std::make_unique<Flow>(g, surface, req, x, client, keep_alive, res);
  try {
    handled = co_await flow->Run();
  } catch (const std::exception& e) {
    defect = e.what();
  }
  if (!defect.empty()) handled = co_await Defect(g, x, client, defect, res);
  co_return handled;
}

}  // namespace kt::gateway
