// Small pieces the gateway's parts share: URLs, globs, ids, hashes, clocks
// and the error envelope.
#ifndef KT_GATEWAY_INTERNAL_UTIL_H_
#define KT_GATEWAY_INTERNAL_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kt::gateway {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string path;  // the base path, without a trailing slash ("/v1")
};
// http:// and https:// only; false on anything else.
bool ParseUrl(std::string_view text, Url* out);


// 128 random bits as 32 hex digits, with a prefix ("req_…").
std::string NewId(std::string_view prefix);
// Lower-case hex SHA-256.
std::string Sha256Hex(std::string_view data);
// The audit trail's name for an API key: never the key itself.
std::string KeyFingerprint(std::string_view key);

int64_t NowMicros();   // wall clock, for audit timestamps
int64_t MonoMicros();  // monotonic, for latencies

// The gateway's error envelope (ARCHITECTURE.md §5).
nlohmann::json ErrorEnvelope(std::string_view type, std::string_view code, std::string_view message,
                             std::string_view request_id, std::string_view policy = {});

// Compares secrets without a timing side channel on their contents.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

// Parses JSON the way the gateway must read what crosses it: an object with
// a key twice is refused (a first-wins reader upstream would otherwise see
// another request than the policies did), and so is nesting deeper than
// `max_depth` (nothing downstream may recurse on input depth). Iterative:
// the stack is bounded by `max_depth`, not by the input. On failure,
// `*error` says why (the duplicate key is named).
inline constexpr std::size_t kMaxJsonDepth = 128;
bool ParseJsonStrict(std::string_view text, nlohmann::json* out, std::string* error,
                     std::size_t max_depth = kMaxJsonDepth);

// Reading what an upstream sent, whatever its shape: a missing field, a
// field of another type and a value that is not an object all read as
// absent, where nlohmann's value() and get() would throw.
const nlohmann::json* FieldOf(const nlohmann::json& object, std::string_view key);
std::string StringField(const nlohmann::json& object, std::string_view key);

// One entry of a chat stream's `delta.tool_calls`, read whatever its shape:
// the call's index (its position when the server omits it, as servers that
// send each call whole do), and the id, name and arguments it carries. False
// when the entry is not an object or its index is not an integer.
struct ToolCallDelta {
  int64_t index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};
bool ReadToolCallDelta(const nlohmann::json& entry, int64_t position, ToolCallDelta* out);

// The bearer token of an Authorization header value ("" when there is none).
std::string BearerToken(std::string_view authorization);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_UTIL_H_
