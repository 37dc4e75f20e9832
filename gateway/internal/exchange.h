// One exchange as the gateway records it, whatever the wire surface: what
// the audit trail, the metrics and the response headers need, and the
// helpers that fill it. Shared by the pipeline and the stream relays.
#ifndef KT_GATEWAY_INTERNAL_EXCHANGE_H_
#define KT_GATEWAY_INTERNAL_EXCHANGE_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "compiler/compiler.h"
#include "gateway/internal/state.h"

namespace kt::gateway {

using Json = nlohmann::json;

// Everything the audit trail and the response headers need about one request.
struct Exchange {
  UpstreamPool* pool = nullptr;  // the session's thread's upstream connections
  std::string request_id;
  std::string correlation_id;
  std::string request_source;
  std::string traceparent;
  std::string client_key;  // the bearer token (or x-api-key); never logged
  std::string anthropic_beta;  // passed to an Anthropic upstream
  std::string key_fingerprint;
  std::string method;
  std::string path;
  std::string model;
  std::string provider;
  std::string surface;       // the client's wire surface: chat | responses | …
  std::string upstream_api;  // what the provider was sent, when it differs (translated)
  bool stream = false;
  bool stream_started = false;  // the stream's response header went out
  int status = 0;
  std::string outcome = "allowed";  // allowed | blocked | error | not_evaluated | …
  std::string error_code;
  std::string error_message;
  int64_t t0 = 0;
  int64_t policy_us = 0;
  int64_t upstream_us = 0;
  Json usage;
  Json limits;  // the limits step: backend, reservation, settlement
  Json decisions = Json::array();
  std::string policy_version;
  bool redacted = false;
  bool stream_capped = false;
  std::size_t max_held = 0;
  Json prompt;  // only with --audit-prompts
  // Parts of the request or answer no stage could read (an image, audio,
  // token ids, an unknown stream event): where, and why.
  Json not_evaluated = Json::array();
};

// JSON text; invalid UTF-8 from a client or an upstream is replaced, never
// a reason to lose a response or a record.
std::string Dump(const Json& j);

// What policies read besides the body: headers (lower-cased; keys never),
// the correlation id, the key's fingerprint.
EvalContext ContextOf(const Exchange& x, const http::request<http::string_body>& req);

// Records a part no stage could read.
void NotEvaluated(Exchange* x, std::string where, std::string reason);

// Adds a stage's decision to the exchange's audit decisions.
void Record(Exchange* x, const Decision& d);

// The request's audit records (its decisions, then the request event) in
// one write, and the metrics from the same facts.
void WriteAudit(Gateway* g, const Exchange& x);

// The envelope code of an upstream failure.
const char* UpstreamCodeOf(UpstreamFailure f);

// A blocking policy's code, or the stage's default.
std::string PolicyCode(const PolicyHit& h, const char* fallback);

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_EXCHANGE_H_
