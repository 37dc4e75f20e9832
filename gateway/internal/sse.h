// An incremental parser for server-sent events (the upstream's stream):
// bytes in, complete events out, whatever the chunking.
#ifndef KT_GATEWAY_INTERNAL_SSE_H_
#define KT_GATEWAY_INTERNAL_SSE_H_

#include <string>
#include <string_view>
#include <vector>

namespace kt::gateway {

struct SseEvent {
  std::string event;  // the `event:` field ("" when absent)
  std::string data;   // `data:` lines joined with '\n'
};

class SseParser {
 public:
  explicit SseParser(std::size_t max_event_bytes) : max_event_(max_event_bytes) {}
  // Appends the events completed by `bytes`. False when an event grows past
  // the bound (the stream is then malformed, and stays failed).
  bool Feed(std::string_view bytes, std::vector<SseEvent>* out);
  // True when bytes of an unfinished event are pending (a truncated stream).
  bool pending() const { return !line_.empty() || has_fields_; }

 private:
  void Line(std::string_view line, std::vector<SseEvent>* out);
  std::size_t max_event_;
  std::string line_;
  SseEvent current_;
  bool has_fields_ = false;
  int data_lines_ = 0;
  bool after_cr_ = false;
  bool failed_ = false;
};

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_SSE_H_
