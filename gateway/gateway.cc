// `kt gateway run`: start-up, the accept loop, signals and shutdown.
#include "gateway/gateway.h"

#include <algorithm>
#include <csignal>
#include <iostream>
#include <thread>

#include "compiler/compiler.h"
#include "gateway/internal/admin.h"
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

int Run(const Options& options) {
  Gateway g(options);
  g.started_us = NowMicros();

  // Policies first: a gateway that cannot enforce must not start serving.
  std::string error;
  std::shared_ptr<PolicyState> state = LoadState(options, nullptr, &error);
  if (state == nullptr) {
    std::cerr << error << "kt gateway: the policy set has errors; not starting\n";
    return 2;
  }
  const PolicyEngine& engine = *state->engine;
  if (!options.upstream.empty()) {
    Url u;
    if (!ParseUrl(options.upstream, &u)) {
      std::cerr << "kt gateway: --upstream must be an http:// or https:// URL\n";
      return 2;
    }
  }
  if (!g.audit.Open(options.audit_log, options.audit_fsync, &error)) {
    std::cerr << "kt gateway: " << error << "\n";
    return 2;
  }
  const int threads = options.threads > 0
                          ? options.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) {
    g.ios.push_back(std::make_unique<asio::io_context>(1));
    error.clear();
    g.pools.push_back(std::make_unique<UpstreamPool>(g.ios.back().get(), options.ca_file, &error));
  }
  if (!error.empty()) std::cerr << "kt gateway: warning: " << error << "\n";

  std::string host, port;
  if (!ParseListen(options.listen, &host, &port)) {
    std::cerr << "kt gateway: --listen must be HOST:PORT\n";
    return 2;
  }
  tcp::acceptor acceptor(g.io());
  beast::error_code ec;
  tcp::resolver resolver(g.io());
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec || endpoints.empty()) {
    std::cerr << "kt gateway: cannot resolve " << options.listen << ": " << ec.message() << "\n";
    return 2;
  }
  tcp::endpoint ep = endpoints.begin()->endpoint();
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "kt gateway: cannot listen on " << options.listen << ": " << ec.message() << "\n";
    return 2;
  }
  g.Install(state);
  std::cerr << "kt gateway: listening on " << acceptor.local_endpoint().address().to_string() << ":"
            << acceptor.local_endpoint().port() << " with " << engine.policy_count()
            << " policies from " << state->files << " files (version " << engine.version() << ")";
  if (!options.upstream.empty()) std::cerr << ", upstream " << options.upstream;
  std::cerr << "\nkt gateway: policy program: " << ProgramSummary(engine) << std::endl;

  asio::co_spawn(g.io(), Accept(&acceptor, &g), asio::detached);

  // SIGHUP: reopen the audit log (rotation) and reload the policies; a
  // failed reload keeps the set in force and says why.
  asio::signal_set hup(g.io(), SIGHUP);
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](const beast::error_code& e, int) {
      if (e) return;
      std::string why;
      if (!g.audit.Reopen(&why)) std::cerr << "kt gateway: " << why << std::endl;
      if (Reload(&g, &why)) {
        std::cerr << "kt gateway: SIGHUP: reloaded policies (version "
                  << g.Current()->engine->version() << ")" << std::endl;
      } else {
        std::cerr << why << "kt gateway: SIGHUP: reload failed; still serving version "
                  << g.Current()->engine->version() << std::endl;
      }
      if (!g.stopping.load()) wait_hup();
    });
  };
  wait_hup();

  // Shutdown: stop accepting, close idle keep-alive connections, let the
  // requests in flight finish (bounded by drain_timeout_ms), then stop.
  asio::signal_set signals(g.io(), SIGINT, SIGTERM);
  asio::steady_timer drain(g.io());
  // Workers without connections must not return from run() early.
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& io : g.ios) guards.push_back(asio::make_work_guard(*io));
  std::function<void()> wait_drained;
  int64_t drain_deadline = 0;
  wait_drained = [&] {
    {
      std::lock_guard lock(g.idle_mu);
      for (beast::tcp_stream* s : g.idle) {
        beast::error_code ignored;
        s->socket().shutdown(tcp::socket::shutdown_both, ignored);
      }
    }
    if (g.sessions.load() == 0 || MonoMicros() > drain_deadline) {
      guards.clear();
      for (auto& io : g.ios) io->stop();
      return;
    }
    drain.expires_after(std::chrono::milliseconds(20));
    drain.async_wait([&](const beast::error_code&) { wait_drained(); });
  };
  signals.async_wait([&](const beast::error_code& e, int sig) {
    if (e) return;
    std::cerr << "kt gateway: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
              << ": draining in-flight requests" << std::endl;
    g.stopping = true;
    beast::error_code ignored;
    acceptor.close(ignored);
    hup.cancel(ignored);
    drain_deadline = MonoMicros() + static_cast<int64_t>(options.drain_timeout_ms * 1000);
    wait_drained();
  });

  std::vector<std::thread> workers;
  for (int i = 1; i < threads; ++i) workers.emplace_back([&g, i] { g.io(i).run(); });
  g.io().run();
  for (auto& t : workers) t.join();
  std::cerr << "kt gateway: stopped" << std::endl;
  return 0;
}

std::string RouteCensus() { return RenderRouteTable(); }

}  // namespace kt::gateway
