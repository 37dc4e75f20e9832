// POST /v1/chat/completions: the surface the policies are written on, so its
// request is its own canonical form and its answers need no translation.
#include "gateway/internal/surface.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

namespace {

// Content parts other than text (images, audio, files) reach no stage.
void RecordUnreadParts(const Json& messages, SurfaceRequest* r, Exchange* x) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Json* content = FieldOf(messages[i], "content");
    if (content == nullptr || !content->is_array()) continue;
    for (std::size_t j = 0; j < content->size(); ++j) {
      const std::string type = StringField((*content)[j], "type");
      if (type == "text") continue;
      NotEvaluated(x, "messages[" + std::to_string(i) + "].content[" + std::to_string(j) + "]",
                   "a `" + type + "` part: no stage reads it");
      r->unread = true;
    }
  }
}

class Chat : public Surface {
 public:
  std::string_view name() const override { return "chat"; }
  std::string_view upstream_path() const override { return "/chat/completions"; }

  std::string Read(const Json& body, SurfaceRequest* out, Exchange* x) const override {
    std::string invalid = ValidateChatRequest(body);
    if (!invalid.empty()) return invalid;
    out->canonical = body;
    out->model = body["model"].get<std::string>();
    const Json* stream = FieldOf(body, "stream");
    out->stream = stream != nullptr && stream->is_boolean() && stream->get<bool>();
    RecordUnreadParts(body["messages"], out, x);
    return "";
  }

  // The engine rewrote the chat request itself, keeping its shape.
  void Rewrite(const SurfaceRequest&, const Json& forward, Json* body) const override {
    *body = forward;
  }

  std::string ToChat(const Json& body, Json* chat) const override {
    *chat = body;
    return "";
  }

  std::string AnswerOf(const Json&, bool, Json* answer) const override {
    return ValidateCompletion(*answer);
  }

  void View(Json* answer, AnswerView* view) const override {
    Json* choices = answer->contains("choices") ? &(*answer)["choices"] : nullptr;
    if (choices == nullptr || !choices->is_array()) return;
    for (Json& choice : *choices) {
      Json* message = choice.is_object() && choice.contains("message") ? &choice["message"] : nullptr;
      if (message == nullptr || !message->is_object()) continue;
      const Json* calls = FieldOf(*message, "tool_calls");
      for (std::size_t i = 0; calls != nullptr && calls->is_array() && i < calls->size(); ++i) {
        const Json& call = (*calls)[i];
        const Json* fn = FieldOf(call, "function");
        view->tools.push_back({fn == nullptr ? "" : StringField(*fn, "name"),
                               fn == nullptr ? "" : StringField(*fn, "arguments"),
                               StringField(call, "id"), static_cast<int>(i)});
      }
      if (message->contains("content") && (*message)["content"].is_string()) {
        view->texts.push_back({&(*message)["content"], StringField(choice, "finish_reason")});
      }
    }
  }

  std::unique_ptr<SurfaceRelay> Relay(StreamJudge* judge, const Json&, bool) const override {
    return NewChatRelay(judge, /*legacy=*/false, /*translate=*/false);
  }
};

}  // namespace

const Surface& ChatSurface() {
  static const Chat surface;
  return surface;
}

}  // namespace kt::gateway
