// POST /v1/responses: `instructions` is a system message and `input` (a
// string, or items: messages, function_call, function_call_output) becomes
// the chat messages the policies read; the answer's `output_text` parts go
// through the output stage and its `function_call` items through the
// tool-call stage. A provider without the surface gets it as chat, and its
// answer is translated back before the stages judge it.
#include "gateway/internal/surface.h"
#include "gateway/internal/translate.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

std::unique_ptr<SurfaceRelay> NewResponsesRelay(StreamJudge* judge, const Json& body, bool native);

namespace {

std::string Quote(const std::string& s) { return "`" + s + "`"; }

// A list of content parts: text parts become the canonical message's text
// (with their slots), the rest reach no stage.
std::string ReadParts(const Json& parts, const std::string& at, const std::string& pointer,
                      Json* content, std::vector<std::string>* slots, SurfaceRequest* r,
                      Exchange* x) {
  Json texts = Json::array();
  for (std::size_t j = 0; j < parts.size(); ++j) {
    const Json& part = parts[j];
    const std::string here = at + "[" + std::to_string(j) + "]";
    if (!part.is_object() || FieldOf(part, "type") == nullptr || !part["type"].is_string()) {
      return Quote(here) + " must be an object with a string `type`";
    }
    const std::string type = part["type"].get<std::string>();
    // An assistant turn given back may carry a refusal: text as well.
    const char* field = type == "refusal" ? "refusal" : "text";
    if (type == "input_text" || type == "output_text" || type == "text" || type == "refusal") {
      if (FieldOf(part, field) == nullptr || !part[field].is_string()) {
        return Quote(here + "." + field) + " must be a string";
      }
      texts.push_back({{"type", "text"}, {"text", part[field]}});
      slots->push_back(pointer + "/" + std::to_string(j) + "/" + field);
      continue;
    }
    NotEvaluated(x, here, "a `" + type + "` part: no stage reads it");
    r->unread = true;
  }
  *content = texts.size() == 1 ? texts[0]["text"] : texts.empty() ? Json("") : texts;
  return "";
}

// A message item: string content, or parts.
std::string ReadMessage(const Json& item, std::size_t i, SurfaceRequest* r, Exchange* x) {
  const std::string at = "input[" + std::to_string(i) + "]";
  const Json* role = FieldOf(item, "role");
  if (role == nullptr || !role->is_string()) return Quote(at + ".role") + " must be a string";
  const std::string who = role->get<std::string>();
  if (who != "user" && who != "system" && who != "developer" && who != "assistant") {
    return Quote(at + ".role") + " must be one of user, system, developer, assistant";
  }
  const Json* content = FieldOf(item, "content");
  const std::string pointer = "/input/" + std::to_string(i) + "/content";
  Json text;
  std::vector<std::string> slots;
  if (content != nullptr && content->is_string()) {
    text = *content;
    slots.push_back(pointer);
  } else if (content != nullptr && content->is_array()) {
    std::string e = ReadParts(*content, at + ".content", pointer, &text, &slots, r, x);
    if (!e.empty()) return e;
  } else {
    return Quote(at + ".content") + " must be a string or a list of parts";
  }
  r->canonical["messages"].push_back({{"role", who}, {"content", std::move(text)}});
  r->slots.push_back(std::move(slots));
  return "";
}

std::string ReadFunctionCall(const Json& item, std::size_t i, SurfaceRequest* r) {
  const std::string at = "input[" + std::to_string(i) + "]";
  for (const char* f : {"call_id", "name", "arguments"}) {
    const Json* v = FieldOf(item, f);
    if (v == nullptr || !v->is_string()) return Quote(at + "." + f) + " must be a string";
  }
  Json call = {{"id", item["call_id"]},
               {"type", "function"},
               {"function", {{"name", item["name"]}, {"arguments", item["arguments"]}}}};
  r->canonical["messages"].push_back(
      {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", Json::array({call})}});
  r->slots.emplace_back();
  return "";
}

std::string ReadCallOutput(const Json& item, std::size_t i, SurfaceRequest* r, Exchange* x) {
  const std::string at = "input[" + std::to_string(i) + "]";
  const Json* id = FieldOf(item, "call_id");
  if (id == nullptr || !id->is_string()) return Quote(at + ".call_id") + " must be a string";
  const Json* output = FieldOf(item, "output");
  const std::string pointer = "/input/" + std::to_string(i) + "/output";
  Json text;
  std::vector<std::string> slots;
  if (output != nullptr && output->is_string()) {
    text = *output;
    slots.push_back(pointer);
  } else if (output != nullptr && output->is_array()) {
    std::string e = ReadParts(*output, at + ".output", pointer, &text, &slots, r, x);
    if (!e.empty()) return e;
  } else {
    return Quote(at + ".output") + " must be a string or a list of parts";
  }
  r->canonical["messages"].push_back(
      {{"role", "tool"}, {"tool_call_id", *id}, {"content", std::move(text)}});
  r->slots.push_back(std::move(slots));
  return "";
}

std::string ReadInput(const Json& input, SurfaceRequest* r, Exchange* x) {
  if (input.is_string()) {
    AddMessage(r, "user", input, "/input");
    return "";
  }
  if (!input.is_array()) return "`input` must be a string or a list of items";
  for (std::size_t i = 0; i < input.size(); ++i) {
    const Json& item = input[i];
    const std::string at = "input[" + std::to_string(i) + "]";
    if (!item.is_object()) return Quote(at) + " must be an object";
    const Json* type = FieldOf(item, "type");
    if (type != nullptr && !type->is_string()) return Quote(at + ".type") + " must be a string";
    const std::string kind = type == nullptr ? "message" : type->get<std::string>();
    std::string e;
    if (kind == "message") {
      e = ReadMessage(item, i, r, x);
    } else if (kind == "function_call") {
      e = ReadFunctionCall(item, i, r);
    } else if (kind == "function_call_output") {
      e = ReadCallOutput(item, i, r, x);
    } else {
      NotEvaluated(x, at, "a `" + kind + "` item: no stage reads it");
      r->unread = true;
    }
    if (!e.empty()) return e;
  }
  return "";
}

// Function tools in chat's shape, so `input.tools` reads the same on every
// surface; other tools keep their type.
Json ChatTools(const Json& tools) {
  Json out = Json::array();
  for (const Json& t : tools) {
    const std::string type = StringField(t, "type");
    if (type != "function") {
      out.push_back({{"type", type}});
      continue;
    }
    Json fn = {{"name", StringField(t, "name")}};
    if (t.contains("description")) fn["description"] = t["description"];
    if (t.contains("parameters")) fn["parameters"] = t["parameters"];
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

std::string ReadHead(const Json& body, SurfaceRequest* out) {
  if (std::string e = ReadModelAndStream(body, out); !e.empty()) return e;
  const Json* tools = FieldOf(body, "tools");
  if (tools != nullptr && !tools->is_array() && !tools->is_null()) return "`tools` must be a list";
  if (tools != nullptr && tools->is_array()) out->canonical["tools"] = ChatTools(*tools);
  for (const char* field : {"user", "metadata"}) {
    if (body.contains(field)) out->canonical[field] = body[field];
  }
  return "";
}

class Responses : public Surface {
 public:
  std::string_view name() const override { return "responses"; }
  std::string_view upstream_path() const override { return "/responses"; }

  std::string Read(const Json& body, SurfaceRequest* out, Exchange* x) const override {
    if (std::string e = ReadHead(body, out); !e.empty()) return e;
    const Json* instructions = FieldOf(body, "instructions");
    if (instructions != nullptr && !instructions->is_string() && !instructions->is_null()) {
      return "`instructions` must be a string";
    }
    if (instructions != nullptr && instructions->is_string()) {
      AddMessage(out, "system", *instructions, "/instructions");
    }
    const Json* input = FieldOf(body, "input");
    if (input == nullptr) return "`input` is required";
    return ReadInput(*input, out, x);
  }

  std::string ToChat(const Json& body, Json* chat) const override {
    return ResponsesToChatRequest(body, chat);
  }

  std::string AnswerOf(const Json& body, bool native, Json* answer) const override {
    if (!native) {
      if (std::string shape = ValidateCompletion(*answer); !shape.empty()) return shape;
      *answer = ChatToResponse(*answer, body, NewId("resp_"), NowMicros() / 1000000);
    }
    return Check(*answer);
  }

  void View(Json* answer, AnswerView* view) const override {
    int calls = 0;
    Json& output = (*answer)["output"];
    const std::string finish_reason = FinishReason(*answer);
    for (std::size_t i = 0; i < output.size(); ++i) {
      Json& item = output[i];
      const std::string type = StringField(item, "type");
      if (type == "function_call") {
        view->tools.push_back({StringField(item, "name"), StringField(item, "arguments"),
                               StringField(item, "call_id"), calls++});
      } else if (type == "message") {
        for (Json& part : item["content"]) {
          const char* field = StringField(part, "type") == "refusal" ? "refusal" : "text";
          view->texts.push_back({&part[field], finish_reason});
        }
      } else {
        view->unread.emplace_back("output[" + std::to_string(i) + "]",
                                  "a `" + type + "` item: no stage reads it");
      }
    }
  }

  std::unique_ptr<SurfaceRelay> Relay(StreamJudge* judge, const Json& body,
                                      bool native) const override {
    return NewResponsesRelay(judge, body, native);
  }

 private:
  // The answer's status in chat's terms, which the policies are written on
  // (`output.finish_reason == "length"`): a response cut short by its token
  // bound is "length", by a content filter "content_filter"; a complete one
  // "tool_calls" when it calls functions, else "stop".
  static std::string FinishReason(const Json& answer) {
    const std::string status = StringField(answer, "status");
    if (status == "incomplete") {
      const Json* details = FieldOf(answer, "incomplete_details");
      const std::string reason = details == nullptr ? "" : StringField(*details, "reason");
      if (reason == "max_output_tokens") return "length";
      return reason.empty() ? status : reason;
    }
    if (status != "completed") return status;
    const Json* output = FieldOf(answer, "output");
    for (std::size_t i = 0; output != nullptr && output->is_array() && i < output->size(); ++i) {
      if (StringField((*output)[i], "type") == "function_call") return "tool_calls";
    }
    return "stop";
  }

  // The answer's items the stages read must have the shapes they read:
  // anything else would reach the client unjudged.
  static std::string Check(const Json& answer) {
    const Json* output = FieldOf(answer, "output");
    if (output == nullptr || !output->is_array()) return "`output` must be a list";
    for (std::size_t i = 0; i < output->size(); ++i) {
      const Json& item = (*output)[i];
      const std::string at = "output[" + std::to_string(i) + "]";
      if (!item.is_object()) return Quote(at) + " must be an object";
      const std::string type = StringField(item, "type");
      if (type == "function_call") {
        for (const char* f : {"name", "arguments"}) {
          const Json* v = FieldOf(item, f);
          if (v == nullptr || !v->is_string()) return Quote(at + "." + f) + " must be a string";
        }
      }
      if (type != "message") continue;
      const Json* content = FieldOf(item, "content");
      if (content == nullptr || !content->is_array()) return Quote(at + ".content") + " must be a list";
      for (const Json& part : *content) {
        const std::string kind = StringField(part, "type");
        const char* field = kind == "refusal" ? "refusal" : "text";
        const Json* v = FieldOf(part, field);
        if (kind != "output_text" && kind != "refusal") return Quote(at + ".content[]") + " has an unknown part type";
        if (v == nullptr || !v->is_string()) return Quote(at + ".content[]." + field) + " must be a string";
      }
    }
    return "";
  }
};

}  // namespace

const Surface& ResponsesSurface() {
  static const Responses surface;
  return surface;
}

}  // namespace kt::gateway
