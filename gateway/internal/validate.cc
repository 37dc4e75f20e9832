#include "gateway/internal/validate.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string_view>

namespace kt::gateway {

using Json = nlohmann::json;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Token counts past this are no model's; the bound keeps every count the
// policies and the upstream see within an int32.
constexpr double kMaxTokens = 2147483647;

enum class Type { kString, kBoolean, kNumber, kInteger, kObject, kList };

// One field of an object and what it may hold (a number's range too). An
// explicit null always passes: the API reads it as absent, and SDKs send it
// for options left unset.
struct Rule {
  const char* name;
  Type type;
  double min = -kInf;
  double max = kInf;
};

// The request fields whose check is their type (and range) alone, as the
// OpenAI API types them. Fields with parts of their own (messages, tools,
// tool_choice, stop, …) are checked by the functions below, after this.
constexpr Rule kRequestRules[] = {
    {"stream", Type::kBoolean},
    {"stream_options", Type::kObject},
    {"max_tokens", Type::kInteger, 0, kMaxTokens},
    {"max_completion_tokens", Type::kInteger, 0, kMaxTokens},
    {"temperature", Type::kNumber, 0, 2},
    {"top_p", Type::kNumber, 0, 1},
    {"presence_penalty", Type::kNumber, -2, 2},
    {"frequency_penalty", Type::kNumber, -2, 2},
    {"n", Type::kInteger, 1, 128},
    {"seed", Type::kInteger},
    {"logprobs", Type::kBoolean},
    {"top_logprobs", Type::kInteger, 0, 20},
    {"parallel_tool_calls", Type::kBoolean},
    {"store", Type::kBoolean},
    {"user", Type::kString},
    {"service_tier", Type::kString},
    {"reasoning_effort", Type::kString},
    {"metadata", Type::kObject},
    {"logit_bias", Type::kObject},
    {"response_format", Type::kObject},
    {"tools", Type::kList},
    {"functions", Type::kList},
    {"modalities", Type::kList},
};
constexpr Rule kStreamOptionsRules[] = {{"include_usage", Type::kBoolean}};
constexpr Rule kMessageRules[] = {
    {"name", Type::kString},
    {"tool_call_id", Type::kString},
    {"tool_calls", Type::kList},
    {"function_call", Type::kObject},
};
constexpr Rule kFunctionRules[] = {
    {"description", Type::kString},
    {"parameters", Type::kObject},
    {"strict", Type::kBoolean},
};
// A tool-call delta in a stream carries pieces: each may be absent.
constexpr Rule kToolCallDeltaRules[] = {
    {"index", Type::kInteger},
    {"id", Type::kString},
    {"type", Type::kString},
    {"function", Type::kObject},
};
constexpr Rule kFunctionDeltaRules[] = {{"name", Type::kString}, {"arguments", Type::kString}};

constexpr std::string_view kRoles[] = {"system",    "developer", "user",
                                       "assistant", "tool",      "function"};

std::string Quote(const std::string& path) { return "`" + path + "`"; }

std::string Number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

// The value of an integer field as a double (exact within the ranges
// checked), or false when it is not an integer. An integral float (10.0)
// counts: JSON has one number type, and some clients write counts so.
bool IntegerValue(const Json& v, double* out) {
  if (v.is_number_unsigned()) {
    *out = static_cast<double>(v.get<std::uint64_t>());
  } else if (v.is_number_integer()) {
    *out = static_cast<double>(v.get<std::int64_t>());
  } else if (v.is_number_float()) {
    *out = v.get<double>();
    if (std::trunc(*out) != *out) return false;
  } else {
    return false;
  }
  return true;
}

std::string Range(const Rule& r) {
  if (r.min == -kInf && r.max == kInf) return "";
  return " from " + Number(r.min) + " to " + Number(r.max);
}

// "" when `value` (present, not null) is what `rule` asks for.
std::string CheckValue(const Json& value, const Rule& rule, const std::string& path) {
  double n = 0;
  switch (rule.type) {
    case Type::kString:
      return value.is_string() ? "" : Quote(path) + " must be a string";
    case Type::kBoolean:
      return value.is_boolean() ? "" : Quote(path) + " must be a boolean";
    case Type::kObject:
      return value.is_object() ? "" : Quote(path) + " must be an object";
    case Type::kList:
      return value.is_array() ? "" : Quote(path) + " must be a list";
    case Type::kNumber:
      if (value.is_number()) n = value.get<double>();
      if (value.is_number() && n >= rule.min && n <= rule.max) return "";
      return Quote(path) + " must be a number" + Range(rule);
    case Type::kInteger:
      if (IntegerValue(value, &n) && n >= rule.min && n <= rule.max) return "";
      return Quote(path) + " must be an integer" + Range(rule);
  }
  return "";
}

// Checks the fields of `object` that `rules` name; `prefix` is the
// object's path ("" at the top, "messages[1]." inside).
template <std::size_t N>
std::string CheckRules(const Json& object, const Rule (&rules)[N], const std::string& prefix) {
  for (const Rule& r : rules) {
    auto it = object.find(r.name);
    if (it == object.end() || it->is_null()) continue;
    std::string error = CheckValue(*it, r, prefix + r.name);
    if (!error.empty()) return error;
  }
  return "";
}

// A field that must be a string when present (and not null).
bool BadString(const Json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && !it->is_null() && !it->is_string();
}

// A field that must be there, a string.
bool MissingString(const Json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() || !it->is_string();
}

// Content parts are objects with a string `type`, and a text part's `text`
// is a string: anything else (a part nested in a list, say) would pass the
// policies unread.
std::string CheckContentParts(const Json& parts, const std::string& at) {
  for (std::size_t j = 0; j < parts.size(); ++j) {
    const Json& p = parts[j];
    std::string here = at + "[" + std::to_string(j) + "]";
    if (!p.is_object()) return Quote(here) + " must be an object (a content part)";
    if (MissingString(p, "type")) return Quote(here + ".type") + " must be a string";
    if (p["type"] == "text" && MissingString(p, "text")) {
      return Quote(here + ".text") + " must be a string";
    }
  }
  return "";
}

// A whole tool call (in a message of the request, or of a completion): the
// tool-call stage reads its function's name and arguments.
std::string CheckToolCall(const Json& call, const std::string& at) {
  if (!call.is_object()) return Quote(at) + " must be an object (a tool call)";
  if (BadString(call, "id")) return Quote(at + ".id") + " must be a string";
  if (BadString(call, "type")) return Quote(at + ".type") + " must be a string";
  if (call.contains("type") && call["type"] != "function") return "";  // another kind of tool
  if (!call.contains("function") || !call["function"].is_object()) {
    return Quote(at + ".function") + " must be an object";
  }
  const Json& fn = call["function"];
  if (MissingString(fn, "name")) return Quote(at + ".function.name") + " must be a string";
  if (MissingString(fn, "arguments")) {
    return Quote(at + ".function.arguments") + " must be a string (JSON text)";
  }
  return "";
}

std::string CheckMessage(const Json& m, const std::string& at) {
  if (!m.is_object()) return Quote(at) + " must be an object";
  if (MissingString(m, "role")) return Quote(at + ".role") + " must be a string";
  bool known = false;
  for (std::string_view role : kRoles) known = known || m["role"] == role;
  if (!known) {
    return Quote(at + ".role") +
           " must be one of system, developer, user, assistant, tool, function";
  }
  if (m.contains("content")) {
    const Json& c = m["content"];
    if (c.is_array()) {
      std::string error = CheckContentParts(c, at + ".content");
      if (!error.empty()) return error;
    } else if (!c.is_string() && !c.is_null()) {
      return Quote(at + ".content") + " must be a string, a list of parts or null";
    }
  }
  std::string error = CheckRules(m, kMessageRules, at + ".");
  if (!error.empty()) return error;
  if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
    const Json& calls = m["tool_calls"];
    for (std::size_t i = 0; i < calls.size(); ++i) {
      error = CheckToolCall(calls[i], at + ".tool_calls[" + std::to_string(i) + "]");
      if (!error.empty()) return error;
    }
  }
  return "";
}

std::string CheckModelAndMessages(const Json& body) {
  if (MissingString(body, "model") || body["model"].get_ref<const std::string&>().empty()) {
    return "`model` must be a non-empty string";
  }
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return "`messages` must be a non-empty list";
  }
  const Json& messages = body["messages"];
  for (std::size_t i = 0; i < messages.size(); ++i) {
    std::string error = CheckMessage(messages[i], "messages[" + std::to_string(i) + "]");
    if (!error.empty()) return error;
  }
  return "";
}

// `tools` (and the legacy `functions`): the tool-call stage and the
// policies read each function's name.
std::string CheckTools(const Json& body) {
  if (body.contains("tools") && body["tools"].is_array()) {
    const Json& tools = body["tools"];
    for (std::size_t i = 0; i < tools.size(); ++i) {
      const Json& t = tools[i];
      std::string at = "tools[" + std::to_string(i) + "]";
      if (!t.is_object()) return Quote(at) + " must be an object (a tool)";
      if (MissingString(t, "type")) return Quote(at + ".type") + " must be a string";
      if (t["type"] != "function") continue;  // custom and hosted tools: the upstream's to judge
      if (!t.contains("function") || !t["function"].is_object()) {
        return Quote(at + ".function") + " must be an object";
      }
      if (MissingString(t["function"], "name")) {
        return Quote(at + ".function.name") + " must be a string";
      }
      std::string error = CheckRules(t["function"], kFunctionRules, at + ".function.");
      if (!error.empty()) return error;
    }
  }
  if (body.contains("functions") && body["functions"].is_array()) {
    const Json& fns = body["functions"];
    for (std::size_t i = 0; i < fns.size(); ++i) {
      std::string at = "functions[" + std::to_string(i) + "]";
      if (!fns[i].is_object()) return Quote(at) + " must be an object (a function)";
      if (MissingString(fns[i], "name")) return Quote(at + ".name") + " must be a string";
      std::string error = CheckRules(fns[i], kFunctionRules, at + ".");
      if (!error.empty()) return error;
    }
  }
  return "";
}

// `tool_choice` and the legacy `function_call`: a string ("auto", "none",
// "required") or an object; a function choice names its function.
std::string CheckToolChoice(const Json& body) {
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    const Json& c = body["tool_choice"];
    if (!c.is_string() && !c.is_object()) return "`tool_choice` must be a string or an object";
    if (c.is_object()) {
      if (MissingString(c, "type")) return "`tool_choice.type` must be a string";
      if (c["type"] == "function") {
        if (!c.contains("function") || !c["function"].is_object()) {
          return "`tool_choice.function` must be an object";
        }
        if (MissingString(c["function"], "name")) {
          return "`tool_choice.function.name` must be a string";
        }
      }
    }
  }
  if (body.contains("function_call") && !body["function_call"].is_null()) {
    const Json& c = body["function_call"];
    if (!c.is_string() && !c.is_object()) return "`function_call` must be a string or an object";
    if (c.is_object() && MissingString(c, "name")) return "`function_call.name` must be a string";
  }
  return "";
}

// The rest with parts: `stop`, `stream_options`, `metadata`, `logit_bias`,
// `response_format` (their own types are checked by the table already).
std::string CheckOptions(const Json& body) {
  if (body.contains("stop") && !body["stop"].is_null() && !body["stop"].is_string()) {
    if (!body["stop"].is_array()) return "`stop` must be a string or a list of strings";
    for (std::size_t i = 0; i < body["stop"].size(); ++i) {
      if (!body["stop"][i].is_string()) {
        return "`stop[" + std::to_string(i) + "]` must be a string";
      }
    }
  }
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    std::string error = CheckRules(body["stream_options"], kStreamOptionsRules, "stream_options.");
    if (!error.empty()) return error;
  }
  if (body.contains("metadata") && body["metadata"].is_object()) {
    for (const auto& [key, value] : body["metadata"].items()) {
      if (!value.is_string()) return Quote("metadata." + key) + " must be a string";
    }
  }
  if (body.contains("logit_bias") && body["logit_bias"].is_object()) {
    const Rule bias{"", Type::kNumber, -100, 100};
    for (const auto& [key, value] : body["logit_bias"].items()) {
      std::string error = CheckValue(value, bias, "logit_bias." + key);
      if (!error.empty()) return error;
    }
  }
  if (body.contains("response_format") && body["response_format"].is_object() &&
      MissingString(body["response_format"], "type")) {
    return "`response_format.type` must be a string";
  }
  return "";
}

// A choice of a whole completion: the output stage reads the content, the
// tool-call stage each call.
std::string CheckMessageChoice(const Json& c, const std::string& at) {
  if (!c.contains("message") || c["message"].is_null()) return "";
  const Json& m = c["message"];
  if (!m.is_object()) return Quote(at + ".message") + " must be an object";
  if (BadString(m, "content")) return Quote(at + ".message.content") + " must be a string";
  if (!m.contains("tool_calls") || m["tool_calls"].is_null()) return "";
  if (!m["tool_calls"].is_array()) return Quote(at + ".message.tool_calls") + " must be a list";
  for (std::size_t j = 0; j < m["tool_calls"].size(); ++j) {
    std::string error =
        CheckToolCall(m["tool_calls"][j], at + ".message.tool_calls[" + std::to_string(j) + "]");
    if (!error.empty()) return error;
  }
  return "";
}

// A choice of a streamed chunk: the relay keys streams by its index and
// accumulates tool calls from pieces, each of which may be absent.
std::string CheckDeltaChoice(const Json& c, const std::string& at) {
  if (c.contains("index") && !c["index"].is_number_integer()) {
    return Quote(at + ".index") + " must be an integer";
  }
  if (!c.contains("delta") || c["delta"].is_null()) return "";
  const Json& d = c["delta"];
  if (!d.is_object()) return Quote(at + ".delta") + " must be an object";
  if (BadString(d, "content")) return Quote(at + ".delta.content") + " must be a string";
  if (!d.contains("tool_calls") || d["tool_calls"].is_null()) return "";
  if (!d["tool_calls"].is_array()) return Quote(at + ".delta.tool_calls") + " must be a list";
  for (std::size_t j = 0; j < d["tool_calls"].size(); ++j) {
    const Json& tc = d["tool_calls"][j];
    std::string here = at + ".delta.tool_calls[" + std::to_string(j) + "]";
    if (!tc.is_object()) return Quote(here) + " must be an object";
    std::string error = CheckRules(tc, kToolCallDeltaRules, here + ".");
    if (error.empty() && tc.contains("function") && tc["function"].is_object()) {
      error = CheckRules(tc["function"], kFunctionDeltaRules, here + ".function.");
    }
    if (!error.empty()) return error;
  }
  return "";
}

// The choices of an upstream answer, each through `check`. An answer
// without choices has nothing for the stages to read, and passes.
std::string CheckChoices(const Json& answer,
                         std::string (*check)(const Json&, const std::string&)) {
  if (!answer.contains("choices")) return "";
  const Json& choices = answer["choices"];
  if (!choices.is_array()) return "`choices` must be a list";
  for (std::size_t i = 0; i < choices.size(); ++i) {
    std::string at = "choices[" + std::to_string(i) + "]";
    if (!choices[i].is_object()) return Quote(at) + " must be an object";
    std::string error = check(choices[i], at);
    if (!error.empty()) return error;
  }
  return "";
}

}  // namespace

std::string ValidateChatRequest(const Json& body) {
  if (!body.is_object()) return "the request body must be a JSON object";
  // One group after another, the first refusal wins; each group is flat.
  for (auto check : {CheckModelAndMessages, CheckTools, CheckToolChoice}) {
    std::string error = check(body);
    if (!error.empty()) return error;
  }
  std::string error = CheckRules(body, kRequestRules, "");
  if (!error.empty()) return error;
  return CheckOptions(body);
}

std::string ValidateCompletion(const Json& response) {
  return CheckChoices(response, CheckMessageChoice);
}

std::string ValidateCompletionChunk(const Json& chunk) {
  return CheckChoices(chunk, CheckDeltaChoice);
}

}  // namespace kt::gateway
