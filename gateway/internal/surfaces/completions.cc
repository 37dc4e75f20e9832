// POST /v1/completions (legacy): `prompt` through the input stage as user
// messages, each choice's `text` through the output stage, JSON and SSE. A
// provider without the surface gets one chat request (one prompt).
#include "gateway/internal/surface.h"
#include "gateway/internal/translate.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

namespace {

class Completions : public Surface {
 public:
  std::string_view name() const override { return "completions"; }
  std::string_view upstream_path() const override { return "/completions"; }

  std::string Read(const Json& body, SurfaceRequest* out, Exchange* x) const override {
    if (std::string e = ReadModelAndStream(body, out); !e.empty()) return e;
    for (const char* field : {"user", "metadata", "max_tokens", "temperature"}) {
      if (body.contains(field)) out->canonical[field] = body[field];
    }
    const Json* prompt = FieldOf(body, "prompt");
    if (prompt == nullptr) return "`prompt` is required";
    if (std::string e = ReadTexts(*prompt, "prompt", out, x); !e.empty()) return e;
    const Json* suffix = FieldOf(body, "suffix");
    if (suffix != nullptr && !suffix->is_string() && !suffix->is_null()) {
      return "`suffix` must be a string";
    }
    if (suffix != nullptr && suffix->is_string()) AddMessage(out, "user", *suffix, "/suffix");
    return "";
  }

  std::string ToChat(const Json& body, Json* chat) const override {
    return CompletionsToChatRequest(body, chat);
  }

  std::string AnswerOf(const Json&, bool native, Json* answer) const override {
    if (!native) {
      if (std::string shape = ValidateCompletion(*answer); !shape.empty()) return shape;
      *answer = ChatToCompletion(*answer);
    }
    const Json* choices = FieldOf(*answer, "choices");
    if (choices == nullptr || !choices->is_array()) return "`choices` must be a list";
    for (const Json& c : *choices) {
      const Json* text = FieldOf(c, "text");
      if (!c.is_object() || text == nullptr || !text->is_string()) {
        return "`choices[].text` must be a string";
      }
    }
    return "";
  }

  void View(Json* answer, AnswerView* view) const override {
    for (Json& choice : (*answer)["choices"]) {
      view->texts.push_back({&choice["text"], StringField(choice, "finish_reason")});
    }
  }

  std::unique_ptr<SurfaceRelay> Relay(StreamJudge* judge, const Json&, bool native) const override {
    return NewChatRelay(judge, /*legacy=*/true, /*translate=*/!native);
  }
};

}  // namespace

const Surface& CompletionsSurface() {
  static const Completions surface;
  return surface;
}

}  // namespace kt::gateway
