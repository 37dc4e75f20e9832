// Admin and read-only routes: health, readiness, metrics, the model list
// and policy reloads, and loading the policy set they report on.
#ifndef KT_GATEWAY_INTERNAL_ADMIN_H_
#define KT_GATEWAY_INTERNAL_ADMIN_H_

#include <memory>
#include <string>

#include "gateway/internal/reply.h"
#include "gateway/internal/router.h"

namespace kt::gateway {

// Loads the policy files again and swaps them in; on failure the set in
// force stays, and `*error` says why. Counters of limits that did not change
// carry over (the limit store keys them by their declaration). Thread-safe (reloads are serialised).
bool Reload(Gateway* g, std::string* error);
std::shared_ptr<PolicyState> LoadState(const Options& options, std::string* error);
nlohmann::json HealthJson(Gateway* g);
// How the policy program was built (native or interpreted, from the object
// cache or compiled, and the times): for /health, reload records and logs.
nlohmann::json ProgramJson(const PolicyEngine& engine);
std::string ProgramSummary(const PolicyEngine& engine);

// The answer of a route that is not a model surface. `trusted`: the
// request may reload (from loopback, or with the admin token).
// GET /admin/limits: every counter's usage (`kt limits show`), from the
// backend in use. Trusted callers only, as reload: keys name callers.
asio::awaitable<Response> LimitsResponse(Gateway* g, Exchange* x, bool keep_alive, bool trusted);
Response AdminResponse(Gateway* g, Handler handler, Exchange* x, bool keep_alive, bool trusted);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_ADMIN_H_
