#include "gateway/internal/anthropic.h"

#include <string_view>
#include <utility>

#include "gateway/internal/util.h"

namespace kt::gateway {

using Json = nlohmann::json;

namespace {

// ------------------------------------------------------------ reading

// "`path`: why" — every refusal names the field first.
std::string Refuse(const std::string& path, const std::string& why) {
  return "`" + path + "`: " + why;
}

std::string At(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// JSON text of anything an upstream sent: invalid UTF-8 is replaced, never
// thrown on.
std::string Text(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A field present with a value: an explicit null reads as absent, as both
// APIs read it.
const Json* Present(const Json& object, std::string_view key) {
  const Json* v = FieldOf(object, key);
  return v != nullptr && !v->is_null() ? v : nullptr;
}

// A token count: 0 when missing, negative or not an integer.
int64_t Count(const Json& object, std::string_view key) {
  const Json* v = FieldOf(object, key);
  if (v == nullptr || !v->is_number_integer()) return 0;
  int64_t n = v->get<int64_t>();
  return n > 0 ? n : 0;
}

bool IsTrue(const Json& object, std::string_view key) {
  const Json* v = FieldOf(object, key);
  return v != nullptr && v->is_boolean() && v->get<bool>();
}

// A whole number, the way the gateway's validator reads one (`10.0` is 10).
bool WholeNumber(const Json& v, int64_t* out) {
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  if (!v.is_number_float()) return false;
  double d = v.get<double>();
  if (d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

bool OneOf(std::string_view value, std::initializer_list<std::string_view> set) {
  for (std::string_view s : set) {
    if (s == value) return true;
  }
  return false;
}

int64_t NowSeconds() { return NowMicros() / 1000000; }

// A stream event's data as the object it must be. Strict, as everywhere the
// gateway reads what crosses it.
bool ParseObject(const std::string& data, const char* what, Json* out, std::string* error) {
  std::string why;
  if (!ParseJsonStrict(data, out, &why)) {
    *error = std::string(what) + " sent an event that is not JSON: " + why;
    return false;
  }
  if (!out->is_object()) {
    *error = std::string(what) + " sent an event that is not a JSON object";
    return false;
  }
  return true;
}

// ------------------------------------------------- stop reasons and usage

std::string FinishFromStop(const std::string& stop_reason) {
  if (stop_reason == "max_tokens" || stop_reason == "model_context_window_exceeded") {
    return "length";
  }
  if (stop_reason == "tool_use") return "tool_calls";
  if (stop_reason == "refusal") return "content_filter";
  return "stop";  // end_turn, stop_sequence, pause_turn, and what is unknown
}

std::string StopFromFinish(const std::string& finish_reason, bool has_calls) {
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "tool_calls" || finish_reason == "function_call") return "tool_use";
  if (finish_reason == "content_filter") return "refusal";
  if (finish_reason.empty() && has_calls) return "tool_use";
  return "end_turn";
}

// Messages usage as chat's. Messages counts cached prompt tokens apart from
// input_tokens; chat's prompt_tokens include them (cached_tokens is a part).
Json ChatUsageOf(const Json& usage) {
  int64_t input = Count(usage, "input_tokens");
  int64_t read = Count(usage, "cache_read_input_tokens");
  int64_t created = Count(usage, "cache_creation_input_tokens");
  int64_t output = Count(usage, "output_tokens");
  int64_t prompt = input + read + created;
  Json out = {{"prompt_tokens", prompt},
              {"completion_tokens", output},
              {"total_tokens", prompt + output},
              {"prompt_tokens_details", {{"cached_tokens", read}}}};
  const Json* creation = Present(usage, "cache_creation_input_tokens");
  if (creation != nullptr && creation->is_number_integer()) {
    out["cache_creation_input_tokens"] = created;
  }
  return out;
}

// Chat usage as Messages': input_tokens without the cached part.
Json MessagesUsageOf(const Json& usage) {
  int64_t prompt = Count(usage, "prompt_tokens");
  int64_t cached = 0;
  if (const Json* d = FieldOf(usage, "prompt_tokens_details")) cached = Count(*d, "cached_tokens");
  if (cached > prompt) cached = prompt;
  Json out = {{"input_tokens", prompt - cached}, {"output_tokens", Count(usage, "completion_tokens")}};
  if (cached > 0) out["cache_read_input_tokens"] = cached;
  if (Present(usage, "cache_creation_input_tokens") != nullptr) {
    out["cache_creation_input_tokens"] = Count(usage, "cache_creation_input_tokens");
  }
  return out;
}

// ------------------------------------------------------------- errors

struct ErrorKind {
  std::string_view anthropic;  // Messages' error type
  std::string_view openai;     // the envelope's type for a chat client
  int status;
};

constexpr ErrorKind kErrorKinds[] = {
    {"invalid_request_error", "invalid_request_error", 400},
    {"authentication_error", "authentication_error", 401},
    {"billing_error", "insufficient_quota", 402},
    {"permission_error", "permission_error", 403},
    {"not_found_error", "invalid_request_error", 404},
    {"conflict_error", "invalid_request_error", 409},
    {"request_too_large", "invalid_request_error", 413},
    {"rate_limit_error", "rate_limit_error", 429},
    {"api_error", "server_error", 500},
    {"timeout_error", "server_error", 504},
    {"overloaded_error", "server_error", 503},
};

const ErrorKind* KindOf(std::string_view anthropic_type) {
  for (const ErrorKind& kind : kErrorKinds) {
    if (kind.anthropic == anthropic_type) return &kind;
  }
  return nullptr;
}

// The OpenAI error object for a Messages `error` object (the envelope's
// inner part); `code` keeps the Messages type.
Json OpenAIErrorObject(const Json* error, int status) {
  std::string type = error != nullptr ? StringField(*error, "type") : "";
  std::string message = error != nullptr ? StringField(*error, "message") : "";
  if (message.empty()) {
    message = "the Anthropic upstream reported an error" +
              (status > 0 ? " (status " + std::to_string(status) + ")" : std::string());
  }
  const ErrorKind* kind = KindOf(type);
  if (type.empty()) type = "api_error";
  return {{"type", kind != nullptr ? std::string(kind->openai) : "server_error"},
          {"code", type},
          {"message", message},
          {"param", nullptr}};
}

// The Messages error type for the gateway's (or an OpenAI upstream's)
// envelope type and code.
std::string AnthropicTypeOf(const std::string& type, const std::string& code) {
  if (type == "policy_violation" || type == "permission_error") return "permission_error";
  if (code == "model_not_found" || code == "not_found" || type == "not_found_error") {
    return "not_found_error";
  }
  if (code == "request_too_large") return "request_too_large";
  if (code == "request_timeout" || code == "upstream_timeout") return "timeout_error";
  if (type == "invalid_request_error" || type == "validation_error") {
    return "invalid_request_error";
  }
  if (type == "authentication_error") return "authentication_error";
  if (type == "rate_limit_error" || code == "rate_limit_exceeded") return "rate_limit_error";
  if (type == "insufficient_quota" || code == "insufficient_quota") return "billing_error";
  if (type == "unavailable" || type == "overloaded_error") return "overloaded_error";
  if (KindOf(type) != nullptr) return type;
  return "api_error";
}

}  // namespace

// ------------------------------------------------------------- errors

Json AnthropicErrorToOpenAI(int status, const Json& body, int* out_status) {
  const Json* error = FieldOf(body, "error");
  if (error != nullptr && !error->is_object()) error = nullptr;
  const ErrorKind* kind = error != nullptr ? KindOf(StringField(*error, "type")) : nullptr;
  int mapped = kind != nullptr ? kind->status : (status >= 400 && status <= 599 ? status : 502);
  if (mapped == 529) mapped = 503;
  if (out_status != nullptr) *out_status = mapped;
  Json envelope = {{"error", OpenAIErrorObject(error, status)}};
  std::string request_id = StringField(body, "request_id");
  if (!request_id.empty()) envelope["error"]["request_id"] = request_id;
  return envelope;
}

Json OpenAIErrorToAnthropic(const Json& envelope) {
  const Json* error = FieldOf(envelope, "error");
  Json inner = Json::object();
  std::string type, code, message;
  if (error != nullptr && error->is_string()) {
    message = error->get<std::string>();
  } else if (error != nullptr && error->is_object()) {
    type = StringField(*error, "type");
    message = StringField(*error, "message");
    if (const Json* c = Present(*error, "code")) code = c->is_string() ? c->get<std::string>() : Text(*c);
  }
  if (message.empty()) message = "the upstream reported an error";
  inner["type"] = AnthropicTypeOf(type, code);
  inner["message"] = message;
  if (!code.empty()) inner["code"] = code;
  std::string request_id;
  if (error != nullptr && error->is_object()) {
    std::string policy = StringField(*error, "policy");
    if (!policy.empty()) inner["policy"] = policy;
    request_id = StringField(*error, "request_id");
    if (!request_id.empty()) inner["request_id"] = request_id;
  }
  Json out = {{"type", "error"}, {"error", std::move(inner)}};
  if (!request_id.empty()) out["request_id"] = request_id;
  return out;
}

// ------------------------------------------- chat → an Anthropic upstream

namespace {

constexpr const char* kNoMessagesForm = "has no Messages API form";

// A turn of the Messages conversation being built: blocks, merged with the
// next turn of the same role.
struct Turn {
  std::string role;
  Json blocks = Json::array();
};

void AppendTurn(std::vector<Turn>* turns, const std::string& role, Json blocks) {
  if (blocks.empty()) return;  // nothing said (an empty string): no turn
  if (turns->empty() || turns->back().role != role) turns->push_back({role, Json::array()});
  for (Json& block : blocks) turns->back().blocks.push_back(std::move(block));
}

// Messages refuses empty text blocks; an empty text says nothing.
void PushText(const std::string& text, Json* blocks) {
  if (!text.empty()) blocks->push_back({{"type", "text"}, {"text", text}});
}

// A chat image_url part as an image block: a data: URL as a base64 source,
// any other URL as a url source.
std::string ImageBlock(const Json& part, const std::string& path, Json* blocks) {
  const Json* image = FieldOf(part, "image_url");
  std::string url = image != nullptr && image->is_string() ? image->get<std::string>()
                    : image != nullptr                      ? StringField(*image, "url")
                                                            : "";
  if (url.empty()) return Refuse(path + ".image_url.url", "must be a non-empty string");
  if (url.rfind("data:", 0) != 0) {
    blocks->push_back({{"type", "image"}, {"source", {{"type", "url"}, {"url", url}}}});
    return "";
  }
  std::size_t marker = url.find(";base64,");
  std::string media = marker == std::string::npos ? "" : url.substr(5, marker - 5);
  if (!OneOf(media, {"image/jpeg", "image/png", "image/gif", "image/webp"})) {
    return Refuse(path + ".image_url.url",
                  "a data: URL must be base64 image/jpeg, image/png, image/gif or image/webp");
  }
  blocks->push_back(
      {{"type", "image"},
       {"source",
        {{"type", "base64"}, {"media_type", media}, {"data", url.substr(marker + 8)}}}});
  return "";
}

// Chat content (a string, or parts) as blocks. `images` allows image_url
// parts (user turns); `refusal` parts (assistant turns) read as text.
std::string ContentBlocks(const Json& content, const std::string& path, bool images,
                          Json* blocks) {
  if (content.is_null()) return "";
  if (content.is_string()) {
    PushText(content.get<std::string>(), blocks);
    return "";
  }
  if (!content.is_array()) return Refuse(path, "must be a string or a list of content parts");
  for (std::size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    std::string type = StringField(part, "type");
    std::string here = At(path, i);
    const Json* text = FieldOf(part, type == "refusal" ? "refusal" : "text");
    if (type == "text" || (type == "refusal" && !images)) {
      if (text == nullptr || !text->is_string()) return Refuse(here + ".text", "must be a string");
      PushText(text->get<std::string>(), blocks);
    } else if (type == "image_url" && images) {
      std::string error = ImageBlock(part, here, blocks);
      if (!error.empty()) return error;
    } else {
      return Refuse(here, "the `" + (type.empty() ? std::string("?") : type) + "` part " +
                              kNoMessagesForm + " here");
    }
  }
  return "";
}

// An assistant turn's tool_calls as tool_use blocks (arguments parsed).
std::string ToolUseBlocks(const Json& calls, const std::string& path, Json* blocks) {
  if (!calls.is_array()) return Refuse(path, "must be a list");
  for (std::size_t i = 0; i < calls.size(); ++i) {
    std::string here = At(path, i);
    const Json& call = calls[i];
    const Json* fn = FieldOf(call, "function");
    std::string id = StringField(call, "id");
    if (fn == nullptr || !fn->is_object()) return Refuse(here + ".function", "must be an object");
    if (id.empty()) return Refuse(here + ".id", "must be a non-empty string");
    std::string name = StringField(*fn, "name");
    if (name.empty()) return Refuse(here + ".function.name", "must be a non-empty string");
    std::string arguments = StringField(*fn, "arguments");
    Json input = Json::object();
    std::string why;
    if (!arguments.empty() && (!ParseJsonStrict(arguments, &input, &why) || !input.is_object())) {
      return Refuse(here + ".function.arguments", "must be a JSON object (tool_use.input is one)");
    }
    blocks->push_back({{"type", "tool_use"}, {"id", id}, {"name", name}, {"input", input}});
  }
  return "";
}

std::string ToolResultBlock(const Json& message, const std::string& path, Json* blocks) {
  std::string id = StringField(message, "tool_call_id");
  if (id.empty()) return Refuse(path + ".tool_call_id", "must be a non-empty string");
  Json content = Json::array();
  const Json* given = FieldOf(message, "content");
  std::string error = ContentBlocks(given != nullptr ? *given : Json(), path + ".content",
                                    false, &content);
  if (!error.empty()) return error;
  Json block = {{"type", "tool_result"}, {"tool_use_id", id}};
  if (content.size() == 1) {
    block["content"] = content[0]["text"];
  } else if (!content.empty()) {
    block["content"] = std::move(content);
  }
  blocks->push_back(std::move(block));
  return "";
}

// One chat message into the turns (or, for system / developer, into
// `system`'s text blocks).
std::string ChatMessage(const Json& message, const std::string& path, std::vector<Turn>* turns,
                        Json* system) {
  if (!message.is_object()) return Refuse(path, "must be an object");
  std::string role = StringField(message, "role");
  const Json* content = FieldOf(message, "content");
  const Json& body = content != nullptr ? *content : Json();
  Json blocks = Json::array();
  std::string error;
  if (role == "system" || role == "developer") {
    return ContentBlocks(body, path + ".content", false, system);
  } else if (role == "user") {
    error = ContentBlocks(body, path + ".content", true, &blocks);
  } else if (role == "assistant") {
    if (Present(message, "audio") != nullptr) {
      return Refuse(path + ".audio", std::string("audio ") + kNoMessagesForm);
    }
    error = ContentBlocks(body, path + ".content", false, &blocks);
    if (const Json* calls = Present(message, "tool_calls"); error.empty() && calls != nullptr) {
      error = ToolUseBlocks(*calls, path + ".tool_calls", &blocks);
    }
  } else if (role == "tool") {
    error = ToolResultBlock(message, path, &blocks);
    role = "user";  // tool results travel in a user turn
  } else {
    return Refuse(path + ".role", "the `" + role + "` role " + kNoMessagesForm);
  }
  if (!error.empty()) return error;
  AppendTurn(turns, role, std::move(blocks));
  return "";
}

std::string ChatMessages(const Json& chat, Json* out) {
  const Json* messages = FieldOf(chat, "messages");
  if (messages == nullptr || !messages->is_array()) return Refuse("messages", "must be a list");
  std::vector<Turn> turns;
  Json system = Json::array();
  for (std::size_t i = 0; i < messages->size(); ++i) {
    std::string error = ChatMessage((*messages)[i], At("messages", i), &turns, &system);
    if (!error.empty()) return error;
  }
  if (turns.empty()) return Refuse("messages", "Messages needs at least one user or assistant turn");
  Json list = Json::array();
  for (Turn& turn : turns) {
    bool lone_text = turn.blocks.size() == 1 && turn.blocks[0]["type"] == "text";
    list.push_back({{"role", turn.role},
                    {"content", lone_text ? turn.blocks[0]["text"] : std::move(turn.blocks)}});
  }
  (*out)["messages"] = std::move(list);
  if (system.size() == 1) {
    (*out)["system"] = system[0]["text"];
  } else if (!system.empty()) {
    (*out)["system"] = std::move(system);
  }
  return "";
}

std::string ChatTools(const Json& chat, Json* out) {
  const Json* tools = Present(chat, "tools");
  if (tools == nullptr) return "";
  if (!tools->is_array()) return Refuse("tools", "must be a list");
  Json list = Json::array();
  for (std::size_t i = 0; i < tools->size(); ++i) {
    std::string path = At("tools", i);
    const Json& tool = (*tools)[i];
    std::string type = StringField(tool, "type");
    if (type != "function") {
      return Refuse(path, "the `" + (type.empty() ? std::string("?") : type) + "` tool " +
                              kNoMessagesForm + " (function tools only)");
    }
    const Json* fn = FieldOf(tool, "function");
    std::string name = fn != nullptr ? StringField(*fn, "name") : "";
    if (name.empty()) return Refuse(path + ".function.name", "must be a non-empty string");
    const Json* parameters = Present(*fn, "parameters");
    Json entry = {{"name", name},
                  {"input_schema", parameters != nullptr && parameters->is_object()
                                       ? *parameters
                                       : Json{{"type", "object"}, {"properties", Json::object()}}}};
    std::string description = StringField(*fn, "description");
    if (!description.empty()) entry["description"] = description;
    if (const Json* strict = Present(*fn, "strict"); strict != nullptr && strict->is_boolean()) {
      entry["strict"] = *strict;
    }
    list.push_back(std::move(entry));
  }
  if (!list.empty()) (*out)["tools"] = std::move(list);
  return "";
}

// tool_choice and parallel_tool_calls as Messages' one tool_choice. Without
// tools there is nothing to choose from, and neither is sent.
std::string ChatToolChoice(const Json& chat, Json* out) {
  if (!out->contains("tools")) return "";
  Json choice = {{"type", "auto"}};
  bool given = false;
  if (const Json* c = Present(chat, "tool_choice")) {
    given = true;
    std::string mode = c->is_string() ? c->get<std::string>() : "";
    std::string type = StringField(*c, "type");
    const Json* fn = FieldOf(*c, "function");
    std::string name = fn != nullptr ? StringField(*fn, "name") : "";
    if (mode == "auto" || mode == "none") {
      choice["type"] = mode;
    } else if (mode == "required") {
      choice["type"] = "any";
    } else if (type == "function" && !name.empty()) {
      choice = {{"type", "tool"}, {"name", name}};
    } else {
      return Refuse("tool_choice", "must be auto, none, required or a function (`" +
                                       (type.empty() ? mode : type) + "` " + kNoMessagesForm +
                                       ")");
    }
  }
  const Json* parallel = FieldOf(chat, "parallel_tool_calls");
  bool serial = parallel != nullptr && parallel->is_boolean() && !parallel->get<bool>();
  if (serial && choice["type"] != "none") {
    choice["disable_parallel_tool_use"] = true;
    given = true;
  }
  if (given) (*out)["tool_choice"] = std::move(choice);
  return "";
}

// max_tokens (Messages requires it): max_completion_tokens, else
// max_tokens, else kDefaultMaxTokens.
std::string ChatMaxTokens(const Json& chat, Json* out) {
  int64_t max = kDefaultMaxTokens;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    const Json* v = Present(chat, key);
    if (v == nullptr) continue;
    if (!WholeNumber(*v, &max) || max < 0) return Refuse(key, "must be a non-negative integer");
  }
  (*out)["max_tokens"] = max;
  return "";
}

std::string ChatSampling(const Json& chat, Json* out) {
  if (const Json* t = Present(chat, "temperature")) {
    if (!t->is_number()) return Refuse("temperature", "must be a number");
    if (t->get<double>() > 1.0) {
      return Refuse("temperature", "Messages takes 0 to 1; above 1 " + std::string(kNoMessagesForm));
    }
    (*out)["temperature"] = *t;
  }
  if (const Json* p = Present(chat, "top_p")) (*out)["top_p"] = *p;
  if (const Json* stop = Present(chat, "stop")) {
    Json list = stop->is_string() ? Json::array({*stop}) : *stop;
    bool strings = list.is_array();
    for (const Json& s : list) strings = strings && s.is_string();
    if (!strings) return Refuse("stop", "must be a string or a list of strings");
    if (!list.empty()) (*out)["stop_sequences"] = std::move(list);
  }
  if (const Json* stream = Present(chat, "stream"); stream != nullptr && stream->is_boolean()) {
    (*out)["stream"] = *stream;
  }
  std::string user = StringField(chat, "user");
  if (user.empty()) user = StringField(chat, "safety_identifier");
  if (!user.empty()) (*out)["metadata"] = {{"user_id", user}};
  return "";
}

// response_format and reasoning_effort as output_config.
std::string ChatOutputConfig(const Json& chat, Json* out) {
  Json config = Json::object();
  if (const Json* format = Present(chat, "response_format")) {
    std::string type = StringField(*format, "type");
    const Json* spec = FieldOf(*format, "json_schema");
    const Json* schema = spec != nullptr ? FieldOf(*spec, "schema") : nullptr;
    if (type == "json_schema" && schema != nullptr && schema->is_object()) {
      config["format"] = {{"type", "json_schema"}, {"schema", *schema}};
    } else if (type != "text") {
      return Refuse("response_format", "only `text` and `json_schema` (with a schema object) "
                                       "have a Messages form (output_config.format)");
    }
  }
  if (const Json* effort = Present(chat, "reasoning_effort")) {
    std::string level = effort->is_string() ? effort->get<std::string>() : "";
    if (OneOf(level, {"low", "medium", "high", "xhigh"})) {
      config["effort"] = level;
    } else if (!OneOf(level, {"none", "minimal"})) {
      return Refuse("reasoning_effort", "must be none, minimal, low, medium, high or xhigh");
    }
  }
  if (!config.empty()) (*out)["output_config"] = std::move(config);
  return "";
}

// The chat fields with a Messages counterpart, those dropped as having no
// effect on what the answer says, and those refused unless at their
// default. Anything else is refused, named.
constexpr std::string_view kChatMapped[] = {
    "model",  "messages",    "max_tokens",          "max_completion_tokens", "temperature",
    "top_p",  "stop",        "stream",              "tools",                 "tool_choice",
    "user",   "safety_identifier", "parallel_tool_calls", "response_format",  "reasoning_effort"};
constexpr std::string_view kChatDropped[] = {
    "stream_options", "metadata",         "seed",                 "service_tier",          "store",
    "verbosity",      "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention"};

bool Listed(std::string_view key, const std::string_view* begin, const std::string_view* end) {
  for (const std::string_view* k = begin; k != end; ++k) {
    if (*k == key) return true;
  }
  return false;
}

// A field refused unless it holds its default; "" when it does.
std::string ChatDefaultOnly(const std::string& key, const Json& v) {
  int64_t n = 0;
  bool at_default =
      (key == "n" && WholeNumber(v, &n) && n == 1) ||
      (key == "logprobs" && v.is_boolean() && !v.get<bool>()) ||
      (key == "top_logprobs" && WholeNumber(v, &n) && n == 0) ||
      ((key == "frequency_penalty" || key == "presence_penalty") && v.is_number() &&
       v.get<double>() == 0.0) ||
      (key == "logit_bias" && v.is_object() && v.empty()) ||
      (key == "modalities" && v == Json::array({"text"}));
  if (at_default) return "";
  if (key == "n") return Refuse(key, "Messages answers with one choice");
  return Refuse(key, kNoMessagesForm);
}

std::string ChatFieldsKnown(const Json& chat) {
  for (const auto& [key, value] : chat.items()) {
    if (value.is_null() || Listed(key, std::begin(kChatMapped), std::end(kChatMapped)) ||
        Listed(key, std::begin(kChatDropped), std::end(kChatDropped))) {
      continue;
    }
    if (OneOf(key, {"n", "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty",
                    "logit_bias", "modalities"})) {
      std::string error = ChatDefaultOnly(key, value);
      if (!error.empty()) return error;
      continue;
    }
    return Refuse(key, kNoMessagesForm);
  }
  return "";
}

}  // namespace

std::string ChatToMessagesRequest(const Json& chat, Json* messages) {
  if (!chat.is_object()) return Refuse("(body)", "must be a JSON object");
  std::string error = ChatFieldsKnown(chat);
  Json out = Json::object();
  if (const Json* model = Present(chat, "model")) out["model"] = *model;
  if (error.empty()) error = ChatMessages(chat, &out);
  if (error.empty()) error = ChatMaxTokens(chat, &out);
  if (error.empty()) error = ChatSampling(chat, &out);
  if (error.empty()) error = ChatTools(chat, &out);
  if (error.empty()) error = ChatToolChoice(chat, &out);
  if (error.empty()) error = ChatOutputConfig(chat, &out);
  if (!error.empty()) return error;
  *messages = std::move(out);
  return "";
}

// ------------------------------------------- Messages answers → chat

namespace {

Json ToolCallOf(const Json& block) {
  const Json* input = FieldOf(block, "input");
  std::string arguments = input != nullptr && !input->is_null() ? Text(*input) : "{}";
  std::string id = StringField(block, "id");
  return {{"id", id.empty() ? NewId("toolu_") : id},
          {"type", "function"},
          {"function", {{"name", StringField(block, "name")}, {"arguments", arguments}}}};
}

}  // namespace

std::string MessagesToChatResponse(const Json& message, Json* chat) {
  if (!message.is_object()) return "the Messages answer is not a JSON object";
  std::string type = StringField(message, "type");
  if (type == "error") return "the Messages answer is an error";
  if (!type.empty() && type != "message") return "the Messages answer is a `" + type + "`";
  const Json* content = FieldOf(message, "content");
  if (content != nullptr && !content->is_null() && !content->is_array()) {
    return "`content` must be a list";
  }
  std::string text;
  Json calls = Json::array();
  if (content != nullptr && content->is_array()) {
    for (const Json& block : *content) {
      std::string kind = StringField(block, "type");
      if (kind == "text") text += StringField(block, "text");
      if (kind == "tool_use") calls.push_back(ToolCallOf(block));
      // thinking, redacted_thinking and server-tool blocks have no chat form
    }
  }
  Json reply = {{"role", "assistant"},
                {"content", text.empty() && !calls.empty() ? Json(nullptr) : Json(text)}};
  if (!calls.empty()) reply["tool_calls"] = std::move(calls);
  const Json* usage = FieldOf(message, "usage");
  *chat = {{"id", StringField(message, "id")},
           {"object", "chat.completion"},
           {"created", NowSeconds()},
           {"model", StringField(message, "model")},
           {"choices", Json::array({{{"index", 0},
                                     {"message", std::move(reply)},
                                     {"finish_reason",
                                      FinishFromStop(StringField(message, "stop_reason"))},
                                     {"logprobs", nullptr}}})},
           {"usage", ChatUsageOf(usage != nullptr ? *usage : Json::object())}};
  return "";
}

// ------------------------------------------------ the Messages stream → chat

Json MessagesToChatStream::Chunk(Json delta, const Json& finish_reason) const {
  return {{"id", id_},
          {"object", "chat.completion.chunk"},
          {"created", created_},
          {"model", model_},
          {"choices", Json::array({{{"index", 0},
                                    {"delta", std::move(delta)},
                                    {"finish_reason", finish_reason},
                                    {"logprobs", nullptr}}})}};
}

void MessagesToChatStream::Emit(Json chunk, std::vector<SseEvent>* out) {
  out->push_back({"", Text(chunk)});
}

void MessagesToChatStream::Begin(const Json* message, std::vector<SseEvent>* out) {
  if (started_) return;
  started_ = true;
  created_ = NowSeconds();
  if (message != nullptr) {
    id_ = StringField(*message, "id");
    if (model_.empty()) model_ = StringField(*message, "model");
    if (const Json* usage = FieldOf(*message, "usage"); usage != nullptr && usage->is_object()) {
      MergeUsage(*usage);
    }
  }
  if (id_.empty()) id_ = NewId("msg_");
  Emit(Chunk({{"role", "assistant"}, {"content", ""}}, nullptr), out);
}

// Counts overwrite, never add: message_delta's are whole-message totals.
void MessagesToChatStream::MergeUsage(const Json& usage) {
  for (const char* key : {"input_tokens", "output_tokens", "cache_read_input_tokens",
                          "cache_creation_input_tokens"}) {
    const Json* v = FieldOf(usage, key);
    if (v != nullptr && v->is_number_integer()) usage_[key] = *v;
  }
}

bool MessagesToChatStream::Feed(const SseEvent& event, std::vector<SseEvent>* out,
                                std::string* error) {
  if (finished_) return true;
  if (event.event == "ping") return true;
  Json data;
  if (!ParseObject(event.data, "the Messages stream", &data, error)) return false;
  std::string type = StringField(data, "type");
  if (type.empty()) type = event.event;
  if (type.empty()) {
    *error = "the Messages stream sent an event without a `type`";
    return false;
  }
  if (type == "error") {
    int status = 0;
    Emit(AnthropicErrorToOpenAI(0, data, &status), out);
    finished_ = true;
    return true;
  }
  if (type == "message_start") {
    const Json* message = FieldOf(data, "message");
    Begin(message != nullptr && message->is_object() ? message : nullptr, out);
    return true;
  }
  if (type == "content_block_start") BlockStart(data, out);
  if (type == "content_block_delta") BlockDelta(data, out);
  if (type == "message_delta") MessageDelta(data, out);
  if (type == "message_stop") Stop(out);
  return true;  // ping, content_block_stop and newer event types say nothing to chat
}

void MessagesToChatStream::BlockStart(const Json& data, std::vector<SseEvent>* out) {
  const Json* index = FieldOf(data, "index");
  const Json* block = FieldOf(data, "content_block");
  if (index == nullptr || !index->is_number_integer() || block == nullptr) return;
  std::string type = StringField(*block, "type");
  Begin(nullptr, out);
  if (type == "text") {
    std::string text = StringField(*block, "text");
    if (!text.empty()) Emit(Chunk({{"content", text}}, nullptr), out);
    return;
  }
  if (type != "tool_use") return;  // thinking and server-tool blocks: nothing
  int call = next_tool_++;
  tool_index_[index->get<int>()] = call;
  Json first = ToolCallOf(*block);
  // The input comes as input_json_delta; a start that carries it whole
  // (not `{}`) gives it here.
  const Json* input = FieldOf(*block, "input");
  bool whole = input != nullptr && input->is_object() && !input->empty();
  first["function"]["arguments"] = whole ? Text(*input) : "";
  first["index"] = call;
  Emit(Chunk({{"tool_calls", Json::array({std::move(first)})}}, nullptr), out);
}

void MessagesToChatStream::BlockDelta(const Json& data, std::vector<SseEvent>* out) {
  const Json* index = FieldOf(data, "index");
  const Json* delta = FieldOf(data, "delta");
  if (delta == nullptr) return;
  std::string type = StringField(*delta, "type");
  if (type == "text_delta") {
    std::string text = StringField(*delta, "text");
    Begin(nullptr, out);
    if (!text.empty()) Emit(Chunk({{"content", text}}, nullptr), out);
    return;
  }
  if (type != "input_json_delta" || index == nullptr || !index->is_number_integer()) return;
  auto call = tool_index_.find(index->get<int>());
  std::string partial = StringField(*delta, "partial_json");
  if (call == tool_index_.end() || partial.empty()) return;
  Json entry = {{"index", call->second}, {"function", {{"arguments", partial}}}};
  Emit(Chunk({{"tool_calls", Json::array({std::move(entry)})}}, nullptr), out);
}

void MessagesToChatStream::MessageDelta(const Json& data, std::vector<SseEvent>* out) {
  if (const Json* usage = FieldOf(data, "usage"); usage != nullptr && usage->is_object()) {
    MergeUsage(*usage);
  }
  const Json* delta = FieldOf(data, "delta");
  std::string stop = delta != nullptr ? StringField(*delta, "stop_reason") : "";
  if (stop.empty() || finish_sent_) return;
  Begin(nullptr, out);
  finish_sent_ = true;
  Emit(Chunk(Json::object(), FinishFromStop(stop)), out);
}

void MessagesToChatStream::Stop(std::vector<SseEvent>* out) {
  Begin(nullptr, out);
  if (!finish_sent_) {
    finish_sent_ = true;
    Emit(Chunk(Json::object(), "stop"), out);
  }
  Json chunk = Chunk(Json::object(), nullptr);
  chunk["choices"] = Json::array();
  chunk["usage"] = ChatUsageOf(usage_);
  Emit(std::move(chunk), out);
  out->push_back({"", "[DONE]"});
  finished_ = true;
}

// ------------------------------------ /v1/messages → an OpenAI upstream

namespace {

constexpr const char* kNoChatForm = "has no chat-completions form";

// A Messages image block as an image_url part.
std::string ImagePart(const Json& block, const std::string& path, Json* parts) {
  const Json* source = FieldOf(block, "source");
  std::string type = source != nullptr ? StringField(*source, "type") : "";
  std::string url;
  if (type == "base64") {
    std::string media = StringField(*source, "media_type");
    std::string data = StringField(*source, "data");
    if (media.empty() || data.empty()) {
      return Refuse(path + ".source", "a base64 source needs `media_type` and `data`");
    }
    url = "data:" + media + ";base64," + data;
  } else if (type == "url") {
    url = StringField(*source, "url");
    if (url.empty()) return Refuse(path + ".source.url", "must be a non-empty string");
  } else {
    return Refuse(path + ".source", "the `" + (type.empty() ? std::string("?") : type) +
                                        "` image source " + kNoChatForm);
  }
  parts->push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
  return "";
}

// Text parts as chat content: one as a plain string (every chat server
// reads that), several as a list, none as "".
Json PartsContent(Json parts) {
  if (parts.empty()) return "";
  if (parts.size() == 1 && parts[0]["type"] == "text") return parts[0]["text"];
  return parts;
}

// A tool_result block as a `tool` message. Chat has no is_error: an error
// result says so in its text.
std::string ToolMessage(const Json& block, const std::string& path, Json* messages) {
  std::string id = StringField(block, "tool_use_id");
  if (id.empty()) return Refuse(path + ".tool_use_id", "must be a non-empty string");
  Json parts = Json::array();
  const Json* content = Present(block, "content");
  if (content != nullptr && content->is_string()) {
    parts.push_back({{"type", "text"}, {"text", *content}});
  } else if (content != nullptr && content->is_array()) {
    for (std::size_t i = 0; i < content->size(); ++i) {
      const Json& item = (*content)[i];
      std::string type = StringField(item, "type");
      if (type != "text") {
        return Refuse(At(path + ".content", i), "a `" + (type.empty() ? std::string("?") : type) +
                                                    "` block in a tool result " + kNoChatForm +
                                                    " (tool messages carry text only)");
      }
      parts.push_back({{"type", "text"}, {"text", StringField(item, "text")}});
    }
  } else if (content != nullptr) {
    return Refuse(path + ".content", "must be a string or a list of blocks");
  }
  if (IsTrue(block, "is_error")) {
    if (parts.empty()) parts.push_back({{"type", "text"}, {"text", ""}});
    parts[0]["text"] = "Error: " + parts[0]["text"].get<std::string>();
  }
  messages->push_back(
      {{"role", "tool"}, {"tool_call_id", id}, {"content", PartsContent(std::move(parts))}});
  return "";
}

// A user turn: its tool results as `tool` messages first (Messages puts
// them first too), then the rest as one user message.
std::string UserTurn(const Json& content, const std::string& path, Json* messages) {
  if (content.is_string()) {
    messages->push_back({{"role", "user"}, {"content", content}});
    return "";
  }
  Json parts = Json::array();
  for (std::size_t i = 0; i < content.size(); ++i) {
    const Json& block = content[i];
    std::string here = At(path, i);
    std::string type = StringField(block, "type");
    std::string error;
    if (type == "text") {
      parts.push_back({{"type", "text"}, {"text", StringField(block, "text")}});
    } else if (type == "image") {
      error = ImagePart(block, here, &parts);
    } else if (type == "tool_result") {
      error = ToolMessage(block, here, messages);
    } else {
      error = Refuse(here, "the `" + (type.empty() ? std::string("?") : type) + "` block " +
                               kNoChatForm);
    }
    if (!error.empty()) return error;
  }
  if (!parts.empty()) messages->push_back({{"role", "user"}, {"content", PartsContent(parts)}});
  return "";
}

std::string AssistantTurn(const Json& content, const std::string& path, Json* messages) {
  if (content.is_string()) {
    messages->push_back({{"role", "assistant"}, {"content", content}});
    return "";
  }
  std::string text;
  Json calls = Json::array();
  for (std::size_t i = 0; i < content.size(); ++i) {
    const Json& block = content[i];
    std::string type = StringField(block, "type");
    if (type == "text") {
      text += StringField(block, "text");
    } else if (type == "tool_use") {
      if (StringField(block, "id").empty() || StringField(block, "name").empty()) {
        return Refuse(At(path, i), "a tool_use block needs a string `id` and `name`");
      }
      calls.push_back(ToolCallOf(block));
    } else if (type != "thinking" && type != "redacted_thinking") {
      // earlier thinking is the model's own scratch work: chat has no place for it
      return Refuse(At(path, i), "the `" + (type.empty() ? std::string("?") : type) +
                                     "` block " + kNoChatForm);
    }
  }
  Json message = {{"role", "assistant"},
                  {"content", text.empty() && !calls.empty() ? Json(nullptr) : Json(text)}};
  if (!calls.empty()) message["tool_calls"] = std::move(calls);
  messages->push_back(std::move(message));
  return "";
}

std::string SystemMessage(const Json& request, Json* messages) {
  const Json* system = Present(request, "system");
  if (system == nullptr) return "";
  if (system->is_string()) {
    messages->push_back({{"role", "system"}, {"content", *system}});
    return "";
  }
  if (!system->is_array()) return Refuse("system", "must be a string or a list of text blocks");
  Json parts = Json::array();
  for (std::size_t i = 0; i < system->size(); ++i) {
    const Json* text = FieldOf((*system)[i], "text");
    if (StringField((*system)[i], "type") != "text" || text == nullptr || !text->is_string()) {
      return Refuse(At("system", i), "must be a text block");
    }
    parts.push_back({{"type", "text"}, {"text", *text}});
  }
  if (!parts.empty()) messages->push_back({{"role", "system"}, {"content", PartsContent(parts)}});
  return "";
}

std::string MessagesTurns(const Json& request, Json* out) {
  Json messages = Json::array();
  std::string error = SystemMessage(request, &messages);
  if (!error.empty()) return error;
  const Json* turns = FieldOf(request, "messages");
  if (turns == nullptr || !turns->is_array()) return Refuse("messages", "must be a list");
  for (std::size_t i = 0; i < turns->size(); ++i) {
    std::string path = At("messages", i);
    const Json& turn = (*turns)[i];
    std::string role = StringField(turn, "role");
    const Json* content = FieldOf(turn, "content");
    if (content == nullptr || (!content->is_string() && !content->is_array())) {
      return Refuse(path + ".content", "must be a string or a list of blocks");
    }
    if (role == "user") {
      error = UserTurn(*content, path + ".content", &messages);
    } else if (role == "assistant") {
      error = AssistantTurn(*content, path + ".content", &messages);
    } else {
      error = Refuse(path + ".role", "must be user or assistant");
    }
    if (!error.empty()) return error;
  }
  (*out)["messages"] = std::move(messages);
  return "";
}

std::string MessagesTools(const Json& request, Json* out) {
  const Json* tools = Present(request, "tools");
  if (tools == nullptr) return "";
  if (!tools->is_array()) return Refuse("tools", "must be a list");
  Json list = Json::array();
  for (std::size_t i = 0; i < tools->size(); ++i) {
    const Json& tool = (*tools)[i];
    std::string path = At("tools", i);
    std::string type = StringField(tool, "type");
    if (!type.empty() && type != "custom") {
      return Refuse(path, "the `" + type + "` server tool " + kNoChatForm +
                              " (client tools with an input_schema only)");
    }
    std::string name = StringField(tool, "name");
    if (name.empty()) return Refuse(path + ".name", "must be a non-empty string");
    const Json* schema = FieldOf(tool, "input_schema");
    if (schema == nullptr || !schema->is_object()) {
      return Refuse(path + ".input_schema", "must be an object");
    }
    Json fn = {{"name", name}, {"parameters", *schema}};
    std::string description = StringField(tool, "description");
    if (!description.empty()) fn["description"] = description;
    if (const Json* strict = Present(tool, "strict"); strict != nullptr && strict->is_boolean()) {
      fn["strict"] = *strict;
    }
    list.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  if (!list.empty()) (*out)["tools"] = std::move(list);
  return "";
}

std::string MessagesToolChoice(const Json& request, Json* out) {
  const Json* choice = Present(request, "tool_choice");
  if (choice == nullptr || !out->contains("tools")) return "";
  std::string type = StringField(*choice, "type");
  if (type == "auto" || type == "none") {
    (*out)["tool_choice"] = type;
  } else if (type == "any") {
    (*out)["tool_choice"] = "required";
  } else if (type == "tool" && !StringField(*choice, "name").empty()) {
    (*out)["tool_choice"] = {{"type", "function"},
                             {"function", {{"name", StringField(*choice, "name")}}}};
  } else {
    return Refuse("tool_choice", "must be auto, any, none or a named tool");
  }
  if (IsTrue(*choice, "disable_parallel_tool_use")) (*out)["parallel_tool_calls"] = false;
  return "";
}

std::string MessagesOptions(const Json& request, Json* out) {
  for (const char* key : {"model", "max_tokens", "temperature", "top_p"}) {
    if (const Json* v = Present(request, key)) (*out)[key] = *v;
  }
  if (const Json* stop = Present(request, "stop_sequences")) {
    if (!stop->is_array()) return Refuse("stop_sequences", "must be a list of strings");
    if (!stop->empty()) (*out)["stop"] = *stop;
  }
  if (IsTrue(request, "stream")) {
    (*out)["stream"] = true;
    (*out)["stream_options"] = {{"include_usage", true}};
  }
  if (const Json* metadata = Present(request, "metadata")) {
    std::string user = StringField(*metadata, "user_id");
    if (!user.empty()) (*out)["user"] = user;
  }
  if (const Json* thinking = Present(request, "thinking")) {
    if (StringField(*thinking, "type") != "disabled") {
      return Refuse("thinking", "extended thinking " + std::string(kNoChatForm));
    }
  }
  const Json* config = Present(request, "output_config");
  if (config == nullptr) return "";
  if (const Json* format = Present(*config, "format")) {
    const Json* schema = FieldOf(*format, "schema");
    if (StringField(*format, "type") != "json_schema" || schema == nullptr || !schema->is_object()) {
      return Refuse("output_config.format", "must be a json_schema format with a schema object");
    }
    (*out)["response_format"] = {
        {"type", "json_schema"},
        {"json_schema", {{"name", "output"}, {"schema", *schema}, {"strict", true}}}};
  }
  if (const Json* effort = Present(*config, "effort")) {
    std::string level = effort->is_string() ? effort->get<std::string>() : "";
    if (!OneOf(level, {"low", "medium", "high", "xhigh"})) {
      return Refuse("output_config.effort", "must be low, medium, high or xhigh");
    }
    (*out)["reasoning_effort"] = level;
  }
  return "";
}

constexpr std::string_view kMessagesMapped[] = {
    "model",  "messages", "max_tokens", "system",   "stop_sequences", "temperature", "top_p",
    "stream", "tools",    "tool_choice", "metadata", "output_config",  "thinking"};
constexpr std::string_view kMessagesDropped[] = {"service_tier", "cache_control", "speed",
                                                 "diagnostics"};

std::string MessagesFieldsKnown(const Json& request) {
  for (const auto& [key, value] : request.items()) {
    if (value.is_null() || Listed(key, std::begin(kMessagesMapped), std::end(kMessagesMapped)) ||
        Listed(key, std::begin(kMessagesDropped), std::end(kMessagesDropped))) {
      continue;
    }
    return Refuse(key, kNoChatForm);
  }
  return "";
}

}  // namespace

std::string MessagesToChatRequest(const Json& messages, Json* chat) {
  if (!messages.is_object()) return Refuse("(body)", "must be a JSON object");
  Json out = Json::object();
  std::string error = MessagesFieldsKnown(messages);
  if (error.empty()) error = MessagesOptions(messages, &out);
  if (error.empty()) error = MessagesTurns(messages, &out);
  if (error.empty()) error = MessagesTools(messages, &out);
  if (error.empty()) error = MessagesToolChoice(messages, &out);
  if (!error.empty()) return error;
  *chat = std::move(out);
  return "";
}

// ------------------------------------------------- chat answers → Messages

namespace {

// The chat choice a Messages answer is made of: index 0, or one without an
// index.
const Json* FirstChoice(const Json& chat) {
  const Json* choices = FieldOf(chat, "choices");
  if (choices == nullptr || !choices->is_array()) return nullptr;
  for (const Json& choice : *choices) {
    const Json* index = FieldOf(choice, "index");
    if (choice.is_object() && (index == nullptr || *index == 0)) return &choice;
  }
  return nullptr;
}

// A chat tool call's arguments as tool_use input: an object, or `{}` when
// the upstream sent something that is not one.
Json InputOf(const Json* arguments) {
  Json input = Json::object();
  if (arguments != nullptr && arguments->is_object()) return *arguments;
  if (arguments == nullptr || !arguments->is_string()) return input;
  std::string why;
  if (!ParseJsonStrict(arguments->get<std::string>(), &input, &why) || !input.is_object()) {
    return Json::object();
  }
  return input;
}

std::string MessageId(const std::string& chat_id) {
  if (chat_id.empty()) return NewId("msg_");
  return chat_id.rfind("msg_", 0) == 0 ? chat_id : "msg_" + chat_id;
}

Json MessageShell(const std::string& id, const std::string& model, Json content,
                  const Json& stop_reason, Json usage) {
  return {{"id", id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model},
          {"content", std::move(content)},
          {"stop_reason", stop_reason},
          {"stop_sequence", nullptr},
          {"usage", std::move(usage)}};
}

}  // namespace

Json ChatToMessagesResponse(const Json& chat, const std::string& model) {
  const Json* choice = FirstChoice(chat);
  const Json* message = choice != nullptr ? FieldOf(*choice, "message") : nullptr;
  static const Json kEmpty = Json::object();
  const Json& m = message != nullptr ? *message : kEmpty;
  Json content = Json::array();
  std::string text = StringField(m, "content") + StringField(m, "refusal");
  if (!text.empty()) content.push_back({{"type", "text"}, {"text", text}});
  const Json* calls = FieldOf(m, "tool_calls");
  bool has_calls = false;
  for (const Json& call : calls != nullptr && calls->is_array() ? *calls : Json::array()) {
    const Json* fn = FieldOf(call, "function");
    if (fn == nullptr || !fn->is_object()) continue;
    std::string id = StringField(call, "id");
    content.push_back({{"type", "tool_use"},
                       {"id", id.empty() ? NewId("toolu_") : id},
                       {"name", StringField(*fn, "name")},
                       {"input", InputOf(FieldOf(*fn, "arguments"))}});
    has_calls = true;
  }
  std::string finish = choice != nullptr ? StringField(*choice, "finish_reason") : "";
  const Json* usage = FieldOf(chat, "usage");
  return MessageShell(MessageId(StringField(chat, "id")),
                      model.empty() ? StringField(chat, "model") : model, std::move(content),
                      StopFromFinish(finish, has_calls),
                      MessagesUsageOf(usage != nullptr ? *usage : kEmpty));
}

// ------------------------------------------------ the chat stream → Messages

bool ChatToMessagesStream::Feed(const SseEvent& chat_event, std::vector<SseEvent>* out,
                                std::string* error) {
  if (finished_) return true;
  if (chat_event.data.rfind("[DONE]", 0) == 0) {
    Begin(out);
    Finish(out);
    return true;
  }
  Json chunk;
  if (!ParseObject(chat_event.data, "the chat stream", &chunk, error)) return false;
  if (Present(chunk, "error") != nullptr) {
    Json event = OpenAIErrorToAnthropic(chunk);
    out->push_back({"error", Text(event)});
    finished_ = true;
    return true;
  }
  if (id_.empty()) id_ = MessageId(StringField(chunk, "id"));
  if (model_.empty()) model_ = StringField(chunk, "model");
  Begin(out);
  if (const Json* usage = FieldOf(chunk, "usage"); usage != nullptr && usage->is_object()) {
    usage_ = *usage;
  }
  // After finish_reason every block is closed; stray deltas are not reopened.
  const Json* choice = FirstChoice(chunk);
  if (choice != nullptr && stop_reason_.empty()) ApplyChoice(*choice, out);
  return true;
}

void ChatToMessagesStream::Emit(const std::string& type, Json data, std::vector<SseEvent>* out) {
  data["type"] = type;
  out->push_back({type, Text(data)});
}

void ChatToMessagesStream::Begin(std::vector<SseEvent>* out) {
  if (started_) return;
  started_ = true;
  if (id_.empty()) id_ = NewId("msg_");
  Emit("message_start",
       {{"message", MessageShell(id_, model_, Json::array(), nullptr,
                                 {{"input_tokens", 0}, {"output_tokens", 0}})}},
       out);
}

void ChatToMessagesStream::ApplyChoice(const Json& choice, std::vector<SseEvent>* out) {
  if (const Json* delta = FieldOf(choice, "delta")) {
    // A refusal is the model's words too; Messages has only text for them.
    AppendText(StringField(*delta, "content") + StringField(*delta, "refusal"), out);
    const Json* calls = FieldOf(*delta, "tool_calls");
    if (calls != nullptr && calls->is_array()) {
      for (std::size_t i = 0; i < calls->size(); ++i) {
        ApplyCallDelta((*calls)[i], static_cast<int64_t>(i), out);
      }
    }
  }
  std::string finish = StringField(choice, "finish_reason");
  if (finish.empty()) return;
  OpenNamelessCalls(out);
  CloseBlock(out);
  stop_reason_ = StopFromFinish(finish, !calls_.empty());
}

void ChatToMessagesStream::AppendText(const std::string& text, std::vector<SseEvent>* out) {
  if (text.empty()) return;
  if (block_ < 0 || !block_is_text_) {
    CloseBlock(out);
    block_ = next_block_++;
    block_is_text_ = true;
    Emit("content_block_start",
         {{"index", block_}, {"content_block", {{"type", "text"}, {"text", ""}}}}, out);
  }
  Emit("content_block_delta",
       {{"index", block_}, {"delta", {{"type", "text_delta"}, {"text", text}}}}, out);
}

void ChatToMessagesStream::ApplyCallDelta(const Json& entry, int64_t position,
                                          std::vector<SseEvent>* out) {
  ToolCallDelta d;
  if (!ReadToolCallDelta(entry, position, &d)) return;
  const int64_t index = d.index;
  Call& call = calls_[index];
  if (call.id.empty()) call.id = d.id;
  if (call.name.empty()) call.name = d.name;
  const std::string& arguments = d.arguments;
  // tool_use's start carries the name: until it is known, arguments wait.
  if (call.block < 0) {
    call.pending += arguments;
    if (!call.name.empty()) OpenCall(index, out);
    return;
  }
  // A delta for a call that is no longer the open block (an upstream that
  // interleaves calls) still reaches its block, as the SDK reads it by index.
  EmitInput(call.block, arguments, out);
}

void ChatToMessagesStream::OpenCall(int64_t index, std::vector<SseEvent>* out) {
  CloseBlock(out);
  Call& call = calls_[index];
  if (call.id.empty()) call.id = NewId("toolu_");
  block_ = call.block = next_block_++;
  block_is_text_ = false;
  Emit("content_block_start",
       {{"index", block_},
        {"content_block",
         {{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", Json::object()}}}},
       out);
  EmitInput(block_, std::exchange(call.pending, ""), out);
}

void ChatToMessagesStream::EmitInput(int block, const std::string& partial,
                                     std::vector<SseEvent>* out) {
  if (partial.empty()) return;
  Emit("content_block_delta",
       {{"index", block}, {"delta", {{"type", "input_json_delta"}, {"partial_json", partial}}}},
       out);
}

// A call whose name never came still happened; an entry with nothing in it
// did not.
void ChatToMessagesStream::OpenNamelessCalls(std::vector<SseEvent>* out) {
  for (auto& [index, call] : calls_) {
    bool said_something = !call.id.empty() || !call.pending.empty();
    if (call.block < 0 && said_something) OpenCall(index, out);
  }
}

void ChatToMessagesStream::CloseBlock(std::vector<SseEvent>* out) {
  if (block_ < 0) return;
  Emit("content_block_stop", {{"index", block_}}, out);
  block_ = -1;
}

void ChatToMessagesStream::Finish(std::vector<SseEvent>* out) {
  OpenNamelessCalls(out);
  CloseBlock(out);
  if (stop_reason_.empty()) stop_reason_ = StopFromFinish("", !calls_.empty());
  Emit("message_delta",
       {{"delta", {{"stop_reason", stop_reason_}, {"stop_sequence", nullptr}}},
        {"usage", MessagesUsageOf(usage_)}},
       out);
  Emit("message_stop", Json::object(), out);
  finished_ = true;
}

}  // namespace kt::gateway
