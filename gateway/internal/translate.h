// Translations between OpenAI wire surfaces, for a provider that speaks only
// chat completions (the mock, most OpenAI-compatible servers): a Responses or
// legacy Completions request becomes a chat request, and the chat answer
// (JSON, or the stream's chunks, incrementally) becomes the surface's answer.
// Pure functions of JSON: no I/O, no policy. The stages judge the translated
// answer in the client's own surface, so what they judge is what the client
// receives.
#ifndef KT_GATEWAY_INTERNAL_TRANSLATE_H_
#define KT_GATEWAY_INTERNAL_TRANSLATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/internal/sse.h"

namespace kt::gateway {

// ------------------------------------------------------------- responses

// A /v1/responses request as a chat-completions request: `instructions` is
// the first system message; `input` (a string: one user message; a list of
// items: messages with string or part content, `function_call`,
// `function_call_output`) becomes `messages`; function `tools` and
// `tool_choice` map to chat's shape; `max_output_tokens` → `max_tokens`;
// `stream`, `temperature`, `top_p`, `user`, `metadata`, `parallel_tool_calls`
// carry over; a streamed request asks for usage
// (`stream_options.include_usage`). "" on success; otherwise what cannot be
// translated (a built-in tool such as `web_search`, `previous_response_id`,
// an item type chat has no form for), named.
std::string ResponsesToChatRequest(const nlohmann::json& request, nlohmann::json* chat);

// A chat.completion as a `response` object (status `completed`, or
// `incomplete` with `incomplete_details.reason` when finish_reason is
// `length` / `content_filter`): the first choice's content as one `message`
// item with one `output_text` part, each tool call as a `function_call` item
// (`call_id` = the chat id, `arguments` as sent), usage as
// input_tokens / output_tokens / total_tokens. `id` names the response;
// `request` supplies the echoed fields (model, instructions, tools, …).
nlohmann::json ChatToResponse(const nlohmann::json& chat, const nlohmann::json& request,
                              const std::string& id, int64_t created_at);

// A chat completion stream, chunk by chunk, as the Responses stream's
// semantic events, in the order the official API sends them:
// response.created, response.in_progress; for text: output_item.added
// (message), content_part.added, output_text.delta…, output_text.done,
// content_part.done, output_item.done; for each tool call:
// output_item.added (function_call, arguments ""),
// function_call_arguments.delta…, function_call_arguments.done,
// output_item.done; then response.completed (or response.incomplete) with
// the whole response and usage. Every event's data carries `type` and a
// `sequence_number` counting from 0; the SSE `event:` field is the type.
class ChatToResponsesStream {
 public:
  ChatToResponsesStream(nlohmann::json request, std::string id, int64_t created_at);
  // One event of the chat stream (a chunk, or `[DONE]`). Appends the
  // Responses events it completes. An upstream error chunk
  // (`{"error":…}`) becomes an `error` event (type, code, message, param,
  // and the upstream's `error` object) and ends the translation. False,
  // with `*error`, when the chunk is not a chat chunk (not JSON, or not an
  // object).
  bool Feed(const SseEvent& chat_event, std::vector<SseEvent>* out, std::string* error);
  // True once the terminal event (response.completed / incomplete / an
  // error) went out.
  bool finished() const { return finished_; }

 private:
  // One output item, open or done. Its output_index is its place in items_:
  // the SDK's accumulator pushes each output_item.added, so items are added
  // in index order and only one is open at a time, as the API sends them.
  struct Part {
    std::string type;  // "output_text" or "refusal"
    std::string text;
  };
  struct Item {
    bool is_message = true;
    std::string id;
    std::string status = "in_progress";
    std::vector<Part> parts;  // a message's; its last part is open while the item is
    std::string call_id;      // a function call's
    std::string name;
    std::string arguments;
  };
  // A chat tool call, by its chat index. It becomes an item once its name is
  // known (the added event carries the name); until then its arguments wait.
  struct Call {
    int output_index = -1;
    std::string call_id;
    std::string name;
    std::string pending;
  };
  void Emit(const std::string& type, nlohmann::json data, std::vector<SseEvent>* out);
  void Begin(std::vector<SseEvent>* out);
  void ApplyChoice(const nlohmann::json& choice, std::vector<SseEvent>* out);
  void AppendText(const std::string& kind, const std::string& delta, std::vector<SseEvent>* out);
  void ApplyCallDelta(const nlohmann::json& entry, int64_t position, std::vector<SseEvent>* out);
  void OpenMessage(const std::string& kind, std::vector<SseEvent>* out);
  void OpenPart(const std::string& kind, std::vector<SseEvent>* out);
  void ClosePart(std::vector<SseEvent>* out);
  void OpenCall(int64_t index, std::vector<SseEvent>* out);
  void EmitArguments(int output_index, const std::string& delta, std::vector<SseEvent>* out);
  void CloseOpen(const std::string& status, std::vector<SseEvent>* out);
  void Finalize(std::vector<SseEvent>* out);
  void Complete(std::vector<SseEvent>* out);
  void EmitError(const nlohmann::json& error, std::vector<SseEvent>* out);
  nlohmann::json ItemJson(const Item& item) const;
  nlohmann::json Snapshot(const std::string& status) const;

  nlohmann::json request_;
  std::string id_;
  int64_t created_at_ = 0;
  int64_t sequence_ = 0;
  bool begun_ = false;
  bool finalized_ = false;  // every item closed (finish_reason, or [DONE])
  bool finished_ = false;
  std::string model_;  // the upstream's, from its first chunk
  std::vector<Item> items_;
  int open_ = -1;                  // the output index of the open item
  std::map<int64_t, Call> calls_;  // by the chat tool call's index
  std::string finish_reason_;
  nlohmann::json usage_;  // in Responses form; null until the usage chunk
};

// ------------------------------------------------- legacy completions

// A /v1/completions request as a chat request: `prompt` (a string, or a
// list of exactly one string) is one user message; `suffix`, `echo`,
// `best_of` > 1 and `logprobs` have no chat form and are refused, named;
// `max_tokens`, `temperature`, `top_p`, `n`, `stop`, `stream`, `user`,
// `seed`, `presence_penalty`, `frequency_penalty` carry over.
std::string CompletionsToChatRequest(const nlohmann::json& request, nlohmann::json* chat);

// A chat.completion as a `text_completion` (choices[].text,
// finish_reason, usage; the same id and model).
nlohmann::json ChatToCompletion(const nlohmann::json& chat);

// One chat stream chunk as a text_completion chunk (choices[].text from
// delta.content; finish_reason; usage). `[DONE]` and error chunks pass as
// they are. False, with `*error`, when the chunk is not JSON (or not an
// object).
bool ChatChunkToCompletionChunk(const SseEvent& chat_event, SseEvent* out, std::string* error);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_TRANSLATE_H_
