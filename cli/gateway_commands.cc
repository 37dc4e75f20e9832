// `kt gateway run`: the gateway's command line.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "gateway/gateway.h"

namespace kt::cli {

void AddGatewayCommands(CLI::App* app, CommonOptions* common, int* exit_code) {
  CLI::App* gateway = app->add_subcommand("gateway", "the OpenAI-compatible policy gateway");
  gateway->require_subcommand(1);
  CLI::App* routes = gateway->add_subcommand(
      "routes", "print the route table: methods, bodies and the stages each route runs");
  routes->callback([exit_code] {
    std::cout << gateway::RouteCensus();
    *exit_code = 0;
  });
  CLI::App* run = gateway->add_subcommand("run", "serve the OpenAI API surfaces, enforcing policies");
  auto options = std::make_shared<gateway::Options>();
  auto fail_mode = std::make_shared<std::string>("block");
  run->add_option("--listen", options->listen, "HOST:PORT to listen on")->capture_default_str();
  run->add_option("--policy", options->policy_paths, "a .ktp file or a directory (repeatable)")
      ->required();
  run->add_option("--upstream", options->upstream,
                  "send every model to this OpenAI-compatible base URL (ahead of providers)");
  run->add_option("--upstream-apis", options->upstream_apis,
                  "the surfaces --upstream speaks itself (chat, responses, embeddings, "
                  "completions; default all); the others are translated to chat")
      ->delimiter(',')
      ->check(CLI::IsMember({"chat", "responses", "embeddings", "completions", "messages"}));
  run->add_option("--upstream-api-key", options->upstream_api_key,
                  "key for --upstream (default: $KT_UPSTREAM_API_KEY, else the client's)");
  run->add_option("--fail-mode", *fail_mode,
                  "when a policy cannot be evaluated: block (fail closed) or allow")
      ->check(CLI::IsMember({"block", "allow"}))
      ->capture_default_str();
  run->add_option("--limits-backend", options->limits_backend,
                  "where limits and budgets count: memory, or redis://[:password@]host:port/db "
                  "(rediss:// for TLS) shared by every replica")
      ->capture_default_str();
  run->add_option("--limits-fail-mode", options->limits_fail_mode,
                  "when Redis does not answer: closed (503), open (admit uncounted) or local "
                  "(this replica's counters, budgets divided by --limits-replicas)")
      ->check(CLI::IsMember({"closed", "open", "local"}))
      ->capture_default_str();
  run->add_option("--limits-replicas", options->limits_replicas,
                  "replicas sharing the budgets (local fail mode: each counts 1/N)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  run->add_option("--limits-timeout-ms", options->limits_timeout_ms,
                  "one Redis round trip, at most")
      ->capture_default_str();
  run->add_option("--limits-namespace", options->limits_namespace, "the Redis key prefix")
      ->capture_default_str();
  run->add_option("--max-concurrency", options->max_concurrency,
                  "requests in flight before 503 overloaded")
      ->capture_default_str();
  run->add_option("--threads", options->threads, "worker threads (0: one per core)")
      ->capture_default_str();
  run->add_option("--audit-log", options->audit_log, "JSONL audit trail ('-': stdout)")
      ->capture_default_str();
  run->add_flag("--audit-fsync", options->audit_fsync, "fsync the audit log after every record");
  run->add_flag("--audit-prompts", options->audit_prompts,
                "record prompt text in the audit trail (off: prompts are never written)");
  run->add_option("--max-body-bytes", options->max_body_bytes, "largest request body (413 above)")
      ->capture_default_str();
  run->add_option("--max-upstream-body-bytes", options->max_upstream_body_bytes,
                  "largest upstream response body (502 above)")
      ->capture_default_str();
  run->add_option("--client-timeout-ms", options->client_timeout_ms,
                  "time to receive one request (408 after)")
      ->capture_default_str();
  run->add_option("--idle-timeout-ms", options->idle_timeout_ms,
                  "keep-alive connection idle time between requests")
      ->capture_default_str();
  run->add_option("--connect-timeout-ms", options->connect_timeout_ms, "upstream connect timeout")
      ->capture_default_str();
  run->add_option("--first-byte-timeout-ms", options->first_byte_timeout_ms,
                  "upstream time to response headers")
      ->capture_default_str();
  run->add_option("--total-timeout-ms", options->total_timeout_ms,
                  "upstream timeout for the whole response")
      ->capture_default_str();
  run->add_option("--stream-max-hold", options->stream_max_hold,
                  "bytes of streamed output held back at most")
      ->capture_default_str();
  run->add_option("--ca-file", options->ca_file, "extra CA certificates for upstream TLS");
  run->add_option("--admin-token", options->admin_token,
                  "accept POST /admin/reload from anywhere with this bearer token "
                  "(default: $KT_ADMIN_TOKEN; without one, loopback only)");
  run->add_option("--stdlib", common->stdlib, "directory that contains std/ (default: built in)");
  auto cache_dir = std::make_shared<std::optional<std::string>>();
  run->add_option("--cache-dir", *cache_dir,
                  "object cache of compiled policy programs (default: $KT_CACHE_DIR, "
                  "$XDG_CACHE_HOME/kt or ~/.cache/kt; empty: none)");
  run->add_flag("--interpret", options->interpret,
                "evaluate conditions with the AST interpreter instead of native code");
  run->callback([options, fail_mode, common, exit_code, cache_dir] {
    options->object_cache_dir = cache_dir->has_value() ? **cache_dir : DefaultObjectCacheDir();
    options->fail_open = *fail_mode == "allow";
    options->stdlib_paths = StdlibPaths(common->stdlib);
    if (options->upstream_api_key.empty()) {
      if (const char* k = std::getenv("KT_UPSTREAM_API_KEY")) options->upstream_api_key = k;
    }
    if (options->admin_token.empty()) {
      if (const char* t = std::getenv("KT_ADMIN_TOKEN")) options->admin_token = t;
    }
    *exit_code = gateway::Run(*options);
  });

  CLI::App* limits = app->add_subcommand("limits", "the gateway's limits and budgets");
  limits->require_subcommand(1);
  CLI::App* show = limits->add_subcommand(
      "show", "current usage per limit, budget and key (from the gateway's backend: memory or Redis)");
  auto url = std::make_shared<std::string>("http://127.0.0.1:41002");
  auto token = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  show->add_option("--gateway", *url, "the gateway's base URL")->capture_default_str();
  show->add_option("--admin-token", *token, "bearer token (default: $KT_ADMIN_TOKEN)");
  show->add_flag("--json", *as_json, "print the gateway's JSON");
  show->callback([url, token, as_json, exit_code] {
    if (token->empty()) {
      if (const char* t = std::getenv("KT_ADMIN_TOKEN")) *token = t;
    }
    *exit_code = gateway::ShowLimits(*url, *token, *as_json);
  });

  CLI::App* audit = app->add_subcommand("audit", "the gateway's audit trail");
  audit->require_subcommand(1);
  CLI::App* verify = audit->add_subcommand("verify", "check an audit log's hash chain");
  auto path = std::make_shared<std::string>();
  auto head = std::make_shared<std::string>();
  verify->add_option("PATH", *path, "the JSONL audit log")->required();
  verify->add_option("--head", *head,
                     "the chain head recorded elsewhere (audit.head of GET /health): the last "
                     "line must hash to it");
  verify->callback([path, head, exit_code] {
    gateway::AuditVerification v = gateway::VerifyAuditLog(*path, *head);
    if (v.ok) {
      std::cout << *path << ": ok: " << v.lines << " lines, hash chain intact"
                << (v.continues ? " (continues a rotated log)" : "") << "\n";
      *exit_code = 0;
    } else if (v.bad_line == 0) {
      std::cerr << "kt audit verify: " << v.problem << "\n";
      *exit_code = 2;
    } else {
      std::cout << *path << ":" << v.bad_line << ": chain broken: " << v.problem << "\n";
      *exit_code = 1;
    }
  });
}

}  // namespace kt::cli
