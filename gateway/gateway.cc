// `kt gateway run`: start-up, the accept loop, signals and shutdown.
#include "gateway/gateway.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "compiler/compiler.h"
#include "gateway/internal/admin.h"
#include "gateway/internal/redis_limits.h"
#include "gateway/internal/router.h"
#include "gateway/internal/session.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

using tcp = asio::ip::tcp;

namespace {

bool ParseListen(const std::string& listen, std::string* host, std::string* port) {
  std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  *port = listen.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (host->empty()) *host = "0.0.0.0";
  return !port->empty();
}

asio::awaitable<void> Accept(tcp::acceptor* acceptor, Gateway* g) {
  std::size_t next = 0;
  while (!g->stopping.load()) {
    beast::error_code ec;
    // Round-robin: the new socket belongs to the next worker's io_context.
    const std::size_t worker = next++ % g->ios.size();
    tcp::socket socket = co_await acceptor->async_accept(
        g->io(worker), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (g->stopping.load() || ec == asio::error::operation_aborted) break;
      continue;  // EMFILE and friends: keep serving the connections we have
    }
    socket.set_option(tcp::no_delay(true), ec);
    UpstreamPool* pool = g->pools[worker].get();
    asio::co_spawn(g->io(worker), Session(std::move(socket), g, pool), [](std::exception_ptr e) {
      // A bug must not take the process down with it, and must not pass
      // unnoticed either.
      if (e == nullptr) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::cerr << "kt gateway: internal error in a connection: " << ex.what() << std::endl;
      }
    });
  }
}

}  // namespace

namespace {

// One running gateway: its state, its listening socket and the signals it
// answers. Run's phases, each a member: start (policies, audit log, threads,
// the socket), then serve until a signal drains it.
class Runner {
 public:
  explicit Runner(const Options& options)
      : options_(options), g_(options), acceptor_(Io()), hup_(Io(), SIGHUP),
        signals_(Io(), SIGINT, SIGTERM), drain_(Io()) {}

  // Policies first: a gateway that cannot enforce must not start serving.
  // Returns the exit code of a failed start, or 0.
  int Start() {
    g_.started_us = NowMicros();
    std::string error;
    state_ = LoadState(options_, &error);
    if (state_ == nullptr) {
      std::cerr << error << "kt gateway: the policy set has errors; not starting\n";
      return 2;
    }
    Url u;
    if (!options_.upstream.empty() && !ParseUrl(options_.upstream, &u)) {
      std::cerr << "kt gateway: --upstream must be an http:// or https:// URL\n";
      return 2;
    }
    if (!g_.audit.Open(options_.audit_log, options_.audit_fsync, &error)) {
      std::cerr << "kt gateway: " << error << "\n";
      return 2;
    }
    for (int i = 1; i < threads_; ++i) AddThread();
    if (!OpenLimits(&error)) {
      std::cerr << "kt gateway: " << error << "\n";
      return 2;
    }
    return Listen();
  }

  int Serve() {
    g_.Install(state_);
    Announce();
    asio::co_spawn(g_.io(), Accept(&acceptor_, &g_), asio::detached);
    WaitHup();
    WaitStop();
    // Workers without connections must not return from run() early.
    for (auto& io : g_.ios) guards_.push_back(asio::make_work_guard(*io));
    std::vector<std::thread> workers;
    for (int i = 1; i < threads_; ++i) workers.emplace_back([this, i] { g_.io(i).run(); });
    g_.io().run();
    for (auto& t : workers) t.join();
    std::cerr << "kt gateway: stopped" << std::endl;
    return 0;
  }

 private:
  // io(0) exists before the members that need it: it also runs the
  // acceptor and the signals.
  asio::io_context& Io() {
    threads_ = options_.threads > 0
                   ? options_.threads
                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (g_.ios.empty()) AddThread();
    return g_.io();
  }

  // The shared limits backend, once every io thread exists: one Redis
  // client per thread.
  bool OpenLimits(std::string* error) {
    if (options_.limits_backend == "memory") return true;
    RedisLimitsOptions r;
    if (!ParseRedisUrl(options_.limits_backend, &r.url, error)) {
      *error = "--limits-backend: " + *error;
      return false;
    }
    const std::string& m = options_.limits_fail_mode;
    if (m != "closed" && m != "open" && m != "local") {
      *error = "--limits-fail-mode must be closed, open or local";
      return false;
    }
    r.client.timeout_ms = options_.limits_timeout_ms;
    r.ns = options_.limits_namespace;
    std::vector<asio::io_context*> ios;
    for (auto& io : g_.ios) ios.push_back(io.get());
    LimitsFailMode mode = m == "closed" ? LimitsFailMode::kClosed
                          : m == "open" ? LimitsFailMode::kOpen
                                        : LimitsFailMode::kLocal;
    g_.limit_store = NewGuardedStore(NewRedisStore(ios, r), mode,
                                     std::max(1, options_.limits_replicas), &g_.limit_guard);
    std::cerr << "kt gateway: limits in " << RedactedUrl(r.url) << " (fail mode " << m << ")"
              << std::endl;
    return true;
  }

  void AddThread() {
    g_.ios.push_back(std::make_unique<asio::io_context>(1));
    std::string error;
    g_.pools.push_back(std::make_unique<UpstreamPool>(g_.ios.back().get(), options_.ca_file, &error));
    if (!error.empty()) std::cerr << "kt gateway: warning: " << error << "\n";
  }

  int Listen() {
    std::string host, port;
    if (!ParseListen(options_.listen, &host, &port)) {
      std::cerr << "kt gateway: --listen must be HOST:PORT\n";
      return 2;
    }
    beast::error_code ec;
    tcp::resolver resolver(g_.io());
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec || endpoints.empty()) {
      std::cerr << "kt gateway: cannot resolve " << options_.listen << ": " << ec.message() << "\n";
      return 2;
    }
    tcp::endpoint ep = endpoints.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      std::cerr << "kt gateway: cannot listen on " << options_.listen << ": " << ec.message()
                << "\n";
      return 2;
    }
    return 0;
  }

  void Announce() {
    const PolicyEngine& engine = *state_->engine;
    std::cerr << "kt gateway: listening on " << acceptor_.local_endpoint().address().to_string()
              << ":" << acceptor_.local_endpoint().port() << " with " << engine.policy_count()
              << " policies from " << state_->files << " files (version " << engine.version()
              << ")";
    if (!options_.upstream.empty()) std::cerr << ", upstream " << options_.upstream;
    std::cerr << "\nkt gateway: policy program: " << ProgramSummary(engine) << std::endl;
  }

  // SIGHUP: reopen the audit log (rotation) and reload the policies; a
  // failed reload keeps the set in force and says why.
  void WaitHup() {
    hup_.async_wait([this](const beast::error_code& e, int) {
      if (e) return;
      std::string why;
      if (!g_.audit.Reopen(&why)) std::cerr << "kt gateway: " << why << std::endl;
      if (Reload(&g_, &why)) {
        std::cerr << "kt gateway: SIGHUP: reloaded policies (version "
                  << g_.Current()->engine->version() << ")" << std::endl;
      } else {
        std::cerr << why << "kt gateway: SIGHUP: reload failed; still serving version "
                  << g_.Current()->engine->version() << std::endl;
      }
      if (!g_.stopping.load()) WaitHup();
    });
  }

  // Shutdown: stop accepting, close idle keep-alive connections, let the
  // requests in flight finish (bounded by drain_timeout_ms), then stop.
  void WaitStop() {
    signals_.async_wait([this](const beast::error_code& e, int sig) {
      if (e) return;
      std::cerr << "kt gateway: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
                << ": draining in-flight requests" << std::endl;
      g_.stopping = true;
      beast::error_code ignored;
      acceptor_.close(ignored);
      hup_.cancel(ignored);
      drain_deadline_ = MonoMicros() + static_cast<int64_t>(options_.drain_timeout_ms * 1000);
      WaitDrained();
    });
  }

  void WaitDrained() {
    {
      std::lock_guard lock(g_.idle_mu);
      for (beast::tcp_stream* s : g_.idle) {
        beast::error_code ignored;
        s->socket().shutdown(tcp::socket::shutdown_both, ignored);
      }
    }
    if (g_.sessions.load() == 0 || MonoMicros() > drain_deadline_) {
      guards_.clear();
      for (auto& io : g_.ios) io->stop();
      return;
    }
    drain_.expires_after(std::chrono::milliseconds(20));
    drain_.async_wait([this](const beast::error_code&) { WaitDrained(); });
  }

  const Options& options_;
  int threads_ = 1;
  Gateway g_;
  std::shared_ptr<PolicyState> state_;
  tcp::acceptor acceptor_;
  asio::signal_set hup_;
  asio::signal_set signals_;
  asio::steady_timer drain_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  int64_t drain_deadline_ = 0;
};

}  // namespace

int Run(const Options& options) {
  Runner runner(options);
  if (int code = runner.Start(); code != 0) return code;
  return runner.Serve();
}

std::string RouteCensus() { return RenderRouteTable(); }

namespace {

// One GET on loopback or the operator's network, bounded in time.
bool FetchJson(const Url& u, const std::string& target, const std::string& token, Json* out,
               std::string* error) {
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(tcp::resolver(io).resolve(u.host, u.port));
    http::request<http::empty_body> req{http::verb::get, u.path + target, 11};
    req.set(http::field::host, u.host);
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    http::read(stream, buf, parser);
    const auto& res = parser.get();
    *out = Json::parse(res.body(), nullptr, false);
    if (res.result_int() != 200 || out->is_discarded()) {
      *error = "the gateway answered " + std::to_string(res.result_int()) + ": " +
               res.body().substr(0, 300);
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    *error = std::string("cannot reach the gateway: ") + e.what();
    return false;
  }
}

void PrintLimitsTable(const Json& j) {
  std::printf("backend: %s\n", j.value("backend", "").c_str());
  std::printf("%-24s %-8s %-24s %10s %12s %14s %14s\n", "NAME", "KIND", "KEY", "REQUESTS",
              "TOKENS", "SPENT_USD", "RESERVED_USD");
  for (const Json& r : j.value("counters", Json::array())) {
    std::printf("%-24s %-8s %-24s %10s %12lld %14s %14s\n", r.value("name", "").c_str(),
                r.value("kind", "").c_str(), r.value("key", "").c_str(),
                r.contains("requests") ? std::to_string(r.value("requests", 0LL)).c_str() : "-",
                static_cast<long long>(r.value("tokens", 0LL)),
                r.value("spent_usd", "-").c_str(), r.value("reserved_usd", "-").c_str());
  }
}

}  // namespace

int ShowLimits(const std::string& gateway_url, const std::string& admin_token, bool json) {
  Url u;
  if (!ParseUrl(gateway_url, &u) || u.tls) {
    std::cerr << "kt limits show: --gateway must be an http:// URL\n";
    return 2;
  }
  Json j;
  std::string error;
  if (!FetchJson(u, "/admin/limits", admin_token, &j, &error)) {
    std::cerr << "kt limits show: " << error << "\n";
    return 1;
  }
  if (json) {
    std::cout << j.dump(2) << "\n";
  } else {
    PrintLimitsTable(j);
  }
  return 0;
}

}  // namespace kt::gateway
