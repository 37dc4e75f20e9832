// A gateway inside the fuzzer's process, for the targets of the HTTP paths.
//
// The code under test is the real thing: `Session` (the server's request
// loop), the upstream client and the stream relay, with the policy set loaded
// and compiled as `kt gateway run` does. Only the sockets are local: each
// case is one loopback TCP connection whose far end this harness drives, all
// on one thread and one io_context, so a case runs the same way every time.
// A case that does not finish within the hang bound aborts: a hang is a bug
// like a crash.
#ifndef KT_TESTS_FUZZ_GATEWAY_HARNESS_H_
#define KT_TESTS_FUZZ_GATEWAY_HARNESS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/gateway.h"

namespace kt::fuzz {

class GatewayHarness {
 public:
  // Loads `options.policy_paths` (aborting when they do not check) and
  // listens on an ephemeral loopback port. With `fake_upstream`, a local
  // server answers every upstream request with the bytes of SetUpstreamReply
  // and then closes, and `options.upstream` is pointed at it.
  GatewayHarness(gateway::Options options, bool fake_upstream);
  ~GatewayHarness();

  // What the fake upstream sends, byte for byte, to the next requests.
  void SetUpstreamReply(std::string_view bytes);
  // Sends `request` on a fresh client connection, half-closes it, and
  // returns everything the gateway wrote until it closed the connection.
  std::string Roundtrip(std::string_view request);

  // Requests so far that hit a defect (an exception the session turned into
  // a 500 internal_error). Counted by the gateway, not read from its
  // output: an upstream's relayed error body may say anything.
  uint64_t internal_errors() const;

  // The gateway's default options for fuzzing: quick client timeouts, the
  // audit log to /dev/null, one thread.
  static gateway::Options BaseOptions();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The source tree's root, for policy paths.
std::string SourceRoot();

// One response the gateway wrote.
struct Answer {
  int status = 0;
  std::string content_type;
  std::string body;  // de-chunked
};
// Splits what a gateway wrote on one connection into its responses. False
// (with `*why`) unless the bytes are a sequence of complete, well-framed
// HTTP/1.1 responses: a client must never be left with half an answer.
bool SplitAnswers(std::string_view bytes, std::vector<Answer>* out, std::string* why);

}  // namespace kt::fuzz

#endif  // KT_TESTS_FUZZ_GATEWAY_HARNESS_H_
