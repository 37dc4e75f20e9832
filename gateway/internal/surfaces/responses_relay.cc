// The relay of a Responses stream (its semantic events), from a provider
// that speaks it or translated from a chat stream. Text deltas
// (`response.output_text.delta`, `response.refusal.delta`) go through the
// output stage's stream evaluator per content part: a delta carries only
// what is released, and the `done` events and the final response carry the
// released text. From the moment a function call starts, every event is held
// until the call is complete and judged. A block ends the stream with an
// `error` event that the official SDKs raise on.
#include <algorithm>
#include <map>
#include <set>

#include "gateway/internal/surface.h"
#include "gateway/internal/translate.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {

// The event types the relay knows; any other is relayed and recorded as not
// evaluated (once per type), since it may carry text no stage read.
const std::set<std::string>& KnownEvents() {
  static const std::set<std::string> known = {
      "response.created", "response.in_progress", "response.queued", "response.completed",
      "response.incomplete", "response.failed", "error", "response.output_item.added",
      "response.output_item.done", "response.content_part.added", "response.content_part.done",
      "response.output_text.delta", "response.output_text.done", "response.refusal.delta",
      "response.refusal.done", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_text.annotation.added"};
  return known;
}

class ResponsesRelay : public SurfaceRelay {
 public:
  ResponsesRelay(StreamJudge* judge, const Json& body, bool native)
      : judge_(judge), x_(judge->exchange()) {
    if (!native) translator_ = std::make_unique<ChatToResponsesStream>(
                     body, NewId("resp_"), NowMicros() / 1000000);
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
  struct Call {
    std::string name;
    std::string call_id;
    std::string arguments;
    bool judged = false;
  };
  struct Part {  // where a text channel is, for the events that end it
    std::string item_id;
    int output_index = 0;
    int content_index = 0;
    bool refusal = false;
  };

  static int Index(const Json& e, const char* field) {
    const Json* v = FieldOf(e, field);
    int i = v != nullptr && v->is_number_integer() ? v->get<int>() : 0;
    return i < 0 || i > 4095 ? 0 : i;
  }
  static int Channel(int output_index, int content_index) {
    return output_index * 64 + (content_index & 63);
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
    if (const Json* seq = FieldOf(e, "sequence_number"); seq != nullptr && seq->is_number_integer()) {
      sequence_ = std::max(sequence_, seq->get<int64_t>());
    }
    if (type == "error") {
      // The upstream's own error: relayed as it is, and the stream ends.
      x_->outcome = "upstream_error";
      x_->error_code = "upstream_stream_error";
      *out += Frame(type, ev.data);
      return false;
    }
    if (!KnownEvents().count(type) && unknown_.insert(type).second) {
      NotEvaluated(x_, "stream event `" + type.substr(0, 64) + "`", "no stage reads it");
    }
    bool modified = false;
    if (!Judge(type, &e, &modified, out)) return false;
    if (drop_) {
      drop_ = false;
      return true;
    }
    // After a delta of the relay's own, the upstream's numbers move up by as
    // many, so sequence numbers stay unique and increasing.
    if (const Json* seq = FieldOf(e, "sequence_number");
        inserted_ > 0 && seq != nullptr && seq->is_number_integer()) {
      e["sequence_number"] = seq->get<int64_t>() + inserted_;
      modified = true;
    }
    return Emit(Frame(type, modified ? Dump(e) : ev.data), out);
  }

  // The stages' part of one event; may rewrite it, or drop it (drop_).
  bool Judge(const std::string& type, Json* e, bool* modified, std::string* out) {
    if (type == "response.output_text.delta" || type == "response.refusal.delta") {
      return Delta(type, e, modified, out);
    }
    if (type == "response.output_text.done" || type == "response.refusal.done") {
      return TextDone(type, e, modified, out);
    }
    if (type == "response.content_part.done") return PartDone(e, modified);
    if (type == "response.output_item.added") return ItemAdded(*e);
    if (type == "response.function_call_arguments.delta") {
      calls_[Index(*e, "output_index")].arguments += StringField(*e, "delta");
      holding_ = true;  // also when the server sent no output_item.added
      return true;
    }
    if (type == "response.function_call_arguments.done") {
      calls_.try_emplace(Index(*e, "output_index"));  // unjudged: what follows waits
      holding_ = true;
      return true;
    }
    if (type == "response.output_item.done") return ItemDone(e, modified, out);
    if (type == "response.completed" || type == "response.incomplete" ||
        type == "response.failed") {
      return Complete(type, e, modified, out);
    }
    return true;
  }

  bool Delta(const std::string& type, Json* e, bool* modified, std::string* out) {
    const int o = Index(*e, "output_index"), c = Index(*e, "content_index");
    const int ch = Channel(o, c);
    parts_[ch] = {StringField(*e, "item_id"), o, c, type == "response.refusal.delta"};
    const std::string delta = StringField(*e, "delta");
    std::string release;
    if (!judge_->Text(ch, delta, &release)) return Stop(out);
    released_[ch] += release;
    if (release.empty()) {
      drop_ = true;  // nothing safe to send yet: the event waits in the evaluator
    } else if (release != delta) {
      (*e)["delta"] = release;
      *modified = true;
    }
    return true;
  }

  // A part's text ended: judged whole; the rest goes out as one more delta
  // before the `done`, which carries the released text.
  bool TextDone(const std::string& type, Json* e, bool* modified, std::string* out) {
    const int o = Index(*e, "output_index"), c = Index(*e, "content_index");
    const int ch = Channel(o, c);
    const bool refusal = type == "response.refusal.done";
    const char* field = refusal ? "refusal" : "text";
    if (!judge_->open(ch) && !released_.count(ch)) {
      // A done without deltas: its whole text is the part.
      parts_[ch] = {StringField(*e, "item_id"), o, c, refusal};
      std::string release;
      if (!judge_->Text(ch, StringField(*e, field), &release)) return Stop(out);
      released_[ch] += release;
    }
    std::string rest;
    if (!judge_->Finish(ch, &rest)) return Stop(out);
    if (!rest.empty()) {
      released_[ch] += rest;
      EmitRest(ch, rest, out);
    }
    if (StringField(*e, field) != released_[ch]) {
      (*e)[field] = released_[ch];
      *modified = true;
    }
    return true;
  }

  bool PartDone(Json* e, bool* modified) {
    const int ch = Channel(Index(*e, "output_index"), Index(*e, "content_index"));
    Json* part = e->contains("part") && (*e)["part"].is_object() ? &(*e)["part"] : nullptr;
    if (part == nullptr || !released_.count(ch)) return true;
    const char* field = StringField(*part, "type") == "refusal" ? "refusal" : "text";
    if (StringField(*part, field) != released_[ch]) {
      (*part)[field] = released_[ch];
      *modified = true;
    }
    return true;
  }

  bool ItemAdded(const Json& e) {
    const Json* item = FieldOf(e, "item");
    if (item == nullptr || StringField(*item, "type") != "function_call") return true;
    Call& call = calls_[Index(e, "output_index")];
    call.name = StringField(*item, "name");
    call.call_id = StringField(*item, "call_id");
    call.arguments = StringField(*item, "arguments");
    holding_ = true;
    return true;
  }

  bool ItemDone(Json* e, bool* modified, std::string* out) {
    const int o = Index(*e, "output_index");
    Json* item = e->contains("item") && (*e)["item"].is_object() ? &(*e)["item"] : nullptr;
    if (item == nullptr) return true;
    const std::string type = StringField(*item, "type");
    if (type == "message") {
      if (!JudgeWhole(o, *item, out)) return false;
      *modified = RewriteMessage(o, item) || *modified;
      return true;
    }
    if (type != "function_call") return true;
    Call& call = calls_[o];
    // The done item is the call as the client will take it: judge that.
    call.name = StringField(*item, "name");
    call.call_id = StringField(*item, "call_id");
    call.arguments = StringField(*item, "arguments");
    if (!JudgeCalls()) return Stop(out);
    release_after_ = true;
    return true;
  }

  // A message's parts the stream never carried as text events (a server
  // that sends them only whole, in output_item.done or response.completed):
  // judged whole now, so no text reaches the client unjudged.
  bool JudgeWhole(int output_index, const Json& item, std::string* out) {
    const Json* content = FieldOf(item, "content");
    for (std::size_t c = 0; content != nullptr && content->is_array() && c < content->size(); ++c) {
      const Json& part = (*content)[c];
      const int ch = Channel(output_index, static_cast<int>(c));
      if (!part.is_object() || released_.count(ch)) continue;
      const Json* text = FieldOf(part, StringField(part, "type") == "refusal" ? "refusal" : "text");
      if (text == nullptr || !text->is_string()) continue;
      std::string release, rest;
      if (!judge_->Text(ch, text->get_ref<const std::string&>(), &release)) return Stop(out);
      if (!judge_->Finish(ch, &rest)) return Stop(out);
      released_[ch] = release + rest;
    }
    return true;
  }

  // The response's items carry the released texts.
  bool RewriteMessage(int output_index, Json* item) {
    bool changed = false;
    Json* content = item->contains("content") ? &(*item)["content"] : nullptr;
    for (std::size_t c = 0; content != nullptr && content->is_array() && c < content->size(); ++c) {
      Json& part = (*content)[c];
      const int ch = Channel(output_index, static_cast<int>(c));
      if (!part.is_object() || !released_.count(ch)) continue;
      const char* field = StringField(part, "type") == "refusal" ? "refusal" : "text";
      if (StringField(part, field) == released_[ch]) continue;
      part[field] = released_[ch];
      changed = true;
    }
    return changed;
  }

  bool Complete(const std::string& type, Json* e, bool* modified, std::string* out) {
    std::vector<std::pair<int, std::string>> rests;
    if (!judge_->FinishAll(&rests)) return Stop(out);
    for (auto& [ch, rest] : rests) {
      released_[ch] += rest;
      EmitRest(ch, rest, out);
    }
    Json* response = e->contains("response") && (*e)["response"].is_object() ? &(*e)["response"]
                                                                               : nullptr;
    Json* output = response != nullptr && response->contains("output") &&
                           (*response)["output"].is_array()
                       ? &(*response)["output"]
                       : nullptr;
    const int items = output == nullptr ? 0 : static_cast<int>(std::min<std::size_t>(output->size(), 4096));
    // The response's calls are the ones the client takes: a call the stream
    // never carried as events, or carried otherwise, is judged as it is here.
    for (int o = 0; o < items; ++o) {
      const Json& item = (*output)[o];
      if (StringField(item, "type") != "function_call") continue;
      Call& call = calls_[o];
      const std::string name = StringField(item, "name");
      const std::string arguments = StringField(item, "arguments");
      if (call.judged && call.name == name && call.arguments == arguments) continue;
      call.name = name;
      call.call_id = StringField(item, "call_id");
      call.arguments = arguments;
      call.judged = false;
    }
    if (!JudgeCalls()) return Stop(out);
    for (int o = 0; o < items; ++o) {
      if (StringField((*output)[o], "type") != "message") continue;
      if (!JudgeWhole(o, (*output)[o], out)) return false;
      *modified = RewriteMessage(o, &(*output)[o]) || *modified;
    }
    if (const Json* usage = response == nullptr ? nullptr : FieldOf(*response, "usage");
        usage != nullptr && usage->is_object()) {
      x_->usage = *usage;
    }
    if (type == "response.failed") {
      x_->outcome = "upstream_error";
      x_->error_code = "upstream_response_failed";
    }
    finished_ = true;
    release_after_ = true;
    return true;
  }

  bool JudgeCalls() {
    int index = 0;
    for (auto& [o, call] : calls_) {
      if (!call.judged) {
        call.judged = true;
        if (!judge_->Tool(call.name, call.arguments, call.call_id, index)) return false;
      }
      ++index;
    }
    return true;
  }

  // A released rest as a delta event of its own.
  void EmitRest(int ch, const std::string& rest, std::string* out) {
    const Part& p = parts_[ch];
    const std::string type = p.refusal ? "response.refusal.delta" : "response.output_text.delta";
    Json e = {{"type", type},
              {"item_id", p.item_id},
              {"output_index", p.output_index},
              {"content_index", p.content_index},
              {"delta", rest},
              {"sequence_number", sequence_ + inserted_++}};
    if (!p.refusal) e["logprobs"] = Json::array();
    Emit(Frame(type, Dump(e)), out);
  }

  // Sends a frame, or holds it behind function calls not yet judged.
  bool Emit(std::string frame, std::string* out) {
    if (!holding_) {
      *out += frame;
      return true;
    }
    held_ += frame;
    if (held_.size() > judge_->max_held_bytes()) {
      return Fail(out, "upstream_error", "upstream_response_too_large",
                  "the held function-call stream exceeds the response bound");
    }
    if (release_after_ && AllJudged()) {
      *out += held_;
      held_.clear();
      holding_ = false;
    }
    release_after_ = false;
    return true;
  }

  bool AllJudged() const {
    for (const auto& [o, call] : calls_) {
      if (!call.judged) return false;
    }
    return true;
  }

  static std::string Frame(const std::string& type, const std::string& data) {
    return "event: " + type + "\ndata: " + data + "\n\n";
  }

  // The stream ends on the judge's stop: held events never reach the
  // client, and an `error` event says why (with the gateway's envelope as
  // `error`, which the SDKs raise as an APIError).
  bool Stop(std::string* out) {
    held_.clear();
    const StreamJudge::Stop& stop = judge_->stop();
    if (stop.code.empty()) return true;  // fail-open: an error let it pass
    Json envelope = ErrorEnvelope(stop.type, stop.code, stop.message, x_->request_id, stop.policy);
    Json e = {{"type", "error"},
              {"code", stop.code},
              {"message", stop.message},
              {"param", nullptr},
              {"sequence_number", sequence_ + inserted_ + 1},
              {"error", envelope["error"]}};
    *out += Frame("error", Dump(e));
    return false;
  }

  bool Fail(std::string* out, std::string_view type, std::string_view code,
            const std::string& message) {
    judge_->Fail(type, code, message);
    return Stop(out);
  }

  StreamJudge* judge_;
  Exchange* x_;
  std::unique_ptr<ChatToResponsesStream> translator_;
  std::map<int, Part> parts_;
  std::map<int, std::string> released_;  // per channel: the text released so far
  std::map<int, Call> calls_;            // by output_index
  std::set<std::string> unknown_;
  std::string held_;
  bool holding_ = false;
  bool release_after_ = false;  // the current event completed a call, or the response
  bool drop_ = false;
  bool finished_ = false;
  int64_t sequence_ = 0;  // the upstream's highest sequence number so far
  int64_t inserted_ = 0;  // delta events the relay added (released rests)
};

}  // namespace

std::unique_ptr<SurfaceRelay> NewResponsesRelay(StreamJudge* judge, const Json& body,
                                                bool native) {
  return std::make_unique<ResponsesRelay>(judge, body, native);
}

}  // namespace kt::gateway
