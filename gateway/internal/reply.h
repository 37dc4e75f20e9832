// What goes back to the client: whole responses (the error envelope with its
// audit record, 429s with their retry headers) and the `Client` a handler
// writes to, so that the pipeline never touches a socket.
#ifndef KT_GATEWAY_INTERNAL_REPLY_H_
#define KT_GATEWAY_INTERNAL_REPLY_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/internal/exchange.h"
#include "gateway/internal/limits.h"

namespace kt::gateway {

using Response = http::response<http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The request id and correlation headers every answer carries.
void SetCommonHeaders(http::fields* h, const Exchange& x);

// Responses are built by plain functions and written by one coroutine that
// takes them by reference: GCC 12 can destroy temporaries inside a co_await
// expression twice, so no co_await has a temporary with a destructor.
Response BodyResponse(Exchange* x, int status, std::string body, std::string_view content_type,
                      bool keep_alive, const Headers& extra = {});

// A gateway-made error: the envelope, and its audit record (written before
// the response goes out; requests that are not audited have an empty path).
Response ErrorResponse(Gateway* g, Exchange* x, int status, std::string_view type,
                       std::string_view code, std::string_view message, bool keep_alive,
                       std::string_view policy = {}, Headers extra = {});

// 429: which limit or budget, and when to come back (seconds, and
// milliseconds for the SDKs that read retry-after-ms). A budget's also says
// when its period resets, and what is left.
Response RateLimitResponse(Gateway* g, Exchange* x, const LimitConfig& limit,
                           const Admission& a, bool keep_alive);
// What an admitted request's budget has left, for its answer's headers.
Headers BudgetHeaders(const LimitConfig& budget, const Remaining& left);
std::string FormatUsd(int64_t nanos);

// Where a handler's answer goes: a socket in production, memory in tests.
class Client {
 public:
  virtual ~Client() = default;
  // The head of a streamed answer; false when the client is gone.
  virtual asio::awaitable<bool> StartStream(http::response<http::empty_body>& head) = 0;
  // One chunk of the stream (nothing is sent for ""); false when gone.
  virtual asio::awaitable<bool> Send(const std::string& bytes) = 0;
  // The stream's last chunk.
  virtual asio::awaitable<void> EndStream() = 0;
};

// What a handler did: filled in the response for the caller to write, or
// streamed its own (the connection then ends, or stays open).
enum class Handled { kReply, kStreamed, kStreamedOpen };

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_REPLY_H_
