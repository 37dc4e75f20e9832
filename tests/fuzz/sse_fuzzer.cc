// libFuzzer target for the SSE parser (the upstream's stream). The first
// two bytes seed how the rest is split into reads; the events (and the
// failure, if any) must be the same as for one read of the whole input: a
// stream means the same whatever the network's chunking. No event may pass
// the bound.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "gateway/internal/sse.h"

namespace {

constexpr std::size_t kBound = 256;  // small, so the fuzzer reaches it

struct Outcome {
  std::vector<kt::gateway::SseEvent> events;
  bool ok = true;
  bool pending = false;
};

Outcome Parse(std::string_view text, uint16_t split_seed) {
  kt::gateway::SseParser parser(kBound);
  Outcome o;
  uint32_t state = split_seed | 1u;
  while (!text.empty() && o.ok) {
    std::size_t n = text.size();
    if (split_seed != 0) {
      state = state * 1103515245u + 12345u;
      n = std::min<std::size_t>(text.size(), 1 + (state >> 16) % 7);
    }
    o.ok = parser.Feed(text.substr(0, n), &o.events);
    text.remove_prefix(n);
  }
  o.pending = parser.pending();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint16_t seed = static_cast<uint16_t>(data[0] | (data[1] << 8));
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  Outcome whole = Parse(text, 0);
  Outcome split = Parse(text, seed == 0 ? 1 : seed);
  if (whole.ok != split.ok) std::abort();
  if (whole.ok && whole.pending != split.pending) std::abort();
  // A failed parse may stop at a different read; the events before the
  // failure must still agree as far as both got.
  std::size_t common = std::min(whole.events.size(), split.events.size());
  if (whole.ok && whole.events.size() != split.events.size()) std::abort();
  for (std::size_t i = 0; i < common; ++i) {
    if (whole.events[i].event != split.events[i].event) std::abort();
    if (whole.events[i].data != split.events[i].data) std::abort();
  }
  for (const auto& e : whole.events) {
    if (e.data.size() > kBound) std::abort();
  }
  return 0;
}
