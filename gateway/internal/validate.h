// Shape checks on the JSON that crosses the gateway: the client's chat
// request before any policy reads it, and the upstream's answer before the
// output and tool-call stages judge it. Each check names the field it
// refuses (`messages[2].role` must be a string), never recurses on input
// depth, and accepts what the OpenAI API accepts: an explicit null for any
// optional field, and fields it does not know.
#ifndef KT_GATEWAY_INTERNAL_VALIDATE_H_
#define KT_GATEWAY_INTERNAL_VALIDATE_H_

#include <string>

#include <nlohmann/json.hpp>

namespace kt::gateway {

// "" when a chat-completions request body is usable; otherwise why not.
// Checked: `model` and `messages` (required), every field the gateway or
// its policies read, and the types (and ranges) the OpenAI API gives the
// request's other known fields.
std::string ValidateChatRequest(const nlohmann::json& body);

// "" when the choices of a non-streamed chat completion are what the
// tool-call and output stages can read: content a string or null, tool
// calls objects whose function has a string name and arguments. Anything
// else would reach the client unjudged, so it is refused.
std::string ValidateCompletion(const nlohmann::json& response);

// The same for one streamed chunk: deltas with string content, tool-call
// deltas with an integer index and string fields.
std::string ValidateCompletionChunk(const nlohmann::json& chunk);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_VALIDATE_H_
