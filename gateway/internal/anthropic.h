// Translations between OpenAI chat completions and Anthropic's Messages API,
// both ways: for a `kind: anthropic` provider behind any OpenAI surface
// (chat → Messages request, Messages answer → chat, JSON and stream), and
// for `/v1/messages` clients in front of an OpenAI-compatible provider
// (Messages request → chat, chat answer → Messages, JSON and stream). Pure
// functions of JSON: no I/O, no policy. docs/anthropic.md is the field-by-
// field table.
#ifndef KT_GATEWAY_INTERNAL_ANTHROPIC_H_
#define KT_GATEWAY_INTERNAL_ANTHROPIC_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/internal/sse.h"

namespace kt::gateway {

// The Messages API's version header value the gateway sends.
inline constexpr const char* kAnthropicVersion = "2023-06-01";
// max_tokens when a chat request sets none (Messages requires it).
inline constexpr int64_t kDefaultMaxTokens = 4096;

// ------------------------------------------- chat → an Anthropic upstream

// A chat-completions request as a Messages request: system / developer
// messages hoisted into `system` (string, or text blocks when there are
// several); consecutive same-role turns merged (Messages requires
// alternation); assistant `tool_calls` → `tool_use` blocks (arguments
// parsed to `input`); `tool` messages → `tool_result` blocks in a user turn;
// image_url parts → `image` blocks (data: URLs as base64 sources, others as
// url sources); `max_tokens` / `max_completion_tokens` (default
// kDefaultMaxTokens); tools → {name, description, input_schema};
// tool_choice auto/none/required/{function} → auto/none/any/{tool};
// `stop` → stop_sequences; temperature, top_p, stream, metadata.user_id from
// `user`. "" or what has no Messages form, named by field path.
std::string ChatToMessagesRequest(const nlohmann::json& chat, nlohmann::json* messages);

// A Messages answer as a chat.completion: text blocks joined as content,
// tool_use blocks as tool_calls (input serialized as the JSON-string
// arguments, id kept), finish_reason from stop_reason (end_turn/stop_sequence
// → stop, max_tokens → length, tool_use → tool_calls, refusal →
// content_filter), usage (input/output tokens, cache_read_input_tokens →
// prompt_tokens_details.cached_tokens, cache_creation_input_tokens kept as
// is). "" or why the answer cannot be read.
std::string MessagesToChatResponse(const nlohmann::json& message, nlohmann::json* chat);

// The Messages stream (message_start, content_block_start/delta/stop with
// text_delta and input_json_delta, message_delta, message_stop, ping, error)
// as chat chunks, incrementally: a role chunk at message_start, a content
// chunk per text_delta, a tool_calls chunk at a tool_use block's start (id,
// name, arguments "") and one per input_json_delta, a finish_reason chunk at
// message_delta, a usage chunk, then `[DONE]` at message_stop. `ping` and
// thinking blocks produce nothing. An `error` event becomes a chat error
// chunk ({"error":{type, code, message}}) and ends the stream.
class MessagesToChatStream {
 public:
  explicit MessagesToChatStream(std::string model) : model_(std::move(model)) {}
  // False, with `*error`, when an event is not a Messages event.
  bool Feed(const SseEvent& event, std::vector<SseEvent>* out, std::string* error);
  bool finished() const { return finished_; }

 private:
  nlohmann::json Chunk(nlohmann::json delta, const nlohmann::json& finish_reason) const;
  void Emit(nlohmann::json chunk, std::vector<SseEvent>* out);
  void Begin(const nlohmann::json* message, std::vector<SseEvent>* out);
  void MergeUsage(const nlohmann::json& usage);
  void BlockStart(const nlohmann::json& data, std::vector<SseEvent>* out);
  void BlockDelta(const nlohmann::json& data, std::vector<SseEvent>* out);
  void MessageDelta(const nlohmann::json& data, std::vector<SseEvent>* out);
  void Stop(std::vector<SseEvent>* out);

  std::string model_;
  std::string id_;
  int64_t created_ = 0;
  bool started_ = false;      // the role chunk went out
  bool finish_sent_ = false;  // the finish_reason chunk went out
  bool finished_ = false;
  std::map<int, int> tool_index_;  // content block index → chat tool-call index
  int next_tool_ = 0;
  nlohmann::json usage_ = nlohmann::json::object();  // Messages' counts, latest
};

// An Anthropic error answer (status and body
// {"type":"error","error":{"type","message"}}) as the OpenAI error envelope
// and the status a client of the gateway gets: invalid_request_error 400,
// authentication_error 401, permission_error 403, not_found_error 404,
// request_too_large 413, rate_limit_error 429, api_error 500,
// overloaded_error 529 → 503 (the OpenAI SDKs retry it).
nlohmann::json AnthropicErrorToOpenAI(int status, const nlohmann::json& body, int* out_status);

// ------------------------------------ /v1/messages → an OpenAI upstream

// A Messages request as a chat request: `system` (string or text blocks) as
// the first system message; text blocks as content; image blocks as
// image_url parts; tool_use blocks as assistant tool_calls; tool_result
// blocks as `tool` messages (their text content); tools and tool_choice
// mapped back; max_tokens, stop_sequences, temperature, top_p, stream (with
// stream_options.include_usage). "" or what has no chat form (documents,
// server tools, `thinking`), named.
std::string MessagesToChatRequest(const nlohmann::json& messages, nlohmann::json* chat);

// A chat.completion as a Messages answer ({id "msg_…", type "message",
// role "assistant", model, content: text then tool_use blocks, stop_reason,
// stop_sequence null, usage {input_tokens, output_tokens}}).
nlohmann::json ChatToMessagesResponse(const nlohmann::json& chat, const std::string& model);

// A chat stream as the Messages event stream (event: name; data with
// `type`): message_start, content_block_start / content_block_delta
// (text_delta, input_json_delta) / content_block_stop per block,
// message_delta (stop_reason, usage.output_tokens), message_stop. A chat
// error chunk becomes an `error` event.
class ChatToMessagesStream {
 public:
  explicit ChatToMessagesStream(std::string model) : model_(std::move(model)) {}
  bool Feed(const SseEvent& chat_event, std::vector<SseEvent>* out, std::string* error);
  bool finished() const { return finished_; }

 private:
  // A chat tool call, by its chat index. Its tool_use block opens once its
  // name is known (content_block_start carries it); until then its
  // arguments wait.
  struct Call {
    int block = -1;
    std::string id;
    std::string name;
    std::string pending;
  };
  void Emit(const std::string& type, nlohmann::json data, std::vector<SseEvent>* out);
  void Begin(std::vector<SseEvent>* out);
  void ApplyChoice(const nlohmann::json& choice, std::vector<SseEvent>* out);
  void AppendText(const std::string& text, std::vector<SseEvent>* out);
  void ApplyCallDelta(const nlohmann::json& entry, int64_t position, std::vector<SseEvent>* out);
  void OpenCall(int64_t index, std::vector<SseEvent>* out);
  void EmitInput(int block, const std::string& partial, std::vector<SseEvent>* out);
  void OpenNamelessCalls(std::vector<SseEvent>* out);
  void CloseBlock(std::vector<SseEvent>* out);
  void Finish(std::vector<SseEvent>* out);

  std::string model_;
  std::string id_;
  bool started_ = false;
  bool finished_ = false;
  int block_ = -1;  // the open content block, -1 when none
  bool block_is_text_ = false;
  int next_block_ = 0;
  std::map<int64_t, Call> calls_;
  std::string stop_reason_;  // set at finish_reason; later deltas are ignored
  nlohmann::json usage_ = nlohmann::json::object();  // the chat stream's usage
};

// The gateway's OpenAI error envelope in Anthropic's shape:
// {"type":"error","error":{"type":…,"message":…}} (policy violations keep
// their code, policy and request id as extra fields of `error`).
nlohmann::json OpenAIErrorToAnthropic(const nlohmann::json& envelope);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_ANTHROPIC_H_
