#include "gateway/internal/router.h"

#include <boost/beast/core/string.hpp>

namespace kt::gateway {

const std::vector<RouteInfo>& RouteTable() {
  static const std::vector<RouteInfo> table = {
      {"/v1/chat/completions", "POST", Handler::kSurface, &ChatSurface(),
       "chat request (messages; text, image and audio parts)",
       "chat.completion, or SSE chat.completion.chunk", "input, tool_call, output",
       "image, audio and file parts"},
      {"/v1/responses", "POST", Handler::kSurface, &ResponsesSurface(),
       "responses request (input as text or items, instructions, function tools)",
       "response, or SSE semantic events", "input, tool_call, output",
       "image, file and audio parts; items other than messages and function calls; answer items "
       "other than messages and function calls; unknown stream events"},
      {"/v1/completions", "POST", Handler::kSurface, &CompletionsSurface(),
       "legacy completions request (prompt as text or token ids)",
       "text_completion, or SSE text_completion chunks", "input, output", "token ids"},
      {"/v1/embeddings", "POST", Handler::kSurface, &EmbeddingsSurface(),
       "embeddings request (input as text or token ids)", "embedding list", "input",
       "token ids; the vectors"},
      {"/v1/messages", "POST", Handler::kSurface, &MessagesSurface(),
       "Anthropic Messages request (system, text, image, tool_use and tool_result blocks)",
       "message, or SSE Messages events", "input, tool_call, output",
       "image and document blocks; thinking blocks (recorded); unknown stream events"},
      {"/v1/messages/count_tokens", "POST", Handler::kSurface, &CountTokensSurface(),
       "Anthropic Messages request", "token count", "input", "as /v1/messages"},
      {"/v1/models", "GET", Handler::kModels, nullptr, "—", "model list", "—", "—"},
      {"/health", "GET", Handler::kHealth, nullptr, "—", "status JSON", "—", "—"},
      {"/metrics", "GET", Handler::kMetrics, nullptr, "—", "Prometheus text", "—", "—"},
      {"/admin/reload", "POST", Handler::kReload, nullptr, "—", "reload outcome JSON", "—", "—"},
      {"/admin/limits", "GET", Handler::kLimits, nullptr, "—", "usage per limit, budget and key", "—",
       "—"},
      {"/healthz", "GET", Handler::kHealthz, nullptr, "—", "liveness JSON", "—", "—"},
      {"/readyz", "GET", Handler::kReadyz, nullptr, "—", "readiness JSON", "—", "—"},
  };
  return table;
}

const RouteInfo* FindRoute(std::string_view path, std::string_view method, bool* method_ok) {
  for (const RouteInfo& r : RouteTable()) {
    // The model surfaces also answer without `/v1`, as OpenAI-compatible
    // servers do for clients configured with the bare host.
    const bool bare = r.handler == Handler::kSurface && path == r.path.substr(3);
    if (path != r.path && !bare) continue;
    *method_ok = method == r.method;
    return &r;
  }
  return nullptr;
}

std::string RoutePath(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() &&
        boost::beast::iequals(boost::beast::string_view(target.data(), scheme.size()),
                              boost::beast::string_view(scheme.data(), scheme.size()))) {
      std::size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? "/" : target.substr(slash);
      break;
    }
  }
  return std::string(target.substr(0, target.find('?')));
}

std::string RenderRouteTable() {
  std::string out =
      "| route | method | takes | gives | stages | not evaluated (audited) |\n"
      "|---|---|---|---|---|---|\n";
  for (const RouteInfo& r : RouteTable()) {
    out += "| `" + std::string(r.path) + "` | " + std::string(r.method) + " | " +
           std::string(r.takes) + " | " + std::string(r.gives) + " | " + std::string(r.stages) +
           " | " + std::string(r.unread) + " |\n";
  }
  return out;
}

}  // namespace kt::gateway
