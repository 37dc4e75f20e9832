#include "gateway/internal/stream_judge.h"

#include <algorithm>

#include "gateway/internal/util.h"

namespace kt::gateway {

OutputStream* StreamJudge::StreamFor(int channel) {
  auto it = streams_.find(channel);
  if (it != streams_.end()) return it->second.get();
  PolicyEngine::StreamOptions so;
  so.max_hold = g_->options.stream_max_hold;
  so.max_output = g_->options.max_upstream_body_bytes;
  auto s = engine_.StartOutput(request_, ctx_, so);
  if (s->decision().error) {
    Blocked(s->decision(), true);
    return nullptr;
  }
  return (streams_[channel] = std::move(s)).get();
}

bool StreamJudge::Text(int channel, std::string_view delta, std::string* release) {
  OutputStream* s = StreamFor(channel);
  if (s == nullptr) {
    // The evaluator could not start: fail-closed ended the stream; under
    // fail-open the text goes as it came (recorded as not evaluated).
    if (!stop_.code.empty()) return false;
    release->append(delta);
    return true;
  }
  if (finished_.count(channel)) return true;  // text after its end: nothing judges it twice
  int64_t t = MonoMicros();
  bool ok = s->Feed(delta, release);
  x_->policy_us += MonoMicros() - t;
  if (!ok) return Blocked(s->decision(), true);
  return true;
}

bool StreamJudge::Finish(int channel, std::string* release, const std::string& finish_reason) {
  auto it = streams_.find(channel);
  if (it == streams_.end() || finished_.count(channel)) return true;
  finished_[channel] = true;
  int64_t t = MonoMicros();
  bool ok = it->second->Finish(release, finish_reason);
  x_->policy_us += MonoMicros() - t;
  Note(*it->second);
  if (!ok) return Blocked(it->second->decision(), true);
  Record(x_, it->second->decision());
  return true;
}

bool StreamJudge::FinishAll(std::vector<std::pair<int, std::string>>* rests) {
  std::vector<int> open;
  for (const auto& [channel, s] : streams_) {
    if (!finished_.count(channel)) open.push_back(channel);
  }
  for (int channel : open) {
    std::string release;
    if (!Finish(channel, &release)) return false;
    if (!release.empty()) rests->emplace_back(channel, std::move(release));
  }
  return true;
}

bool StreamJudge::Tool(const std::string& name, const std::string& arguments,
                       const std::string& id, int index) {
  int64_t t = MonoMicros();
  Decision d = engine_.EvaluateToolCall(request_, name, arguments, id, index, ctx_);
  x_->policy_us += MonoMicros() - t;
  Record(x_, d);
  if (d.blocked || (d.error && !g_->options.fail_open)) return Blocked(d, false);
  return true;
}

void StreamJudge::Note(const OutputStream& s) {
  x_->max_held = std::max(x_->max_held, s.max_held());
  x_->stream_capped = x_->stream_capped || s.capped();
}

std::size_t StreamJudge::max_held_bytes() const { return g_->options.max_upstream_body_bytes; }

// A decision that ends the stream: a block, or an evaluation error under
// fail-closed. (Under fail-open an error lets the stream go on.)
bool StreamJudge::Blocked(const Decision& d, bool record) {
  if (record) Record(x_, d);
  if (d.error && !d.blocked) {
    if (g_->options.fail_open) return true;
    x_->outcome = "not_evaluated";
    return Fail("policy_error", "policy_evaluation_failed",
                "the output could not be evaluated: " + d.error_message);
  }
  const PolicyHit* h = d.blocking();
  x_->outcome = "blocked";
  const char* fallback = d.stage == "tool_call" ? "tool_blocked" : "output_blocked";
  stop_ = {"policy_violation", PolicyCode(*h, fallback), h->message, h->policy};
  x_->error_code = stop_.code;
  x_->error_message = h->message;
  return false;
}

bool StreamJudge::Fail(std::string_view type, std::string_view code, const std::string& message) {
  if (x_->outcome == "allowed") x_->outcome = "error";
  stop_ = {std::string(type), std::string(code), message, ""};
  x_->error_code = code;
  x_->error_message = message;
  return false;
}

}  // namespace kt::gateway
