#include "gateway/internal/surface.h"

#include "gateway/internal/util.h"

namespace kt::gateway {

void AddMessage(SurfaceRequest* r, std::string role, const Json& text, std::string slot) {
  r->canonical["messages"].push_back({{"role", std::move(role)}, {"content", text}});
  r->slots.push_back({std::move(slot)});
}

// A redacted canonical message's text goes to its first slot; the message's
// other text parts are emptied, as the chat surface collapses a redacted
// list of parts into one text part: the redacted text is never split.
void Surface::Rewrite(const SurfaceRequest& r, const Json& forward, Json* body) const {
  const Json* messages = FieldOf(forward, "messages");
  if (messages == nullptr || !messages->is_array()) return;
  const Json& before = r.canonical["messages"];
  for (std::size_t i = 0; i < r.slots.size() && i < messages->size(); ++i) {
    const Json& after = (*messages)[i];
    if (!after.is_object() || after["content"] == before[i]["content"] || r.slots[i].empty()) {
      continue;
    }
    std::string text;
    if (after["content"].is_string()) text = after["content"].get<std::string>();
    if (after["content"].is_array()) {
      for (const Json& part : after["content"]) text += StringField(part, "text");
    }
    for (std::size_t s = 0; s < r.slots[i].size(); ++s) {
      (*body)[Json::json_pointer(r.slots[i][s])] = s == 0 ? text : std::string();
    }
  }
}

namespace {

bool IsTokenList(const Json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const Json& t : v) {
    if (!t.is_number_integer()) return false;
  }
  return true;
}

}  // namespace

std::string ReadModelAndStream(const Json& body, SurfaceRequest* out) {
  if (!body.is_object()) return "the request body must be a JSON object";
  const Json* model = FieldOf(body, "model");
  if (model == nullptr || !model->is_string() || model->get_ref<const std::string&>().empty()) {
    return "`model` must be a non-empty string";
  }
  const Json* stream = FieldOf(body, "stream");
  if (stream != nullptr && !stream->is_boolean() && !stream->is_null()) {
    return "`stream` must be a boolean";
  }
  out->model = model->get<std::string>();
  out->stream = stream != nullptr && stream->is_boolean() && stream->get<bool>();
  out->canonical = {{"model", out->model}, {"messages", Json::array()}, {"stream", out->stream}};
  return "";
}

std::string ReadTexts(const Json& value, const std::string& field, SurfaceRequest* r,
                      Exchange* x) {
  if (value.is_string()) {
    AddMessage(r, "user", value, "/" + field);
    return "";
  }
  if (IsTokenList(value)) {
    NotEvaluated(x, field, "token ids: no stage reads them");
    r->unread = true;
    return "";
  }
  if (!value.is_array() || value.empty()) {
    return "`" + field + "` must be a string, a list of strings or token ids";
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string at = field + "[" + std::to_string(i) + "]";
    if (value[i].is_string()) {
      AddMessage(r, "user", value[i], "/" + field + "/" + std::to_string(i));
    } else if (IsTokenList(value[i])) {
      NotEvaluated(x, at, "token ids: no stage reads them");
      r->unread = true;
    } else {
      return "`" + at + "` must be a string or a list of token ids";
    }
  }
  return "";
}

std::string ErrorFrame(const StreamJudge::Stop& stop, const std::string& request_id) {
  return "data: " +
         Dump(ErrorEnvelope(stop.type, stop.code, stop.message, request_id, stop.policy)) + "\n\n";
}

}  // namespace kt::gateway
