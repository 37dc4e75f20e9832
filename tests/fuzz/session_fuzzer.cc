// libFuzzer target for the HTTP request path: arbitrary client bytes, on one
// connection, through the real session code (framing checks, body limits,
// JSON strictness, validation, routing, the input stage, the mock provider,
// the output stage and the audit record) of an in-process gateway serving
// the quickstart policies.
//
// Beyond "no crash, no hang", it asserts what a client relies on: whatever
// the gateway wrote is a sequence of complete, well-framed HTTP responses,
// and a request whose header ended always gets an answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "tests/fuzz/gateway_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kt::fuzz::GatewayHarness* harness = [] {
    kt::gateway::Options options = kt::fuzz::GatewayHarness::BaseOptions();
    options.policy_paths = {kt::fuzz::SourceRoot() + "/examples/policies/quickstart.ktp"};
    options.max_body_bytes = 64u << 10;  // reachable by the fuzzer
    options.max_header_bytes = 4u << 10;
    return new kt::fuzz::GatewayHarness(options, /*fake_upstream=*/false);
  }();
  std::string request(reinterpret_cast<const char*>(data), size);
  std::string wrote = harness->Roundtrip(request);
  // The gateway turns an exception into a 500 (or a final frame) coded
  // internal_error, so that a defect costs one request; here it is a find.
  if (harness->internal_errors() != 0) {
    std::cerr << "session fuzzer: the gateway hit a defect:\n" << wrote << std::endl;
    std::abort();
  }
  std::vector<kt::fuzz::Answer> answers;
  std::string why;
  if (!kt::fuzz::SplitAnswers(wrote, &answers, &why)) {
    std::cerr << "session fuzzer: " << why << "\n--- the gateway wrote:\n" << wrote << std::endl;
    std::abort();
  }
  if (request.find("\r\n\r\n") != std::string::npos && answers.empty()) {
    std::cerr << "session fuzzer: a complete request header got no answer" << std::endl;
    std::abort();
  }
  for (const kt::fuzz::Answer& a : answers) {
    if (a.status < 100 || a.status > 599) std::abort();
  }
  return 0;
}
