// The relay of a Messages API stream, from an Anthropic provider or
// translated from a chat stream. `text_delta`s go through the output stage's
// stream evaluator per content block: a delta carries only what is released
// (held back while a rule has a partial match), the rest goes out before the
// block's `content_block_stop`. From a `tool_use` block's start on, every
// event is held until the block stops and its input is judged. A block ends
// the stream with an Anthropic `error` event, which @anthropic-ai/sdk raises.
#include <map>
#include <set>

#include "gateway/internal/anthropic.h"
#include "gateway/internal/surface.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {

class MessagesRelay : public SurfaceRelay {
 public:
  MessagesRelay(StreamJudge* judge, const Json& body, bool native)
      : judge_(judge), x_(judge->exchange()) {
    if (!native) translator_ = std::make_unique<ChatToMessagesStream>(StringField(body, "model"));
  }

  bool OnEvent(const SseEvent& ev, std::string* out) override {
    if (translator_ == nullptr) return Event(ev, out);
    std::vector<SseEvent> events;
    std::string error;
    if (!translator_->Feed(ev, &events, &error)) {
      return Fail(out, "upstream_error", "malformed_upstream_stream", error);
    }
    for (const SseEvent& e : events) {
      if (!Event(e, out)) return false;
    }
    return true;
  }

  bool OnEnd(bool clean, std::string* out) override {
    if (finished_) return true;
    if (!clean) return false;
    return Fail(out, "upstream_error", "upstream_stream_truncated",
                "the upstream stream ended before it was complete");
  }

  bool finished() const override { return finished_; }

  void UpstreamFailed(UpstreamFailure f, const std::string& why, std::string* out) override {
    Fail(out, "upstream_error", UpstreamCodeOf(f), why);
  }

 private:
  struct Tool {
    std::string id;
    std::string name;
    std::string input;  // the partial_json pieces
    bool judged = false;
  };

  static int Index(const Json& e) {
    const Json* v = FieldOf(e, "index");
    int i = v != nullptr && v->is_number_integer() ? v->get<int>() : 0;
    return i < 0 || i > 4095 ? 0 : i;
  }

  bool Event(const SseEvent& ev, std::string* out) {
    Json e;
    std::string parse_error;
    if (!ParseJsonStrict(ev.data, &e, &parse_error) || !e.is_object()) {
      return Fail(out, "upstream_error", "malformed_upstream_stream",
                  "the upstream sent a stream event that is not JSON");
    }
    std::string type = StringField(e, "type");
    if (type.empty()) type = ev.event;
    if (type == "error") {
      // The upstream's own error: relayed as it is, and the stream ends.
      x_->outcome = "upstream_error";
      x_->error_code = "upstream_stream_error";
      *out += Frame(type, ev.data);
      return false;
    }
    bool modified = false;
    drop_ = false;
    if (!Judge(type, &e, &modified, out)) return false;
    if (drop_) return true;
    return Emit(Frame(type, modified ? Dump(e) : ev.data), out);
  }

  bool Judge(const std::string& type, Json* e, bool* modified, std::string* out) {
    if (type == "message_start") {
      const Json* m = FieldOf(*e, "message");
      if (const Json* u = m == nullptr ? nullptr : FieldOf(*m, "usage"); u != nullptr) usage_ = *u;
      return true;
    }
    if (type == "content_block_start") return BlockStart(*e);
    if (type == "content_block_delta") return Delta(e, modified, out);
    if (type == "content_block_stop") return BlockStop(*e, out);
    if (type == "message_delta") {
      if (const Json* u = FieldOf(*e, "usage"); u != nullptr && u->is_object()) usage_.update(*u);
      return true;
    }
    if (type == "message_stop") return Stop(out);
    if (type != "ping" && unknown_.insert(type).second) {
      NotEvaluated(x_, "stream event `" + type.substr(0, 64) + "`", "no stage reads it");
    }
    return true;
  }

  bool BlockStart(const Json& e) {
    const Json* block = FieldOf(e, "content_block");
    const std::string kind = block == nullptr ? "" : StringField(*block, "type");
    if (kind == "tool_use") {
      Tool& t = tools_[Index(e)];
      t.id = StringField(*block, "id");
      t.name = StringField(*block, "name");
      holding_ = true;
    } else if (kind != "text" && kind != "thinking" && kind != "redacted_thinking") {
      NotEvaluated(x_, "content block `" + kind.substr(0, 64) + "`", "no stage reads it");
    }
    return true;
  }

  bool Delta(Json* e, bool* modified, std::string* out) {
    Json* delta = e->contains("delta") && (*e)["delta"].is_object() ? &(*e)["delta"] : nullptr;
    if (delta == nullptr) return true;
    const std::string kind = StringField(*delta, "type");
    const int index = Index(*e);
    if (kind == "input_json_delta") {
      tools_[index].input += StringField(*delta, "partial_json");
      return true;
    }
    if (kind != "text_delta") return true;  // thinking and signatures pass unjudged
    const std::string text = StringField(*delta, "text");
    std::string release;
    if (!judge_->Text(index, text, &release)) return Block(out);
    if (release.empty()) {
      drop_ = true;  // nothing safe to send yet: it waits in the evaluator
    } else if (release != text) {
      (*delta)["text"] = release;
      *modified = true;
    }
    return true;
  }

  bool BlockStop(const Json& e, std::string* out) {
    const int index = Index(e);
    std::string rest;
    if (!judge_->Finish(index, &rest)) return Block(out);
    if (!rest.empty()) EmitRest(index, rest, out);
    auto it = tools_.find(index);
    if (it == tools_.end() || it->second.judged) return true;
    it->second.judged = true;
    Tool& t = it->second;
    if (!judge_->Tool(t.name, t.input.empty() ? "{}" : t.input, t.id, tool_count_++)) {
      return Block(out);
    }
    release_after_ = true;
    return true;
  }

  bool Stop(std::string* out) {
    std::vector<std::pair<int, std::string>> rests;
    if (!judge_->FinishAll(&rests)) return Block(out);
    for (auto& [index, rest] : rests) EmitRest(index, rest, out);
    for (auto& [index, t] : tools_) {
      if (t.judged) continue;
      t.judged = true;
      if (!judge_->Tool(t.name, t.input.empty() ? "{}" : t.input, t.id, tool_count_++)) {
        return Block(out);
      }
    }
    x_->usage = usage_;
    finished_ = true;
    release_after_ = true;
    return true;
  }

  void EmitRest(int index, const std::string& rest, std::string* out) {
    Json e = {{"type", "content_block_delta"},
              {"index", index},
              {"delta", {{"type", "text_delta"}, {"text", rest}}}};
    Emit(Frame("content_block_delta", Dump(e)), out);
  }

  // Sends a frame, or holds it behind tool_use blocks not yet judged.
  bool Emit(std::string frame, std::string* out) {
    if (!holding_) {
      *out += frame;
      return true;
    }
    held_ += frame;
    if (held_.size() > judge_->max_held_bytes()) {
      return Fail(out, "upstream_error", "upstream_response_too_large",
                  "the held tool_use stream exceeds the response bound");
    }
    bool all = true;
    for (const auto& [index, t] : tools_) all = all && t.judged;
    if (release_after_ && all) {
      *out += held_;
      held_.clear();
      holding_ = false;
    }
    release_after_ = false;
    return true;
  }

  static std::string Frame(const std::string& type, const std::string& data) {
    return "event: " + type + "\ndata: " + data + "\n\n";
  }

  // The stream ends on the judge's stop, with the Messages API's error
  // event; held events never reach the client.
  bool Block(std::string* out) {
    held_.clear();
    const StreamJudge::Stop& stop = judge_->stop();
    if (stop.code.empty()) return true;  // fail-open: an error let it pass
    Json envelope = ErrorEnvelope(stop.type, stop.code, stop.message, x_->request_id, stop.policy);
    *out += Frame("error", Dump(OpenAIErrorToAnthropic(envelope)));
    return false;
  }

  bool Fail(std::string* out, std::string_view type, std::string_view code,
            const std::string& message) {
    judge_->Fail(type, code, message);
    return Block(out);
  }

  StreamJudge* judge_;
  Exchange* x_;
  std::unique_ptr<ChatToMessagesStream> translator_;
  std::map<int, Tool> tools_;  // by content block index
  std::set<std::string> unknown_;
  Json usage_ = Json::object();
  std::string held_;
  bool holding_ = false;
  bool release_after_ = false;
  bool drop_ = false;
  bool finished_ = false;
  int tool_count_ = 0;
};

}  // namespace

std::unique_ptr<SurfaceRelay> NewMessagesRelay(StreamJudge* judge, const Json& body, bool native) {
  return std::make_unique<MessagesRelay>(judge, body, native);
}

}  // namespace kt::gateway
