// The surface-neutral core of a streamed answer's evaluation: the output
// stage's stream evaluator per channel (a chat choice, a Responses text
// part), tool calls judged once complete, and the one reason a stream ends
// early (a block, a failure). Each surface's relay parses its own events,
// feeds this, and renders what it decides in the surface's own frames.
#ifndef KT_GATEWAY_INTERNAL_STREAM_JUDGE_H_
#define KT_GATEWAY_INTERNAL_STREAM_JUDGE_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/internal/exchange.h"

namespace kt::gateway {

class StreamJudge {
 public:
  StreamJudge(Gateway* g, const PolicyEngine& engine, const Json& request, EvalContext ctx,
              Exchange* x)
      : g_(g), engine_(engine), request_(request), ctx_(std::move(ctx)), x_(x) {}

  // Text of one channel: appends the bytes now safe to send to `*release`.
  // False once the stream must end (see stop()).
  bool Text(int channel, std::string_view delta, std::string* release);
  // The channel's text ended: judged whole, the rest released. A channel
  // that never had text, or finished already, releases nothing.
  bool Finish(int channel, std::string* release, const std::string& finish_reason = "");
  // Finishes every open channel: each rest as (channel, text).
  bool FinishAll(std::vector<std::pair<int, std::string>>* rests);
  bool open(int channel) const { return streams_.count(channel) && !finished_.count(channel); }

  // One complete tool call, judged now.
  bool Tool(const std::string& name, const std::string& arguments, const std::string& id,
            int index);

  // Ends the stream on a failure: the upstream broke, or sent what cannot
  // be judged.
  bool Fail(std::string_view type, std::string_view code, const std::string& message);

  // Why the stream ends, once a call returned false.
  struct Stop {
    std::string type;
    std::string code;
    std::string message;
    std::string policy;  // a blocking policy
  };
  const Stop& stop() const { return stop_; }
  Exchange* exchange() const { return x_; }
  std::size_t max_held_bytes() const;  // the bound on frames a relay holds

 private:
  OutputStream* StreamFor(int channel);
  void Note(const OutputStream& s);
  bool Blocked(const Decision& d, bool record);

  Gateway* g_;
  const PolicyEngine& engine_;
  const Json& request_;
  EvalContext ctx_;
  Exchange* x_;
  std::map<int, std::unique_ptr<OutputStream>> streams_;
  std::map<int, bool> finished_;
  Stop stop_;
};

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_STREAM_JUDGE_H_
