// kt_loadgen: an open-loop, fixed-rate HTTP/1.1 load generator (in the manner
// of wrk2 and vegeta), for the rate-limit tests and the added-latency
// benchmarks.
//
// Open loop: request i is scheduled at t0 + i/rate, whatever the responses do.
// When every connection is busy the request waits in a queue for a free one,
// but its latency is still measured from its scheduled time (the
// coordinated-omission correction); "service_latency_us" is measured from the
// moment it was actually written. Connections are keep-alive and are opened
// before t0; one the server closes is reopened for the next request.
//
// Everything is bounded: a request's connect + write + read share one
// deadline (--timeout-ms, counted as an error), the response body has an
// explicit limit, and requests still queued --timeout-ms after the last
// scheduled time are dropped ("dropped", not sent).
//
// Callbacks, not coroutines: GCC 12's coroutine code generation has crashed
// this codebase before. With --threads N, N workers each own an io_context,
// connections/N connections and every N-th request of the one global schedule.
//
// Exit code: 0 when it ran, 1 when nothing completed, 2 on bad arguments.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using beast::error_code;

struct Options {
  std::string url;
  double rate = 0;
  double duration_s = 0;
  int connections = 64;
  std::string method;
  std::string body;
  std::string body_file;
  std::vector<std::string> headers;
  int burst = 0;
  bool json = false;
  int timeout_ms = 5000;
  std::uint64_t body_limit = 64ull << 20;
  int threads = 1;
};

struct Target {
  std::string host;
  std::string port;
  std::string path;
};

// http://host[:port][/path]; https is not supported.
bool ParseUrl(const std::string& url, Target* out, std::string* why) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    *why = "only http:// URLs are supported";
    return false;
  }
  std::string rest = url.substr(scheme.size());
  std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  out->path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!authority.empty() && authority[0] == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string::npos) {
      *why = "bad IPv6 host";
      return false;
    }
    out->host = authority.substr(1, close - 1);
    std::string tail = authority.substr(close + 1);
    out->port = tail.size() > 1 && tail[0] == ':' ? tail.substr(1) : "80";
  } else {
    std::size_t colon = authority.rfind(':');
    out->host = authority.substr(0, colon);
    out->port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  }
  if (out->host.empty() || out->port.empty() ||
      out->port.find_first_not_of("0123456789") != std::string::npos) {
    *why = "bad host or port in URL";
    return false;
  }
  return true;
}

bool IEquals(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The request is serialized once and written as bytes by every connection.
std::string BuildRequest(const Options& o, const Target& t, std::string* why) {
  bool has_host = false, has_type = false;
  std::string extra;
  for (const std::string& h : o.headers) {
    std::size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0 ||
        h.find_first_of("\r\n") != std::string::npos) {
      *why = "bad --header (want \"Name: value\"): " + h;
      return {};
    }
    std::string name = h.substr(0, colon);
    std::string value = h.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (IEquals(name, "host")) has_host = true;
    if (IEquals(name, "content-type")) has_type = true;
    if (IEquals(name, "content-length")) continue;  // set from the body
    extra += name + ": " + value + "\r\n";
  }
  std::string r = o.method + " " + t.path + " HTTP/1.1\r\n";
  if (!has_host) {
    bool v6 = t.host.find(':') != std::string::npos;
    r += "Host: " + (v6 ? "[" + t.host + "]" : t.host) +
         (t.port == "80" ? "" : ":" + t.port) + "\r\n";
  }
  r += "User-Agent: kt_loadgen\r\n";
  if (!o.body.empty() && !has_type) r += "Content-Type: application/json\r\n";
  if (!o.body.empty() || (o.method != "GET" && o.method != "HEAD")) {
    r += "Content-Length: " + std::to_string(o.body.size()) + "\r\n";
  }
  r += extra;
  r += "\r\n";
  r += o.body;
  return r;
}

struct Stats {
  std::uint64_t sent = 0;
  std::uint64_t completed = 0;
  std::uint64_t dropped = 0;
  std::uint64_t retried = 0;
  std::uint64_t reconnects = 0;
  std::map<std::string, std::uint64_t> errors;  // connect, timeout, write, read
  std::map<int, std::vector<std::int64_t>> latency_by_status;  // µs from schedule
  std::vector<std::int64_t> service_latency;                  // µs from send
  std::optional<Clock::time_point> first_send, last_send, last_finish;
};

struct Shared {
  Options opt;
  tcp::resolver::results_type endpoints;
  std::string request;
  std::uint64_t total = 0;  // requests in the whole schedule
  Clock::time_point t0;
  std::chrono::nanoseconds interval{0};  // 0 in burst mode
  bool head = false;

  Clock::time_point Scheduled(std::uint64_t i) const {
    if (interval.count() == 0) return t0;
    // Computed from i, not accumulated, so the schedule does not drift.
    double ns = static_cast<double>(i) * 1e9 / opt.rate;
    return t0 + std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
  }
};

class Worker {
 public:
  Worker(const Shared& s, int index, int stride, int connections)
      : s_(s), index_(index), stride_(stride), timer_(ioc_), deadline_(ioc_) {
    for (int i = 0; i < connections; ++i) {
      conns_.push_back(std::make_unique<Conn>(ioc_));
    }
    for (std::uint64_t i = index_; i < s_.total; i += stride_) ++mine_;
  }

  // Phase 1: open every connection (bounded by the timeout); failures are
  // retried lazily by the first request on that connection.
  void Preconnect() {
    for (auto& c : conns_) {
      Conn* conn = c.get();
      conn->stream.expires_after(std::chrono::milliseconds(s_.opt.timeout_ms));
      conn->stream.async_connect(s_.endpoints,
                                 [conn](const error_code& ec, const tcp::endpoint&) {
                                   if (!ec) {
                                     conn->connected = true;
                                     error_code ignored;
                                     conn->stream.socket().set_option(tcp::no_delay(true),
                                                                      ignored);
                                   } else {
                                     conn->stream.close();
                                   }
                                 });
    }
    ioc_.run();
    ioc_.restart();
    for (auto& c : conns_) idle_.push_back(c.get());
  }

  // Phase 2: the schedule, from the shared t0.
  void Run() {
    next_ = index_;
    if (mine_ == 0) return;
    net::post(ioc_, [this] { Tick(); });
    ioc_.run();
  }

  Stats& stats() { return stats_; }

 private:
  struct Conn {
    explicit Conn(net::io_context& ioc) : stream(ioc) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::optional<http::response_parser<http::string_body>> parser;
    bool connected = false;
    std::uint64_t served = 0;  // responses on the current connection
    bool retried = false;
    Clock::time_point scheduled, sent;
  };

  void Tick() {
    Clock::time_point now = Clock::now();
    while (next_ < s_.total && s_.Scheduled(next_) <= now) {
      queue_.push_back(s_.Scheduled(next_));
      next_ += stride_;
    }
    Dispatch();
    if (next_ < s_.total) {
      timer_.expires_at(s_.Scheduled(next_));
      timer_.async_wait([this](const error_code& ec) {
        if (!ec) Tick();
      });
    } else if (!deadline_armed_) {
      deadline_armed_ = true;
      // Whatever still waits for a connection a timeout after the last
      // scheduled time is dropped: the run stays bounded.
      deadline_.expires_at(std::max(now, s_.Scheduled(s_.total - 1)) +
                           std::chrono::milliseconds(s_.opt.timeout_ms));
      deadline_.async_wait([this](const error_code& ec) {
        if (ec) return;
        stats_.dropped += queue_.size();
        finished_ += queue_.size();
        queue_.clear();
        MaybeStop();
      });
    }
  }

  void Dispatch() {
    while (!queue_.empty() && !idle_.empty()) {
      Conn* c = idle_.front();
      idle_.pop_front();
      c->scheduled = queue_.front();
      queue_.pop_front();
      c->retried = false;
      c->sent = Clock::now();
      ++stats_.sent;
      if (!stats_.first_send) stats_.first_send = c->sent;
      stats_.last_send = c->sent;
      // One deadline for connect + write + read of this request.
      c->stream.expires_after(std::chrono::milliseconds(s_.opt.timeout_ms));
      Start(c);
    }
  }

  void Start(Conn* c) {
    if (c->connected) {
      Write(c);
      return;
    }
    c->buffer.consume(c->buffer.size());
    c->served = 0;
    ++stats_.reconnects;
    c->stream.async_connect(s_.endpoints, [this, c](const error_code& ec, const tcp::endpoint&) {
      if (ec) {
        Fail(c, ec == beast::error::timeout ? "timeout" : "connect");
        return;
      }
      c->connected = true;
      error_code ignored;
      c->stream.socket().set_option(tcp::no_delay(true), ignored);
      Write(c);
    });
  }

  void Write(Conn* c) {
    net::async_write(c->stream, net::buffer(s_.request),
                     [this, c](const error_code& ec, std::size_t) {
                       if (ec) {
                         if (RetryStale(c, ec)) return;
                         Fail(c, ec == beast::error::timeout ? "timeout" : "write");
                         return;
                       }
                       Read(c);
                     });
  }

  void Read(Conn* c) {
    c->parser.emplace();
    c->parser->body_limit(s_.opt.body_limit);
    c->parser->header_limit(64 * 1024);
    if (s_.head) c->parser->skip(true);
    http::async_read(c->stream, c->buffer, *c->parser,
                     [this, c](const error_code& ec, std::size_t) {
                       if (ec) {
                         bool got_some = c->parser->got_some();
                         if (!got_some && RetryStale(c, ec)) return;
                         Fail(c, ec == beast::error::timeout ? "timeout" : "read");
                         return;
                       }
                       Done(c);
                     });
  }

  // A keep-alive connection the server closed while it sat idle fails on its
  // next write or before any byte of the response: reopen it and send once
  // more (as browsers and wrk do). Not counted as an error.
  bool RetryStale(Conn* c, const error_code& ec) {
    if (c->served == 0 || c->retried || ec == beast::error::timeout) return false;
    c->retried = true;
    ++stats_.retried;
    Close(c);
    Start(c);
    return true;
  }

  void Close(Conn* c) {
    error_code ignored;
    c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->stream.close();
    c->connected = false;
  }

  void Done(Conn* c) {
    Clock::time_point now = Clock::now();
    auto& msg = c->parser->get();
    int status = msg.result_int();
    bool keep = msg.keep_alive();
    c->parser.reset();
    ++c->served;
    ++stats_.completed;
    stats_.latency_by_status[status].push_back(
        std::chrono::duration_cast<std::chrono::microseconds>(now - c->scheduled).count());
    stats_.service_latency.push_back(
        std::chrono::duration_cast<std::chrono::microseconds>(now - c->sent).count());
    if (!keep) Close(c);
    Finish(c, now);
  }

  void Fail(Conn* c, const char* kind) {
    ++stats_.errors[kind];
    c->parser.reset();
    Close(c);
    Finish(c, Clock::now());
  }

  void Finish(Conn* c, Clock::time_point now) {
    stats_.last_finish = now;
    ++finished_;
    idle_.push_back(c);
    Dispatch();
    MaybeStop();
  }

  void MaybeStop() {
    if (finished_ < mine_ || stopped_) return;
    stopped_ = true;
    timer_.cancel();
    deadline_.cancel();
    for (auto& c : conns_) Close(c.get());
  }

  const Shared& s_;
  const std::uint64_t index_;
  const std::uint64_t stride_;
  net::io_context ioc_{1};
  net::steady_timer timer_;
  net::steady_timer deadline_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::deque<Conn*> idle_;
  std::deque<Clock::time_point> queue_;  // scheduled times waiting for a connection
  std::uint64_t mine_ = 0;
  std::uint64_t next_ = 0;
  std::uint64_t finished_ = 0;
  bool deadline_armed_ = false;
  bool stopped_ = false;
  Stats stats_;
};

std::int64_t Percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank.
  std::size_t rank = static_cast<std::size_t>(std::ceil(p / 100.0 * sorted.size()));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

nlohmann::json Summary(std::vector<std::int64_t> v) {
  std::sort(v.begin(), v.end());
  double mean = 0;
  for (std::int64_t x : v) mean += static_cast<double>(x);
  if (!v.empty()) mean /= static_cast<double>(v.size());
  return {{"count", v.size()},
          {"p50", Percentile(v, 50)},
          {"p90", Percentile(v, 90)},
          {"p99", Percentile(v, 99)},
          {"max", v.empty() ? 0 : v.back()},
          {"mean", std::llround(mean)}};
}

std::int64_t Us(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"kt_loadgen: open-loop, fixed-rate HTTP/1.1 load generator"};
  app.add_option("--url", o.url, "http://host:port/path")->required();
  app.add_option("--rate", o.rate, "requests per second (open loop)");
  app.add_option("--duration", o.duration_s, "seconds of schedule");
  app.add_option("--connections", o.connections, "keep-alive connections")
      ->capture_default_str();
  app.add_option("--method", o.method, "HTTP method (default POST with a body, else GET)");
  auto* body = app.add_option("--body", o.body, "request body (JSON)");
  auto* body_file = app.add_option("--body-file", o.body_file, "file with the request body");
  body->excludes(body_file);
  app.add_option("--header", o.headers, "extra header \"Name: value\" (repeatable)")
      ->take_all();
  app.add_option("--concurrency-burst", o.burst,
                 "fire N requests at once over N connections and wait for all");
  app.add_flag("--json", o.json, "one JSON object on stdout");
  app.add_option("--timeout-ms", o.timeout_ms, "per-request timeout (connect+write+read)")
      ->capture_default_str();
  app.add_option("--body-limit", o.body_limit, "maximum response body bytes")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "worker threads, each with its own io_context")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  auto usage = [](const std::string& why) {
    std::cerr << "kt_loadgen: " << why << "\n";
    return 2;
  };
  Target target;
  std::string why;
  if (!ParseUrl(o.url, &target, &why)) return usage(why);
  if (o.burst < 0) return usage("--concurrency-burst must be positive");
  if (o.burst == 0) {
    if (!(o.rate > 0) || !std::isfinite(o.rate)) return usage("--rate must be > 0");
    if (!(o.duration_s > 0) || !std::isfinite(o.duration_s))
      return usage("--duration must be > 0");
    if (o.connections < 1) return usage("--connections must be >= 1");
  }
  if (o.timeout_ms < 1) return usage("--timeout-ms must be >= 1");
  if (o.threads < 1 || o.threads > 256) return usage("--threads must be in 1..256");
  if (!o.body_file.empty()) {
    std::ifstream in(o.body_file, std::ios::binary);
    if (!in) return usage("cannot read --body-file " + o.body_file);
    std::ostringstream ss;
    ss << in.rdbuf();
    o.body = ss.str();
  }
  if (o.method.empty()) o.method = o.body.empty() ? "GET" : "POST";
  std::transform(o.method.begin(), o.method.end(), o.method.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  if (o.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ-") != std::string::npos)
    return usage("bad --method");

  Shared s;
  s.opt = o;
  s.head = o.method == "HEAD";
  s.request = BuildRequest(o, target, &why);
  if (s.request.empty()) return usage(why);
  {
    net::io_context ioc;
    tcp::resolver resolver(ioc);
    error_code ec;
    s.endpoints = resolver.resolve(target.host, target.port, ec);
    if (ec) {
      std::cerr << "kt_loadgen: cannot resolve " << target.host << ": " << ec.message() << "\n";
      return 1;
    }
  }
  int connections = o.connections;
  if (o.burst > 0) {
    s.total = static_cast<std::uint64_t>(o.burst);
    connections = o.burst;
  } else {
    s.total = static_cast<std::uint64_t>(std::llround(o.rate * o.duration_s));
    if (s.total == 0) s.total = 1;
    s.interval = std::chrono::nanoseconds(std::max<std::int64_t>(1, std::llround(1e9 / o.rate)));
  }
  int threads = std::min<int>(o.threads, connections);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t) {
    int n = connections / threads + (t < connections % threads ? 1 : 0);
    workers.push_back(std::make_unique<Worker>(s, t, threads, n));
  }
  auto each = [&](auto fn) {
    if (threads == 1) {
      fn(*workers[0]);
      return;
    }
    std::vector<std::thread> pool;
    for (auto& w : workers) pool.emplace_back([&fn, &w] { fn(*w); });
    for (auto& th : pool) th.join();
  };
  each([](Worker& w) { w.Preconnect(); });
  s.t0 = Clock::now() + std::chrono::milliseconds(1);
  auto start_unix = std::chrono::system_clock::now() + std::chrono::milliseconds(1);
  each([](Worker& w) { w.Run(); });

  // Merge.
  Stats all;
  for (auto& w : workers) {
    Stats& st = w->stats();
    all.sent += st.sent;
    all.completed += st.completed;
    all.dropped += st.dropped;
    all.retried += st.retried;
    all.reconnects += st.reconnects;
    for (auto& [k, v] : st.errors) all.errors[k] += v;
    for (auto& [k, v] : st.latency_by_status) {
      auto& dst = all.latency_by_status[k];
      dst.insert(dst.end(), v.begin(), v.end());
    }
    all.service_latency.insert(all.service_latency.end(), st.service_latency.begin(),
                               st.service_latency.end());
    auto mn = [](auto& a, auto& b) { if (b && (!a || *b < *a)) a = b; };
    auto mx = [](auto& a, auto& b) { if (b && (!a || *b > *a)) a = b; };
    mn(all.first_send, st.first_send);
    mx(all.last_send, st.last_send);
    mx(all.last_finish, st.last_finish);
  }
  std::uint64_t errors = 0;
  for (auto& [k, v] : all.errors) errors += v;
  std::vector<std::int64_t> latency;
  for (auto& [k, v] : all.latency_by_status) latency.insert(latency.end(), v.begin(), v.end());
  double duration = all.last_finish ? std::chrono::duration<double>(*all.last_finish - s.t0).count()
                                    : 0.0;
  std::int64_t first_send = all.first_send ? Us(*all.first_send - s.t0) : 0;
  std::int64_t last_send = all.last_send ? Us(*all.last_send - s.t0) : 0;
  double span = static_cast<double>(last_send - first_send) / 1e6;
  double offered = all.sent > 1 && span > 0 ? static_cast<double>(all.sent - 1) / span : 0.0;

  nlohmann::json j;
  j["url"] = o.url;
  j["method"] = o.method;
  j["mode"] = o.burst > 0 ? "burst" : "rate";
  j["rate"] = o.burst > 0 ? 0.0 : o.rate;
  j["connections"] = connections;
  j["threads"] = threads;
  j["scheduled"] = s.total;
  j["sent"] = all.sent;
  j["completed"] = all.completed;
  j["errors"] = errors;
  nlohmann::json kinds = nlohmann::json::object();
  for (const char* k : {"connect", "timeout", "write", "read"}) kinds[k] = all.errors[k];
  j["errors_by_kind"] = kinds;
  j["dropped"] = all.dropped;
  j["retried"] = all.retried;
  j["duration_s"] = duration;
  j["offered_rate"] = offered;
  j["throughput"] = duration > 0 ? static_cast<double>(all.completed) / duration : 0.0;
  nlohmann::json status = nlohmann::json::object();
  nlohmann::json by_status = nlohmann::json::object();
  for (auto& [k, v] : all.latency_by_status) {
    status[std::to_string(k)] = v.size();
    by_status[std::to_string(k)] = Summary(v);
  }
  j["status"] = status;
  j["latency_us"] = Summary(latency);
  j["latency_by_status"] = by_status;
  j["service_latency_us"] = Summary(all.service_latency);
  j["first_send_us"] = first_send;
  j["last_send_us"] = last_send;
  j["start_unix_us"] =
      std::chrono::duration_cast<std::chrono::microseconds>(start_unix.time_since_epoch()).count();

  if (o.json) {
    std::cout << j.dump() << std::endl;
  } else {
    std::printf("%s %s  mode=%s rate=%g connections=%d threads=%d\n", o.method.c_str(),
                o.url.c_str(), o.burst > 0 ? "burst" : "rate", o.burst > 0 ? 0.0 : o.rate,
                connections, threads);
    std::printf("sent %llu  completed %llu  errors %llu (connect %llu, timeout %llu, write %llu, "
                "read %llu)  dropped %llu\n",
                static_cast<unsigned long long>(all.sent),
                static_cast<unsigned long long>(all.completed),
                static_cast<unsigned long long>(errors),
                static_cast<unsigned long long>(all.errors["connect"]),
                static_cast<unsigned long long>(all.errors["timeout"]),
                static_cast<unsigned long long>(all.errors["write"]),
                static_cast<unsigned long long>(all.errors["read"]),
                static_cast<unsigned long long>(all.dropped));
    std::printf("duration %.3f s  offered %.1f/s  throughput %.1f/s\n", duration, offered,
                j["throughput"].get<double>());
    std::printf("%-8s %8s %10s %10s %10s %10s  (latency µs from scheduled time)\n", "status",
                "count", "p50", "p90", "p99", "max");
    auto row = [](const std::string& name, const nlohmann::json& r) {
      std::printf("%-8s %8llu %10lld %10lld %10lld %10lld\n", name.c_str(),
                  r["count"].get<unsigned long long>(), r["p50"].get<long long>(),
                  r["p90"].get<long long>(), r["p99"].get<long long>(),
                  r["max"].get<long long>());
    };
    for (auto& [k, r] : by_status.items()) row(k, r);
    row("all", j["latency_us"]);
    row("service", j["service_latency_us"]);
  }
  return all.completed == 0 ? 1 : 0;
}
