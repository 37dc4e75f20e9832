#include "runtime/runtime.h"

namespace kt {

StreamRedactor::StreamRedactor(const PatternSet* set, std::vector<std::string> replacements,
                               std::size_t max_hold)
    : set_(set),
      replacements_(std::move(replacements)),
      max_hold_(max_hold),
      scanner_(set) {}

void StreamRedactor::Feed(std::string_view chunk, std::string* release) {
  scanner_.Feed(chunk, &ends_);
  ends_.clear();
  buffer_.append(chunk);
  // No match spans or ends at a quiescent offset, so the region before it can
  // be redacted on its own, exactly as in the whole text.
  if (scanner_.last_quiescent() > base_) ReleaseUpTo(scanner_.last_quiescent(), release);
  if (buffer_.size() > max_hold_) {
    capped_ = true;
    ReleaseUpTo(base_ + buffer_.size(), release);
  }
}

void StreamRedactor::Finish(std::string* release) {
  scanner_.Finish(&ends_);
  ends_.clear();
  ReleaseUpTo(base_ + buffer_.size(), release);
}

void StreamRedactor::ReleaseUpTo(std::size_t end, std::string* release) {
  std::size_t n = end - base_;
  if (n == 0) return;
  std::string_view region(buffer_.data(), n);
  std::size_t pos = 0;
  for (const PatternMatch& m : set_->AllMatches(region, prev_byte_)) {
    release->append(region.substr(pos, m.start - pos));
    release->append(replacements_[m.pattern]);
    redacted_.push_back(PatternMatch{m.pattern, base_ + m.start, base_ + m.end});
    pos = m.end;
  }
  release->append(region.substr(pos));
  prev_byte_ = static_cast<unsigned char>(region.back());
  buffer_.erase(0, n);
  base_ = end;
}

}  // namespace kt
