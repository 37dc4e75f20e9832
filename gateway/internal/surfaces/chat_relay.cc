// The relay of a chat-completions stream, and of a legacy completions
// stream (the same chunks with `choices[].text` for `delta.content`, and no
// tool calls). Content goes through the output stage's stream evaluator per
// choice; tool-call deltas, and every frame after them, are held until the
// calls are complete and judged; an event the stages cannot read ends the
// stream. Unmodified events go out byte for byte.
#include <map>
#include <set>

#include "gateway/internal/surface.h"
#include "gateway/internal/translate.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

namespace {

class ChatRelay : public SurfaceRelay {
 public:
  // `legacy`: the client speaks legacy completions; `translate`: the
  // upstream's chunks are chat chunks to turn into legacy ones first.
  ChatRelay(StreamJudge* judge, bool legacy, bool translate)
      : judge_(judge), x_(judge->exchange()), legacy_(legacy), translate_(translate) {}

  bool OnEvent(const SseEvent& upstream, std::string* out) override {
    SseEvent ev = upstream;
    std::string error;
    if (translate_ && !ChatChunkToCompletionChunk(upstream, &ev, &error)) {
      return Fail(out, "upstream_error", "malformed_upstream_stream", error);
    }
    if (ev.data == "[DONE]") return Done(out);
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
    if (std::string shape = Shape(chunk); !shape.empty()) {
      return Fail(out, "upstream_error", "malformed_upstream_stream",
                  "the upstream sent a stream event that cannot be judged: " + shape);
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) x_->usage = chunk["usage"];
    // What a chunk the relay makes itself carries, as the upstream's do.
    for (const char* field : {"id", "created", "model"}) {
      if (chunk.contains(field)) last_[field] = chunk[field];
    }
    return Chunk(std::move(chunk), ev.data, false, out);
  }

  bool OnEnd(bool clean, std::string* out) override {
    if (saw_done_) return true;
    if (!clean) return false;
    return Fail(out, "upstream_error", "upstream_stream_truncated",
                "the upstream stream ended before it was complete");
  }

  bool finished() const override { return saw_done_; }

  void UpstreamFailed(UpstreamFailure f, const std::string& why, std::string* out) override {
    Fail(out, "upstream_error", UpstreamCodeOf(f), why);
  }

 private:
  struct Call {
    std::string id;
    std::string name;
    std::string arguments;
    bool judged = false;
  };

  std::string Shape(const Json& chunk) const {
    if (!legacy_) return ValidateCompletionChunk(chunk);
    const Json* choices = FieldOf(chunk, "choices");
    if (choices == nullptr || !choices->is_array()) return "";
    for (const Json& c : *choices) {
      if (!c.is_object()) return "`choices[]` must be objects";
      if (c.contains("text") && !c["text"].is_string() && !c["text"].is_null()) {
        return "`choices[].text` must be a string";
      }
    }
    return "";
  }

  bool Done(std::string* out) {
    saw_done_ = true;
    if (!FinishAll(out)) return false;
    *out += held_;
    held_.clear();
    *out += "data: [DONE]\n\n";
    return true;
  }

  // One judged chunk: content through the evaluator, tool deltas collected;
  // the frame goes out, or is held behind unjudged tool calls.
  bool Chunk(Json chunk, const std::string& raw, bool modified, std::string* out) {
    bool hold = !held_.empty();
    bool finished_tools = false;
    Json* choices = chunk.contains("choices") ? &chunk["choices"] : nullptr;
    if (choices != nullptr && choices->is_array()) {
      for (Json& choice : *choices) {
        if (!choice.is_object()) continue;
        const Json* at = FieldOf(choice, "index");
        int index = at != nullptr && at->is_number_integer() ? at->get<int>() : 0;
        if (index < 0 || index > 127) index = 0;
        if (!Choice(index, &choice, &hold, &finished_tools, &modified, out)) return false;
      }
    }
    std::string frame = "data: " + (modified ? Dump(chunk) : raw) + "\n\n";
    if (!hold) {
      *out += frame;
      return true;
    }
    held_ += frame;
    if (held_.size() > judge_->max_held_bytes()) {
      return Fail(out, "upstream_error", "upstream_response_too_large",
                  "the held tool-call stream exceeds the response bound");
    }
    if (!finished_tools) return true;
    if (!JudgeTools()) return Stop(out);
    *out += held_;
    held_.clear();
    return true;
  }

  bool Choice(int index, Json* choice, bool* hold, bool* finished_tools, bool* modified,
              std::string* out) {
    Json* text = nullptr;
    if (legacy_) {
      if (choice->contains("text") && (*choice)["text"].is_string()) text = &(*choice)["text"];
    } else {
      Json& delta = (*choice)["delta"];
      if (!delta.is_object()) delta = Json::object();
      if (delta.contains("tool_calls") && delta["tool_calls"].is_array()) {
        *hold = true;
        for (const Json& tc : delta["tool_calls"]) Accumulate(index, tc);
      }
      if (delta.contains("content") && delta["content"].is_string()) text = &delta["content"];
    }
    if (text != nullptr) {
      std::string release;
      const std::string& content = text->get_ref<const std::string&>();
      if (!judge_->Text(index, content, &release)) return Stop(out);
      if (release != content) {
        *text = release;
        *modified = true;
      }
    }
    if (!choice->contains("finish_reason") || (*choice)["finish_reason"].is_null()) return true;
    std::string rest;
    const std::string reason = StringField(*choice, "finish_reason");
    if (!judge_->Finish(index, &rest, reason)) return Stop(out);
    if (!rest.empty()) {
      Json& field = legacy_ ? (*choice)["text"] : (*choice)["delta"]["content"];
      field = field.is_string() ? field.get<std::string>() + rest : rest;
      *modified = true;
    }
    if (tools_.count(index)) *finished_tools = true;
    return true;
  }

  void Accumulate(int choice, const Json& tc) {
    if (!tc.is_object()) return;
    // A wrong-typed index reads as 0 (value() would throw on it).
    const Json* at = FieldOf(tc, "index");
    int i = at != nullptr && at->is_number_integer() ? at->get<int>() : 0;
    Call& call = tools_[choice][i];
    if (tc.contains("id") && tc["id"].is_string()) call.id = tc["id"].get<std::string>();
    const Json* fn = FieldOf(tc, "function");
    if (fn == nullptr) return;
    call.name += StringField(*fn, "name");
    call.arguments += StringField(*fn, "arguments");
  }

  bool JudgeTools() {
    for (auto& [choice, calls] : tools_) {
      for (auto& [index, call] : calls) {
        if (call.judged) continue;
        call.judged = true;
        if (!judge_->Tool(call.name, call.arguments, call.id, index)) return false;
      }
    }
    return true;
  }

  // At the end: every choice's text judged whole, its rest released in a
  // chunk of its own, and the tool calls judged.
  bool FinishAll(std::string* out) {
    std::vector<std::pair<int, std::string>> rests;
    if (!judge_->FinishAll(&rests)) return Stop(out);
    for (auto& [index, text] : rests) {
      Json choice = {{"index", index}, {"finish_reason", nullptr}};
      if (legacy_) {
        choice["text"] = text;
      } else {
        choice["delta"] = {{"content", text}};
      }
      Json c = {{"object", legacy_ ? "text_completion" : "chat.completion.chunk"},
                {"model", x_->model},
                {"choices", Json::array({std::move(choice)})}};
      c.update(last_);
      *out += "data: " + Dump(c) + "\n\n";
    }
    if (!JudgeTools()) return Stop(out);
    return true;
  }

  // The stream ends on the judge's stop: held frames never reach the client.
  bool Stop(std::string* out) {
    held_.clear();
    if (judge_->stop().code.empty()) return true;  // fail-open: an error let it pass
    *out += ErrorFrame(judge_->stop(), x_->request_id);
    return false;
  }

  bool Fail(std::string* out, std::string_view type, std::string_view code,
            const std::string& message) {
    judge_->Fail(type, code, message);
    return Stop(out);
  }

  StreamJudge* judge_;
  Exchange* x_;
  bool legacy_;
  bool translate_;
  std::map<int, std::map<int, Call>> tools_;
  std::string held_;  // frames held until their tool calls are judged
  Json last_ = Json::object();  // the upstream chunks' id, created and model
  bool saw_done_ = false;
};

}  // namespace

std::unique_ptr<SurfaceRelay> NewChatRelay(StreamJudge* judge, bool legacy, bool translate) {
  return std::make_unique<ChatRelay>(judge, legacy, translate);
}

}  // namespace kt::gateway
