// The translations between chat completions and Anthropic's Messages API,
// both ways. The chat streams produced are checked against the gateway's own
// chunk validator (what the chat relay accepts); the Messages streams are
// replayed through a port of @anthropic-ai/sdk's MessageStream accumulator,
// with the event-order rules the API keeps.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/internal/anthropic.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {
namespace {

using Json = nlohmann::json;

Json J(const char* text) { return Json::parse(text); }

SseEvent Named(const Json& data) { return {data.value("type", ""), data.dump()}; }
SseEvent Chat(const Json& data) { return {"", data.dump()}; }
SseEvent Done() { return {"", "[DONE]"}; }

// ------------------------------------------------------------ helpers

// What a chat client builds from the chunks: content, tool calls by index,
// the finish reason and usage. Each chunk must pass the relay's validator.
struct ChatResult {
  std::string content;
  std::vector<Json> calls;  // {id, name, arguments}
  std::string finish;
  Json usage;
  Json error;
  bool done = false;
  std::vector<std::string> order;  // "role", "content", "call", "args", "finish", "usage"
};

ChatResult ReadChat(const std::vector<SseEvent>& events) {
  ChatResult r;
  for (const SseEvent& e : events) {
    EXPECT_FALSE(r.done) << "an event after [DONE]";
    EXPECT_EQ(e.event, "");
    if (e.data == "[DONE]") {
      r.done = true;
      continue;
    }
    Json chunk = Json::parse(e.data);
    EXPECT_EQ(ValidateCompletionChunk(chunk), "") << e.data;
    if (chunk.contains("error")) {
      r.error = chunk["error"];
      continue;
    }
    if (chunk.contains("usage")) {
      r.usage = chunk["usage"];
      r.order.push_back("usage");
    }
    for (const Json& choice : chunk["choices"]) {
      const Json& d = choice["delta"];
      if (d.contains("role")) r.order.push_back("role");
      if (d.contains("content") && d["content"] != "") {
        r.content += d["content"].get<std::string>();
        r.order.push_back("content");
      }
      for (const Json& tc : d.value("tool_calls", Json::array())) {
        std::size_t i = tc["index"];
        if (i >= r.calls.size()) {
          EXPECT_EQ(i, r.calls.size());
          EXPECT_TRUE(tc.contains("id") && tc["function"].contains("name")) << "id/name first";
          r.calls.push_back({{"id", tc["id"]}, {"name", tc["function"]["name"]}, {"arguments", ""}});
          r.order.push_back("call");
        } else {
          r.order.push_back("args");
        }
        r.calls[i]["arguments"] = r.calls[i]["arguments"].get<std::string>() +
                                  tc["function"].value("arguments", std::string());
      }
      if (choice["finish_reason"].is_string()) {
        r.finish = choice["finish_reason"];
        r.order.push_back("finish");
      }
    }
  }
  return r;
}

std::vector<SseEvent> FeedMessages(const std::vector<Json>& events, const std::string& model = "") {
  MessagesToChatStream s(model);
  std::vector<SseEvent> out;
  for (const Json& e : events) {
    std::string error;
    EXPECT_TRUE(s.Feed(Named(e), &out, &error)) << error;
  }
  return out;
}

// Events of the Messages stream for text split into pieces of 1-3 bytes.
std::vector<Json> TextDeltas(int index, const std::string& text) {
  std::vector<Json> out;
  std::size_t step = 1;
  for (std::size_t i = 0; i < text.size(); i += step, step = step % 3 + 1) {
    out.push_back({{"type", "content_block_delta"},
                   {"index", index},
                   {"delta", {{"type", "text_delta"}, {"text", text.substr(i, step)}}}});
  }
  return out;
}

std::vector<Json> JsonDeltas(int index, const std::string& json) {
  std::vector<Json> out;
  std::size_t step = 2;
  for (std::size_t i = 0; i < json.size(); i += step, step = step % 3 + 1) {
    out.push_back({{"type", "content_block_delta"},
                   {"index", index},
                   {"delta", {{"type", "input_json_delta"}, {"partial_json", json.substr(i, step)}}}});
  }
  return out;
}

Json MessageStart(const Json& usage = J(R"({"input_tokens":10,"output_tokens":1})")) {
  return {{"type", "message_start"},
          {"message",
           {{"id", "msg_1"}, {"type", "message"}, {"role", "assistant"}, {"model", "claude-x"},
            {"content", Json::array()}, {"stop_reason", nullptr}, {"usage", usage}}}};
}

Json BlockStart(int index, const Json& block) {
  return {{"type", "content_block_start"}, {"index", index}, {"content_block", block}};
}
Json BlockStop(int index) { return {{"type", "content_block_stop"}, {"index", index}}; }
Json MessageDelta(const std::string& stop, const Json& usage = J(R"({"output_tokens":7})")) {
  return {{"type", "message_delta"},
          {"delta", {{"stop_reason", stop}, {"stop_sequence", nullptr}}},
          {"usage", usage}};
}
Json MessageStop() { return {{"type", "message_stop"}}; }

void Append(std::vector<Json>* to, const std::vector<Json>& more) {
  to->insert(to->end(), more.begin(), more.end());
}

// @anthropic-ai/sdk's MessageStream accumulator (lib/MessageStream.js
// #accumulateMessage) with the order the API keeps: message_start first and
// once, blocks started at the next index and stopped before the next starts,
// message_delta before message_stop, message_stop last. "" or the fault.
struct MessagesReader {
  Json message;
  std::string error_type;
  std::string fault;
  int open = -1;
  bool stopped = false;
  std::vector<std::string> buffers;

  void Add(const SseEvent& e) {
    if (!fault.empty()) return;
    if (stopped) fault = "event after message_stop";
    Json d = Json::parse(e.data);
    std::string type = d["type"];
    if (e.event != type) fault = "event name " + e.event + " != type " + type;
    if (type == "error") {
      error_type = d["error"]["type"];
      return;
    }
    if (type == "message_start") {
      if (!message.is_null()) fault = "second message_start";
      message = d["message"];
      return;
    }
    if (message.is_null()) {
      fault = type + " before message_start";
      return;
    }
    AddEvent(type, d);
  }

  void AddEvent(const std::string& type, const Json& d) {
    if (type == "content_block_start") {
      if (open >= 0) fault = "block started while another is open";
      if (d["index"] != message["content"].size()) fault = "block index out of order";
      open = d["index"];
      message["content"].push_back(d["content_block"]);
      buffers.push_back("");
    } else if (type == "content_block_delta") {
      std::size_t i = d["index"];
      if (static_cast<int>(i) != open) fault = "delta outside its block";
      if (i >= message["content"].size()) return;
      Json& block = message["content"][i];
      const Json& delta = d["delta"];
      if (delta["type"] == "text_delta") block["text"] = block["text"].get<std::string>() + delta["text"].get<std::string>();
      if (delta["type"] == "input_json_delta") buffers[i] += delta["partial_json"].get<std::string>();
    } else if (type == "content_block_stop") {
      if (d["index"] != open) fault = "stop of a block that is not open";
      std::size_t i = d["index"];
      Json& block = message["content"][i];
      if (block["type"] == "tool_use" && !buffers[i].empty()) block["input"] = Json::parse(buffers[i]);
      open = -1;
    } else if (type == "message_delta") {
      if (open >= 0) fault = "message_delta with a block open";
      message["stop_reason"] = d["delta"]["stop_reason"];
      message["usage"]["output_tokens"] = d["usage"]["output_tokens"];
      for (const char* k : {"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}) {
        if (d["usage"].contains(k) && !d["usage"][k].is_null()) message["usage"][k] = d["usage"][k];
      }
    } else if (type == "message_stop") {
      if (message["stop_reason"].is_null()) fault = "message_stop without message_delta";
      stopped = true;
    }
  }
};

MessagesReader FeedChat(const std::vector<Json>& chunks, bool done = true) {
  ChatToMessagesStream s("claude-client");
  std::vector<SseEvent> out;
  for (const Json& c : chunks) {
    std::string error;
    EXPECT_TRUE(s.Feed(Chat(c), &out, &error)) << error;
  }
  if (done) {
    std::string error;
    EXPECT_TRUE(s.Feed(Done(), &out, &error));
    EXPECT_TRUE(s.finished());
  }
  MessagesReader r;
  for (const SseEvent& e : out) r.Add(e);
  EXPECT_EQ(r.fault, "");
  return r;
}

Json Delta(const Json& delta, const Json& finish = nullptr) {
  return {{"id", "chatcmpl-1"}, {"object", "chat.completion.chunk"}, {"model", "gpt-x"},
          {"choices", Json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
}

std::string ToMessages(const Json& chat, Json* out) { return ChatToMessagesRequest(chat, out); }

// ------------------------------------------- chat → Messages request

TEST(AnthropicChatRequest, SystemHoistedTurnsMergedDefaults) {
  Json out;
  ASSERT_EQ(ToMessages(J(R"({"model":"claude-x","messages":[
      {"role":"system","content":"Be brief."},
      {"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"b"}]},
      {"role":"developer","content":[{"type":"text","text":"Be kind."}]},
      {"role":"assistant","content":"c"}]})"),
                       &out),
            "");
  EXPECT_EQ(out["model"], "claude-x");
  EXPECT_EQ(out["max_tokens"], kDefaultMaxTokens);
  EXPECT_EQ(out["system"], J(R"([{"type":"text","text":"Be brief."},{"type":"text","text":"Be kind."}])"));
  EXPECT_EQ(out["messages"], J(R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                                  {"role":"assistant","content":"c"}])"));
  ASSERT_EQ(ToMessages(J(R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]})"), &out), "");
  EXPECT_EQ(out["system"], "S");
  EXPECT_EQ(out["messages"], J(R"([{"role":"user","content":"hi"}])"));
}

TEST(AnthropicChatRequest, ToolCallsAndResults) {
  Json out;
  ASSERT_EQ(ToMessages(J(R"({"messages":[{"role":"user","content":"weather?"},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Oslo\"}"}},
        {"id":"call_2","type":"function","function":{"name":"now","arguments":""}}]},
      {"role":"tool","tool_call_id":"call_1","content":"3C"},
      {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"noon"}]},
      {"role":"user","content":"thanks"}]})"),
                       &out),
            "");
  EXPECT_EQ(out["messages"][1], J(R"({"role":"assistant","content":[
      {"type":"tool_use","id":"call_1","name":"get","input":{"city":"Oslo"}},
      {"type":"tool_use","id":"call_2","name":"now","input":{}}]})"));
  EXPECT_EQ(out["messages"][2], J(R"({"role":"user","content":[
      {"type":"tool_result","tool_use_id":"call_1","content":"3C"},
      {"type":"tool_result","tool_use_id":"call_2","content":"noon"},
      {"type":"text","text":"thanks"}]})"));
}

TEST(AnthropicChatRequest, Images) {
  Json out;
  ASSERT_EQ(ToMessages(J(R"({"messages":[{"role":"user","content":[{"type":"text","text":"what?"},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO","detail":"high"}},
      {"type":"image_url","image_url":{"url":"https://x/y.jpg"}}]}]})"),
                       &out),
            "");
  EXPECT_EQ(out["messages"][0]["content"][1],
            J(R"({"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}})"));
  EXPECT_EQ(out["messages"][0]["content"][2],
            J(R"({"type":"image","source":{"type":"url","url":"https://x/y.jpg"}})"));
}

TEST(AnthropicChatRequest, OptionsToolsAndChoice) {
  Json out;
  ASSERT_EQ(ToMessages(J(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":50,
      "max_completion_tokens":100.0,"temperature":0.5,"top_p":0.9,"stop":"END","stream":true,
      "stream_options":{"include_usage":true},"user":"u-1","seed":4,"n":1,"presence_penalty":0,
      "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}},
      "reasoning_effort":"low","parallel_tool_calls":false,"tool_choice":"required",
      "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":true}},
               {"type":"function","function":{"name":"g"}}]})"),
                       &out),
            "");
  EXPECT_EQ(out["max_tokens"], 100);
  EXPECT_EQ(out["temperature"], 0.5);
  EXPECT_EQ(out["top_p"], 0.9);
  EXPECT_EQ(out["stop_sequences"], J(R"(["END"])"));
  EXPECT_EQ(out["stream"], true);
  EXPECT_EQ(out["metadata"], J(R"({"user_id":"u-1"})"));
  EXPECT_EQ(out["output_config"], J(R"({"format":{"type":"json_schema","schema":{"type":"object"}},"effort":"low"})"));
  EXPECT_EQ(out["tools"], J(R"([{"name":"f","description":"d","input_schema":{"type":"object"},"strict":true},
      {"name":"g","input_schema":{"type":"object","properties":{}}}])"));
  EXPECT_EQ(out["tool_choice"], J(R"({"type":"any","disable_parallel_tool_use":true})"));
  EXPECT_FALSE(out.contains("seed") || out.contains("stream_options") || out.contains("n"));

  struct Case { const char* choice; const char* want; };
  for (const Case& c : {Case{R"("auto")", R"({"type":"auto"})"}, Case{R"("none")", R"({"type":"none"})"},
                        Case{R"({"type":"function","function":{"name":"f"}})", R"({"type":"tool","name":"f"})"}}) {
    Json chat = J(R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]})");
    chat["tool_choice"] = Json::parse(c.choice);
    ASSERT_EQ(ToMessages(chat, &out), "") << c.choice;
    EXPECT_EQ(out["tool_choice"], Json::parse(c.want)) << c.choice;
  }
}

TEST(AnthropicChatRequest, Refusals) {
  struct Case { const char* body; const char* path; };
  const Case cases[] = {
      {R"({"n":2})", "`n`"},
      {R"({"logprobs":true})", "`logprobs`"},
      {R"({"top_logprobs":3})", "`top_logprobs`"},
      {R"({"frequency_penalty":0.5})", "`frequency_penalty`"},
      {R"({"logit_bias":{"50256":-100}})", "`logit_bias`"},
      {R"({"modalities":["text","audio"]})", "`modalities`"},
      {R"({"audio":{"voice":"alloy"}})", "`audio`"},
      {R"({"functions":[{"name":"f"}]})", "`functions`"},
      {R"({"prediction":{"type":"content","content":"x"}})", "`prediction`"},
      {R"({"web_search_options":{}})", "`web_search_options`"},
      {R"({"some_new_field":1})", "`some_new_field`"},
      {R"({"temperature":1.5})", "`temperature`"},
      {R"({"max_tokens":-1})", "`max_tokens`"},
      {R"({"stop":[1]})", "`stop`"},
      {R"({"response_format":{"type":"json_object"}})", "`response_format`"},
      {R"({"reasoning_effort":"huge"})", "`reasoning_effort`"},
      {R"({"tools":[{"type":"custom","custom":{"name":"c"}}]})", "`tools[0]`"},
      {R"({"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"allowed_tools"}})", "`tool_choice`"},
      {R"({"messages":[{"role":"function","name":"f","content":"x"}]})", "`messages[0].role`"},
      {R"({"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]})", "`messages[0].content[0]`"},
      {R"({"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]})", "`messages[0].content[0]`"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:application/pdf;base64,AA"}}]}]})", "`messages[0].content[0].image_url.url`"},
      {R"({"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]})", "`messages[0].tool_calls[0].function.arguments`"},
      {R"({"messages":[{"role":"assistant","content":"x","audio":{"id":"a"}}]})", "`messages[0].audio`"},
      {R"({"messages":[{"role":"tool","content":"x"}]})", "`messages[0].tool_call_id`"},
      {R"({"messages":[{"role":"system","content":"only system"}]})", "`messages`"},
      {R"({"messages":"hi"})", "`messages`"},
  };
  for (const Case& c : cases) {
    Json chat = Json::parse(c.body);
    if (!chat.contains("messages")) chat["messages"] = J(R"([{"role":"user","content":"x"}])");
    Json out = "untouched";
    std::string error = ToMessages(chat, &out);
    EXPECT_EQ(error.rfind(c.path, 0), 0u) << c.body << " → " << error;
    EXPECT_EQ(out, "untouched");
  }
  Json out;
  EXPECT_EQ(ToMessages(J("[]"), &out).rfind("`(body)`", 0), 0u);
}

TEST(AnthropicChatRequest, DefaultsOfRefusedFieldsPass) {
  Json out;
  EXPECT_EQ(ToMessages(J(R"({"messages":[{"role":"user","content":"x"}],"n":1,"logprobs":false,
      "top_logprobs":0,"frequency_penalty":0,"presence_penalty":0.0,"logit_bias":{},
      "modalities":["text"],"audio":null,"store":true,"metadata":{"a":"b"},"verbosity":"low",
      "service_tier":"auto","reasoning_effort":"minimal","response_format":{"type":"text"}})"),
                       &out),
            "");
  EXPECT_FALSE(out.contains("output_config"));
  EXPECT_FALSE(out.contains("metadata"));
}

// ------------------------------------------- Messages answer → chat

TEST(AnthropicMessagesAnswer, TextToolsFinishAndUsage) {
  Json chat;
  ASSERT_EQ(MessagesToChatResponse(J(R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
      "content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"Let me "},
        {"type":"text","text":"check."},{"type":"tool_use","id":"toolu_1","name":"get","input":{"city":"Oslo"}}],
      "stop_reason":"tool_use","stop_sequence":null,
      "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":20}})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["id"], "msg_1");
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["model"], "claude-x");
  const Json& m = chat["choices"][0]["message"];
  EXPECT_EQ(m["content"], "Let me check.");
  EXPECT_EQ(m["tool_calls"], J(R"([{"id":"toolu_1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Oslo\"}"}}])"));
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(chat["usage"], J(R"({"prompt_tokens":130,"completion_tokens":5,"total_tokens":135,
      "prompt_tokens_details":{"cached_tokens":100},"cache_creation_input_tokens":20})"));
  EXPECT_EQ(ValidateCompletion(chat), "");
}

TEST(AnthropicMessagesAnswer, StopReasons) {
  struct Case { const char* stop; const char* finish; };
  for (const Case& c : {Case{"end_turn", "stop"}, Case{"stop_sequence", "stop"}, Case{"max_tokens", "length"},
                        Case{"tool_use", "tool_calls"}, Case{"refusal", "content_filter"},
                        Case{"pause_turn", "stop"}, Case{"model_context_window_exceeded", "length"}}) {
    Json chat;
    Json message = J(R"({"type":"message","content":[{"type":"text","text":"x"}]})");
    message["stop_reason"] = c.stop;
    ASSERT_EQ(MessagesToChatResponse(message, &chat), "");
    EXPECT_EQ(chat["choices"][0]["finish_reason"], c.finish) << c.stop;
  }
}

TEST(AnthropicMessagesAnswer, JunkDoesNotThrow) {
  Json chat;
  EXPECT_NE(MessagesToChatResponse(J("[1]"), &chat), "");
  EXPECT_NE(MessagesToChatResponse(J(R"({"type":"error","error":{}})"), &chat), "");
  EXPECT_NE(MessagesToChatResponse(J(R"({"content":"text"})"), &chat), "");
  ASSERT_EQ(MessagesToChatResponse(J(R"({"id":5,"model":[],"content":[1,null,{"type":7},{"type":"text","text":3},
      {"type":"tool_use","input":"x","name":{}}],"stop_reason":{},"usage":{"input_tokens":"9","output_tokens":-3}})"),
                                   &chat),
            "");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chat["usage"]["prompt_tokens"], 0);
  EXPECT_EQ(ValidateCompletion(chat), "");
  ASSERT_EQ(MessagesToChatResponse(J("{}"), &chat), "");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "");
}

// ------------------------------------------- Messages stream → chat

TEST(AnthropicMessagesStream, TextInTinyDeltas) {
  const std::string text = "Hello there, this is a longer answer: {\"not\": json} \\n done.";
  std::vector<Json> events = {MessageStart(), J(R"({"type":"ping"})"),
                              BlockStart(0, J(R"({"type":"text","text":""})"))};
  Append(&events, TextDeltas(0, text));
  Append(&events, {BlockStop(0), MessageDelta("end_turn"), MessageStop()});
  ChatResult r = ReadChat(FeedMessages(events, "claude-client"));
  EXPECT_EQ(r.content, text);
  EXPECT_EQ(r.finish, "stop");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.order.front(), "role");
  EXPECT_EQ(r.order.back(), "usage");
  EXPECT_EQ(r.usage["prompt_tokens"], 10);
  EXPECT_EQ(r.usage["completion_tokens"], 7);
  EXPECT_EQ(r.usage["total_tokens"], 17);
  Json first = Json::parse(FeedMessages(events, "claude-client")[0].data);
  EXPECT_EQ(first["model"], "claude-client");
  EXPECT_EQ(first["id"], "msg_1");
  EXPECT_EQ(first["object"], "chat.completion.chunk");
}

TEST(AnthropicMessagesStream, TextThenToolsInManyJsonDeltas) {
  const std::string a = R"({"city": "Oslo", "units": ["C", "F"], "deep": {"x": [1, 2, {"y": null}]}})";
  const std::string b = R"({"q":"a \"quoted\" word"})";
  std::vector<Json> events = {MessageStart(), BlockStart(0, J(R"({"type":"text","text":""})"))};
  Append(&events, TextDeltas(0, "Checking."));
  events.push_back(BlockStop(0));
  events.push_back(BlockStart(1, J(R"({"type":"tool_use","id":"toolu_a","name":"weather","input":{}})")));
  Append(&events, JsonDeltas(1, a));
  events.push_back(BlockStop(1));
  events.push_back(BlockStart(2, J(R"({"type":"tool_use","id":"toolu_b","name":"search","input":{}})")));
  events.push_back({{"type", "ping"}});
  Append(&events, JsonDeltas(2, b));
  Append(&events, {BlockStop(2), MessageDelta("tool_use"), MessageStop()});
  ChatResult r = ReadChat(FeedMessages(events));
  EXPECT_EQ(r.content, "Checking.");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0], Json({{"id", "toolu_a"}, {"name", "weather"}, {"arguments", a}}));
  EXPECT_EQ(r.calls[1], Json({{"id", "toolu_b"}, {"name", "search"}, {"arguments", b}}));
  EXPECT_EQ(r.finish, "tool_calls");
  EXPECT_TRUE(r.done);
}

TEST(AnthropicMessagesStream, ThinkingAndPingsSayNothing) {
  std::vector<Json> events = {MessageStart(), J(R"({"type":"ping"})"),
      BlockStart(0, J(R"({"type":"thinking","thinking":"","signature":""})")),
      J(R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}})"),
      J(R"({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}})"),
      BlockStop(0), J(R"({"type":"ping"})"),
      BlockStart(1, J(R"({"type":"redacted_thinking","data":"xx"})")), BlockStop(1),
      BlockStart(2, J(R"({"type":"text","text":""})")),
      J(R"({"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":{}}})"),
      J(R"({"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"ok"}})"),
      BlockStop(2), MessageDelta("end_turn"), MessageStop()};
  std::vector<SseEvent> out = FeedMessages(events);
  ChatResult r = ReadChat(out);
  EXPECT_EQ(r.content, "ok");
  EXPECT_EQ(r.order, (std::vector<std::string>{"role", "content", "finish", "usage"}));
  // A ping alone, before anything else, produces nothing at all.
  MessagesToChatStream s("m");
  std::vector<SseEvent> none;
  std::string error;
  EXPECT_TRUE(s.Feed({"ping", R"({"type":"ping"})"}, &none, &error));
  EXPECT_TRUE(none.empty());
}

TEST(AnthropicMessagesStream, StopReasons) {
  struct Case { const char* stop; const char* finish; };
  for (const Case& c : {Case{"end_turn", "stop"}, Case{"stop_sequence", "stop"}, Case{"max_tokens", "length"},
                        Case{"tool_use", "tool_calls"}, Case{"refusal", "content_filter"}}) {
    ChatResult r = ReadChat(FeedMessages({MessageStart(), MessageDelta(c.stop), MessageStop()}));
    EXPECT_EQ(r.finish, c.finish) << c.stop;
  }
}

TEST(AnthropicMessagesStream, UsageWithCacheTokens) {
  ChatResult r = ReadChat(FeedMessages(
      {MessageStart(J(R"({"input_tokens":5,"cache_read_input_tokens":1000,"cache_creation_input_tokens":0,"output_tokens":1})")),
       MessageDelta("end_turn", J(R"({"output_tokens":42,"cache_creation_input_tokens":300})")), MessageStop()}));
  EXPECT_EQ(r.usage, J(R"({"prompt_tokens":1305,"completion_tokens":42,"total_tokens":1347,
      "prompt_tokens_details":{"cached_tokens":1000},"cache_creation_input_tokens":300})"));
}

TEST(AnthropicMessagesStream, ErrorEventEndsTheStream) {
  MessagesToChatStream s("m");
  std::vector<SseEvent> out;
  std::string error;
  ASSERT_TRUE(s.Feed(Named(MessageStart()), &out, &error));
  ASSERT_TRUE(s.Feed({"error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"},
                     &out, &error));
  EXPECT_TRUE(s.finished());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(Json::parse(out[1].data),
            J(R"({"error":{"type":"server_error","code":"overloaded_error","message":"Overloaded","param":null}})"));
  ASSERT_TRUE(s.Feed(Named(MessageStop()), &out, &error));
  EXPECT_EQ(out.size(), 2u);  // nothing after the end
}

TEST(AnthropicMessagesStream, JunkNeverThrows) {
  MessagesToChatStream s("m");
  std::vector<SseEvent> out;
  std::string error;
  EXPECT_FALSE(s.Feed({"message_start", "not json"}, &out, &error));
  EXPECT_NE(error, "");
  EXPECT_FALSE(s.Feed({"x", "[1,2]"}, &out, &error));
  EXPECT_FALSE(s.Feed({"", "{}"}, &out, &error));  // no type at all
  EXPECT_FALSE(s.Feed({"", R"({"a":1,"a":2})"}, &out, &error));
  for (const char* junk : {
           R"({"type":"message_start","message":7})",
           R"({"type":"message_start","message":{"id":[],"usage":{"input_tokens":"x"}}})",
           R"({"type":"content_block_start"})",
           R"({"type":"content_block_start","index":"0","content_block":{"type":"tool_use"}})",
           R"({"type":"content_block_start","index":0,"content_block":[]})",
           R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":3,"name":null,"input":"s"}})",
           R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":5}})",
           R"({"type":"content_block_delta","index":9,"delta":{"type":"input_json_delta","partial_json":"{"}})",
           R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":{}}})",
           R"({"type":"content_block_delta","index":0,"delta":"x"})",
           R"({"type":"content_block_delta"})",
           R"({"type":"message_delta","delta":[],"usage":5})",
           R"({"type":"message_delta","delta":{"stop_reason":9},"usage":{"output_tokens":-1}})",
           R"({"type":"some_future_event","x":1})",
           R"({"type":"error","error":"just a string"})",
       }) {
    EXPECT_NO_THROW(s.Feed({"", junk}, &out, &error)) << junk;
  }
  EXPECT_TRUE(s.finished());
  ChatResult r = ReadChat(out);
  EXPECT_TRUE(r.error.is_object());
  EXPECT_EQ(r.error["code"], "api_error");
}

TEST(AnthropicMessagesStream, StopWithoutDeltaStillFinishes) {
  ChatResult r = ReadChat(FeedMessages({BlockStart(0, J(R"({"type":"text","text":"hi"})")), MessageStop()}));
  EXPECT_EQ(r.content, "hi");
  EXPECT_EQ(r.finish, "stop");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.order.front(), "role");
}

// ------------------------------------------------------- errors

TEST(AnthropicErrors, MessagesErrorToOpenAI) {
  struct Case { const char* type; int status; int want; const char* openai; };
  const Case cases[] = {
      {"invalid_request_error", 400, 400, "invalid_request_error"},
      {"authentication_error", 401, 401, "authentication_error"},
      {"permission_error", 403, 403, "permission_error"},
      {"not_found_error", 404, 404, "invalid_request_error"},
      {"request_too_large", 413, 413, "invalid_request_error"},
      {"rate_limit_error", 429, 429, "rate_limit_error"},
      {"api_error", 500, 500, "server_error"},
      {"overloaded_error", 529, 503, "server_error"},
      {"billing_error", 402, 402, "insufficient_quota"},
      {"timeout_error", 504, 504, "server_error"},
  };
  for (const Case& c : cases) {
    Json body = {{"type", "error"}, {"error", {{"type", c.type}, {"message", "why"}}}, {"request_id", "req_9"}};
    int status = 0;
    Json envelope = AnthropicErrorToOpenAI(c.status, body, &status);
    EXPECT_EQ(status, c.want) << c.type;
    EXPECT_EQ(envelope["error"]["type"], c.openai) << c.type;
    EXPECT_EQ(envelope["error"]["code"], c.type);
    EXPECT_EQ(envelope["error"]["message"], "why");
    EXPECT_EQ(envelope["error"]["request_id"], "req_9");
  }
  int status = 0;
  EXPECT_EQ(AnthropicErrorToOpenAI(529, J("\"Overloaded\""), &status)["error"]["code"], "api_error");
  EXPECT_EQ(status, 503);
  AnthropicErrorToOpenAI(418, J(R"({"error":{"type":"teapot_error"}})"), &status);
  EXPECT_EQ(status, 418);
  AnthropicErrorToOpenAI(200, J("null"), &status);
  EXPECT_EQ(status, 502);
}

TEST(AnthropicErrors, GatewayEnvelopeToMessages) {
  struct Case { const char* type; const char* code; const char* want; };
  const Case cases[] = {
      {"policy_violation", "input_blocked", "permission_error"},
      {"invalid_request_error", "model_not_found", "not_found_error"},
      {"invalid_request_error", "unsupported_by_provider", "invalid_request_error"},
      {"validation_error", "invalid_json", "invalid_request_error"},
      {"validation_error", "request_too_large", "request_too_large"},
      {"validation_error", "request_timeout", "timeout_error"},
      {"upstream_error", "upstream_timeout", "timeout_error"},
      {"upstream_error", "upstream_unreachable", "api_error"},
      {"internal_error", "internal_error", "api_error"},
      {"policy_error", "policy_evaluation_failed", "api_error"},
      {"unavailable", "overloaded", "overloaded_error"},
      {"authentication_error", "invalid_api_key", "authentication_error"},
      {"rate_limit_error", "rate_limit_exceeded", "rate_limit_error"},
      {"insufficient_quota", "insufficient_quota", "billing_error"},
  };
  for (const Case& c : cases) {
    Json out = OpenAIErrorToAnthropic({{"error", {{"type", c.type}, {"code", c.code}, {"message", "m"}}}});
    EXPECT_EQ(out["type"], "error");
    EXPECT_EQ(out["error"]["type"], c.want) << c.type << "/" << c.code;
    EXPECT_EQ(out["error"]["message"], "m");
  }
  Json policy = OpenAIErrorToAnthropic(J(R"({"error":{"type":"policy_violation","code":"input_blocked",
      "message":"blocked","policy":"no-secrets","request_id":"req_1"}})"));
  EXPECT_EQ(policy, J(R"({"type":"error","request_id":"req_1","error":{"type":"permission_error",
      "message":"blocked","code":"input_blocked","policy":"no-secrets","request_id":"req_1"}})"));
  EXPECT_EQ(OpenAIErrorToAnthropic(J("7"))["error"]["type"], "api_error");
  EXPECT_EQ(OpenAIErrorToAnthropic(J(R"({"error":"text"})"))["error"]["message"], "text");
}

// ------------------------------------------- Messages request → chat

TEST(AnthropicMessagesRequest, TurnsSystemToolsAndOptions) {
  Json chat;
  ASSERT_EQ(MessagesToChatRequest(J(R"({"model":"claude-x","max_tokens":300,"system":"Be brief.",
      "stop_sequences":["END"],"temperature":0.2,"top_p":0.8,"stream":true,"metadata":{"user_id":"u-1"},
      "service_tier":"auto","thinking":{"type":"disabled"},
      "tools":[{"name":"get","description":"d","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
      "tool_choice":{"type":"any","disable_parallel_tool_use":true},
      "output_config":{"format":{"type":"json_schema","schema":{"type":"object"}},"effort":"high"},
      "messages":[
        {"role":"user","content":[{"type":"text","text":"look"},
          {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},
          {"type":"image","source":{"type":"url","url":"https://x/y.png"}}]},
        {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},
          {"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get","input":{"c":1}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"3C"},
          {"type":"tool_result","tool_use_id":"toolu_2","is_error":true,"content":[{"type":"text","text":"boom"}]},
          {"type":"text","text":"and?"}]},
        {"role":"assistant","content":"prefill"}]})"),
                                  &chat),
            "");
  EXPECT_EQ(chat["model"], "claude-x");
  EXPECT_EQ(chat["max_tokens"], 300);
  EXPECT_EQ(chat["stop"], J(R"(["END"])"));
  EXPECT_EQ(chat["temperature"], 0.2);
  EXPECT_EQ(chat["top_p"], 0.8);
  EXPECT_EQ(chat["stream"], true);
  EXPECT_EQ(chat["stream_options"], J(R"({"include_usage":true})"));
  EXPECT_EQ(chat["user"], "u-1");
  EXPECT_EQ(chat["tools"], J(R"([{"type":"function","function":{"name":"get","parameters":{"type":"object"},"description":"d"}}])"));
  EXPECT_EQ(chat["tool_choice"], "required");
  EXPECT_EQ(chat["parallel_tool_calls"], false);
  EXPECT_EQ(chat["response_format"], J(R"({"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object"},"strict":true}})"));
  EXPECT_EQ(chat["reasoning_effort"], "high");
  EXPECT_EQ(chat["messages"], J(R"([
      {"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"look"},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},
        {"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
      {"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get","arguments":"{\"c\":1}"}}]},
      {"role":"tool","tool_call_id":"toolu_1","content":"3C"},
      {"role":"tool","tool_call_id":"toolu_2","content":"Error: boom"},
      {"role":"user","content":"and?"},
      {"role":"assistant","content":"prefill"}])"));
  EXPECT_EQ(ValidateChatRequest(chat), "");
}

TEST(AnthropicMessagesRequest, SystemBlocksAndChoices) {
  Json chat;
  ASSERT_EQ(MessagesToChatRequest(J(R"({"max_tokens":5,"system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}},{"type":"text","text":"B"}],
      "messages":[{"role":"user","content":"hi"}]})"),
                                  &chat),
            "");
  EXPECT_EQ(chat["messages"][0], J(R"({"role":"system","content":[{"type":"text","text":"A"},{"type":"text","text":"B"}]})"));
  EXPECT_FALSE(chat.contains("stream"));
  struct Case { const char* choice; const char* want; };
  for (const Case& c : {Case{R"({"type":"auto"})", R"("auto")"}, Case{R"({"type":"none"})", R"("none")"},
                        Case{R"({"type":"tool","name":"f"})", R"({"type":"function","function":{"name":"f"}})"}}) {
    Json request = J(R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{}}]})");
    request["tool_choice"] = Json::parse(c.choice);
    ASSERT_EQ(MessagesToChatRequest(request, &chat), "") << c.choice;
    EXPECT_EQ(chat["tool_choice"], Json::parse(c.want)) << c.choice;
    EXPECT_FALSE(chat.contains("parallel_tool_calls"));
  }
}

TEST(AnthropicMessagesRequest, Refusals) {
  struct Case { const char* body; const char* path; };
  const Case cases[] = {
      {R"({"thinking":{"type":"enabled","budget_tokens":2000}})", "`thinking`"},
      {R"({"thinking":{"type":"adaptive"}})", "`thinking`"},
      {R"({"top_k":5})", "`top_k`"},
      {R"({"container":"c"})", "`container`"},
      {R"({"inference_geo":"eu"})", "`inference_geo`"},
      {R"({"mcp_servers":[]})", "`mcp_servers`"},
      {R"({"brand_new":true})", "`brand_new`"},
      {R"({"tools":[{"type":"web_search_20250305","name":"web_search"}]})", "`tools[0]`"},
      {R"({"tools":[{"name":"f"}]})", "`tools[0].input_schema`"},
      {R"({"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool"}})", "`tool_choice`"},
      {R"({"output_config":{"effort":"max"}})", "`output_config.effort`"},
      {R"({"output_config":{"format":{"type":"xml"}}})", "`output_config.format`"},
      {R"({"system":[{"type":"image"}]})", "`system[0]`"},
      {R"({"system":5})", "`system`"},
      {R"({"stop_sequences":"END"})", "`stop_sequences`"},
      {R"({"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]})", "`messages[0].content[0]`"},
      {R"({"messages":[{"role":"user","content":[{"type":"search_result"}]}]})", "`messages[0].content[0]`"},
      {R"({"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]})", "`messages[0].content[0].source`"},
      {R"({"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]})", "`messages[0].content[0].content[0]`"},
      {R"({"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})", "`messages[0].content[0].tool_use_id`"},
      {R"({"messages":[{"role":"assistant","content":[{"type":"server_tool_use","id":"s","name":"web_search"}]}]})", "`messages[0].content[0]`"},
      {R"({"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f"}]}]})", "`messages[0].content[0]`"},
      {R"({"messages":[{"role":"system","content":"x"}]})", "`messages[0].role`"},
      {R"({"messages":[{"role":"user","content":5}]})", "`messages[0].content`"},
      {R"({"messages":{}})", "`messages`"},
  };
  for (const Case& c : cases) {
    Json request = Json::parse(c.body);
    if (!request.contains("messages")) request["messages"] = J(R"([{"role":"user","content":"x"}])");
    request["max_tokens"] = 10;
    Json out = "untouched";
    std::string error = MessagesToChatRequest(request, &out);
    EXPECT_EQ(error.rfind(c.path, 0), 0u) << c.body << " → " << error;
    EXPECT_EQ(out, "untouched");
  }
}

// ------------------------------------------- chat answer → Messages

TEST(AnthropicChatAnswer, TextToolsStopAndUsage) {
  Json m = ChatToMessagesResponse(J(R"({"id":"chatcmpl-9","model":"gpt-x","choices":[{"index":0,
      "message":{"role":"assistant","content":"Sure.","tool_calls":[
        {"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"c\":1}"}},
        {"id":"call_2","type":"function","function":{"name":"bad","arguments":"not json"}}]},
      "finish_reason":"tool_calls"}],
      "usage":{"prompt_tokens":120,"completion_tokens":8,"total_tokens":128,"prompt_tokens_details":{"cached_tokens":100}}})"),
                                  "claude-client");
  EXPECT_EQ(m, J(R"({"id":"msg_chatcmpl-9","type":"message","role":"assistant","model":"claude-client",
      "content":[{"type":"text","text":"Sure."},{"type":"tool_use","id":"call_1","name":"get","input":{"c":1}},
                 {"type":"tool_use","id":"call_2","name":"bad","input":{}}],
      "stop_reason":"tool_use","stop_sequence":null,
      "usage":{"input_tokens":20,"output_tokens":8,"cache_read_input_tokens":100}})"));
  struct Case { const char* finish; const char* stop; };
  for (const Case& c : {Case{"stop", "end_turn"}, Case{"length", "max_tokens"}, Case{"tool_calls", "tool_use"},
                        Case{"content_filter", "refusal"}, Case{"function_call", "tool_use"}}) {
    Json chat = J(R"({"choices":[{"message":{"content":"x"}}]})");
    chat["choices"][0]["finish_reason"] = c.finish;
    EXPECT_EQ(ChatToMessagesResponse(chat, "m")["stop_reason"], c.stop) << c.finish;
  }
}

TEST(AnthropicChatAnswer, JunkDoesNotThrow) {
  for (const char* junk : {"null", "[]", R"({"choices":5})", R"({"choices":[1,{"message":7}]})",
                           R"({"id":3,"choices":[{"message":{"content":[],"tool_calls":[5,{"function":"x"}]}}],"usage":[]})"}) {
    Json m;
    EXPECT_NO_THROW(m = ChatToMessagesResponse(Json::parse(junk), "")) << junk;
    EXPECT_EQ(m["type"], "message");
    EXPECT_EQ(m["stop_reason"], "end_turn");
    EXPECT_EQ(m["usage"]["input_tokens"], 0);
  }
}

// ------------------------------------------- chat stream → Messages

TEST(AnthropicChatStream, Text) {
  std::vector<Json> chunks = {Delta(J(R"({"role":"assistant","content":""})"))};
  for (const char* piece : {"Hel", "lo", ", ", "wor", "ld"}) chunks.push_back(Delta({{"content", piece}}));
  chunks.push_back(Delta(Json::object(), "stop"));
  chunks.push_back(J(R"({"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}})"));
  MessagesReader r = FeedChat(chunks);
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.message["id"], "msg_chatcmpl-1");
  EXPECT_EQ(r.message["model"], "claude-client");
  EXPECT_EQ(r.message["content"], J(R"([{"type":"text","text":"Hello, world"}])"));
  EXPECT_EQ(r.message["stop_reason"], "end_turn");
  EXPECT_EQ(r.message["usage"]["input_tokens"], 9);
  EXPECT_EQ(r.message["usage"]["output_tokens"], 4);
}

TEST(AnthropicChatStream, ToolsOnly) {
  std::vector<Json> chunks = {
      Delta(J(R"({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]})")),
      Delta(J(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]})")),
      Delta(J(R"({"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Oslo\"}"}}]})")),
      Delta(J(R"({"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"now","arguments":"{}"}}]})")),
      Delta(Json::object(), "tool_calls")};
  MessagesReader r = FeedChat(chunks);
  EXPECT_EQ(r.message["content"], J(R"([{"type":"tool_use","id":"call_1","name":"get","input":{"city":"Oslo"}},
                                      {"type":"tool_use","id":"call_2","name":"now","input":{}}])"));
  EXPECT_EQ(r.message["stop_reason"], "tool_use");
}

TEST(AnthropicChatStream, TextThenToolsAndEventOrder) {
  std::vector<Json> chunks = {Delta({{"content", "Let me look."}}),
      Delta(J(R"({"tool_calls":[{"index":0,"id":"call_1","function":{"arguments":"{\"q\":"}}]})")),  // name later
      Delta(J(R"({"tool_calls":[{"index":0,"function":{"name":"search","arguments":"1}"}}]})")),
      Delta(Json::object(), "tool_calls"),
      Delta({{"content", "ignored: after finish_reason"}})};
  ChatToMessagesStream s("claude-client");
  std::vector<SseEvent> out;
  std::string error;
  for (const Json& c : chunks) ASSERT_TRUE(s.Feed(Chat(c), &out, &error)) << error;
  ASSERT_TRUE(s.Feed(Done(), &out, &error));
  std::vector<std::string> types;
  for (const SseEvent& e : out) types.push_back(e.event);
  EXPECT_EQ(types, (std::vector<std::string>{"message_start", "content_block_start", "content_block_delta",
                                             "content_block_stop", "content_block_start", "content_block_delta",
                                             "content_block_stop", "message_delta", "message_stop"}));
  MessagesReader r;
  for (const SseEvent& e : out) r.Add(e);
  EXPECT_EQ(r.fault, "");
  EXPECT_EQ(r.message["content"], J(R"([{"type":"text","text":"Let me look."},
                                      {"type":"tool_use","id":"call_1","name":"search","input":{"q":1}}])"));
  ASSERT_TRUE(s.Feed(Done(), &out, &error));
  EXPECT_EQ(out.size(), types.size());  // nothing after message_stop
}

TEST(AnthropicChatStream, EmptyAndLengthAndNamelessCall) {
  MessagesReader empty = FeedChat({});
  EXPECT_EQ(empty.message["content"], Json::array());
  EXPECT_EQ(empty.message["stop_reason"], "end_turn");
  MessagesReader cut = FeedChat({Delta({{"content", "abc"}}), Delta(Json::object(), "length")});
  EXPECT_EQ(cut.message["stop_reason"], "max_tokens");
  MessagesReader nameless = FeedChat({Delta(J(R"({"tool_calls":[{"index":0,"id":"c","function":{"arguments":"{}"}}]})"))});
  EXPECT_EQ(nameless.message["content"][0]["type"], "tool_use");
  EXPECT_EQ(nameless.message["stop_reason"], "tool_use");
}

TEST(AnthropicChatStream, ErrorChunkBecomesErrorEvent) {
  ChatToMessagesStream s("m");
  std::vector<SseEvent> out;
  std::string error;
  ASSERT_TRUE(s.Feed(Chat(Delta({{"content", "a"}})), &out, &error));
  ASSERT_TRUE(s.Feed(Chat(J(R"({"error":{"type":"policy_violation","code":"output_blocked","message":"no","policy":"p","request_id":"r"}})")),
                     &out, &error));
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(out.back().event, "error");
  Json e = Json::parse(out.back().data);
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["error"]["type"], "permission_error");
  EXPECT_EQ(e["error"]["code"], "output_blocked");
  std::size_t n = out.size();
  ASSERT_TRUE(s.Feed(Done(), &out, &error));
  EXPECT_EQ(out.size(), n);
}

TEST(AnthropicChatStream, JunkNeverThrows) {
  ChatToMessagesStream s("m");
  std::vector<SseEvent> out;
  std::string error;
  EXPECT_FALSE(s.Feed({"", "nope"}, &out, &error));
  EXPECT_FALSE(s.Feed({"", "5"}, &out, &error));
  for (const char* junk : {R"({"choices":7})", R"({"choices":[null,3]})", R"({"choices":[{"delta":[]}]})",
                           R"({"choices":[{"delta":{"content":5,"tool_calls":{}}}]})",
                           R"({"choices":[{"delta":{"tool_calls":[1,{"index":"x"},{"index":2,"function":[]}]}}]})",
                           R"({"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"name":7}}]}}]})",
                           R"({"usage":"lots"})", R"({"choices":[{"finish_reason":9}]})"}) {
    EXPECT_NO_THROW(s.Feed({"", junk}, &out, &error)) << junk;
  }
  ASSERT_TRUE(s.Feed(Done(), &out, &error));
  MessagesReader r;
  for (const SseEvent& e : out) r.Add(e);
  EXPECT_EQ(r.fault, "");
  EXPECT_TRUE(r.stopped);
}

}  // namespace
}  // namespace kt::gateway
