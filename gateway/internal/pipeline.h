// The one request pipeline behind every model surface:
//
//   admit → read (the surface's adapter) → limits → input stage → route →
//   model call → tool_call / output stages → respond → audit
//
// surface-neutral: the adapter maps the surface's JSON and stream events to
// and from the stages' terms, and the pipeline never reads them itself. It
// writes only to a `Client` and calls only a `ModelCall`, so it runs without
// sockets in its tests.
#ifndef KT_GATEWAY_INTERNAL_PIPELINE_H_
#define KT_GATEWAY_INTERNAL_PIPELINE_H_

#include "gateway/internal/reply.h"
#include "gateway/internal/surface.h"

namespace kt::gateway {

// Serves one request on `surface`. A whole answer is left in `*res` for the
// caller to write (kReply); a stream is written to `client` as it is judged.
// A defect (an exception) costs this request only: a 500, or the stream's
// error frame, with its audit record.
asio::awaitable<Handled> Serve(Gateway* g, const Surface& surface,
                               http::request<http::string_body>& req, Exchange* x, Client* client,
                               bool keep_alive, Response* res);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_PIPELINE_H_
