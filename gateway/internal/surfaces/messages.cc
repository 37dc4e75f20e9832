// POST /v1/messages (Anthropic's Messages API) and /v1/messages/count_tokens:
// `system` and the turns' text blocks and tool results are the chat
// messages the policies read; the answer's text blocks go through the output
// stage and its tool_use blocks through the tool-call stage (`input` as
// tool.args). An Anthropic provider gets the body untouched unless a
// redaction rewrote it; an OpenAI-compatible one gets it as chat, and its
// answer comes back in the Messages shape.
#include <algorithm>
#include <cctype>

#include "gateway/internal/anthropic.h"
#include "gateway/internal/surface.h"
#include "gateway/internal/util.h"
#include "gateway/internal/validate.h"

namespace kt::gateway {

std::unique_ptr<SurfaceRelay> NewMessagesRelay(StreamJudge* judge, const Json& body, bool native);

namespace {

std::string Quote(const std::string& s) { return "`" + s + "`"; }

struct Turn {
  Json parts = Json::array();  // the canonical message's text parts
  std::vector<std::string> slots;
  Json tool_calls = Json::array();
};

// A tool_result block: a `tool` message of its own (its text content).
std::string ReadToolResult(const Json& block, const std::string& at, const std::string& ptr,
                           SurfaceRequest* r, Exchange* x) {
  const Json* id = FieldOf(block, "tool_use_id");
  if (id == nullptr || !id->is_string()) return Quote(at + ".tool_use_id") + " must be a string";
  const Json* content = FieldOf(block, "content");
  Json text = "";
  std::vector<std::string> slots;
  if (content != nullptr && content->is_string()) {
    text = *content;
    slots.push_back(ptr + "/content");
  } else if (content != nullptr && content->is_array()) {
    Json parts = Json::array();
    for (std::size_t k = 0; k < content->size(); ++k) {
      const Json& c = (*content)[k];
      if (StringField(c, "type") == "text" && FieldOf(c, "text") != nullptr && c["text"].is_string()) {
        parts.push_back({{"type", "text"}, {"text", c["text"]}});
        slots.push_back(ptr + "/content/" + std::to_string(k) + "/text");
      } else {
        NotEvaluated(x, at + ".content[" + std::to_string(k) + "]",
                     "a `" + StringField(c, "type") + "` block: no stage reads it");
        r->unread = true;
      }
    }
    text = parts.size() == 1 ? parts[0]["text"] : parts;
  }
  r->canonical["messages"].push_back({{"role", "tool"}, {"tool_call_id", *id}, {"content", text}});
  r->slots.push_back(std::move(slots));
  return "";
}

// One content block of a turn.
std::string ReadBlock(const Json& block, const std::string& at, const std::string& ptr, Turn* turn,
                      SurfaceRequest* r, Exchange* x) {
  if (!block.is_object()) return Quote(at) + " must be an object";
  const std::string type = StringField(block, "type");
  if (type == "text") {
    if (FieldOf(block, "text") == nullptr || !block["text"].is_string()) {
      return Quote(at + ".text") + " must be a string";
    }
    turn->parts.push_back({{"type", "text"}, {"text", block["text"]}});
    turn->slots.push_back(ptr + "/text");
  } else if (type == "tool_use") {
    const Json* input = FieldOf(block, "input");
    turn->tool_calls.push_back(
        {{"id", StringField(block, "id")},
         {"type", "function"},
         {"function",
          {{"name", StringField(block, "name")},
           {"arguments", input == nullptr ? "{}" : Dump(*input)}}}});
  } else if (type == "tool_result") {
    return ReadToolResult(block, at, ptr, r, x);
  } else if (type == "thinking" || type == "redacted_thinking") {
    // The model's own earlier reasoning, sent back with its signature: not
    // client text, recorded, never rewritten.
    NotEvaluated(x, at, "a `" + type + "` block: the model's reasoning, not judged");
  } else {
    NotEvaluated(x, at, "a `" + type + "` block: no stage reads it");
    r->unread = true;
  }
  return "";
}

std::string ReadTurn(const Json& m, std::size_t i, SurfaceRequest* r, Exchange* x) {
  const std::string at = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) return Quote(at) + " must be an object";
  const std::string role = StringField(m, "role");
  if (role != "user" && role != "assistant") return Quote(at + ".role") + " must be user or assistant";
  const Json* content = FieldOf(m, "content");
  const std::string ptr = "/messages/" + std::to_string(i) + "/content";
  if (content != nullptr && content->is_string()) {
    AddMessage(r, role, *content, ptr);
    return "";
  }
  if (content == nullptr || !content->is_array()) {
    return Quote(at + ".content") + " must be a string or a list of blocks";
  }
  Turn turn;
  for (std::size_t j = 0; j < content->size(); ++j) {
    std::string e = ReadBlock((*content)[j], at + ".content[" + std::to_string(j) + "]",
                              ptr + "/" + std::to_string(j), &turn, r, x);
    if (!e.empty()) return e;
  }
  if (turn.parts.empty() && turn.tool_calls.empty()) return "";
  Json message = {{"role", role},
                  {"content", turn.parts.size() == 1 ? turn.parts[0]["text"] : turn.parts}};
  if (!turn.tool_calls.empty()) message["tool_calls"] = std::move(turn.tool_calls);
  r->canonical["messages"].push_back(std::move(message));
  r->slots.push_back(std::move(turn.slots));
  return "";
}

std::string ReadSystem(const Json& system, SurfaceRequest* r) {
  if (system.is_string()) {
    AddMessage(r, "system", system, "/system");
    return "";
  }
  if (!system.is_array()) return "`system` must be a string or a list of text blocks";
  Json parts = Json::array();
  std::vector<std::string> slots;
  for (std::size_t j = 0; j < system.size(); ++j) {
    const Json* text = FieldOf(system[j], "text");
    if (StringField(system[j], "type") != "text" || text == nullptr || !text->is_string()) {
      return Quote("system[" + std::to_string(j) + "]") + " must be a text block";
    }
    parts.push_back({{"type", "text"}, {"text", *text}});
    slots.push_back("/system/" + std::to_string(j) + "/text");
  }
  r->canonical["messages"].push_back(
      {{"role", "system"}, {"content", parts.size() == 1 ? parts[0]["text"] : parts}});
  r->slots.push_back(std::move(slots));
  return "";
}

// Tools in chat's shape, so `input.tools` reads the same on every surface.
Json ChatTools(const Json& tools) {
  Json out = Json::array();
  for (const Json& t : tools) {
    Json fn = {{"name", StringField(t, "name")}};
    if (t.contains("description")) fn["description"] = t["description"];
    if (t.contains("input_schema")) fn["parameters"] = t["input_schema"];
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

std::string ReadRequest(const Json& body, SurfaceRequest* out, Exchange* x) {
  if (std::string e = ReadModelAndStream(body, out); !e.empty()) return e;
  const Json* tools = FieldOf(body, "tools");
  if (tools != nullptr && tools->is_array()) out->canonical["tools"] = ChatTools(*tools);
  if (const Json* system = FieldOf(body, "system"); system != nullptr && !system->is_null()) {
    if (std::string e = ReadSystem(*system, out); !e.empty()) return e;
  }
  const Json* messages = FieldOf(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return "`messages` must be a non-empty list";
  }
  for (std::size_t i = 0; i < messages->size(); ++i) {
    if (std::string e = ReadTurn((*messages)[i], i, out, x); !e.empty()) return e;
  }
  return "";
}

// A JSON pointer's tokens, array indices as numbers (so /content/10 sorts
// after /content/9).
std::vector<std::pair<long long, std::string>> PointerKey(const std::string& ptr) {
  std::vector<std::pair<long long, std::string>> key;
  std::size_t at = 1;
  while (at <= ptr.size()) {
    std::size_t end = ptr.find('/', at);
    if (end == std::string::npos) end = ptr.size();
    std::string token = ptr.substr(at, end - at);
    const bool number =
        !token.empty() && std::all_of(token.begin(), token.end(),
                                      [](unsigned char c) { return std::isdigit(c) != 0; });
    key.emplace_back(number ? std::stoll(token) : -1, number ? std::string() : token);
    at = end + 1;
  }
  return key;
}

// The answer's blocks the stages read must have the shapes they read.
std::string CheckMessage(const Json& answer) {
  const Json* content = FieldOf(answer, "content");
  if (content == nullptr || !content->is_array()) return "`content` must be a list of blocks";
  for (std::size_t i = 0; i < content->size(); ++i) {
    const Json& b = (*content)[i];
    const std::string at = "content[" + std::to_string(i) + "]";
    const std::string type = StringField(b, "type");
    if (type == "text" && (FieldOf(b, "text") == nullptr || !b["text"].is_string())) {
      return Quote(at + ".text") + " must be a string";
    }
    if (type == "tool_use" && (FieldOf(b, "name") == nullptr || !b["name"].is_string())) {
      return Quote(at + ".name") + " must be a string";
    }
  }
  return "";
}

class Messages : public Surface {
 public:
  std::string_view name() const override { return "messages"; }
  std::string_view upstream_path() const override { return "/messages"; }
  bool anthropic_errors() const override { return true; }

  std::string Read(const Json& body, SurfaceRequest* out, Exchange* x) const override {
    return ReadRequest(body, out, x);
  }

  // A redacted message's text goes to its first text block and the others
  // are emptied (Surface::Rewrite); the Messages API refuses empty text
  // blocks ("text content blocks must be non-empty"), so those are dropped.
  // Erased deepest and last first, so no pointer still to erase shifts.
  void Rewrite(const SurfaceRequest& r, const Json& forward, Json* body) const override {
    Surface::Rewrite(r, forward, body);
    const Json* messages = FieldOf(forward, "messages");
    if (messages == nullptr || !messages->is_array()) return;
    const Json& before = r.canonical["messages"];
    std::vector<std::string> emptied;
    for (std::size_t i = 0; i < r.slots.size() && i < messages->size(); ++i) {
      const Json& after = (*messages)[i];
      if (!after.is_object() || after["content"] == before[i]["content"]) continue;
      for (std::size_t s = 1; s < r.slots[i].size(); ++s) emptied.push_back(r.slots[i][s]);
    }
    std::sort(emptied.begin(), emptied.end(), [](const std::string& a, const std::string& b) {
      return PointerKey(a) > PointerKey(b);
    });
    for (const std::string& slot : emptied) {
      // ".../content/3/text" → the block ".../content/3" in ".../content".
      const std::size_t text = slot.rfind('/');
      const std::string block = slot.substr(0, text);
      const std::size_t cut = block.rfind('/');
      if (text == std::string::npos || cut == std::string::npos || slot.substr(text) != "/text")
        continue;
      Json::json_pointer list(block.substr(0, cut));
      if (!body->contains(list) || !(*body)[list].is_array()) continue;
      Json& blocks = (*body)[list];
      const std::size_t index = std::stoull(block.substr(cut + 1));
      if (index < blocks.size() && blocks.size() > 1)
        blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(index));
    }
  }

  std::string ToChat(const Json& body, Json* chat) const override {
    return MessagesToChatRequest(body, chat);
  }

  std::string AnswerOf(const Json& body, bool native, Json* answer) const override {
    if (!native) {
      if (std::string shape = ValidateCompletion(*answer); !shape.empty()) return shape;
      *answer = ChatToMessagesResponse(*answer, StringField(body, "model"));
    }
    return CheckMessage(*answer);
  }

  void View(Json* answer, AnswerView* view) const override {
    Json& content = (*answer)["content"];
    int calls = 0;
    for (std::size_t i = 0; i < content.size(); ++i) {
      Json& b = content[i];
      const std::string type = StringField(b, "type");
      if (type == "text") {
        view->texts.push_back({&b["text"], StringField(*answer, "stop_reason")});
      } else if (type == "tool_use") {
        const Json* input = FieldOf(b, "input");
        view->tools.push_back({StringField(b, "name"), input == nullptr ? "{}" : Dump(*input),
                               StringField(b, "id"), calls++});
      } else {
        view->unread.emplace_back("content[" + std::to_string(i) + "]",
                                  "a `" + type + "` block: no stage reads it");
      }
    }
  }

  std::unique_ptr<SurfaceRelay> Relay(StreamJudge* judge, const Json& body,
                                      bool native) const override {
    return NewMessagesRelay(judge, body, native);
  }
};

// count_tokens: the input stage on the same request, then the provider's
// count (only an Anthropic provider has one).
class CountTokens : public Messages {
 public:
  std::string_view name() const override { return "count_tokens"; }
  std::string_view upstream_path() const override { return "/messages/count_tokens"; }
  std::string_view api() const override { return "messages"; }
  bool has_output() const override { return false; }

  std::string ToChat(const Json&, Json*) const override {
    return "token counting needs a provider that speaks the Messages API";
  }
  std::string AnswerOf(const Json&, bool, Json* answer) const override {
    const Json* tokens = FieldOf(*answer, "input_tokens");
    return tokens != nullptr && tokens->is_number_integer() ? "" : "`input_tokens` must be an integer";
  }
  void View(Json*, AnswerView*) const override {}
};

}  // namespace

const Surface& MessagesSurface() {
  static const Messages surface;
  return surface;
}

const Surface& CountTokensSurface() {
  static const CountTokens surface;
  return surface;
}

}  // namespace kt::gateway
