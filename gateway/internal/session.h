// One client connection: HTTP/1.1 keep-alive, the framing the gateway
// refuses, the bounds on headers, bodies and time, and the dispatch of each
// request through the route table.
#ifndef KT_GATEWAY_INTERNAL_SESSION_H_
#define KT_GATEWAY_INTERNAL_SESSION_H_

#include "gateway/internal/state.h"
#include "gateway/internal/upstream.h"

namespace kt::gateway {

// Serves one client connection until it closes (or the gateway stops).
asio::awaitable<void> Session(asio::ip::tcp::socket socket, Gateway* g, UpstreamPool* pool);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_SESSION_H_
