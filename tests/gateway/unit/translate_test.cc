// The surface translations for chat-only providers: Responses and legacy
// Completions requests into chat, and chat answers (JSON and streams) back.
// The stream tests replay the events through a port of the official SDK's
// accumulator (openai/lib/responses/ResponseAccumulator.mjs), so what they
// check is what `responses.stream()` and `finalResponse()` would build.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/internal/translate.h"

namespace kt::gateway {
namespace {

using Json = nlohmann::json;

Json J(const char* text) { return Json::parse(text); }

// ------------------------------------------------------------ helpers

// The SDK's snapshot accumulator for the events the translator emits: each
// check below is one of the places where the SDK throws.
class Accumulator {
 public:
  // "" when the SDK would accept the event; otherwise what it would throw.
  std::string Add(const Json& e) {
    std::string type = e["type"];
    if (!started_) {
      if (type != "response.created") return "first event is " + type;
      started_ = true;
      snapshot = e["response"];
      return "";
    }
    if (type == "response.in_progress" || type == "response.completed" ||
        type == "response.incomplete") {
      snapshot = e["response"];
      return "";
    }
    if (type == "response.output_item.added") {
      if (e["output_index"] != snapshot["output"].size()) return "added out of order";
      snapshot["output"].push_back(e["item"]);
      return "";
    }
    if (type == "error") return "";
    Json* output = Output(e);
    if (output == nullptr) return "missing output at index " + e["output_index"].dump();
    if (type == "response.output_item.done") {
      *output = e["item"];
      return "";
    }
    if (type == "response.function_call_arguments.delta") {
      (*output)["arguments"] =
          (*output)["arguments"].get<std::string>() + e["delta"].get<std::string>();
      return "";
    }
    if (type == "response.function_call_arguments.done") {
      (*output)["arguments"] = e["arguments"];
      return "";
    }
    return AddContentEvent(type, e, output);
  }
  Json snapshot;

 private:
  Json* Output(const Json& e) {
    if (!e.contains("output_index")) return nullptr;
    std::size_t i = e["output_index"];
    return i < snapshot["output"].size() ? &snapshot["output"][i] : nullptr;
  }
  std::string AddContentEvent(const std::string& type, const Json& e, Json* output) {
    Json& content = (*output)["content"];
    if (type == "response.content_part.added") {
      if (e["content_index"] != content.size()) return "part added out of order";
      content.push_back(e["part"]);
      return "";
    }
    std::size_t i = e["content_index"];
    if (i >= content.size()) return "missing content at index " + std::to_string(i);
    Json& part = content[i];
    if (type == "response.content_part.done") {
      part = e["part"];
    } else if (type == "response.output_text.delta" || type == "response.output_text.done") {
      if (part["type"] != "output_text") return "expected content to be 'output_text'";
      part["text"] = type.ends_with("delta")
                         ? part["text"].get<std::string>() + e["delta"].get<std::string>()
                         : e["text"].get<std::string>();
    } else if (type == "response.refusal.delta" || type == "response.refusal.done") {
      if (part["type"] != "refusal") return "expected content to be 'refusal'";
      part["refusal"] = type.ends_with("delta")
                            ? part["refusal"].get<std::string>() + e["delta"].get<std::string>()
                            : e["refusal"].get<std::string>();
    } else {
      return "Unhandled response stream event: " + type;
    }
    return "";
  }
  bool started_ = false;
};

// Output items without their generated ids (`msg_…`, `fc_…`), for comparing
// two translations of the same answer.
Json WithoutIds(Json output) {
  for (Json& item : output) item.erase("id");
  return output;
}

// A chat stream run through the translator, keeping every event.
struct StreamRun {
  explicit StreamRun(Json request = J(R"({"model":"gpt-test","stream":true})"))
      : translator(std::move(request), "resp_1", 1700000000) {}
  bool Feed(const std::string& data) {
    std::string error;
    bool ok = translator.Feed({"", data}, &events, &error);
    last_error = error;
    return ok;
  }
  void FeedChunk(const Json& chunk) { EXPECT_TRUE(Feed(chunk.dump())) << last_error; }
  std::vector<Json> Data() const {
    std::vector<Json> out;
    for (const SseEvent& e : events) out.push_back(Json::parse(e.data));
    return out;
  }
  std::vector<std::string> Types() const {
    std::vector<std::string> out;
    for (const SseEvent& e : events) out.push_back(e.event);
    return out;
  }
  // The concatenated `delta` of every event of `type`.
  std::string Deltas(const std::string& type) const {
    std::string out;
    for (const Json& e : Data()) {
      if (e["type"] == type) out += e["delta"].get<std::string>();
    }
    return out;
  }
  std::vector<Json> OfType(const std::string& type) const {
    std::vector<Json> out;
    for (const Json& e : Data()) {
      if (e["type"] == type) out.push_back(e);
    }
    return out;
  }
  ChatToResponsesStream translator;
  std::vector<SseEvent> events;
  std::string last_error;
};

Json ContentChunk(const std::string& text) {
  return {
      {"id", "chatcmpl-1"},
      {"object", "chat.completion.chunk"},
      {"model", "gpt-test-2024"},
      {"choices", {{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}}}};
}

Json ToolChunk(int index, const std::string& id, const std::string& name,
               const std::string& arguments) {
  Json call = {{"index", index}, {"function", {{"arguments", arguments}}}};
  if (!id.empty()) {
    call["id"] = id;
    call["type"] = "function";
  }
  if (!name.empty()) call["function"]["name"] = name;
  return {{"id", "chatcmpl-1"},
          {"object", "chat.completion.chunk"},
          {"model", "gpt-test-2024"},
          {"choices",
           {{{"index", 0}, {"delta", {{"tool_calls", {call}}}}, {"finish_reason", nullptr}}}}};
}

Json FinishChunk(const std::string& reason) {
  return {{"id", "chatcmpl-1"},
          {"object", "chat.completion.chunk"},
          {"model", "gpt-test-2024"},
          {"choices", {{{"index", 0}, {"delta", Json::object()}, {"finish_reason", reason}}}}};
}

Json UsageChunk() {
  return J(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-test-2024",
    "choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,
    "prompt_tokens_details":{"cached_tokens":3},
    "completion_tokens_details":{"reasoning_tokens":2}}})");
}

const Json kUsage = J(R"({"input_tokens":11,"output_tokens":7,"total_tokens":18,
  "input_tokens_details":{"cached_tokens":3},"output_tokens_details":{"reasoning_tokens":2}})");

// What every finished stream must satisfy, whatever it carried: sequence
// numbers 0, 1, 2, …; the SSE event name is the data's type; the SDK's
// accumulator takes every event and builds from the incremental events the
// output the terminal event carries; one terminal event, last.
void ExpectWellFormed(const StreamRun& run) {
  std::vector<Json> data = run.Data();
  ASSERT_FALSE(data.empty());
  Accumulator acc;
  for (std::size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(data[i]["sequence_number"], i);
    EXPECT_EQ(data[i]["type"], run.events[i].event);
    bool terminal = i + 1 == data.size();
    if (terminal) {
      ASSERT_TRUE(data[i]["type"] == "response.completed" ||
                  data[i]["type"] == "response.incomplete");
      // Before the terminal event replaces it, the accumulated snapshot
      // already holds the final output.
      EXPECT_EQ(acc.snapshot["output"], data[i]["response"]["output"]);
    }
    EXPECT_EQ(acc.Add(data[i]), "") << data[i].dump();
  }
  EXPECT_TRUE(run.translator.finished());
}

// Every event that names an item names it by the id and index it was added
// with.
void ExpectConsistentIds(const StreamRun& run) {
  std::vector<std::string> ids;
  for (const Json& e : run.Data()) {
    if (e["type"] == "response.output_item.added") {
      EXPECT_EQ(e["output_index"], ids.size());
      ids.push_back(e["item"]["id"].get<std::string>());
      continue;
    }
    if (!e.contains("output_index")) continue;
    std::size_t index = e["output_index"];
    ASSERT_LT(index, ids.size()) << e.dump();
    if (e.contains("item_id")) {
      EXPECT_EQ(e["item_id"], ids[index]) << e.dump();
    }
    if (e.contains("item")) {
      EXPECT_EQ(e["item"]["id"], ids[index]) << e.dump();
    }
  }
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size());
}

// ------------------------------------------- Responses request → chat

TEST(ResponsesToChatRequest, StringInputWithInstructionsAndSettings) {
  Json chat;
  ASSERT_EQ(ResponsesToChatRequest(J(R"({"model":"gpt-4o","instructions":"Be brief.",
      "input":"Hello","max_output_tokens":50,"temperature":0.2,"top_p":0.9,"user":"u1",
      "metadata":{"k":"v"},"stream":true,"store":true,"reasoning":{"effort":"low"}})"),
                                   &chat),
            "");
  EXPECT_EQ(chat, J(R"({"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":"Hello"}],"max_tokens":50,"temperature":0.2,"top_p":0.9,
      "user":"u1","metadata":{"k":"v"},"stream":true,"stream_options":{"include_usage":true},
      "reasoning_effort":"low"})"));
}

TEST(ResponsesToChatRequest, UnstreamedRequestAsksNoStreamOptions) {
  Json chat;
  ASSERT_EQ(ResponsesToChatRequest(J(R"({"model":"m","input":"hi","stream":false})"), &chat), "");
  EXPECT_FALSE(chat.contains("stream_options"));
  EXPECT_EQ(chat["stream"], false);
}

TEST(ResponsesToChatRequest, MessageItemsAndParts) {
  Json chat;
  ASSERT_EQ(ResponsesToChatRequest(J(R"({"model":"m","input":[
      {"role":"developer","content":"Rules."},
      {"type":"message","role":"system","content":[{"type":"input_text","text":"More rules."}]},
      {"role":"user","content":[{"type":"input_text","text":"What is this?"},
        {"type":"input_image","image_url":"https://x/cat.png","detail":"low"},
        {"type":"input_image","image_url":"data:image/png;base64,AAAA","detail":"original"},
        {"type":"input_file","file_id":"file-1","filename":"a.pdf"}]},
      {"type":"message","id":"msg_1","status":"completed","role":"assistant",
        "content":[{"type":"output_text","text":"A cat.","annotations":[]}]},
      {"role":"assistant","content":[{"type":"refusal","refusal":"No."}]},
      {"role":"user","content":[]}]})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["messages"], J(R"([
      {"role":"system","content":"Rules."},
      {"role":"system","content":"More rules."},
      {"role":"user","content":[{"type":"text","text":"What is this?"},
        {"type":"image_url","image_url":{"url":"https://x/cat.png","detail":"low"}},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"high"}},
        {"type":"file","file":{"file_id":"file-1","filename":"a.pdf"}}]},
      {"role":"assistant","content":"A cat."},
      {"role":"assistant","content":[{"type":"refusal","refusal":"No."}]},
      {"role":"user","content":""}])"));
}

TEST(ResponsesToChatRequest, FunctionCallsJoinTheirAssistantTurn) {
  Json chat;
  ASSERT_EQ(ResponsesToChatRequest(J(R"({"model":"m","input":[
      {"role":"user","content":"Weather in Paris and Oslo?"},
      {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},
      {"type":"function_call","id":"fc_1","call_id":"call_a","name":"weather",
        "arguments":"{\"city\":\"Paris\"}","status":"completed"},
      {"type":"function_call","call_id":"call_b","name":"weather",
        "arguments":"{\"city\":\"Oslo\"}"},
      {"type":"function_call_output","call_id":"call_a","output":"18C"},
      {"type":"function_call_output","call_id":"call_b",
        "output":[{"type":"input_text","text":"-2C"},{"type":"input_text","text":" snow"}]},
      {"type":"function_call","call_id":"call_c","name":"time","arguments":"{}"}]})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["messages"], J(R"([
      {"role":"user","content":"Weather in Paris and Oslo?"},
      {"role":"assistant","content":"Checking.","tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"weather",
          "arguments":"{\"city\":\"Paris\"}"}},
        {"id":"call_b","type":"function","function":{"name":"weather",
          "arguments":"{\"city\":\"Oslo\"}"}}]},
      {"role":"tool","tool_call_id":"call_a","content":"18C"},
      {"role":"tool","tool_call_id":"call_b","content":[{"type":"text","text":"-2C"},
        {"type":"text","text":" snow"}]},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"call_c","type":"function","function":{"name":"time","arguments":"{}"}}]}])"));
}

TEST(ResponsesToChatRequest, ToolsAndToolChoice) {
  Json chat;
  ASSERT_EQ(ResponsesToChatRequest(J(R"({"model":"m","input":"hi","parallel_tool_calls":false,
      "tools":[{"type":"function","name":"weather","description":"Weather now.",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true},
        {"type":"function","name":"noop","parameters":null,"strict":null}],
      "tool_choice":{"type":"function","name":"weather"}})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["tools"], J(R"([{"type":"function","function":{"name":"weather",
      "description":"Weather now.",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}}},
      "strict":true}},{"type":"function","function":{"name":"noop"}}])"));
  EXPECT_EQ(chat["tool_choice"], J(R"({"type":"function","function":{"name":"weather"}})"));
  EXPECT_EQ(chat["parallel_tool_calls"], false);
  for (const char* mode : {"auto", "none", "required"}) {
    Json request = J(R"({"model":"m","input":"hi","tools":[{"type":"function","name":"f"}]})");
    request["tool_choice"] = mode;
    ASSERT_EQ(ResponsesToChatRequest(request, &chat), "");
    EXPECT_EQ(chat["tool_choice"], mode);
  }
  // Chat refuses parallel_tool_calls on a request without tools.
  ASSERT_EQ(
      ResponsesToChatRequest(J(R"({"model":"m","input":"hi","parallel_tool_calls":true})"), &chat),
      "");
  EXPECT_FALSE(chat.contains("parallel_tool_calls"));
}

TEST(ResponsesToChatRequest, TextFormats) {
  Json chat;
  ASSERT_EQ(ResponsesToChatRequest(J(R"({"model":"m","input":"hi","text":{"verbosity":"low",
      "format":{"type":"json_schema","name":"answer","strict":true,
        "schema":{"type":"object","properties":{"a":{"type":"number"}}}}}})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["response_format"], J(R"({"type":"json_schema","json_schema":{"name":"answer",
      "strict":true,"schema":{"type":"object","properties":{"a":{"type":"number"}}}}})"));
  EXPECT_EQ(chat["verbosity"], "low");
  ASSERT_EQ(ResponsesToChatRequest(
                J(R"({"model":"m","input":"hi","text":{"format":{"type":"json_object"}}})"), &chat),
            "");
  EXPECT_EQ(chat["response_format"], J(R"({"type":"json_object"})"));
  ASSERT_EQ(ResponsesToChatRequest(
                J(R"({"model":"m","input":"hi","text":{"format":{"type":"text"}}})"), &chat),
            "");
  EXPECT_FALSE(chat.contains("response_format"));
}

struct RefusalCase {
  const char* request;
  const char* error;  // the whole message, or its start when it ends in "…"
};

// Each refusal names its field first.
const RefusalCase kResponsesRefusals[] = {
    {R"({"input":"hi","tools":[{"type":"function","name":"f"},{"type":"web_search"}]})",
     "`tools[1]`: the `web_search` tool has no chat-completions form (a chat-only provider "
     "cannot serve it)"},
    {R"({"input":"hi","previous_response_id":"resp_1"})", "`previous_response_id`: …"},
    {R"({"input":"hi","conversation":"conv_1"})", "`conversation`: …"},
    {R"({"input":"hi","background":true})", "`background`: …"},
    {R"({"input":"hi","prompt":{"id":"pmpt_1"}})", "`prompt`: …"},
    {R"({"input":[{"type":"reasoning","id":"rs_1","summary":[]}]})",
     "`input[0]`: the `reasoning` item has no chat-completions form (a chat-only provider "
     "cannot serve it)"},
    {R"({"input":[{"role":"user","content":[{"type":"input_text","text":"x"},
        {"type":"input_file","file_url":"https://x/a.pdf"}]}]})",
     "`input[0].content[1]`: …"},
    {R"({"input":[{"role":"user","content":[{"type":"input_file","filename":"a.pdf"}]}]})",
     "`input[0].content[0]`: …"},
    {R"({"input":[{"role":"system",
        "content":[{"type":"input_image","image_url":"https://x"}]}]})",
     "`input[0].content[0]`: chat carries `input_image` parts only in user messages …"},
    {R"({"input":[{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]})",
     "`input[0].content[0]`: an image without `image_url` …"},
    {R"({"input":[{"type":"function_call_output","call_id":"c",
        "output":[{"type":"input_image","image_url":"https://x"}]}]})",
     "`input[0].output[0]`: chat carries `input_image` parts only in user messages …"},
    {R"({"input":[{"role":"user","content":[{"type":"refusal","refusal":"x"}]}]})",
     "`input[0].content[0]`: the `refusal` part has no chat-completions form in a user message "
     "…"},
    {R"({"input":[{"role":"user","content":[{"type":"input_audio"}]}]})",
     "`input[0].content[0]`: …"},
    {R"({"input":[{"role":"user","content":[{"text":"untyped"}]}]})", "`input[0].content[0]`: …"},
    {R"({"input":[{"role":"tool","content":"x"}]})", "`input[0].role`: …"},
    {R"({"input":[{"role":"user"}]})", "`input[0].content`: missing"},
    {R"({"input":[{"role":"user","content":7}]})", "`input[0].content`: …"},
    {R"({"input":[{"type":"function_call","name":"f","arguments":"{}"}]})",
     "`input[0].call_id`: must be a non-empty string"},
    {R"({"input":[{"type":"function_call","call_id":"c","name":"f","arguments":{"a":1}}]})",
     "`input[0].arguments`: must be a string"},
    {R"({"input":[{"type":"function_call_output","call_id":"c"}]})", "`input[0].output`: missing"},
    {R"({"input":[{"role":"user","content":"a"},"hi"]})", "`input[1]`: must be an object"},
    {R"({"input":42})", "`input`: …"},
    {R"({"model":"m"})", "`input`: …"},
    {R"({"instructions":["x"],"input":"hi"})", "`instructions`: …"},
    {R"({"input":"hi","tools":{"type":"function"}})", "`tools`: …"},
    {R"({"input":"hi","tools":[{"name":"f"}]})", "`tools[0].type`: …"},
    {R"({"input":"hi","tools":[{"type":"function"}]})", "`tools[0].name`: …"},
    {R"({"input":"hi","tool_choice":{"type":"file_search"}})",
     "`tool_choice`: the `file_search` tool choice has no chat-completions form …"},
    {R"({"input":"hi","tool_choice":"sometimes"})", "`tool_choice`: …"},
    {R"({"input":"hi","text":{"format":{"type":"yaml"}}})", "`text.format.type`: …"},
    {R"({"input":"hi","text":{"format":{"type":"json_schema","schema":{}}}})",
     "`text.format.name`: …"},
    {R"({"input":"hi","text":{"format":{"type":"json_schema","name":"a","schema":3}}})",
     "`text.format.schema`: …"},
    {R"([1,2])", "`(body)`: …"},
};

TEST(ResponsesToChatRequest, RefusesWhatChatCannotCarry) {
  for (const RefusalCase& c : kResponsesRefusals) {
    Json chat = "untouched";
    std::string error = ResponsesToChatRequest(J(c.request), &chat);
    std::string expected = c.error;
    if (expected.ends_with("…")) {
      expected.resize(expected.size() - std::string("…").size());
      EXPECT_TRUE(error.starts_with(expected)) << c.request << "\n  got: " << error;
    } else {
      EXPECT_EQ(error, expected) << c.request;
    }
    EXPECT_EQ(chat, "untouched") << c.request;
  }
}

TEST(ResponsesToChatRequest, ServableFalsyOptionsPass) {
  Json chat;
  EXPECT_EQ(ResponsesToChatRequest(J(R"({"model":"m","input":"hi","background":false,
      "previous_response_id":null,"conversation":null,"instructions":null,"tools":null})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["messages"], J(R"([{"role":"user","content":"hi"}])"));
}

// --------------------------------------------- chat.completion → response

const Json kRequest = J(R"({"model":"gpt-test","instructions":"Be brief.","input":"hi",
  "tools":[{"type":"function","name":"weather","parameters":{"type":"object"},"strict":true}],
  "temperature":0.5,"max_output_tokens":100,"metadata":{"k":"v"}})");

TEST(ChatToResponse, TextAnswerWithUsage) {
  Json response = ChatToResponse(J(R"({"id":"chatcmpl-1","object":"chat.completion",
      "model":"gpt-test-2024","choices":[{"index":0,"message":{"role":"assistant",
      "content":"Hello there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,
      "completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3},
      "completion_tokens_details":{"reasoning_tokens":2}}})"),
                                 kRequest, "resp_1", 1700000000);
  EXPECT_EQ(response["id"], "resp_1");
  EXPECT_EQ(response["object"], "response");
  EXPECT_EQ(response["created_at"], 1700000000);
  EXPECT_EQ(response["status"], "completed");
  EXPECT_EQ(response["model"], "gpt-test-2024");
  EXPECT_EQ(response["error"], nullptr);
  EXPECT_EQ(response["incomplete_details"], nullptr);
  EXPECT_EQ(response["usage"], kUsage);
  ASSERT_EQ(response["output"].size(), 1u);
  const Json& item = response["output"][0];
  EXPECT_TRUE(item["id"].get<std::string>().starts_with("msg_"));
  EXPECT_EQ(WithoutIds(response["output"]), J(R"([{"type":"message","status":"completed",
      "role":"assistant","content":[{"type":"output_text","text":"Hello there.",
      "annotations":[],"logprobs":[]}]}])"));
  // The request's settings, echoed in Responses form.
  EXPECT_EQ(response["instructions"], "Be brief.");
  EXPECT_EQ(response["tools"], kRequest["tools"]);
  EXPECT_EQ(response["tool_choice"], "auto");
  EXPECT_EQ(response["parallel_tool_calls"], true);
  EXPECT_EQ(response["temperature"], 0.5);
  EXPECT_EQ(response["top_p"], nullptr);
  EXPECT_EQ(response["max_output_tokens"], 100);
  EXPECT_EQ(response["metadata"], J(R"({"k":"v"})"));
}

TEST(ChatToResponse, ToolCallsBecomeFunctionCallItems) {
  Json response = ChatToResponse(J(R"({"id":"c","model":"m","choices":[{"index":0,
      "message":{"role":"assistant","content":null,"tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"weather",
          "arguments":"{\"city\":\"Paris\"}"}},
        {"id":"call_b","type":"function","function":{"name":"weather",
          "arguments":"{\"city\":\"Oslo\"}"}}]},
      "finish_reason":"tool_calls"}]})"),
                                 kRequest, "resp_2", 1);
  EXPECT_EQ(response["status"], "completed");
  ASSERT_EQ(response["output"].size(), 2u);
  EXPECT_TRUE(response["output"][0]["id"].get<std::string>().starts_with("fc_"));
  EXPECT_NE(response["output"][0]["id"], response["output"][1]["id"]);
  EXPECT_EQ(WithoutIds(response["output"]), J(R"([
      {"type":"function_call","call_id":"call_a","name":"weather",
       "arguments":"{\"city\":\"Paris\"}","status":"completed"},
      {"type":"function_call","call_id":"call_b","name":"weather",
       "arguments":"{\"city\":\"Oslo\"}","status":"completed"}])"));
  // No usage from the upstream: none in the answer.
  EXPECT_EQ(response["usage"], nullptr);
}

TEST(ChatToResponse, TextAndToolCallKeepTheirOrder) {
  Json response = ChatToResponse(J(R"({"model":"m","choices":[{"index":0,"message":{
      "content":"Let me check.","tool_calls":[{"id":"call_a","type":"function",
      "function":{"name":"f","arguments":{"x":1}}}]},"finish_reason":"tool_calls"}]})"),
                                 kRequest, "r", 1);
  ASSERT_EQ(response["output"].size(), 2u);
  EXPECT_EQ(response["output"][0]["type"], "message");
  EXPECT_EQ(response["output"][0]["content"][0]["text"], "Let me check.");
  EXPECT_EQ(response["output"][1]["type"], "function_call");
  // Arguments sent as an object arrive as the JSON text the API carries.
  EXPECT_EQ(response["output"][1]["arguments"], R"({"x":1})");
}

TEST(ChatToResponse, LengthAndContentFilterAreIncomplete) {
  Json length = ChatToResponse(J(R"({"model":"m","choices":[{"index":0,
      "message":{"content":"Once upon a"},"finish_reason":"length"}]})"),
                               kRequest, "r", 1);
  EXPECT_EQ(length["status"], "incomplete");
  EXPECT_EQ(length["incomplete_details"], J(R"({"reason":"max_output_tokens"})"));
  EXPECT_EQ(length["output"][0]["status"], "incomplete");
  EXPECT_EQ(length["output"][0]["content"][0]["text"], "Once upon a");
  Json filtered = ChatToResponse(J(R"({"model":"m","choices":[{"index":0,
      "message":{"content":null},"finish_reason":"content_filter"}]})"),
                                 kRequest, "r", 1);
  EXPECT_EQ(filtered["status"], "incomplete");
  EXPECT_EQ(filtered["incomplete_details"], J(R"({"reason":"content_filter"})"));
}

TEST(ChatToResponse, RefusalIsARefusalPart) {
  Json response = ChatToResponse(J(R"({"model":"m","choices":[{"index":0,
      "message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]})"),
                                 kRequest, "r", 1);
  EXPECT_EQ(response["output"][0]["content"],
            J(R"([{"type":"refusal","refusal":"I can't help with that."}])"));
}

TEST(ChatToResponse, WrongTypedAnswersReadAsAbsent) {
  const char* junk[] = {
      R"(42)",
      R"({"choices":"nope"})",
      R"({"choices":[7,{"index":"0","message":{"content":"x"}}]})",
      R"({"choices":[{"index":0,"message":3}],"usage":"lots","model":9})",
      R"({"choices":[{"message":{"content":["x"],"tool_calls":[1,{"function":2},
          {"type":"custom","function":{"name":"f"}}]},"finish_reason":7}],
          "usage":{"prompt_tokens":"11","completion_tokens":1.5,"total_tokens":null}})",
  };
  for (const char* text : junk) {
    Json response;
    ASSERT_NO_THROW(response = ChatToResponse(J(text), kRequest, "r", 1)) << text;
    // One empty message: the answer had nothing readable in it.
    EXPECT_EQ(response["status"], "completed") << text;
    EXPECT_EQ(WithoutIds(response["output"]), J(R"([{"type":"message","status":"completed",
        "role":"assistant","content":[{"type":"output_text","text":"","annotations":[],
        "logprobs":[]}]}])"))
        << text;
    EXPECT_EQ(response["model"], "gpt-test") << text;
  }
  Json zeros = ChatToResponse(J(junk[4]), kRequest, "r", 1);
  EXPECT_EQ(zeros["usage"]["input_tokens"], 0);
  EXPECT_EQ(zeros["usage"]["total_tokens"], 0);
}

// ---------------------------------------------------------- the stream

// `text` as a chat stream of 1-3 byte deltas (a role chunk first, as the
// API sends), a stop, a usage chunk and [DONE].
void FeedText(StreamRun* run, const std::string& text) {
  run->FeedChunk(J(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-test-2024",
      "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})"));
  for (std::size_t i = 0, n = 1; i < text.size(); i += n, n = n % 3 + 1) {
    run->FeedChunk(ContentChunk(text.substr(i, n)));
  }
  run->FeedChunk(FinishChunk("stop"));
  run->FeedChunk(UsageChunk());
  ASSERT_TRUE(run->Feed("[DONE]"));
}

TEST(ChatToResponsesStream, TextInTinyDeltas) {
  const std::string text = "The quick brown fox jumps over the lazy dog, twice: 1, 2.";
  StreamRun run;
  FeedText(&run, text);
  ExpectWellFormed(run);
  ExpectConsistentIds(run);
  std::vector<std::string> types = run.Types();
  std::vector<std::string> head(types.begin(), types.begin() + 4);
  EXPECT_EQ(head, (std::vector<std::string>{"response.created", "response.in_progress",
                                            "response.output_item.added",
                                            "response.content_part.added"}));
  std::vector<std::string> tail(types.end() - 4, types.end());
  EXPECT_EQ(tail,
            (std::vector<std::string>{"response.output_text.done", "response.content_part.done",
                                      "response.output_item.done", "response.completed"}));
  EXPECT_EQ(run.Deltas("response.output_text.delta"), text);
  std::vector<Json> deltas = run.OfType("response.output_text.delta");
  EXPECT_GE(deltas.size(), text.size() / 3);
  for (const Json& d : deltas) EXPECT_LE(d["delta"].get<std::string>().size(), 3u);
  std::vector<Json> done = run.OfType("response.output_text.done");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]["text"], text);
  EXPECT_EQ(done[0]["logprobs"], Json::array());
  EXPECT_EQ(run.OfType("response.output_text.delta")[0]["logprobs"], Json::array());
  // The stream's answer is the JSON translation's.
  Json completed = run.Data().back()["response"];
  Json chat = J(R"({"model":"gpt-test-2024","choices":[{"index":0,"message":{"content":""},
      "finish_reason":"stop"}]})");
  chat["choices"][0]["message"]["content"] = text;
  Json expected = ChatToResponse(chat, J(R"({"model":"gpt-test","stream":true})"), "resp_1", 0);
  EXPECT_EQ(WithoutIds(completed["output"]), WithoutIds(expected["output"]));
  EXPECT_EQ(completed["status"], "completed");
  EXPECT_EQ(completed["id"], "resp_1");
  EXPECT_EQ(completed["created_at"], 1700000000);
  EXPECT_EQ(completed["model"], "gpt-test-2024");
  EXPECT_EQ(completed["usage"], kUsage);
  // The created snapshot is in progress, empty, without usage.
  Json created = run.Data()[0]["response"];
  EXPECT_EQ(created["status"], "in_progress");
  EXPECT_EQ(created["output"], Json::array());
  EXPECT_EQ(created["usage"], nullptr);
}

TEST(ChatToResponsesStream, NonAsciiTextArrivesWhole) {
  const std::string text = "Grüße, 世界 🌍!";
  StreamRun run;
  for (const char* piece : {"Grü", "ße, ", "世", "界 ", "🌍", "!"})
    run.FeedChunk(ContentChunk(piece));
  run.FeedChunk(FinishChunk("stop"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  EXPECT_EQ(run.Deltas("response.output_text.delta"), text);
  EXPECT_EQ(run.Data().back()["response"]["output"][0]["content"][0]["text"], text);
  // No usage chunk came: the response says none.
  EXPECT_EQ(run.Data().back()["response"]["usage"], nullptr);
}

// A tool call whose arguments come a few bytes per chunk.
void FeedCall(StreamRun* run, int index, const std::string& id, const std::string& name,
              const std::string& arguments) {
  run->FeedChunk(ToolChunk(index, id, name, ""));
  for (std::size_t i = 0, n = 2; i < arguments.size(); i += n, n = n % 3 + 1) {
    run->FeedChunk(ToolChunk(index, "", "", arguments.substr(i, n)));
  }
}

TEST(ChatToResponsesStream, ToolCallWithArgumentsOverManyChunks) {
  const std::string arguments = R"({"city":"Paris","unit":"celsius","days":[1,2,3]})";
  StreamRun run;
  run.FeedChunk(J(R"({"id":"chatcmpl-1","model":"gpt-test-2024","choices":[{"index":0,
      "delta":{"role":"assistant","content":null},"finish_reason":null}]})"));
  FeedCall(&run, 0, "call_abc", "weather", arguments);
  run.FeedChunk(FinishChunk("tool_calls"));
  run.FeedChunk(UsageChunk());
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  ExpectConsistentIds(run);
  EXPECT_TRUE(run.OfType("response.output_text.delta").empty());
  std::vector<Json> added = run.OfType("response.output_item.added");
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(added[0]["item"]["type"], "function_call");
  EXPECT_EQ(added[0]["item"]["call_id"], "call_abc");
  EXPECT_EQ(added[0]["item"]["name"], "weather");
  EXPECT_EQ(added[0]["item"]["arguments"], "");
  EXPECT_EQ(added[0]["item"]["status"], "in_progress");
  EXPECT_TRUE(added[0]["item"]["id"].get<std::string>().starts_with("fc_"));
  EXPECT_EQ(run.Deltas("response.function_call_arguments.delta"), arguments);
  std::vector<Json> done = run.OfType("response.function_call_arguments.done");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]["arguments"], arguments);
  EXPECT_EQ(done[0]["name"], "weather");
  Json completed = run.Data().back()["response"];
  Json chat = {{"choices",
                {{{"index", 0},
                  {"message",
                   {{"content", nullptr},
                    {"tool_calls",
                     {{{"id", "call_abc"},
                       {"type", "function"},
                       {"function", {{"name", "weather"}, {"arguments", arguments}}}}}}}},
                  {"finish_reason", "tool_calls"}}}}};
  EXPECT_EQ(WithoutIds(completed["output"]),
            WithoutIds(ChatToResponse(chat, Json::object(), "r", 0)["output"]));
  EXPECT_EQ(completed["usage"], kUsage);
}

TEST(ChatToResponsesStream, TextThenTwoToolCalls) {
  StreamRun run;
  run.FeedChunk(ContentChunk("Checking "));
  run.FeedChunk(ContentChunk("both."));
  FeedCall(&run, 0, "call_a", "weather", R"({"city":"Paris"})");
  FeedCall(&run, 1, "call_b", "weather", R"({"city":"Oslo"})");
  run.FeedChunk(FinishChunk("tool_calls"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  ExpectConsistentIds(run);
  // Each item is done before the next is added, as the API sends them.
  std::vector<std::string> lifecycle;
  for (const Json& e : run.Data()) {
    std::string type = e["type"];
    if (type == "response.output_item.added" || type == "response.output_item.done") {
      lifecycle.push_back(type.substr(21) + ":" + e["item"]["type"].get<std::string>());
    }
  }
  EXPECT_EQ(lifecycle, (std::vector<std::string>{"added:message", "done:message",
                                                 "added:function_call", "done:function_call",
                                                 "added:function_call", "done:function_call"}));
  Json output = run.Data().back()["response"]["output"];
  ASSERT_EQ(output.size(), 3u);
  EXPECT_EQ(output[0]["content"][0]["text"], "Checking both.");
  EXPECT_EQ(output[1]["arguments"], R"({"city":"Paris"})");
  EXPECT_EQ(output[2]["call_id"], "call_b");
  EXPECT_EQ(output[2]["arguments"], R"({"city":"Oslo"})");
}

TEST(ChatToResponsesStream, LengthEndsIncomplete) {
  StreamRun run;
  run.FeedChunk(ContentChunk("Once upon"));
  run.FeedChunk(ContentChunk(" a"));
  run.FeedChunk(FinishChunk("length"));
  run.FeedChunk(UsageChunk());
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  Json last = run.Data().back();
  EXPECT_EQ(last["type"], "response.incomplete");
  EXPECT_EQ(last["response"]["status"], "incomplete");
  EXPECT_EQ(last["response"]["incomplete_details"], J(R"({"reason":"max_output_tokens"})"));
  EXPECT_EQ(last["response"]["output"][0]["status"], "incomplete");
  EXPECT_EQ(last["response"]["usage"], kUsage);
  EXPECT_TRUE(run.OfType("response.completed").empty());
}

TEST(ChatToResponsesStream, ContentFilterEndsIncomplete) {
  StreamRun run;
  run.FeedChunk(ContentChunk("Well"));
  run.FeedChunk(FinishChunk("content_filter"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  EXPECT_EQ(run.Data().back()["response"]["incomplete_details"],
            J(R"({"reason":"content_filter"})"));
}

TEST(ChatToResponsesStream, ItemsCloseAtFinishAndCompleteAtDone) {
  StreamRun run;
  run.FeedChunk(ContentChunk("Hi"));
  run.FeedChunk(FinishChunk("stop"));
  EXPECT_EQ(run.events.back().event, "response.output_item.done");
  EXPECT_FALSE(run.translator.finished());
  std::size_t before = run.events.size();
  run.FeedChunk(UsageChunk());
  // Stray content after the finish is not reopened.
  run.FeedChunk(ContentChunk("late"));
  EXPECT_EQ(run.events.size(), before);
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  EXPECT_EQ(run.Data().back()["response"]["usage"], kUsage);
  EXPECT_EQ(run.Deltas("response.output_text.delta"), "Hi");
}

TEST(ChatToResponsesStream, UpstreamErrorEndsTheStream) {
  StreamRun run;
  run.FeedChunk(ContentChunk("Par"));
  run.FeedChunk(J(R"({"error":{"message":"The server had an error","type":"server_error",
      "code":"internal","param":null}})"));
  EXPECT_TRUE(run.translator.finished());
  Json error = run.Data().back();
  EXPECT_EQ(run.events.back().event, "error");
  EXPECT_EQ(error["type"], "error");
  EXPECT_EQ(error["code"], "internal");
  EXPECT_EQ(error["message"], "The server had an error");
  EXPECT_EQ(error["param"], nullptr);
  EXPECT_EQ(error["error"]["type"], "server_error");
  EXPECT_EQ(error["sequence_number"], run.events.size() - 1);
  std::size_t count = run.events.size();
  run.FeedChunk(ContentChunk("is"));
  EXPECT_TRUE(run.Feed("[DONE]"));
  EXPECT_EQ(run.events.size(), count);
  EXPECT_TRUE(run.OfType("response.completed").empty());
}

TEST(ChatToResponsesStream, ErrorBeforeAnythingElse) {
  StreamRun run;
  run.FeedChunk(J(R"({"error":{"message":"Rate limited","code":429}})"));
  ASSERT_EQ(run.events.size(), 1u);
  Json error = run.Data()[0];
  EXPECT_EQ(error["sequence_number"], 0);
  EXPECT_EQ(error["code"], "429");
  EXPECT_EQ(error["message"], "Rate limited");
  StreamRun text_error;
  text_error.FeedChunk(J(R"({"error":"overloaded"})"));
  EXPECT_EQ(text_error.Data()[0]["message"], "overloaded");
  EXPECT_EQ(text_error.Data()[0]["code"], nullptr);
}

TEST(ChatToResponsesStream, RefusesEventsThatAreNotChunks) {
  for (const char* data : {"not json", "{\"a\":1,\"a\":2}", "[1,2]", "\"text\"", ""}) {
    StreamRun run;
    EXPECT_FALSE(run.Feed(data)) << data;
    EXPECT_FALSE(run.last_error.empty()) << data;
    EXPECT_TRUE(run.events.empty()) << data;
  }
}

TEST(ChatToResponsesStream, EmptyStreamIsOneEmptyMessage) {
  StreamRun run;
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  Json output = run.Data().back()["response"]["output"];
  ASSERT_EQ(output.size(), 1u);
  EXPECT_EQ(output[0]["content"][0]["text"], "");
  EXPECT_EQ(run.Data().back()["response"]["model"], "gpt-test");
}

TEST(ChatToResponsesStream, RefusalStream) {
  StreamRun run;
  Json chunk = ContentChunk("");
  for (const char* piece : {"I can", "'t help", "."}) {
    chunk["choices"][0]["delta"] = {{"refusal", piece}};
    run.FeedChunk(chunk);
  }
  run.FeedChunk(FinishChunk("stop"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  EXPECT_EQ(run.Deltas("response.refusal.delta"), "I can't help.");
  EXPECT_EQ(run.OfType("response.refusal.done")[0]["refusal"], "I can't help.");
  EXPECT_EQ(run.Data().back()["response"]["output"][0]["content"],
            J(R"([{"type":"refusal","refusal":"I can't help."}])"));
}

TEST(ChatToResponsesStream, TextThenRefusalAreTwoPartsOfOneMessage) {
  StreamRun run;
  run.FeedChunk(ContentChunk("Sure"));
  Json chunk = ContentChunk("");
  chunk["choices"][0]["delta"] = {{"refusal", "Actually, no."}};
  run.FeedChunk(chunk);
  run.FeedChunk(FinishChunk("stop"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  ExpectConsistentIds(run);
  EXPECT_EQ(run.OfType("response.output_item.added").size(), 1u);
  std::vector<Json> parts = run.OfType("response.content_part.added");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1]["content_index"], 1);
  EXPECT_EQ(run.OfType("response.refusal.delta")[0]["content_index"], 1);
  Json expected = ChatToResponse(J(R"({"choices":[{"index":0,"message":{"content":"Sure",
      "refusal":"Actually, no."},"finish_reason":"stop"}]})"),
                                 Json::object(), "r", 0);
  EXPECT_EQ(WithoutIds(run.Data().back()["response"]["output"]), WithoutIds(expected["output"]));
}

TEST(ChatToResponsesStream, CallNameArrivingLateIsOnTheAddedItem) {
  StreamRun run;
  run.FeedChunk(ToolChunk(0, "call_x", "", R"({"q":)"));
  EXPECT_TRUE(run.OfType("response.output_item.added").empty());
  run.FeedChunk(ToolChunk(0, "", "search", R"("kt"})"));
  run.FeedChunk(FinishChunk("tool_calls"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  EXPECT_EQ(run.OfType("response.output_item.added")[0]["item"]["name"], "search");
  EXPECT_EQ(run.Deltas("response.function_call_arguments.delta"), R"({"q":"kt"})");
}

TEST(ChatToResponsesStream, NamelessCallWithoutIdStillGetsAnItem) {
  StreamRun run;
  run.FeedChunk(ToolChunk(0, "", "", "{}"));
  run.FeedChunk(FinishChunk("tool_calls"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  Json item = run.Data().back()["response"]["output"][0];
  EXPECT_EQ(item["type"], "function_call");
  EXPECT_EQ(item["arguments"], "{}");
  EXPECT_TRUE(item["call_id"].get<std::string>().starts_with("call_"));
}

TEST(ChatToResponsesStream, InterleavedCallDeltasReachTheirItems) {
  StreamRun run;
  run.FeedChunk(ToolChunk(0, "call_a", "f", R"({"a")"));
  run.FeedChunk(ToolChunk(1, "call_b", "g", R"({"b":2})"));
  run.FeedChunk(ToolChunk(0, "", "", R"(:1})"));
  run.FeedChunk(FinishChunk("tool_calls"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  ExpectConsistentIds(run);
  Json output = run.Data().back()["response"]["output"];
  EXPECT_EQ(output[0]["arguments"], R"({"a":1})");
  EXPECT_EQ(output[1]["arguments"], R"({"b":2})");
}

TEST(ChatToResponsesStream, OnlyChoiceZeroIsTranslated) {
  StreamRun run;
  run.FeedChunk(J(R"({"model":"m","choices":[{"index":1,"delta":{"content":"other"}},
      {"index":0,"delta":{"content":"mine"}}]})"));
  run.FeedChunk(J(R"({"model":"m","choices":[{"index":1,"delta":{"content":" other"},
      "finish_reason":"stop"}]})"));
  run.FeedChunk(FinishChunk("stop"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  EXPECT_EQ(run.Deltas("response.output_text.delta"), "mine");
}

TEST(ChatToResponsesStream, WrongTypedChunksAreSkippedNotThrown) {
  StreamRun run;
  run.FeedChunk(ContentChunk("a"));
  const char* junk[] = {
      R"({"choices":"nope"})",
      R"({"choices":[{"index":0,"delta":5}]})",
      R"({"choices":[{"index":"0","delta":{"content":"X"}}]})",
      R"({"choices":[{"index":0,"delta":{"content":7,"refusal":[],"tool_calls":"x"}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[3,{"index":"1","function":{"name":"f"}},
          {"index":0,"id":5,"function":"g"}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"function":{"name":9}}]}}]})",
      R"({"choices":[null,[],{"index":0,"finish_reason":7}]})",
      R"({"usage":"lots","model":[]})",
      R"({"usage":{"prompt_tokens":"many"}})",
      R"({})",
  };
  for (const char* chunk : junk) {
    bool ok = false;
    ASSERT_NO_THROW(ok = run.Feed(chunk)) << chunk;
    EXPECT_TRUE(ok) << chunk;
  }
  run.FeedChunk(ContentChunk("b"));
  run.FeedChunk(FinishChunk("stop"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  ExpectWellFormed(run);
  Json response = run.Data().back()["response"];
  EXPECT_EQ(response["status"], "completed");
  // The junk said nothing readable: no call items, the text unbroken.
  EXPECT_EQ(WithoutIds(response["output"]), J(R"([{"type":"message","status":"completed",
      "role":"assistant","content":[{"type":"output_text","text":"ab","annotations":[],
      "logprobs":[]}]}])"));
  EXPECT_EQ(response["usage"]["input_tokens"], 0);
}

TEST(ChatToResponsesStream, EchoesTheRequest) {
  StreamRun run(J(R"({"model":"gpt-test","instructions":"Be brief.","tool_choice":"required",
      "tools":[{"type":"function","name":"f"}],"parallel_tool_calls":false,"top_p":0.5})"));
  ASSERT_TRUE(run.Feed("[DONE]"));
  Json response = run.Data().back()["response"];
  EXPECT_EQ(response["instructions"], "Be brief.");
  EXPECT_EQ(response["tool_choice"], "required");
  EXPECT_EQ(response["tools"], J(R"([{"type":"function","name":"f"}])"));
  EXPECT_EQ(response["parallel_tool_calls"], false);
  EXPECT_EQ(response["top_p"], 0.5);
}

// ----------------------------------------------------- legacy completions

TEST(CompletionsToChatRequest, PromptBecomesOneUserMessage) {
  Json chat;
  ASSERT_EQ(CompletionsToChatRequest(J(R"({"model":"m","prompt":"Say hi","max_tokens":5,
      "temperature":0,"top_p":1,"n":2,"stop":["\n"],"stream":true,"user":"u","seed":7,
      "presence_penalty":0.1,"frequency_penalty":0.2,"echo":false,"best_of":1,"suffix":null,
      "logprobs":null})"),
                                     &chat),
            "");
  EXPECT_EQ(chat, J(R"({"model":"m","messages":[{"role":"user","content":"Say hi"}],
      "max_tokens":5,"temperature":0,"top_p":1,"n":2,"stop":["\n"],"stream":true,"user":"u",
      "seed":7,"presence_penalty":0.1,"frequency_penalty":0.2})"));
  ASSERT_EQ(CompletionsToChatRequest(J(R"({"model":"m","prompt":["Only one"]})"), &chat), "");
  EXPECT_EQ(chat["messages"], J(R"([{"role":"user","content":"Only one"}])"));
}

TEST(CompletionsToChatRequest, RefusesWhatChatCannotCarry) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"prompt":"x","suffix":"end"})", "`suffix`: "},
      {R"({"prompt":"x","echo":true})", "`echo`: "},
      {R"({"prompt":"x","best_of":3})", "`best_of`: "},
      {R"({"prompt":"x","logprobs":2})", "`logprobs`: "},
      {R"({"prompt":["a","b"]})", "`prompt`: "},
      {R"({"prompt":[1,2,3]})", "`prompt`: "},
      {R"({"prompt":[[1,2]]})", "`prompt`: "},
      {R"({"model":"m"})", "`prompt`: "},
      {R"("just text")", "`(body)`: "},
  };
  for (const auto& [request, prefix] : cases) {
    Json chat = "untouched";
    std::string error = CompletionsToChatRequest(J(request), &chat);
    EXPECT_TRUE(error.starts_with(prefix)) << request << "\n  got: " << error;
    EXPECT_EQ(chat, "untouched");
  }
}

TEST(ChatToCompletion, EveryChoiceAsText) {
  Json completion = ChatToCompletion(J(R"({"id":"chatcmpl-9","object":"chat.completion",
      "created":1700000000,"model":"gpt-test","system_fingerprint":"fp_1","choices":[
      {"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"},
      {"index":1,"message":{"role":"assistant","content":"Hello"},"finish_reason":"length"}],
      "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}})"));
  EXPECT_EQ(completion, J(R"({"id":"chatcmpl-9","object":"text_completion","created":1700000000,
      "model":"gpt-test","system_fingerprint":"fp_1","choices":[
      {"index":0,"text":"Hi!","finish_reason":"stop","logprobs":null},
      {"index":1,"text":"Hello","finish_reason":"length","logprobs":null}],
      "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}})"));
}

TEST(ChatToCompletion, WrongTypedAnswersReadAsAbsent) {
  for (const char* text : {R"(7)", R"({"choices":{}})", R"({"choices":[1,{"message":5,"index":"x",
      "finish_reason":3}],"usage":"x","created":"now"})"}) {
    Json completion;
    ASSERT_NO_THROW(completion = ChatToCompletion(J(text))) << text;
    EXPECT_EQ(completion["object"], "text_completion");
    EXPECT_EQ(completion["created"], 0);
    EXPECT_FALSE(completion.contains("usage"));
  }
  Json odd = ChatToCompletion(J(R"({"choices":[1,{"message":5,"index":"x","finish_reason":3}]})"));
  EXPECT_EQ(odd["choices"], J(R"([{"index":1,"text":"","finish_reason":null,"logprobs":null}])"));
}

TEST(ChatChunkToCompletionChunk, TranslatesAStream) {
  SseEvent out;
  std::string error;
  ASSERT_TRUE(ChatChunkToCompletionChunk({"", ContentChunk("Hel").dump()}, &out, &error));
  EXPECT_EQ(out.event, "");
  EXPECT_EQ(Json::parse(out.data), J(R"({"id":"chatcmpl-1","object":"text_completion",
      "created":0,"model":"gpt-test-2024","choices":[{"index":0,"text":"Hel",
      "finish_reason":null,"logprobs":null}]})"));
  ASSERT_TRUE(ChatChunkToCompletionChunk({"", FinishChunk("stop").dump()}, &out, &error));
  EXPECT_EQ(Json::parse(out.data)["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(Json::parse(out.data)["choices"][0]["text"], "");
  ASSERT_TRUE(ChatChunkToCompletionChunk({"", UsageChunk().dump()}, &out, &error));
  EXPECT_EQ(Json::parse(out.data)["choices"], Json::array());
  EXPECT_EQ(Json::parse(out.data)["usage"]["total_tokens"], 18);
  ASSERT_TRUE(ChatChunkToCompletionChunk({"", "[DONE]"}, &out, &error));
  EXPECT_EQ(out.data, "[DONE]");
  const std::string upstream_error = R"({"error":{"message":"boom","type":"server_error"}})";
  ASSERT_TRUE(ChatChunkToCompletionChunk({"", upstream_error}, &out, &error));
  EXPECT_EQ(out.data, upstream_error);
}

TEST(ChatChunkToCompletionChunk, RefusesNonJsonAndSurvivesJunk) {
  SseEvent out;
  std::string error;
  EXPECT_FALSE(ChatChunkToCompletionChunk({"", "{oops"}, &out, &error));
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(ChatChunkToCompletionChunk({"", "[1]"}, &out, &error));
  EXPECT_FALSE(error.empty());
  for (const char* junk : {R"({"choices":5})", R"({"choices":[{"index":0,"delta":5}]})",
                           R"({"choices":[{"index":"0","delta":{"content":["x"]}}]})"}) {
    bool ok = false;
    ASSERT_NO_THROW(ok = ChatChunkToCompletionChunk({"", junk}, &out, &error)) << junk;
    EXPECT_TRUE(ok) << junk;
    Json chunk = Json::parse(out.data);
    EXPECT_EQ(chunk["object"], "text_completion");
    for (const Json& choice : chunk["choices"]) EXPECT_EQ(choice["text"], "") << junk;
  }
}

}  // namespace
}  // namespace kt::gateway
