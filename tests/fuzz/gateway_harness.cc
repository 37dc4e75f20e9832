#include "tests/fuzz/gateway_harness.h"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "gateway/internal/admin.h"
#include "gateway/internal/session.h"

namespace kt::fuzz {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Far above anything a case needs (they all run on loopback with zero
// latency); a case still running then is stuck.
constexpr auto kHangBound = std::chrono::seconds(20);
// What the harness keeps of an answer; the rest is read and dropped.
constexpr std::size_t kMaxKeep = 4u << 20;

auto Redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

[[noreturn]] void Die(const std::string& why) {
  std::cerr << "gateway harness: " << why << std::endl;
  std::abort();
}

// One upstream connection: read the request, send the canned bytes, close.
asio::awaitable<void> AnswerOnce(tcp::socket socket, std::string reply) {
  beast::error_code ec;
  beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  co_await http::async_read(socket, buffer, parser, Redirect(ec));
  co_await asio::async_write(socket, asio::buffer(reply), Redirect(ec));
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

asio::awaitable<void> ServeUpstream(tcp::acceptor* acceptor, const std::string* reply) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor->async_accept(Redirect(ec));
    if (ec) co_return;
    asio::co_spawn(acceptor->get_executor(), AnswerOnce(std::move(socket), *reply),
                   asio::detached);
  }
}

asio::awaitable<void> WriteAll(tcp::socket* socket, std::string_view bytes) {
  beast::error_code ec;
  co_await asio::async_write(*socket, asio::buffer(bytes.data(), bytes.size()), Redirect(ec));
  socket->shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> ReadAll(tcp::socket* socket, std::string* out) {
  std::array<char, 16 << 10> buf;
  for (;;) {
    beast::error_code ec;
    std::size_t n = co_await socket->async_read_some(asio::buffer(buf), Redirect(ec));
    if (out->size() < kMaxKeep) out->append(buf.data(), std::min(n, kMaxKeep - out->size()));
    if (ec) co_return;
  }
}

tcp::acceptor Listen(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  acceptor.listen();
  return acceptor;
}

}  // namespace

struct GatewayHarness::State {
  explicit State(const gateway::Options& o) : g(o) {}
  gateway::Gateway g;
  std::unique_ptr<tcp::acceptor> listener;
  std::unique_ptr<tcp::acceptor> upstream;
  std::string reply;
};

std::string SourceRoot() { return KT_SOURCE_DIR; }

bool SplitAnswers(std::string_view bytes, std::vector<Answer>* out, std::string* why) {
  while (!bytes.empty()) {
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(kMaxKeep);
    while (!parser.is_done()) {
      beast::error_code ec;
      std::size_t used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(used);
      if (ec == http::error::need_more && used == 0) {
        // Nothing more to give: only a body that ends at the close may end here.
        parser.put_eof(ec);
        if (ec) {
          *why = "response " + std::to_string(out->size() + 1) + " is cut short (" +
                 ec.message() + ")";
          return false;
        }
        break;
      }
      if (ec && ec != http::error::need_more) {
        *why = "response " + std::to_string(out->size() + 1) + " is malformed: " + ec.message();
        return false;
      }
    }
    const auto& res = parser.get();
    out->push_back({static_cast<int>(res.result_int()), std::string(res[http::field::content_type]),
                    res.body()});
  }
  return true;
}

gateway::Options GatewayHarness::BaseOptions() {
  gateway::Options o;
  o.listen = "127.0.0.1:0";
  o.threads = 1;
  o.audit_log = "/dev/null";
  o.stdlib_paths = {SourceRoot() + "/stdlib"};
  o.client_timeout_ms = 2000;
  o.idle_timeout_ms = 2000;
  o.connect_timeout_ms = 2000;
  o.first_byte_timeout_ms = 5000;
  o.total_timeout_ms = 10000;
  o.drain_timeout_ms = 0;
  return o;
}

GatewayHarness::GatewayHarness(gateway::Options options, bool fake_upstream) {
  auto io = std::make_unique<asio::io_context>(1);
  std::unique_ptr<tcp::acceptor> upstream;
  if (fake_upstream) {
    upstream = std::make_unique<tcp::acceptor>(Listen(*io));
    options.upstream = "http://127.0.0.1:" + std::to_string(upstream->local_endpoint().port()) +
                       "/v1";
  }
  s_ = std::make_unique<State>(options);
  gateway::Gateway& g = s_->g;
  std::string error;
  std::shared_ptr<gateway::PolicyState> state = gateway::LoadState(options, &error);
  if (state == nullptr) Die("the policy set does not load:\n" + error);
  if (!g.audit.Open(options.audit_log, false, &error)) Die(error);
  g.ios.push_back(std::move(io));
  g.pools.push_back(std::make_unique<gateway::UpstreamPool>(&g.io(), "", &error));
  g.Install(state);
  s_->listener = std::make_unique<tcp::acceptor>(Listen(g.io()));
  if (upstream != nullptr) {
    s_->upstream = std::move(upstream);
    asio::co_spawn(g.io(), ServeUpstream(s_->upstream.get(), &s_->reply), asio::detached);
  }
}

GatewayHarness::~GatewayHarness() = default;

uint64_t GatewayHarness::internal_errors() const { return s_->g.metrics.internal_errors.load(); }

void GatewayHarness::SetUpstreamReply(std::string_view bytes) { s_->reply.assign(bytes); }

std::string GatewayHarness::Roundtrip(std::string_view request) {
  gateway::Gateway& g = s_->g;
  asio::io_context& io = g.io();
  tcp::socket client(io);
  tcp::socket server(io);
  // Blocking calls on loopback; libFuzzer's timeout alarm can interrupt them.
  beast::error_code ec;
  do {
    client.close(ec);
    client.connect(s_->listener->local_endpoint(), ec);
  } while (ec == asio::error::interrupted);
  if (ec) Die("connect: " + ec.message());
  do {
    s_->listener->accept(server, ec);
  } while (ec == asio::error::interrupted);
  if (ec) Die("accept: " + ec.message());
  int running = 3;
  asio::co_spawn(io, gateway::Session(std::move(server), &g, g.pools[0].get()),
                 [&](std::exception_ptr e) {
                   --running;
                   if (e == nullptr) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& ex) {
                     Die(std::string("an exception escaped the session: ") + ex.what());
                   }
                 });
  std::string out;
  asio::co_spawn(io, WriteAll(&client, request), [&](std::exception_ptr) { --running; });
  asio::co_spawn(io, ReadAll(&client, &out), [&](std::exception_ptr) { --running; });
  const auto deadline = std::chrono::steady_clock::now() + kHangBound;
  io.restart();
  while (running > 0) {
    io.run_one_for(std::chrono::milliseconds(50));
    if (std::chrono::steady_clock::now() > deadline) Die("a case did not finish: a hang");
  }
  // KT_FUZZ_ECHO=1 shows each exchange (to see what a corpus exercises).
  if (std::getenv("KT_FUZZ_ECHO") != nullptr) {
    std::cerr << "=== sent " << request.size() << " bytes, the gateway wrote:\n" << out << "\n";
  }
  return out;
}

}  // namespace kt::fuzz
