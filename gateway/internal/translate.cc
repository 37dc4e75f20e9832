#include "gateway/internal/translate.h"

#include <string_view>
#include <utility>

#include "gateway/internal/util.h"

namespace kt::gateway {

using Json = nlohmann::json;

namespace {

// What every refusal of a Responses-only feature ends with: the gateway does
// not know which provider it is, only that the provider speaks chat alone.
constexpr std::string_view kChatOnly = "(a chat-only provider cannot serve it)";

// "`path`: message" — every refusal names the field first.
std::string Refusal(const std::string& path, const std::string& message) {
  return "`" + path + "`: " + message;
}

std::string Indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// Text out of JSON that may hold anything an upstream sent: invalid UTF-8
// is replaced, never thrown on.
std::string Dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// An integer field, 0 when missing or of another type (a count the
// upstream got wrong reads as unknown, not as an exception).
int64_t IntField(const Json& object, std::string_view key) {
  const Json* v = FieldOf(object, key);
  return v != nullptr && v->is_number_integer() ? v->get<int64_t>() : 0;
}

// A field present with a value (an explicit null reads as absent, as the API
// reads it).
const Json* Given(const Json& object, std::string_view key) {
  const Json* v = FieldOf(object, key);
  return v != nullptr && !v->is_null() ? v : nullptr;
}

void CopyGiven(const Json& from, std::string_view key, Json* to) {
  if (const Json* v = Given(from, key)) (*to)[std::string(key)] = *v;
}

// The choice a single-answer surface translates: the one with index 0, or
// one with no index at all (some servers omit it). Choices past the first
// (n > 1) have no place in a Responses answer.
const Json* ChoiceZero(const Json& chat) {
  const Json* choices = FieldOf(chat, "choices");
  if (choices == nullptr || !choices->is_array()) return nullptr;
  for (const Json& choice : *choices) {
    if (!choice.is_object()) continue;
    const Json* index = FieldOf(choice, "index");
    if (index == nullptr || (index->is_number_integer() && index->get<int64_t>() == 0)) {
      return &choice;
    }
  }
  return nullptr;
}

// Chat usage (prompt/completion tokens) in Responses form; null when the
// upstream sent none.
Json UsageFromChat(const Json* usage) {
  if (usage == nullptr || !usage->is_object()) return nullptr;
  int64_t input = IntField(*usage, "prompt_tokens");
  int64_t output = IntField(*usage, "completion_tokens");
  const Json* total = FieldOf(*usage, "total_tokens");
  int64_t cached = 0, reasoning = 0;
  if (const Json* d = FieldOf(*usage, "prompt_tokens_details")) {
    cached = IntField(*d, "cached_tokens");
  }
  if (const Json* d = FieldOf(*usage, "completion_tokens_details")) {
    reasoning = IntField(*d, "reasoning_tokens");
  }
  return {{"input_tokens", input},
          {"input_tokens_details", {{"cached_tokens", cached}}},
          {"output_tokens", output},
          {"output_tokens_details", {{"reasoning_tokens", reasoning}}},
          {"total_tokens", total != nullptr && total->is_number_integer() ? total->get<int64_t>()
                                                                          : input + output}};
}

// A chat stream event's data as the chunk object it must be. Strict: a
// duplicate key or a nesting past the bound is refused, as everywhere the
// gateway reads what crosses it.
bool ParseChunk(const std::string& data, Json* chunk, std::string* error) {
  std::string parse_error;
  if (!ParseJsonStrict(data, chunk, &parse_error)) {
    *error = "the chat stream sent an event that is not JSON: " + parse_error;
    return false;
  }
  if (!chunk->is_object()) {
    *error = "the chat stream sent an event that is not a JSON object";
    return false;
  }
  return true;
}

// Why a response stopped short, in Responses words ("" when it did not).
std::string IncompleteReason(const std::string& finish_reason) {
  if (finish_reason == "length") return "max_output_tokens";
  if (finish_reason == "content_filter") return "content_filter";
  return "";
}

// ------------------------------------------------ output items and response

Json PartJson(const std::string& type, const std::string& text) {
  if (type == "refusal") return {{"type", "refusal"}, {"refusal", text}};
  return {{"type", "output_text"},
          {"text", text},
          {"annotations", Json::array()},
          {"logprobs", Json::array()}};
}

Json MessageItem(const std::string& id, Json content, const std::string& status) {
  return {{"type", "message"},
          {"id", id},
          {"status", status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

Json CallItem(const std::string& id, const std::string& call_id, const std::string& name,
              const std::string& arguments, const std::string& status) {
  return {{"type", "function_call"}, {"id", id},        {"call_id", call_id}, {"name", name},
          {"arguments", arguments},  {"status", status}};
}

// `key` of the request when it is of the wanted kind, else `fallback`: the
// echo must keep the Response type's shape whatever the client sent.
template <typename Pred>
Json Echo(const Json& request, std::string_view key, Pred is_kind, Json fallback) {
  const Json* v = FieldOf(request, key);
  return v != nullptr && is_kind(*v) ? *v : fallback;
}

// The `response` object around `output`, with the request's settings echoed
// as the API echoes them.
Json ResponseObject(const Json& request, const std::string& id, int64_t created_at,
                    const std::string& model, const std::string& status, Json output, Json usage,
                    const std::string& incomplete_reason) {
  auto is_string = [](const Json& v) { return v.is_string(); };
  auto is_number = [](const Json& v) { return v.is_number(); };
  auto is_integer = [](const Json& v) { return v.is_number_integer(); };
  auto is_boolean = [](const Json& v) { return v.is_boolean(); };
  auto is_object = [](const Json& v) { return v.is_object(); };
  auto is_array = [](const Json& v) { return v.is_array(); };
  auto is_choice = [](const Json& v) { return v.is_string() || v.is_object(); };
  Json r = {{"id", id},
            {"object", "response"},
            {"created_at", created_at},
            {"status", status},
            {"model", model.empty() ? StringField(request, "model") : model},
            {"output", std::move(output)},
            {"usage", std::move(usage)},
            {"error", nullptr},
            {"previous_response_id", nullptr}};
  r["incomplete_details"] =
      incomplete_reason.empty() ? Json(nullptr) : Json{{"reason", incomplete_reason}};
  r["instructions"] = Echo(request, "instructions", is_string, nullptr);
  r["tools"] = Echo(request, "tools", is_array, Json::array());
  r["tool_choice"] = Echo(request, "tool_choice", is_choice, "auto");
  r["parallel_tool_calls"] = Echo(request, "parallel_tool_calls", is_boolean, true);
  r["temperature"] = Echo(request, "temperature", is_number, nullptr);
  r["top_p"] = Echo(request, "top_p", is_number, nullptr);
  r["max_output_tokens"] = Echo(request, "max_output_tokens", is_integer, nullptr);
  r["metadata"] = Echo(request, "metadata", is_object, Json::object());
  r["text"] = Echo(request, "text", is_object, Json{{"format", {{"type", "text"}}}});
  r["reasoning"] = Echo(request, "reasoning", is_object, nullptr);
  return r;
}

// A chat tool call's arguments as the string Responses carries: some servers
// send an object where the API sends its JSON text.
std::string ArgumentsText(const Json* arguments) {
  if (arguments == nullptr || arguments->is_null()) return "";
  return arguments->is_string() ? arguments->get<std::string>() : Dump(*arguments);
}

// The first choice's message as output items: one message (text, then a
// refusal part when there is one), then each function tool call.
Json OutputFromMessage(const Json* message) {
  static const Json kNone = Json::object();
  const Json& m = message != nullptr ? *message : kNone;
  Json calls = Json::array();
  const Json* tool_calls = FieldOf(m, "tool_calls");
  if (tool_calls != nullptr && tool_calls->is_array()) {
    for (const Json& call : *tool_calls) {
      const Json* fn = FieldOf(call, "function");
      if (fn == nullptr || !fn->is_object()) continue;
      std::string type = StringField(call, "type");
      if (!type.empty() && type != "function") continue;
      std::string call_id = StringField(call, "id");
      if (call_id.empty()) call_id = NewId("call_");
      calls.push_back(CallItem(NewId("fc_"), call_id, StringField(*fn, "name"),
                               ArgumentsText(FieldOf(*fn, "arguments")), "completed"));
    }
  }
  std::string text = StringField(m, "content");
  std::string refusal = StringField(m, "refusal");
  Json parts = Json::array();
  // An empty answer is still one (empty) message, as the stream's is.
  if (!text.empty() || (refusal.empty() && calls.empty())) {
    parts.push_back(PartJson("output_text", text));
  }
  if (!refusal.empty()) parts.push_back(PartJson("refusal", refusal));
  Json output = Json::array();
  if (!parts.empty()) output.push_back(MessageItem(NewId("msg_"), std::move(parts), "completed"));
  for (Json& call : calls) output.push_back(std::move(call));
  return output;
}

// ------------------------------------------------------ request: messages

std::string TranslateImage(const Json& part, const std::string& path, Json* out) {
  std::string url = StringField(part, "image_url");
  if (url.empty()) {
    return Refusal(path,
                   "an image without `image_url` (a `file_id`) has no chat-completions form " +
                       std::string(kChatOnly));
  }
  Json image = {{"url", url}};
  std::string detail = StringField(part, "detail");
  // Chat knows low, high and auto; "original" (full resolution) is nearest
  // to high.
  if (detail == "original") detail = "high";
  if (!detail.empty()) image["detail"] = detail;
  *out = {{"type", "image_url"}, {"image_url", std::move(image)}};
  return "";
}

// Chat's `file` part takes a file by id or inline data, never by URL.
std::string TranslateFile(const Json& part, const std::string& path, Json* out) {
  if (Given(part, "file_url") != nullptr) {
    return Refusal(
        path, "a file given by `file_url` has no chat-completions form " + std::string(kChatOnly));
  }
  Json file = Json::object();
  for (const char* key : {"file_id", "file_data", "filename"}) {
    std::string value = StringField(part, key);
    if (!value.empty()) file[key] = value;
  }
  if (!file.contains("file_id") && !file.contains("file_data")) {
    return Refusal(path, "an `input_file` part needs `file_id` or `file_data`");
  }
  *out = {{"type", "file"}, {"file", std::move(file)}};
  return "";
}

// A string field a part or item cannot do without.
std::string RequiredString(const Json& object, const char* key, const std::string& path,
                           std::string* out) {
  const Json* v = FieldOf(object, key);
  if (v == nullptr || !v->is_string() || v->get_ref<const std::string&>().empty()) {
    return Refusal(path + "." + key, "must be a non-empty string");
  }
  *out = v->get<std::string>();
  return "";
}

// One content part of an input message (role already chat's) as a chat part.
std::string TranslatePart(const Json& part, const std::string& role, const std::string& path,
                          Json* out) {
  std::string type = StringField(part, "type");
  if (type.empty()) return Refusal(path, "a content part needs a string `type`");
  if (type == "input_text" || type == "output_text") {
    const Json* text = FieldOf(part, "text");
    if (text == nullptr || !text->is_string()) return Refusal(path + ".text", "must be a string");
    *out = {{"type", "text"}, {"text", *text}};
    return "";
  }
  if (type == "refusal" && role == "assistant") {
    const Json* refusal = FieldOf(part, "refusal");
    if (refusal == nullptr || !refusal->is_string()) {
      return Refusal(path + ".refusal", "must be a string");
    }
    *out = {{"type", "refusal"}, {"refusal", *refusal}};
    return "";
  }
  if ((type == "input_image" || type == "input_file") && role != "user") {
    return Refusal(
        path, "chat carries `" + type + "` parts only in user messages " + std::string(kChatOnly));
  }
  if (type == "input_image") return TranslateImage(part, path, out);
  if (type == "input_file") return TranslateFile(part, path, out);
  return Refusal(path, "the `" + type + "` part has no chat-completions form in a " + role +
                           " message " + std::string(kChatOnly));
}

// A message's content (a string, or a list of parts) as chat content. A
// single text part becomes a plain string: every chat server reads that.
std::string TranslateContent(const Json& content, const std::string& role, const std::string& path,
                             Json* out) {
  if (content.is_string()) {
    *out = content;
    return "";
  }
  if (!content.is_array()) return Refusal(path, "must be a string or a list of content parts");
  Json parts = Json::array();
  for (std::size_t i = 0; i < content.size(); ++i) {
    Json part;
    std::string error = TranslatePart(content[i], role, Indexed(path, i), &part);
    if (!error.empty()) return error;
    parts.push_back(std::move(part));
  }
  if (parts.empty()) {
    *out = "";
  } else if (parts.size() == 1 && parts[0]["type"] == "text") {
    *out = parts[0]["text"];
  } else {
    *out = std::move(parts);
  }
  return "";
}

std::string TranslateMessage(const Json& item, const std::string& path, Json* messages) {
  std::string role = StringField(item, "role");
  if (role != "user" && role != "system" && role != "developer" && role != "assistant") {
    return Refusal(path + ".role", "must be one of user, system, developer, assistant");
  }
  // Chat has `developer` too, but most chat-only servers know only `system`.
  if (role == "developer") role = "system";
  const Json* content = FieldOf(item, "content");
  if (content == nullptr) return Refusal(path + ".content", "missing");
  Json chat_content;
  std::string error = TranslateContent(*content, role, path + ".content", &chat_content);
  if (!error.empty()) return error;
  messages->push_back({{"role", role}, {"content", std::move(chat_content)}});
  return "";
}

// A function_call item joins the assistant message just before it (the
// message the model said with its calls, or the previous calls of the same
// turn): chat carries one turn's text and calls in one assistant message.
std::string TranslateFunctionCall(const Json& item, const std::string& path, Json* messages) {
  std::string call_id, name;
  std::string error = RequiredString(item, "call_id", path, &call_id);
  if (error.empty()) error = RequiredString(item, "name", path, &name);
  if (!error.empty()) return error;
  const Json* arguments = FieldOf(item, "arguments");
  if (arguments == nullptr || !arguments->is_string()) {
    return Refusal(path + ".arguments", "must be a string");
  }
  Json call = {{"id", call_id},
               {"type", "function"},
               {"function", {{"name", name}, {"arguments", *arguments}}}};
  if (!messages->empty() && messages->back()["role"] == "assistant") {
    Json& turn = messages->back();
    if (!turn.contains("tool_calls")) turn["tool_calls"] = Json::array();
    turn["tool_calls"].push_back(std::move(call));
    return "";
  }
  messages->push_back({{"role", "assistant"},
                       {"content", nullptr},
                       {"tool_calls", Json::array({std::move(call)})}});
  return "";
}

std::string TranslateCallOutput(const Json& item, const std::string& path, Json* messages) {
  std::string call_id;
  std::string error = RequiredString(item, "call_id", path, &call_id);
  if (!error.empty()) return error;
  const Json* output = FieldOf(item, "output");
  if (output == nullptr) return Refusal(path + ".output", "missing");
  Json content;
  // As role "tool": chat's tool messages carry text only.
  error = TranslateContent(*output, "tool", path + ".output", &content);
  if (!error.empty()) return error;
  messages->push_back(
      {{"role", "tool"}, {"tool_call_id", call_id}, {"content", std::move(content)}});
  return "";
}

std::string TranslateInput(const Json& request, Json* messages) {
  if (const Json* instructions = Given(request, "instructions")) {
    if (!instructions->is_string()) return Refusal("instructions", "must be a string");
    messages->push_back({{"role", "system"}, {"content", *instructions}});
  }
  const Json* input = Given(request, "input");
  if (input != nullptr && input->is_string()) {
    messages->push_back({{"role", "user"}, {"content", *input}});
  } else if (input != nullptr && input->is_array()) {
    for (std::size_t i = 0; i < input->size(); ++i) {
      const Json& item = (*input)[i];
      std::string path = Indexed("input", i);
      if (!item.is_object()) return Refusal(path, "must be an object");
      std::string type = StringField(item, "type");
      std::string error;
      if (type.empty() || type == "message") {
        error = TranslateMessage(item, path, messages);
      } else if (type == "function_call") {
        error = TranslateFunctionCall(item, path, messages);
      } else if (type == "function_call_output") {
        error = TranslateCallOutput(item, path, messages);
      } else {
        error = Refusal(
            path, "the `" + type + "` item has no chat-completions form " + std::string(kChatOnly));
      }
      if (!error.empty()) return error;
    }
  } else if (input != nullptr) {
    return Refusal("input", "must be a string or a list of input items");
  }
  if (messages->empty()) return Refusal("input", "missing: chat needs at least one message");
  return "";
}

// --------------------------------------------- request: tools and options

std::string TranslateTools(const Json& request, Json* chat) {
  const Json* tools = Given(request, "tools");
  if (tools == nullptr) return "";
  if (!tools->is_array()) return Refusal("tools", "must be a list");
  Json out = Json::array();
  for (std::size_t i = 0; i < tools->size(); ++i) {
    const Json& tool = (*tools)[i];
    std::string path = Indexed("tools", i);
    std::string type = StringField(tool, "type");
    if (type.empty()) return Refusal(path + ".type", "must be a string");
    if (type != "function") {
      return Refusal(
          path, "the `" + type + "` tool has no chat-completions form " + std::string(kChatOnly));
    }
    std::string name;
    std::string error = RequiredString(tool, "name", path, &name);
    if (!error.empty()) return error;
    Json fn = {{"name", name}};
    for (const char* key : {"description", "parameters", "strict"}) CopyGiven(tool, key, &fn);
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  if (!out.empty()) (*chat)["tools"] = std::move(out);
  return "";
}

std::string TranslateToolChoice(const Json& request, Json* chat) {
  const Json* choice = Given(request, "tool_choice");
  if (choice == nullptr) return "";
  if (choice->is_string()) {
    const std::string& mode = choice->get_ref<const std::string&>();
    if (mode != "auto" && mode != "none" && mode != "required") {
      return Refusal("tool_choice", "must be auto, none, required or a function");
    }
    (*chat)["tool_choice"] = mode;
    return "";
  }
  std::string type = StringField(*choice, "type");
  if (type != "function") {
    return Refusal("tool_choice", "the `" + (type.empty() ? std::string("?") : type) +
                                      "` tool choice has no chat-completions form " +
                                      std::string(kChatOnly));
  }
  std::string name;
  std::string error = RequiredString(*choice, "name", "tool_choice", &name);
  if (!error.empty()) return error;
  (*chat)["tool_choice"] = {{"type", "function"}, {"function", {{"name", name}}}};
  return "";
}

// `text.format` → `response_format`, `text.verbosity` → `verbosity`.
std::string TranslateText(const Json& request, Json* chat) {
  const Json* text = Given(request, "text");
  if (text == nullptr) return "";
  if (!text->is_object()) return Refusal("text", "must be an object");
  CopyGiven(*text, "verbosity", chat);
  const Json* format = Given(*text, "format");
  if (format == nullptr) return "";
  std::string type = StringField(*format, "type");
  if (type == "text") return "";
  if (type == "json_object") {
    (*chat)["response_format"] = {{"type", "json_object"}};
    return "";
  }
  if (type != "json_schema") {
    return Refusal("text.format.type", "must be text, json_object or json_schema");
  }
  std::string name;
  std::string error = RequiredString(*format, "name", "text.format", &name);
  if (!error.empty()) return error;
  const Json* schema = FieldOf(*format, "schema");
  if (schema == nullptr || !schema->is_object()) {
    return Refusal("text.format.schema", "must be an object");
  }
  Json json_schema = {{"name", name}, {"schema", *schema}};
  for (const char* key : {"strict", "description"}) CopyGiven(*format, key, &json_schema);
  (*chat)["response_format"] = {{"type", "json_schema"}, {"json_schema", std::move(json_schema)}};
  return "";
}

// The Responses features that live in the API's server-side state, which a
// chat-only provider does not have.
std::string RefuseStateful(const Json& request) {
  if (Given(request, "previous_response_id") != nullptr) {
    return Refusal("previous_response_id",
                   "continuing a stored response needs the Responses API's stored state " +
                       std::string(kChatOnly));
  }
  if (Given(request, "conversation") != nullptr) {
    return Refusal("conversation", "a stored conversation needs the Responses API's stored state " +
                                       std::string(kChatOnly));
  }
  if (Given(request, "prompt") != nullptr) {
    return Refusal("prompt", "a stored prompt template needs the Responses API's stored state " +
                                 std::string(kChatOnly));
  }
  const Json* background = FieldOf(request, "background");
  if (background != nullptr && background->is_boolean() && background->get<bool>()) {
    return Refusal("background",
                   "a background response is a Responses API job " + std::string(kChatOnly));
  }
  return "";
}

}  // namespace

// ------------------------------------------------------------- responses

std::string ResponsesToChatRequest(const Json& request, Json* chat) {
  if (!request.is_object()) return Refusal("(body)", "must be a JSON object");
  std::string error = RefuseStateful(request);
  if (!error.empty()) return error;
  Json out = Json::object();
  Json messages = Json::array();
  error = TranslateInput(request, &messages);
  if (error.empty()) error = TranslateTools(request, &out);
  if (error.empty()) error = TranslateToolChoice(request, &out);
  if (error.empty()) error = TranslateText(request, &out);
  if (!error.empty()) return error;
  out["messages"] = std::move(messages);
  for (const char* key : {"model", "stream", "temperature", "top_p", "user", "metadata",
                          "service_tier", "safety_identifier", "prompt_cache_key"}) {
    CopyGiven(request, key, &out);
  }
  // Chat refuses parallel_tool_calls on a request without tools.
  if (out.contains("tools")) CopyGiven(request, "parallel_tool_calls", &out);
  if (const Json* max = Given(request, "max_output_tokens")) out["max_tokens"] = *max;
  if (const Json* reasoning = Given(request, "reasoning")) {
    if (const Json* effort = Given(*reasoning, "effort")) out["reasoning_effort"] = *effort;
  }
  // The stream's last event carries usage, so the chat stream must send it.
  const Json* stream = FieldOf(request, "stream");
  if (stream != nullptr && stream->is_boolean() && stream->get<bool>()) {
    out["stream_options"] = {{"include_usage", true}};
  }
  *chat = std::move(out);
  return "";
}

Json ChatToResponse(const Json& chat, const Json& request, const std::string& id,
                    int64_t created_at) {
  const Json* choice = ChoiceZero(chat);
  const Json* message = choice != nullptr ? FieldOf(*choice, "message") : nullptr;
  std::string reason =
      IncompleteReason(choice != nullptr ? StringField(*choice, "finish_reason") : "");
  Json output = OutputFromMessage(message);
  // What was cut short is the last item.
  if (!reason.empty()) output.back()["status"] = "incomplete";
  return ResponseObject(request, id, created_at, StringField(chat, "model"),
                        reason.empty() ? "completed" : "incomplete", std::move(output),
                        UsageFromChat(FieldOf(chat, "usage")), reason);
}

// ------------------------------------------------------- the stream

ChatToResponsesStream::ChatToResponsesStream(Json request, std::string id, int64_t created_at)
    : request_(std::move(request)), id_(std::move(id)), created_at_(created_at) {}

bool ChatToResponsesStream::Feed(const SseEvent& chat_event, std::vector<SseEvent>* out,
                                 std::string* error) {
  if (finished_) return true;
  if (chat_event.data.rfind("[DONE]", 0) == 0) {
    Begin(out);
    Finalize(out);
    Complete(out);
    return true;
  }
  Json chunk;
  if (!ParseChunk(chat_event.data, &chunk, error)) return false;
  if (const Json* upstream_error = Given(chunk, "error")) {
    EmitError(*upstream_error, out);
    return true;
  }
  if (model_.empty()) model_ = StringField(chunk, "model");
  Begin(out);
  if (const Json* usage = FieldOf(chunk, "usage"); usage != nullptr && usage->is_object()) {
    usage_ = UsageFromChat(usage);
  }
  // After finish_reason every item is closed; stray deltas are not reopened.
  const Json* choice = ChoiceZero(chunk);
  if (choice != nullptr && !finalized_) ApplyChoice(*choice, out);
  return true;
}

void ChatToResponsesStream::Emit(const std::string& type, Json data, std::vector<SseEvent>* out) {
  data["type"] = type;
  data["sequence_number"] = sequence_++;
  out->push_back({type, Dump(data)});
}

void ChatToResponsesStream::Begin(std::vector<SseEvent>* out) {
  if (begun_) return;
  begun_ = true;
  Emit("response.created", {{"response", Snapshot("in_progress")}}, out);
  Emit("response.in_progress", {{"response", Snapshot("in_progress")}}, out);
}

void ChatToResponsesStream::ApplyChoice(const Json& choice, std::vector<SseEvent>* out) {
  if (const Json* delta = FieldOf(choice, "delta")) {
    std::string content = StringField(*delta, "content");
    if (!content.empty()) AppendText("output_text", content, out);
    std::string refusal = StringField(*delta, "refusal");
    if (!refusal.empty()) AppendText("refusal", refusal, out);
    const Json* calls = FieldOf(*delta, "tool_calls");
    if (calls != nullptr && calls->is_array()) {
      for (std::size_t i = 0; i < calls->size(); ++i) {
        ApplyCallDelta((*calls)[i], static_cast<int64_t>(i), out);
      }
    }
  }
  std::string finish = StringField(choice, "finish_reason");
  if (!finish.empty()) {
    finish_reason_ = finish;
    Finalize(out);
  }
}

void ChatToResponsesStream::AppendText(const std::string& kind, const std::string& delta,
                                       std::vector<SseEvent>* out) {
  // Text after a tool call is a new message: the call's item closed when it
  // opened, and an item is never reopened.
  if (open_ < 0 || !items_[open_].is_message) OpenMessage(kind, out);
  if (items_[open_].parts.back().type != kind) {
    ClosePart(out);
    OpenPart(kind, out);
  }
  Item& item = items_[open_];
  item.parts.back().text += delta;
  Json data = {{"item_id", item.id},
               {"output_index", open_},
               {"content_index", item.parts.size() - 1},
               {"delta", delta}};
  if (kind == "output_text") {
    data["logprobs"] = Json::array();
    Emit("response.output_text.delta", std::move(data), out);
  } else {
    Emit("response.refusal.delta", std::move(data), out);
  }
}

void ChatToResponsesStream::ApplyCallDelta(const Json& entry, int64_t position,
                                           std::vector<SseEvent>* out) {
  ToolCallDelta d;
  if (!ReadToolCallDelta(entry, position, &d)) return;
  const int64_t index = d.index;
  Call& call = calls_[index];
  if (call.call_id.empty()) call.call_id = d.id;
  if (call.name.empty()) call.name = d.name;
  const std::string& arguments = d.arguments;
  if (call.output_index < 0) {
    call.pending += arguments;
    if (!call.name.empty()) OpenCall(index, out);
    return;
  }
  // A delta for a call that is no longer the open item (an upstream that
  // interleaves calls) still reaches its item: nothing the model said is
  // dropped, and the final response carries the whole arguments.
  if (!arguments.empty()) EmitArguments(call.output_index, arguments, out);
}

void ChatToResponsesStream::OpenMessage(const std::string& kind, std::vector<SseEvent>* out) {
  CloseOpen("completed", out);
  Item item;
  item.id = NewId("msg_");
  items_.push_back(std::move(item));
  open_ = static_cast<int>(items_.size()) - 1;
  Emit("response.output_item.added", {{"output_index", open_}, {"item", ItemJson(items_.back())}},
       out);
  OpenPart(kind, out);
}

void ChatToResponsesStream::OpenPart(const std::string& kind, std::vector<SseEvent>* out) {
  Item& item = items_[open_];
  item.parts.push_back({kind, ""});
  Emit("response.content_part.added",
       {{"item_id", item.id},
        {"output_index", open_},
        {"content_index", item.parts.size() - 1},
        {"part", PartJson(kind, "")}},
       out);
}

void ChatToResponsesStream::ClosePart(std::vector<SseEvent>* out) {
  const Item& item = items_[open_];
  const Part& part = item.parts.back();
  Json data = {
      {"item_id", item.id}, {"output_index", open_}, {"content_index", item.parts.size() - 1}};
  if (part.type == "output_text") {
    Json done = data;
    done["text"] = part.text;
    done["logprobs"] = Json::array();
    Emit("response.output_text.done", std::move(done), out);
  } else {
    Json done = data;
    done["refusal"] = part.text;
    Emit("response.refusal.done", std::move(done), out);
  }
  data["part"] = PartJson(part.type, part.text);
  Emit("response.content_part.done", std::move(data), out);
}

void ChatToResponsesStream::OpenCall(int64_t index, std::vector<SseEvent>* out) {
  CloseOpen("completed", out);
  Call& call = calls_[index];
  // function_call_output must name the call; invent an id the upstream omitted.
  if (call.call_id.empty()) call.call_id = NewId("call_");
  Item item;
  item.is_message = false;
  item.id = NewId("fc_");
  item.call_id = call.call_id;
  item.name = call.name;
  items_.push_back(std::move(item));
  open_ = call.output_index = static_cast<int>(items_.size()) - 1;
  Emit("response.output_item.added", {{"output_index", open_}, {"item", ItemJson(items_.back())}},
       out);
  if (!call.pending.empty()) EmitArguments(open_, std::exchange(call.pending, ""), out);
}

void ChatToResponsesStream::EmitArguments(int output_index, const std::string& delta,
                                          std::vector<SseEvent>* out) {
  Item& item = items_[output_index];
  item.arguments += delta;
  Emit("response.function_call_arguments.delta",
       {{"item_id", item.id}, {"output_index", output_index}, {"delta", delta}}, out);
}

void ChatToResponsesStream::CloseOpen(const std::string& status, std::vector<SseEvent>* out) {
  if (open_ < 0) return;
  Item& item = items_[open_];
  if (item.is_message) {
    ClosePart(out);
  } else {
    Emit("response.function_call_arguments.done",
         {{"item_id", item.id},
          {"output_index", open_},
          {"arguments", item.arguments},
          {"name", item.name}},
         out);
  }
  item.status = status;
  Emit("response.output_item.done", {{"output_index", open_}, {"item", ItemJson(item)}}, out);
  open_ = -1;
}

void ChatToResponsesStream::Finalize(std::vector<SseEvent>* out) {
  if (finalized_) return;
  finalized_ = true;
  // A call whose name never came still happened, and gets its item now; an
  // entry with nothing readable in it (no id, name or arguments) did not.
  for (auto& [index, call] : calls_) {
    bool said_something = !call.call_id.empty() || !call.name.empty() || !call.pending.empty();
    if (call.output_index < 0 && said_something) OpenCall(index, out);
  }
  // An empty answer is still one (empty) message, as the JSON translation's.
  if (items_.empty()) OpenMessage("output_text", out);
  // The item open at the end is the one a length or filter stop cut short.
  CloseOpen(IncompleteReason(finish_reason_).empty() ? "completed" : "incomplete", out);
}

void ChatToResponsesStream::Complete(std::vector<SseEvent>* out) {
  if (finished_) return;
  bool incomplete = !IncompleteReason(finish_reason_).empty();
  Emit(incomplete ? "response.incomplete" : "response.completed",
       {{"response", Snapshot(incomplete ? "incomplete" : "completed")}}, out);
  finished_ = true;
}

// The error event the API sends, carrying the upstream's error object too:
// the SDK throws an APIError built from `error` when an event has one.
void ChatToResponsesStream::EmitError(const Json& error, std::vector<SseEvent>* out) {
  Json data = {{"code", nullptr},
               {"message", "the upstream reported an error"},
               {"param", nullptr},
               {"error", error}};
  if (error.is_string()) {
    data["message"] = error;
  } else if (error.is_object()) {
    std::string message = StringField(error, "message");
    if (!message.empty()) data["message"] = message;
    const Json* code = Given(error, "code");
    if (code != nullptr) data["code"] = code->is_string() ? code->get<std::string>() : Dump(*code);
    std::string param = StringField(error, "param");
    if (!param.empty()) data["param"] = param;
  }
  Emit("error", std::move(data), out);
  finished_ = true;
}

Json ChatToResponsesStream::ItemJson(const Item& item) const {
  if (!item.is_message) {
    return CallItem(item.id, item.call_id, item.name, item.arguments, item.status);
  }
  Json content = Json::array();
  // The added event shows the message before its first part.
  if (item.status != "in_progress") {
    for (const Part& part : item.parts) content.push_back(PartJson(part.type, part.text));
  }
  return MessageItem(item.id, std::move(content), item.status);
}

Json ChatToResponsesStream::Snapshot(const std::string& status) const {
  Json output = Json::array();
  for (const Item& item : items_) output.push_back(ItemJson(item));
  return ResponseObject(request_, id_, created_at_, model_, status, std::move(output), usage_,
                        IncompleteReason(finish_reason_));
}

// ------------------------------------------------- legacy completions

std::string CompletionsToChatRequest(const Json& request, Json* chat) {
  if (!request.is_object()) return Refusal("(body)", "must be a JSON object");
  if (Given(request, "suffix") != nullptr) {
    return Refusal("suffix", "chat has no insertion mode " + std::string(kChatOnly));
  }
  const Json* echo = FieldOf(request, "echo");
  if (echo != nullptr && echo->is_boolean() && echo->get<bool>()) {
    return Refusal("echo", "chat does not echo the prompt " + std::string(kChatOnly));
  }
  const Json* best_of = FieldOf(request, "best_of");
  if (best_of != nullptr && best_of->is_number() && best_of->get<double>() > 1) {
    return Refusal("best_of", "chat has no server-side best-of " + std::string(kChatOnly));
  }
  if (Given(request, "logprobs") != nullptr) {
    return Refusal("logprobs",
                   "legacy logprobs have no chat-completions form " + std::string(kChatOnly));
  }
  const Json* prompt = Given(request, "prompt");
  if (prompt != nullptr && prompt->is_array() && prompt->size() == 1) prompt = &(*prompt)[0];
  if (prompt == nullptr || !prompt->is_string()) {
    return Refusal("prompt",
                   "must be a string or a list of exactly one string (token prompts "
                   "and batches have no chat-completions form)");
  }
  Json out = {{"messages", Json::array({{{"role", "user"}, {"content", *prompt}}})}};
  for (const char* key :
       {"model", "max_tokens", "temperature", "top_p", "n", "stop", "stream", "stream_options",
        "user", "seed", "presence_penalty", "frequency_penalty", "logit_bias"}) {
    CopyGiven(request, key, &out);
  }
  *chat = std::move(out);
  return "";
}

namespace {

// A chat answer or chunk (with each choice's text under `body`/content) in
// text_completion form.
Json ToCompletion(const Json& chat, const char* body) {
  Json out = {{"id", StringField(chat, "id")},
              {"object", "text_completion"},
              {"created", IntField(chat, "created")},
              {"model", StringField(chat, "model")},
              {"choices", Json::array()}};
  const Json* choices = FieldOf(chat, "choices");
  if (choices != nullptr && choices->is_array()) {
    for (std::size_t i = 0; i < choices->size(); ++i) {
      const Json& choice = (*choices)[i];
      if (!choice.is_object()) continue;
      const Json* index = FieldOf(choice, "index");
      const Json* message = FieldOf(choice, body);
      const Json* finish = FieldOf(choice, "finish_reason");
      out["choices"].push_back(
          {{"index", index != nullptr && index->is_number_integer() ? *index : Json(i)},
           {"text", message != nullptr ? StringField(*message, "content") : ""},
           {"finish_reason", finish != nullptr && finish->is_string() ? *finish : Json(nullptr)},
           {"logprobs", nullptr}});
    }
  }
  // Legacy usage has chat's field names.
  if (const Json* usage = FieldOf(chat, "usage"); usage != nullptr && usage->is_object()) {
    out["usage"] = *usage;
  }
  std::string fingerprint = StringField(chat, "system_fingerprint");
  if (!fingerprint.empty()) out["system_fingerprint"] = fingerprint;
  return out;
}

}  // namespace

Json ChatToCompletion(const Json& chat) { return ToCompletion(chat, "message"); }

bool ChatChunkToCompletionChunk(const SseEvent& chat_event, SseEvent* out, std::string* error) {
  if (chat_event.data.rfind("[DONE]", 0) == 0) {
    *out = chat_event;
    return true;
  }
  Json chunk;
  if (!ParseChunk(chat_event.data, &chunk, error)) return false;
  if (Given(chunk, "error") != nullptr) {
    *out = chat_event;
    return true;
  }
  *out = {chat_event.event, Dump(ToCompletion(chunk, "delta"))};
  return true;
}

}  // namespace kt::gateway
