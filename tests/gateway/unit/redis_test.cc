// The Redis client against a real redis-server (Debian's), started by each
// test on a free port and killed at its end: round trips, pipelining across
// the pool, error replies, scripts (EVALSHA, and EVAL after NOSCRIPT), AUTH
// and SELECT, the per-call deadline, a server killed and restarted under a
// live client, TLS with a self-signed certificate, the reply-size bound,
// destruction with calls pending, and the URL parser. Each test drives the
// client on an io_context run in the test thread.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gateway/internal/redis.h"

namespace kt::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Type = RedisReply::Type;

// ------------------------------------------------------------ the server

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// A blocking probe: the port accepts, and (plain servers) answers PING
// with anything at all (+PONG, or -NOAUTH when a password is required).
bool Answers(int port, bool plain) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (ok && plain) {
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c = 0;
    ok = write(fd, "PING\r\n", 6) == 6 && read(fd, &c, 1) == 1 && (c == '+' || c == '-');
  }
  close(fd);
  return ok;
}

class RedisServer {
 public:
  explicit RedisServer(std::string dir) : dir_(std::move(dir)) {}
  ~RedisServer() { Kill(); }

  // redis-server on 127.0.0.1:port, with `extra` arguments (later ones
  // override earlier ones). False when it exits or does not answer in 5 s.
  bool Start(int port, const std::vector<std::string>& extra, bool tls = false) {
    std::vector<std::string> args = {"redis-server", "--port", std::to_string(port), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                     dir_, "--enable-debug-command", "yes", "--logfile",
                                     dir_ + "/redis-" + std::to_string(port) + ".log"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      execvp("redis-server", argv.data());
      _exit(127);
    }
    const auto end = Clock::now() + milliseconds(5000);
    while (Clock::now() < end) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (Answers(port, !tls)) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

// ------------------------------------------------------------ driving

asio::awaitable<bool> DoCommand(RedisClient* c, std::vector<std::string> argv, RedisReply* r,
                                std::string* e) {
  const bool ok = co_await c->Command(std::move(argv), r, e);
  co_return ok;
}

asio::awaitable<bool> DoEval(RedisClient* c, std::string script, std::vector<std::string> keys,
                             std::vector<std::string> args, RedisReply* r, std::string* e) {
  const bool ok = co_await c->Eval(script, keys, args, r, e);
  co_return ok;
}

// Tests other than the timeout one use a generous deadline: the two cores
// are shared with other suites.
RedisOptions Generous() {
  RedisOptions o;
  o.timeout_ms = 3000;
  return o;
}

struct Outcome {
  bool finished = false;
  bool ok = false;
  RedisReply reply;
  std::string error;
};

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kt-redis-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    port_ = FreePort();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void StartServer(const std::vector<std::string>& extra = {}) {
    server_ = std::make_unique<RedisServer>(dir_);
    ASSERT_TRUE(server_->Start(port_, extra)) << "redis-server did not start on " << port_;
  }

  RedisUrl Url(int db = 0) const {
    RedisUrl u;
    u.port = port_;
    u.db = db;
    return u;
  }

  std::unique_ptr<RedisClient> Client(RedisUrl url, RedisOptions options = Generous(),
                                      asio::ssl::context* tls = nullptr) {
    return std::make_unique<RedisClient>(io_.get_executor(), std::move(url), options, tls);
  }

  // Runs the io_context until `done` (or 10 s pass).
  void DriveUntil(const std::function<bool()>& done) {
    const auto end = Clock::now() + milliseconds(10000);
    while (!done() && Clock::now() < end) {
      if (io_.stopped()) io_.restart();
      io_.run_one_for(milliseconds(20));
    }
  }

  void Pause(int ms) {
    asio::steady_timer t(io_, milliseconds(ms));
    bool fired = false;
    t.async_wait([&](const boost::system::error_code&) { fired = true; });
    DriveUntil([&] { return fired; });
  }

  void Spawn(RedisClient* c, std::vector<std::string> argv, Outcome* out) {
    asio::co_spawn(io_, DoCommand(c, std::move(argv), &out->reply, &out->error),
                   [out](std::exception_ptr e, bool ok) {
                     out->finished = true;
                     out->ok = ok && !e;
                   });
  }

  Outcome Cmd(RedisClient* c, std::vector<std::string> argv) {
    Outcome out;
    Spawn(c, std::move(argv), &out);
    DriveUntil([&] { return out.finished; });
    EXPECT_TRUE(out.finished) << "the call never completed";
    return out;
  }

  Outcome Eval(RedisClient* c, std::string script, std::vector<std::string> keys,
               std::vector<std::string> args) {
    Outcome out;
    asio::co_spawn(io_, DoEval(c, std::move(script), std::move(keys), std::move(args),
                               &out.reply, &out.error),
                   [&out](std::exception_ptr e, bool ok) {
                     out.finished = true;
                     out.ok = ok && !e;
                   });
    DriveUntil([&] { return out.finished; });
    EXPECT_TRUE(out.finished) << "the eval never completed";
    return out;
  }

  // A command that must succeed; its reply.
  RedisReply Must(RedisClient* c, std::vector<std::string> argv) {
    const std::string what = argv.empty() ? "" : argv[0];
    Outcome out = Cmd(c, std::move(argv));
    EXPECT_TRUE(out.ok) << what << ": " << out.error;
    return out.reply;
  }

  int64_t CommandCalls(RedisClient* c, const std::string& name) {
    RedisReply info = Must(c, {"INFO", "commandstats"});
    const std::string key = "cmdstat_" + name + ":calls=";
    const std::size_t at = info.str.find(key);
    if (at == std::string::npos) return 0;
    return std::atoll(info.str.c_str() + at + key.size());
  }

  asio::io_context io_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<RedisServer> server_;
};

bool AllFinished(const std::vector<Outcome>& out) {
  for (const Outcome& o : out) {
    if (!o.finished) return false;
  }
  return true;
}

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// ------------------------------------------------------------ commands

TEST_F(RedisTest, SetGetIncrRoundTrip) {
  StartServer();
  auto c = Client(Url());
  RedisReply r = Must(c.get(), {"SET", "greeting", "hello"});
  EXPECT_EQ(r.type, Type::kStatus);
  EXPECT_EQ(r.str, "OK");
  r = Must(c.get(), {"GET", "greeting"});
  EXPECT_EQ(r.type, Type::kString);
  EXPECT_EQ(r.str, "hello");
  EXPECT_EQ(Must(c.get(), {"GET", "missing"}).type, Type::kNil);
  r = Must(c.get(), {"INCR", "n"});
  EXPECT_EQ(r.type, Type::kInteger);
  EXPECT_EQ(r.integer, 1);
  EXPECT_EQ(Must(c.get(), {"INCRBY", "n", "41"}).integer, 42);
  // Binary-safe both ways: NUL and CRLF inside a value.
  const std::string binary("a\0b\r\nc", 6);
  Must(c.get(), {"SET", "bin", binary});
  EXPECT_EQ(Must(c.get(), {"GET", "bin"}).str, binary);
  Must(c.get(), {"RPUSH", "list", "x", "y"});
  r = Must(c.get(), {"LRANGE", "list", "0", "-1"});
  ASSERT_EQ(r.type, Type::kArray);
  ASSERT_EQ(r.elements.size(), 2u);
  EXPECT_EQ(r.elements[0].str, "x");
  EXPECT_EQ(r.elements[1].str, "y");
  EXPECT_TRUE(c->healthy());
}

TEST_F(RedisTest, ConcurrentIncrsArePipelinedAcrossThePool) {
  StartServer();
  auto c = Client(Url());
  constexpr int kCalls = 500;
  std::vector<Outcome> out(kCalls);
  for (int i = 0; i < kCalls; ++i) Spawn(c.get(), {"INCR", "counter"}, &out[i]);
  DriveUntil([&] { return AllFinished(out); });
  int ok = 0;
  for (const Outcome& o : out) ok += o.ok && o.reply.type == Type::kInteger ? 1 : 0;
  EXPECT_EQ(ok, kCalls) << out[0].error;
  EXPECT_EQ(Must(c.get(), {"GET", "counter"}).str, "500");
  // The pool opened all four connections (and no more).
  RedisReply clients = Must(c.get(), {"CLIENT", "LIST"});
  std::size_t lines = 0;
  for (char ch : clients.str) lines += ch == '\n' ? 1 : 0;
  EXPECT_EQ(lines, 4u) << clients.str;
}

TEST_F(RedisTest, PipelinedRepliesMatchTheirRequests) {
  StartServer();
  RedisOptions o = Generous();
  o.pool_size = 2;
  auto c = Client(Url(), o);
  constexpr int kCalls = 300;
  std::vector<Outcome> out(kCalls);
  for (int i = 0; i < kCalls; ++i) Spawn(c.get(), {"ECHO", "msg-" + std::to_string(i)}, &out[i]);
  DriveUntil([&] { return AllFinished(out); });
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(out[i].ok) << i << ": " << out[i].error;
    EXPECT_EQ(out[i].reply.str, "msg-" + std::to_string(i));
  }
}

TEST_F(RedisTest, ErrorReplyIsAnAnswerNotAFailure) {
  StartServer();
  auto c = Client(Url());
  Must(c.get(), {"SET", "text", "abc"});
  Outcome out = Cmd(c.get(), {"INCR", "text"});
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.reply.type, Type::kError);
  EXPECT_NE(out.reply.str.find("not an integer"), std::string::npos) << out.reply.str;
  out = Cmd(c.get(), {"NO-SUCH-COMMAND"});
  ASSERT_TRUE(out.ok);
  EXPECT_EQ(out.reply.type, Type::kError);
  EXPECT_EQ(out.reply.str.rfind("ERR unknown command", 0), 0u) << out.reply.str;
  EXPECT_TRUE(c->healthy());
  // The connection is still in step: the next reply is the next answer.
  EXPECT_EQ(Must(c.get(), {"GET", "text"}).str, "abc");
}

TEST_F(RedisTest, QueueFullFailsAtOnce) {
  StartServer();
  RedisOptions o = Generous();
  o.max_queued = 2;
  auto c = Client(Url(), o);
  std::vector<Outcome> out(3);
  for (Outcome& x : out) Spawn(c.get(), {"PING"}, &x);
  DriveUntil([&] { return AllFinished(out); });
  EXPECT_TRUE(out[0].ok);
  EXPECT_TRUE(out[1].ok);
  EXPECT_FALSE(out[2].ok);
  EXPECT_EQ(out[2].error.rfind("redis: queue full", 0), 0u) << out[2].error;
}

TEST_F(RedisTest, EmptyCommandIsRefused) {
  StartServer();
  auto c = Client(Url());
  Outcome out = Cmd(c.get(), {});
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("empty command"), std::string::npos) << out.error;
}

// ------------------------------------------------------------ scripts

TEST_F(RedisTest, EvalWithKeysAndArgsAndTheNoScriptPath) {
  StartServer();
  auto c = Client(Url());
  const std::string script =
      "return {KEYS[1], ARGV[1], redis.call('INCRBY', KEYS[1], ARGV[2])}";
  // The SHA-1 computed here is the server's name for the script.
  EXPECT_EQ(Must(c.get(), {"SCRIPT", "LOAD", "return 1"}).str, RedisScriptSha("return 1"));
  Must(c.get(), {"SCRIPT", "FLUSH"});

  // Not cached yet: EVALSHA answers NOSCRIPT, then EVAL runs it.
  Outcome out = Eval(c.get(), script, {"budget"}, {"tag", "5"});
  ASSERT_TRUE(out.ok) << out.error;
  ASSERT_EQ(out.reply.type, Type::kArray) << out.reply.str;
  ASSERT_EQ(out.reply.elements.size(), 3u);
  EXPECT_EQ(out.reply.elements[0].str, "budget");
  EXPECT_EQ(out.reply.elements[1].str, "tag");
  EXPECT_EQ(out.reply.elements[2].integer, 5);
  EXPECT_EQ(CommandCalls(c.get(), "evalsha"), 1);
  EXPECT_EQ(CommandCalls(c.get(), "eval"), 1);

  // Cached: EVALSHA alone.
  out = Eval(c.get(), script, {"budget"}, {"tag", "2"});
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.reply.elements[2].integer, 7);
  EXPECT_EQ(CommandCalls(c.get(), "evalsha"), 2);
  EXPECT_EQ(CommandCalls(c.get(), "eval"), 1);

  // Flushed: NOSCRIPT again, and EVAL again.
  Must(c.get(), {"SCRIPT", "FLUSH"});
  out = Eval(c.get(), script, {"budget"}, {"tag", "3"});
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.reply.elements[2].integer, 10);
  EXPECT_EQ(CommandCalls(c.get(), "eval"), 2);

  // A script error is an error reply, not a failure.
  out = Eval(c.get(), "return redis.call('INCR', KEYS[1])", {"budget-text"}, {});
  ASSERT_TRUE(out.ok);
  Must(c.get(), {"SET", "budget-text", "x"});
  out = Eval(c.get(), "return redis.call('INCR', KEYS[1])", {"budget-text"}, {});
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.reply.type, Type::kError);
}

// ------------------------------------------------------------ AUTH, SELECT

TEST_F(RedisTest, AuthWithPasswordAndWithUser) {
  StartServer({"--requirepass", "s3cret"});
  RedisUrl url = Url();
  url.password = "s3cret";
  auto good = Client(url);
  EXPECT_EQ(Must(good.get(), {"PING"}).str, "PONG");

  // An ACL user, authenticated with AUTH user password.
  Must(good.get(), {"ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all"});
  RedisUrl alice = Url();
  alice.username = "alice";
  alice.password = "alice-pw";
  auto as_alice = Client(alice);
  EXPECT_EQ(Must(as_alice.get(), {"ACL", "WHOAMI"}).str, "alice");

  RedisUrl wrong = Url();
  wrong.password = "not-it";
  auto bad = Client(wrong);
  Outcome out = Cmd(bad.get(), {"PING"});
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("AUTH refused"), std::string::npos) << out.error;
  EXPECT_NE(out.error.find("WRONGPASS"), std::string::npos) << out.error;
  EXPECT_EQ(out.error.find("not-it"), std::string::npos) << "the password leaked: " << out.error;
  EXPECT_FALSE(bad->healthy());

  // No password at all: the server's NOAUTH is an error reply.
  auto none = Client(Url());
  out = Cmd(none.get(), {"GET", "k"});
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.reply.type, Type::kError);
  EXPECT_EQ(out.reply.str.rfind("NOAUTH", 0), 0u) << out.reply.str;
}

TEST_F(RedisTest, SelectIsolatesDatabases) {
  StartServer();
  auto db0 = Client(Url(0));
  auto db3 = Client(Url(3));
  Must(db0.get(), {"SET", "shared-name", "zero"});
  Must(db3.get(), {"SET", "shared-name", "three"});
  EXPECT_EQ(Must(db0.get(), {"GET", "shared-name"}).str, "zero");
  EXPECT_EQ(Must(db3.get(), {"GET", "shared-name"}).str, "three");
  EXPECT_EQ(Must(db3.get(), {"DBSIZE"}).integer, 1);
  // Every connection of the pool selects: concurrent calls all see db 3.
  std::vector<Outcome> out(20);
  for (Outcome& x : out) Spawn(db3.get(), {"GET", "shared-name"}, &x);
  DriveUntil([&] { return AllFinished(out); });
  for (const Outcome& x : out) EXPECT_EQ(x.reply.str, "three") << x.error;
}

// ------------------------------------------------------------ failures

TEST_F(RedisTest, TimeoutFailsTheCallAndTheNextOneSucceeds) {
  StartServer();
  RedisOptions o;
  o.timeout_ms = 50;
  o.pool_size = 1;
  auto c = Client(Url(), o);
  EXPECT_EQ(Must(c.get(), {"PING"}).str, "PONG");  // connected before the clock matters

  Outcome sleep;
  Outcome behind;
  const auto t0 = Clock::now();
  Spawn(c.get(), {"DEBUG", "SLEEP", "0.3"}, &sleep);
  Pause(15);
  Spawn(c.get(), {"GET", "k"}, &behind);  // pipelined behind it, same connection
  DriveUntil([&] { return sleep.finished && behind.finished; });
  const double took = MsSince(t0);
  EXPECT_FALSE(sleep.ok);
  EXPECT_EQ(sleep.error, "redis: timed out after 50 ms");
  EXPECT_LT(took, 250) << "the deadline did not cut the call short";
  // The connection was closed under the call behind it: its reply would
  // have been DEBUG's.
  EXPECT_FALSE(behind.ok);
  EXPECT_NE(behind.error.find("redis: "), std::string::npos) << behind.error;
  EXPECT_FALSE(c->healthy());

  Pause(350);  // the server is single-threaded: let the sleep end
  EXPECT_EQ(Must(c.get(), {"PING"}).str, "PONG");
  EXPECT_TRUE(c->healthy());
}

TEST_F(RedisTest, ServerKilledFailsFastAndRestartRecovers) {
  StartServer();
  RedisOptions o = Generous();
  o.reconnect_backoff_ms = 100;
  auto c = Client(Url(), o);
  Must(c.get(), {"SET", "k", "v"});
  server_->Kill();

  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    Outcome out = Cmd(c.get(), {"GET", "k"});
    EXPECT_FALSE(out.ok);
    EXPECT_FALSE(out.error.empty());
    EXPECT_EQ(out.error.rfind("redis: ", 0), 0u) << out.error;
    EXPECT_LT(MsSince(t0), 500) << "call " << i << " hung: " << out.error;
  }
  // Within the backoff: fail fast, naming why.
  Outcome out = Cmd(c.get(), {"GET", "k"});
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error.rfind("redis: unreachable (", 0), 0u) << out.error;
  EXPECT_NE(out.error.find("refused"), std::string::npos) << out.error;
  EXPECT_FALSE(c->healthy());

  // Same port, same client: back once the backoff has passed.
  StartServer();
  Pause(150);
  out = Cmd(c.get(), {"PING"});
  EXPECT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.reply.str, "PONG");
  EXPECT_TRUE(c->healthy());
}

TEST_F(RedisTest, NothingListeningFailsFast) {
  auto c = Client(Url());  // no server on port_
  const auto t0 = Clock::now();
  Outcome out = Cmd(c.get(), {"PING"});
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error.rfind("redis: unreachable (cannot connect to 127.0.0.1:", 0), 0u)
      << out.error;
  EXPECT_LT(MsSince(t0), 500);
}

TEST_F(RedisTest, RepliesOverTheBoundCloseTheConnection) {
  StartServer();
  RedisOptions o = Generous();
  o.max_reply_bytes = 1000;
  auto c = Client(Url(), o);
  Must(c.get(), {"SET", "big", std::string(5000, 'x')});  // requests are not bounded
  Outcome out = Cmd(c.get(), {"GET", "big"});
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "redis: a reply exceeds 1000 bytes");
  // Many small elements count too.
  std::vector<std::string> push = {"RPUSH", "many"};
  for (int i = 0; i < 200; ++i) push.push_back("e");
  Must(c.get(), push);
  out = Cmd(c.get(), {"LRANGE", "many", "0", "-1"});
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "redis: a reply exceeds 1000 bytes");
  EXPECT_EQ(Must(c.get(), {"STRLEN", "big"}).integer, 5000);  // a fresh connection
}

TEST_F(RedisTest, ClientDestroyedWithCallsPendingWhileStopped) {
  StartServer();
  auto c = Client(Url());
  Must(c.get(), {"PING"});
  Outcome out;
  Spawn(c.get(), {"DEBUG", "SLEEP", "0.2"}, &out);
  io_.poll();  // the call is written and waiting
  io_.stop();
  c.reset();  // the io_context is stopped: nothing runs during destruction
  EXPECT_FALSE(out.finished);
  DriveUntil([&] { return out.finished; });
  EXPECT_TRUE(out.finished);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "redis: client closed");
}

TEST(RedisClientLifetime, IoContextDestroyedAfterTheClientWithCallsSuspended) {
  auto io = std::make_unique<asio::io_context>();
  RedisUrl url;
  url.port = FreePort();  // nothing there: the call is connecting
  auto c = std::make_unique<RedisClient>(io->get_executor(), url, Generous(), nullptr);
  RedisReply reply;
  std::string error;
  bool finished = false;
  asio::co_spawn(*io, DoCommand(c.get(), {"PING"}, &reply, &error),
                 [&](std::exception_ptr, bool) { finished = true; });
  io->poll_one();
  c.reset();
  io.reset();  // suspended frames are destroyed, never resumed
  SUCCEED();
}

// ------------------------------------------------------------ TLS

class RedisTlsTest : public RedisTest {
 protected:
  // A self-signed certificate for 127.0.0.1 and localhost; false when the
  // server cannot serve TLS (then the test is skipped).
  bool StartTlsServer() {
    cert_ = dir_ + "/cert.pem";
    const std::string key = dir_ + "/key.pem";
    const std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
        " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
        key + " -out " + cert_ + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      ADD_FAILURE() << "openssl could not make a certificate";
      return false;
    }
    server_ = std::make_unique<RedisServer>(dir_);
    return server_->Start(port_,
                          {"--port", "0", "--tls-port", std::to_string(port_), "--tls-cert-file",
                           cert_, "--tls-key-file", key, "--tls-ca-cert-file", cert_,
                           "--tls-auth-clients", "no"},
                          /*tls=*/true);
  }

  std::string cert_;
};

TEST_F(RedisTlsTest, RoundTripOverTls) {
  if (!StartTlsServer()) GTEST_SKIP() << "this redis-server does not serve TLS";
  std::string error;
  RedisUrl url;
  ASSERT_TRUE(ParseRedisUrl("rediss://127.0.0.1:" + std::to_string(port_) + "?ca=" + cert_,
                            &url, &error))
      << error;

  // The client's own context, trusting the URL's CA file.
  auto own = Client(url);
  Must(own.get(), {"SET", "over", "tls"});
  EXPECT_EQ(Must(own.get(), {"GET", "over"}).str, "tls");

  // The caller's context; a host name (SNI, and the DNS name checked).
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(cert_);
  RedisUrl by_name = url;
  by_name.host = "localhost";
  auto theirs = Client(by_name, Generous(), &ctx);
  EXPECT_EQ(Must(theirs.get(), {"GET", "over"}).str, "tls");

  // Pipelined over TLS.
  std::vector<Outcome> out(100);
  for (Outcome& x : out) Spawn(theirs.get(), {"INCR", "tls-counter"}, &x);
  DriveUntil([&] { return AllFinished(out); });
  EXPECT_EQ(Must(theirs.get(), {"GET", "tls-counter"}).str, "100");
}

TEST_F(RedisTlsTest, UntrustedCertificateFailsUnlessVerifyIsOff) {
  if (!StartTlsServer()) GTEST_SKIP() << "this redis-server does not serve TLS";
  RedisUrl url = Url();
  url.tls = true;  // the system's CAs do not know this certificate
  auto strict = Client(url);
  Outcome out = Cmd(strict.get(), {"PING"});
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("TLS handshake with 127.0.0.1:"), std::string::npos) << out.error;

  url.verify = false;
  auto lax = Client(url);
  EXPECT_EQ(Must(lax.get(), {"PING"}).str, "PONG");

  // A CA file that is not there: every call says so.
  url.verify = true;
  url.ca_file = dir_ + "/no-such-ca.pem";
  auto missing = Client(url);
  out = Cmd(missing.get(), {"PING"});
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("cannot load the CA file"), std::string::npos) << out.error;
}

// ------------------------------------------------------------ URLs

TEST(RedisUrlTest, ParsesTheForms) {
  RedisUrl u;
  std::string error;
  ASSERT_TRUE(ParseRedisUrl("redis://localhost", &u, &error)) << error;
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 0);
  EXPECT_FALSE(u.tls);
  EXPECT_TRUE(u.password.empty());

  ASSERT_TRUE(ParseRedisUrl("redis://:s3cret@10.0.0.1:6380/2", &u, &error)) << error;
  EXPECT_EQ(u.host, "10.0.0.1");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 2);
  EXPECT_EQ(u.username, "");
  EXPECT_EQ(u.password, "s3cret");

  ASSERT_TRUE(ParseRedisUrl("rediss://alice:p%40ss@redis.internal:6390/1?ca=/etc/ca.pem&verify=0",
                            &u, &error))
      << error;
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.username, "alice");
  EXPECT_EQ(u.password, "p@ss");
  EXPECT_EQ(u.host, "redis.internal");
  EXPECT_EQ(u.port, 6390);
  EXPECT_EQ(u.db, 1);
  EXPECT_EQ(u.ca_file, "/etc/ca.pem");
  EXPECT_FALSE(u.verify);

  ASSERT_TRUE(ParseRedisUrl("redis://[::1]:7000/", &u, &error)) << error;
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 7000);
  EXPECT_EQ(u.db, 0);

  ASSERT_TRUE(ParseRedisUrl("redis://u:p@w@host", &u, &error)) << error;  // a raw `@`
  EXPECT_EQ(u.password, "p@w");
  EXPECT_EQ(u.host, "host");
}

TEST(RedisUrlTest, RefusesWithAReason) {
  const std::pair<const char*, const char*> cases[] = {
      {"http://host", "must start with redis://"},
      {"redis://", "no host"},
      {"redis://host:0", "bad port `0`"},
      {"redis://host:99999", "bad port `99999`"},
      {"redis://host:abc", "bad port `abc`"},
      {"redis://host:", "bad port ``"},
      {"redis://host/x", "bad database number `x`"},
      {"redis://host/-1", "bad database number `-1`"},
      {"redis://s3cret@host", "user info must be"},
      {"redis://:%zz@host", "percent-encoding"},
      {"redis://host?ca=/x", "need rediss://"},
      {"rediss://host?foo=1", "unknown parameter `foo`"},
      {"rediss://host?verify=2", "`verify` must be 0 or 1"},
      {"redis://::1:6379", "brackets"},
      {"redis://[::1", "unclosed `[`"},
  };
  for (const auto& [url, why] : cases) {
    RedisUrl u;
    std::string error;
    EXPECT_FALSE(ParseRedisUrl(url, &u, &error)) << url;
    EXPECT_NE(error.find(why), std::string::npos) << url << " -> " << error;
    EXPECT_EQ(error.rfind("redis url: ", 0), 0u) << error;
    EXPECT_EQ(error.find("s3cret"), std::string::npos) << "the password leaked: " << error;
  }
}

TEST(RedisUrlTest, RedactedUrlHidesThePassword) {
  RedisUrl u;
  std::string error;
  ASSERT_TRUE(ParseRedisUrl("rediss://alice:s3cret@redis.internal:6390/1?ca=/etc/ca.pem&verify=0",
                            &u, &error));
  const std::string shown = RedactedUrl(u);
  EXPECT_EQ(shown, "rediss://alice:***@redis.internal:6390/1?ca=/etc/ca.pem&verify=0");
  EXPECT_EQ(shown.find("s3cret"), std::string::npos);

  ASSERT_TRUE(ParseRedisUrl("redis://:s3cret@[::1]", &u, &error));
  EXPECT_EQ(RedactedUrl(u), "redis://:***@[::1]:6379");
  ASSERT_TRUE(ParseRedisUrl("redis://localhost", &u, &error));
  EXPECT_EQ(RedactedUrl(u), "redis://localhost:6379");
  // The parsed URL round-trips through its redacted form, minus the secret.
  RedisUrl back;
  ASSERT_TRUE(ParseRedisUrl(RedactedUrl(u), &back, &error)) << error;
  EXPECT_EQ(back.host, u.host);
  EXPECT_EQ(back.port, u.port);
}

}  // namespace
}  // namespace kt::gateway
