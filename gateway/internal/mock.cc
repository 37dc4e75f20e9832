#include "gateway/internal/mock.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace kt::gateway {

using Json = nlohmann::json;

namespace {

std::string LastUserText(const Json& request) {
  std::string text;
  if (!request.contains("messages") || !request["messages"].is_array()) return text;
  for (const Json& m : request["messages"]) {
    if (!m.is_object() || m.value("role", "") != "user" || !m.contains("content")) continue;
    const Json& c = m["content"];
    text.clear();
    if (c.is_string()) text = c.get<std::string>();
    if (c.is_array()) {
      for (const Json& part : c) {
        if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
            part["text"].is_string()) {
          text += part["text"].get<std::string>();
        }
      }
    }
  }
  return text;
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// The last word of the prompt without punctuation: what a model would pick
// as the argument of a lookup ("… account AC-1234?" → "AC-1234").
std::string LastWord(const std::string& text) {
  std::string word, last;
  for (char c : text + " ") {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
        c == '@' || (static_cast<unsigned char>(c) & 0x80)) {
      word += c;
    } else if (!word.empty()) {
      last = word;
      word.clear();
    }
  }
  while (!last.empty() && (last.back() == '.' || last.back() == '-')) last.pop_back();
  return last;
}

int Tokens(std::size_t bytes) { return static_cast<int>((bytes + 3) / 4); }

}  // namespace

MockReply MockComplete(const Json& request) {
  MockReply reply;
  std::string prompt = LastUserText(request);
  std::size_t prompt_bytes = 0;
  if (request.contains("messages") && request["messages"].is_array()) {
    prompt_bytes = request["messages"].dump().size();
  }
  reply.prompt_tokens = Tokens(prompt_bytes);
  const std::string kDirective = "kt-mock:";
  std::size_t at = prompt.find(kDirective);
  if (at != std::string::npos) {
    std::string rest = Trim(prompt.substr(at + kDirective.size()));
    if (rest.rfind("say ", 0) == 0) {
      reply.text = rest.substr(4);
    } else if (rest.rfind("tool ", 0) == 0) {
      std::string spec = Trim(rest.substr(5));
      std::size_t space = spec.find(' ');
      reply.tool_call = true;
      reply.tool_name = spec.substr(0, space);
      reply.tool_arguments = space == std::string::npos ? "{}" : Trim(spec.substr(space + 1));
    } else {
      reply.text =
          "kt-mock: unknown directive (use `kt-mock: say TEXT` or "
          "`kt-mock: tool NAME {JSON}`)";
    }
  } else if (request.contains("tools") && request["tools"].is_array() &&
             !request["tools"].empty() && request.value("tool_choice", Json("auto")) != "none") {
    // Call the first tool, filling each required parameter with the
    // prompt's last word.
    const Json& fn = request["tools"][0].value("function", Json::object());
    reply.tool_call = true;
    reply.tool_name = fn.value("name", "tool");
    Json args = Json::object();
    const Json params = fn.value("parameters", Json::object());
    if (params.contains("required") && params["required"].is_array()) {
      for (const Json& r : params["required"]) {
        if (r.is_string()) args[r.get<std::string>()] = LastWord(prompt);
      }
    }
    reply.tool_arguments = args.dump();
  } else {
    reply.text = "This is a mock completion. You said: " + prompt;
  }
  reply.completion_tokens = Tokens(
      reply.tool_call ? reply.tool_name.size() + reply.tool_arguments.size() : reply.text.size());
  return reply;
}

namespace {
Json Usage(const MockReply& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }
}  // namespace

Json MockResponse(const MockReply& reply, const std::string& model, const std::string& id,
                  int64_t created) {
  Json message = {{"role", "assistant"}, {"content", nullptr}};
  if (reply.tool_call) {
    message["tool_calls"] = Json::array(
        {{{"id", "call_" + id.substr(id.size() - 12)},
          {"type", "function"},
          {"function", {{"name", reply.tool_name}, {"arguments", reply.tool_arguments}}}}});
  } else {
    message["content"] = reply.text;
  }
  return {{"id", id},
          {"object", "chat.completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array({{{"index", 0},
                                    {"message", message},
                                    {"logprobs", nullptr},
                                    {"finish_reason", reply.tool_call ? "tool_calls" : "stop"}}})},
          {"usage", Usage(reply)}};
}

std::vector<std::string> MockStream(const MockReply& reply, const std::string& model,
                                    const std::string& id, int64_t created, std::size_t chunk_size,
                                    bool include_usage) {
  if (chunk_size == 0) chunk_size = 16;
  std::vector<std::string> out;
  auto chunk = [&](Json delta, Json finish) {
    Json c = {{"id", id},
              {"object", "chat.completion.chunk"},
              {"created", created},
              {"model", model},
              {"choices", Json::array({{{"index", 0},
                                        {"delta", std::move(delta)},
                                        {"logprobs", nullptr},
                                        {"finish_reason", std::move(finish)}}})}};
    if (include_usage) c["usage"] = nullptr;
    out.push_back(Dump(c));
  };
  // Cut on character boundaries: every piece is valid UTF-8 (a JSON string).
  auto pieces = [&](const std::string& s) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < s.size()) {
      std::size_t end = std::min(s.size(), i + chunk_size);
      while (end < s.size() && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) ++end;
      parts.push_back(s.substr(i, end - i));
      i = end;
    }
    return parts;
  };
  chunk({{"role", "assistant"}, {"content", reply.tool_call ? Json(nullptr) : Json("")}}, nullptr);
  if (reply.tool_call) {
    std::string call_id = "call_" + id.substr(id.size() - 12);
    chunk({{"tool_calls",
            Json::array({{{"index", 0},
                          {"id", call_id},
                          {"type", "function"},
                          {"function", {{"name", reply.tool_name}, {"arguments", ""}}}}})}},
          nullptr);
    for (const std::string& p : pieces(reply.tool_arguments)) {
      chunk({{"tool_calls", Json::array({{{"index", 0}, {"function", {{"arguments", p}}}}})}},
            nullptr);
    }
    chunk(Json::object(), "tool_calls");
  } else {
    for (const std::string& p : pieces(reply.text)) chunk({{"content", p}}, nullptr);
    chunk(Json::object(), "stop");
  }
  if (include_usage) {
    Json c = {{"id", id},       {"object", "chat.completion.chunk"}, {"created", created},
              {"model", model}, {"choices", Json::array()},          {"usage", Usage(reply)}};
    out.push_back(Dump(c));
  }
  out.push_back("[DONE]");
  return out;
}

namespace {

// A unit vector from the text's bytes (FNV-1a per dimension): the same text
// always embeds the same, different texts differ.
Json Embedding(std::string_view text) {
  constexpr int kDims = 8;
  std::vector<double> v(kDims);
  double norm = 0;
  for (int d = 0; d < kDims; ++d) {
    uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(d);
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    v[d] = static_cast<double>(h % 2001) / 1000.0 - 1.0;
    norm += v[d] * v[d];
  }
  norm = norm > 0 ? std::sqrt(norm) : 1;
  Json out = Json::array();
  for (double x : v) out.push_back(x / norm);
  return out;
}

}  // namespace

// `encoding_format: "base64"` (the SDKs' default): the little-endian
// float32 bytes of the vector, base64-encoded, as the API sends them.
std::string Base64Floats(const Json& vector) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  for (const Json& x : vector) {
    const float f = static_cast<float>(x.get<double>());
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  }
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

Json MockEmbeddings(const Json& request) {
  std::vector<std::string> texts;
  const Json* input = request.is_object() && request.contains("input") ? &request["input"] : nullptr;
  if (input != nullptr && input->is_string()) texts.push_back(input->get<std::string>());
  // A list of strings, or of token ids (each id embedded as its digits), or
  // a list of token lists: one vector per entry.
  const bool tokens = input != nullptr && input->is_array() && !input->empty() &&
                      (*input)[0].is_number_integer();
  if (input != nullptr && input->is_array() && tokens) texts.push_back(input->dump());
  if (input != nullptr && input->is_array() && !tokens) {
    for (const Json& item : *input) texts.push_back(item.is_string() ? item.get<std::string>()
                                                                     : item.dump());
  }
  const bool base64 = request.is_object() && request.contains("encoding_format") &&
                      request["encoding_format"] == "base64";
  Json data = Json::array();
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    Json vector = Embedding(texts[i]);
    if (base64) vector = Base64Floats(vector);
    data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", std::move(vector)}});
    bytes += texts[i].size();
  }
  const int tokens_used = Tokens(bytes);
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", request.is_object() && request.contains("model") && request["model"].is_string()
                        ? request["model"].get<std::string>()
                        : ""},
          {"usage", {{"prompt_tokens", tokens_used}, {"total_tokens", tokens_used}}}};
}

}  // namespace kt::gateway
