// The built-in `mock` provider: deterministic chat completions and
// embeddings, for demos and tests, with no network and no key. docs/mock-provider.md describes how a
// prompt steers it.
#ifndef KT_GATEWAY_INTERNAL_MOCK_H_
#define KT_GATEWAY_INTERNAL_MOCK_H_

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kt::gateway {

struct MockReply {
  std::string text;
  bool tool_call = false;
  std::string tool_name;
  std::string tool_arguments;  // a JSON text
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// What the mock answers to a chat-completions request.
MockReply MockComplete(const nlohmann::json& request);

// A chat.completion object.
nlohmann::json MockResponse(const MockReply& reply, const std::string& model, const std::string& id,
                            int64_t created);

// The `data:` payloads of a streamed reply (chat.completion.chunk objects),
// content cut into pieces of about `chunk_size` bytes on UTF-8 character
// boundaries, ending with "[DONE]". Usage comes in a last chunk when the
// request asked for it (stream_options.include_usage).
std::vector<std::string> MockStream(const MockReply& reply, const std::string& model,
                                    const std::string& id, int64_t created, std::size_t chunk_size,
                                    bool include_usage);

// An embeddings list for a /v1/embeddings request: one deterministic unit
// vector (8 floats, from a hash of the text) per input string or token list
// (as base64 float32 bytes when `encoding_format` is "base64"), and usage.
nlohmann::json MockEmbeddings(const nlohmann::json& request);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_MOCK_H_
