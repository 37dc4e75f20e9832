// kt gateway facade: the only header other layers include from gateway/.
//
// Purpose. An OpenAI-compatible HTTP gateway that enforces a policy set on
// every model surface (chat completions, responses, completions,
// embeddings): the input before any upstream call, tool calls before the
// client sees them, and the output, also while it streams.
//
// Ownership and threads. `Run` owns everything it starts: one io_context and
// one upstream keep-alive pool per worker thread (a connection stays on one
// thread from accept to close), one coroutine per client connection, and the
// audit log. It returns after SIGINT/SIGTERM,
// once in-flight requests have finished (or `drain_timeout_ms` passed).
//
// Error channel. Start-up problems (policies that do not check, a port in
// use, an audit log that cannot be opened) are printed and returned as a
// non-zero exit code; request-time problems become HTTP error envelopes and
// audit records, never a crash.
#ifndef KT_GATEWAY_GATEWAY_H_
#define KT_GATEWAY_GATEWAY_H_

#include <cstddef>
#include <string>
#include <vector>

namespace kt::gateway {

struct Options {
  std::string listen = "0.0.0.0:41002";
  std::vector<std::string> policy_paths;  // files or directories of .ktp
  std::vector<std::string> stdlib_paths;
  // Compiled policy programs are cached here (empty: no cache); with
  // `interpret`, conditions are walked by the AST interpreter instead.
  std::string object_cache_dir;
  bool interpret = false;
  // Sends every model to this OpenAI-compatible base URL, ahead of the
  // policy set's providers.
  std::string upstream;
  std::string upstream_api_key;
  // The surfaces `upstream` speaks itself (empty: all); the others are
  // translated to chat completions.
  std::vector<std::string> upstream_apis;
  bool fail_open = false;      // --fail-mode allow: an evaluation error lets traffic through
  // Where limits and budgets count: "memory" (this process), or a
  // redis:// / rediss:// URL shared by every replica.
  std::string limits_backend = "memory";
  std::string limits_fail_mode = "closed";  // closed | open | local, when Redis fails
  int limits_replicas = 1;                  // local mode: each replica's share is 1/N
  double limits_timeout_ms = 50;            // one Redis round trip
  std::string limits_namespace = "kt";      // the Redis key prefix
  int max_concurrency = 1024;  // requests in flight; beyond it, 503
  int threads = 0;             // 0: one per core
  std::string audit_log = "kt-audit.jsonl";  // "-": stdout
  bool audit_fsync = false;                  // fsync after every audit write
  bool audit_prompts = false;                // record prompt text in the audit trail

  // Bounds on what a client may send and how long it may take.
  std::size_t max_body_bytes = 4u << 20;
  std::size_t max_header_bytes = 16u << 10;
  double client_timeout_ms = 30000;  // reading one request
  double idle_timeout_ms = 60000;    // a keep-alive connection between requests

  // Upstream bounds (a provider's `timeout` replaces total_timeout_ms).
  double connect_timeout_ms = 5000;
  double first_byte_timeout_ms = 60000;
  double total_timeout_ms = 600000;
  std::size_t max_upstream_body_bytes = 32u << 20;

  // Streamed output: the most the stream evaluator holds back before it
  // releases with what it knows (and records that it did).
  std::size_t stream_max_hold = 64u << 10;
  double drain_timeout_ms = 30000;
  std::string ca_file;  // extra CA bundle for upstream TLS (tests); system CAs otherwise
  // POST /admin/reload is accepted from loopback, or from anywhere with
  // `Authorization: Bearer <admin_token>` when one is set.
  std::string admin_token;
};

// Runs the gateway until SIGINT/SIGTERM. Returns the process exit code.
int Run(const Options& options);

// `kt limits show`: a running gateway's counters (GET /admin/limits at
// `gateway_url`), as a table or as JSON. Returns the process exit code.
int ShowLimits(const std::string& gateway_url, const std::string& admin_token, bool json);

// The route table, the census of what the gateway serves (`kt gateway
// routes`): each route's method, the bodies it takes and gives, and the
// stages that run on it, as a Markdown table.
std::string RouteCensus();

// `kt audit verify`: checks the hash chain of an audit log. Each line's
// `prev_hash` must be the SHA-256 of the line before it; the first line's
// must be the genesis value (64 zeros) unless the file continues a rotated
// one (`continues` is then true and the chain is checked from there).
struct AuditVerification {
  bool ok = false;
  std::size_t lines = 0;
  std::size_t bad_line = 0;  // 1-based; 0 when ok
  std::string problem;
  bool continues = false;
};
// With `expected_head` (the `audit.head` of GET /health, kept elsewhere),
// the last line must hash to it: that also catches truncation and an edited
// last line, which the chain alone cannot.
AuditVerification VerifyAuditLog(const std::string& path, const std::string& expected_head = "");

}  // namespace kt::gateway

#endif  // KT_GATEWAY_GATEWAY_H_
