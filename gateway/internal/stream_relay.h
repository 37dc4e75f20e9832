// The stream relay: one streamed completion, evaluated on the way from the
// upstream (or the mock) to the client. Content goes through the output
// stage's stream evaluator, tool-call deltas are held until their calls are
// judged, and anything that ends the stream early (a block, a broken
// upstream) ends it with one error frame.
#ifndef KT_GATEWAY_INTERNAL_STREAM_RELAY_H_
#define KT_GATEWAY_INTERNAL_STREAM_RELAY_H_

#include <map>
#include <memory>
#include <set>
#include <string>

#include "compiler/compiler.h"
#include "gateway/internal/exchange.h"
#include "gateway/internal/sse.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

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
    Json chunk;
    std::string parse_error;
    if (!ParseJsonStrict(ev.data, &chunk, &parse_error) || !chunk.is_object()) {
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
    // Content or tool calls in a shape the stages cannot read would pass
    // unjudged: the stream ends instead.
    if (std::string shape = ValidateCompletionChunk(chunk); !shape.empty()) {
      return Fail(out, "upstream_error", "malformed_upstream_stream",
                  "the upstream sent a stream event that cannot be judged: " + shape);
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) x_->usage = chunk["usage"];
    bool hold = !held_.empty();
    bool finished_tools = false;
    bool modified = false;  // unmodified events go out byte for byte
    if (chunk.contains("choices") && chunk["choices"].is_array()) {
      for (Json& choice : chunk["choices"]) {
        if (!choice.is_object()) continue;
        int index = choice.contains("index") && choice["index"].is_number_integer()
                        ? choice["index"].get<int>()
                        : 0;
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
    // A wrong-typed index reads as 0 (value() would throw on it).
    const Json* at = FieldOf(tc, "index");
    int i = at != nullptr && at->is_number_integer() ? at->get<int>() : 0;
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

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_STREAM_RELAY_H_
