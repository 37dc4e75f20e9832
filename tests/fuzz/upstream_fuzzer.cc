// libFuzzer target for the upstream response path: arbitrary bytes as the
// upstream's answer to a valid chat completion, through the real upstream
// client (HTTP parsing, interim responses, bounds, framing), the JSON and
// SSE parsers and the stream relay (output stage, held tool calls) of an
// in-process gateway serving the quickstart policies.
//
// Input: the first byte picks the client request (bit 0: streamed; bit 1:
// with tools; bits 2-3: the surface, chat / responses / completions /
// embeddings, each sent natively to the upstream, so its relay reads the
// bytes), the rest is what the upstream sends before it closes.
// Beyond "no crash, no hang", the client must get exactly one complete,
// well-framed HTTP response, and a non-streamed 200 must carry JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/fuzz/gateway_harness.h"

namespace {

// The body of one surface's request, streamed and with a tool as `mode` says.
nlohmann::json Body(int surface, uint8_t mode, std::string* path) {
  const nlohmann::json tool = {
      {"type", "function"},
      {"name", "get_account_balance"},
      {"parameters", {{"type", "object"}, {"properties", nlohmann::json::object()}}}};
  nlohmann::json body = {{"model", "gpt-4o-mini"}};
  if (surface == 1) {
    *path = "/v1/responses";
    body["input"] = "What is my balance?";
    if (mode & 2) body["tools"] = {tool};
  } else if (surface == 2) {
    *path = "/v1/completions";
    body["prompt"] = "What is my balance?";
  } else if (surface == 3) {
    *path = "/v1/embeddings";
    body["input"] = {"What is my balance?"};
    return body;  // embeddings do not stream
  } else {
    *path = "/v1/chat/completions";
    body["messages"] = {{{"role", "user"}, {"content", "What is my balance?"}}};
    if (mode & 2) {
      nlohmann::json fn = tool;
      fn.erase("type");
      body["tools"] = {{{"type", "function"}, {"function", fn}}};
    }
  }
  if (mode & 1) {
    body["stream"] = true;
    if (surface != 1) body["stream_options"] = {{"include_usage", true}};
  }
  return body;
}

std::string ClientRequest(uint8_t mode) {
  std::string path;
  std::string text = Body((mode >> 2) & 3, mode, &path).dump();
  return "POST " + path + " HTTP/1.1\r\nHost: kt\r\nContent-Type: application/json\r\n"
         "Authorization: Bearer sk-fuzz\r\nContent-Length: " +
         std::to_string(text.size()) + "\r\n\r\n" + text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kt::fuzz::GatewayHarness* harness = [] {
    kt::gateway::Options options = kt::fuzz::GatewayHarness::BaseOptions();
    options.policy_paths = {kt::fuzz::SourceRoot() + "/examples/policies/quickstart.ktp"};
    options.max_upstream_body_bytes = 64u << 10;  // reachable by the fuzzer
    return new kt::fuzz::GatewayHarness(options, /*fake_upstream=*/true);
  }();
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  harness->SetUpstreamReply(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  std::string wrote = harness->Roundtrip(ClientRequest(mode));
  // The gateway turns an exception into a 500 (or a final frame) coded
  // internal_error, so that a defect costs one request; here it is a find.
  if (harness->internal_errors() != 0) {
    std::cerr << "upstream fuzzer: the gateway hit a defect:\n" << wrote << std::endl;
    std::abort();
  }
  std::vector<kt::fuzz::Answer> answers;
  std::string why;
  if (!kt::fuzz::SplitAnswers(wrote, &answers, &why) || answers.size() != 1) {
    if (why.empty()) why = std::to_string(answers.size()) + " responses to one request";
    std::cerr << "upstream fuzzer: " << why << "\n--- the gateway wrote:\n" << wrote << std::endl;
    std::abort();
  }
  const kt::fuzz::Answer& a = answers[0];
  if (!(mode & 1) && a.status == 200 &&
      !nlohmann::json::accept(a.body)) {
    std::cerr << "upstream fuzzer: a 200 whose body is not JSON:\n" << a.body << std::endl;
    std::abort();
  }
  return 0;
}
