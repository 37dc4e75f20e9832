#include "gateway/internal/sse.h"

namespace kt::gateway {

bool SseParser::Feed(std::string_view bytes, std::vector<SseEvent>* out) {
  if (failed_) return false;
  for (char c : bytes) {
    // Lines end in \n, \r or \r\n (the SSE grammar allows all three).
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\n' || c == '\r') {
      after_cr_ = c == '\r';
      Line(line_, out);
      line_.clear();
      continue;
    }
    line_ += c;
    if (line_.size() + current_.data.size() > max_event_) {
      failed_ = true;
      return false;
    }
  }
  return true;
}

void SseParser::Line(std::string_view line, std::vector<SseEvent>* out) {
  if (line.empty()) {
    if (has_fields_) out->push_back(std::move(current_));
    current_ = SseEvent();
    has_fields_ = false;
    data_lines_ = 0;
    return;
  }
  if (line[0] == ':') return;  // a comment (keep-alive)
  std::size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (data_lines_++ > 0) current_.data += '\n';
    current_.data.append(value);
    has_fields_ = true;
  } else if (field == "event") {
    current_.event = value;
    has_fields_ = true;
  }
}

}  // namespace kt::gateway
