// One call to a model, whatever answers it: an upstream over HTTP (the
// keep-alive pool, TLS, timeouts, never a redirect followed) or the built-in
// mock in process. The pipeline sees only this interface, so the mock goes
// through exactly the stages and byte handling an upstream does, and the
// pipeline's tests can script a model without sockets.
#ifndef KT_GATEWAY_INTERNAL_MODEL_CALL_H_
#define KT_GATEWAY_INTERNAL_MODEL_CALL_H_

#include <memory>
#include <string>
#include <string_view>

#include "gateway/internal/state.h"
#include "gateway/internal/upstream.h"

namespace kt::gateway {

// What goes to the model: a path under the provider's base URL
// ("/chat/completions") and the JSON body.
struct ModelRequest {
  std::string path;
  std::string body;
  bool stream = false;
};

class ModelCall {
 public:
  virtual ~ModelCall() = default;
  // Sends the request (its body is moved out) and reads the answer's
  // status and headers. False on failure: see failure() and error(). A
  // pointer, not a value: no co_await in gateway/ has a temporary with a
  // destructor (docs/architecture.md).
  virtual asio::awaitable<bool> Start(ModelRequest* request) = 0;
  virtual int status() const = 0;
  virtual std::string header(std::string_view name) const = 0;
  // Appends the next body bytes; false at the end of the body or on failure.
  virtual asio::awaitable<bool> ReadSome(std::string* out) = 0;
  // The whole (remaining) body, bounded.
  virtual asio::awaitable<bool> ReadAll(std::string* out) = 0;
  virtual bool done() const = 0;
  virtual UpstreamFailure failure() const = 0;
  virtual const std::string& error() const = 0;
  // Stops the model's work now (a block, or the client went away).
  virtual void Cancel() = 0;
};

// The route for a model, or false when no provider serves it.
bool RouteFor(const Gateway& g, const PolicyEngine& engine, const std::string& model, Route* out);

// Whether a route's provider speaks a wire surface itself.
bool Speaks(const Route& route, std::string_view api);

// The call for a route: g->open_call when set, else HTTP or the mock.
std::unique_ptr<ModelCall> OpenCall(Gateway* g, const Route& route, Exchange* x);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_MODEL_CALL_H_
