// A wire surface's adapter: how one OpenAI API (chat completions, responses,
// embeddings, legacy completions) maps to and from the pipeline's
// surface-neutral terms. The pipeline never reads a surface's JSON; an
// adapter never evaluates a policy. Policies are written once, on the chat
// shape: every adapter reads its request into a chat-completions request
// (`canonical`), the one thing `input.*` reads.
#ifndef KT_GATEWAY_INTERNAL_SURFACE_H_
#define KT_GATEWAY_INTERNAL_SURFACE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/internal/exchange.h"
#include "gateway/internal/model_call.h"
#include "gateway/internal/sse.h"
#include "gateway/internal/stream_judge.h"

namespace kt::gateway {

// A client request as the stages read it.
struct SurfaceRequest {
  Json canonical;  // a chat-completions request: model, messages, tools, …
  // Per canonical message, where its text parts are in the client's body
  // (JSON pointers): a redaction is written back there, nowhere else.
  std::vector<std::vector<std::string>> slots;
  std::string model;
  bool stream = false;
  bool unread = false;  // a part no stage can read (recorded in the exchange)
};

// The parts of a whole answer the stages judge, pointing into it, in the
// order they are judged (tool calls first, then texts).
struct AnswerView {
  struct Text {
    Json* text;  // a JSON string, rewritten in place by a redaction
    std::string finish_reason;
  };
  struct Tool {
    std::string name;
    std::string arguments;  // a JSON text
    std::string id;
    int index = 0;  // its place among its choice's calls
  };
  std::vector<Tool> tools;
  std::vector<Text> texts;
  // Parts of the answer no stage reads (a reasoning item, say): where, why.
  std::vector<std::pair<std::string, std::string>> unread;
};

// One streamed answer, relayed in the client's surface as it is judged.
class SurfaceRelay {
 public:
  virtual ~SurfaceRelay() = default;
  // One upstream event → the frames to send (appended to *out). False when
  // the stream must end; `*out` then ends with the surface's error frame.
  virtual bool OnEvent(const SseEvent& ev, std::string* out) = 0;
  // The upstream's body ended (`clean`: without a transport failure).
  virtual bool OnEnd(bool clean, std::string* out) = 0;
  // The stream reached its terminal event.
  virtual bool finished() const = 0;
  // The error frame for a failure mid-stream.
  virtual void UpstreamFailed(UpstreamFailure f, const std::string& why, std::string* out) = 0;
};

class Surface {
 public:
  virtual ~Surface() = default;
  virtual std::string_view name() const = 0;  // chat | responses | embeddings | completions
  virtual std::string_view upstream_path() const = 0;  // "/chat/completions"
  // The API a provider must speak to take this surface as it is (count_tokens
  // rides on the Messages API).
  virtual std::string_view api() const { return name(); }
  // Whether errors go out in the Messages API's envelope.
  virtual bool anthropic_errors() const { return false; }
  // Whether the surface has an answer the output stages read (embeddings:
  // vectors, no).
  virtual bool has_output() const { return true; }

  // Checks the body and reads what the stages judge; parts they cannot read
  // are recorded with NotEvaluated(x, …). "" or why not (a 422).
  virtual std::string Read(const Json& body, SurfaceRequest* out, Exchange* x) const = 0;
  // Writes the input stage's redactions (`forward`, a rewritten canonical
  // request) back into the client's body, at the slots.
  virtual void Rewrite(const SurfaceRequest& r, const Json& forward, Json* body) const;

  // The request for a provider that does not speak this surface, as chat;
  // "" or why it cannot be translated (a 422). Surfaces every provider must
  // speak natively return a reason.
  virtual std::string ToChat(const Json& body, Json* chat) const = 0;
  // A whole answer from the provider as the client's answer: `native` when
  // it came in this surface (checked, not changed), else a chat.completion
  // to translate. "" or why it cannot be judged (a 502).
  virtual std::string AnswerOf(const Json& body, bool native, Json* answer) const = 0;
  // The judged parts of an answer in this surface.
  virtual void View(Json* answer, AnswerView* view) const = 0;
  // The relay of a streamed answer; `native` as for AnswerOf.
  virtual std::unique_ptr<SurfaceRelay> Relay(StreamJudge* judge, const Json& body,
                                              bool native) const = 0;
};

// The adapters, one per surface (stateless; they live for the process).
const Surface& ChatSurface();
const Surface& ResponsesSurface();
const Surface& EmbeddingsSurface();
const Surface& CompletionsSurface();
const Surface& MessagesSurface();
const Surface& CountTokensSurface();

// Helpers adapters share.
//
// Appends a canonical user (or other role) message with string content and
// its one slot.
void AddMessage(SurfaceRequest* r, std::string role, const Json& text, std::string slot);
// The head every generating surface shares: the body is an object, `model`
// a non-empty string, `stream` a boolean (or absent); sets model, stream and
// a canonical request of them with no messages yet. "" or why not.
std::string ReadModelAndStream(const Json& body, SurfaceRequest* out);
// Reads `field` of embeddings and legacy completions: a string, a list of
// strings, token ids or a list of token-id lists. Each string is a user
// message (slot `/field` or `/field/i`); token ids reach no stage and are
// recorded so. "" or why the value is refused.
std::string ReadTexts(const Json& value, const std::string& field, SurfaceRequest* r,
                      Exchange* x);
// The relay of a chat stream (`legacy`: of a legacy completions stream;
// `translate`: whose upstream sends chat chunks, turned into legacy ones).
std::unique_ptr<SurfaceRelay> NewChatRelay(StreamJudge* judge, bool legacy, bool translate);
// The chat-style error frame (`data: {"error":…}`) that the SDKs raise on.
std::string ErrorFrame(const StreamJudge::Stop& stop, const std::string& request_id);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_SURFACE_H_
