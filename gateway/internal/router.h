// The route table: the single source of the gateway's routes, and the
// surface census — for each route, its methods, the body shapes it takes and
// gives, and the stages that run on it. `kt gateway routes` prints it, and
// docs/gateway.md carries the same table (a test compares them). A path not
// in the table is a 404 naming it.
#ifndef KT_GATEWAY_INTERNAL_ROUTER_H_
#define KT_GATEWAY_INTERNAL_ROUTER_H_

#include <string>
#include <string_view>
#include <vector>

#include "gateway/internal/surface.h"

namespace kt::gateway {

enum class Handler { kSurface, kModels, kHealth, kMetrics, kReload, kLimits, kHealthz, kReadyz };

struct RouteInfo {
  std::string_view path;  // also served without the `/v1` prefix for surfaces
  std::string_view method;
  Handler handler;
  const Surface* surface;  // kSurface only
  std::string_view takes;
  std::string_view gives;
  std::string_view stages;  // "input, tool_call, output", or "—"
  std::string_view unread;  // what no stage reads (audited as not_evaluated)
};

const std::vector<RouteInfo>& RouteTable();

// The route of a path (without its query), or null. `*method_ok` says
// whether the method is the route's.
const RouteInfo* FindRoute(std::string_view path, std::string_view method, bool* method_ok);

// The route of a request target: its path, without the query. RFC 9112
// §3.2.2 has a server accept the absolute form (`http://host/v1/…`) as well
// as the origin form (`/v1/…`); the route is the same.
std::string RoutePath(std::string_view target);

// The table as Markdown (`kt gateway routes`, docs/gateway.md).
std::string RenderRouteTable();

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_ROUTER_H_
