#include "gateway/internal/util.h"

#include <vector>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include <openssl/rand.h>
#include <openssl/sha.h>

namespace kt::gateway {

bool ParseUrl(std::string_view text, Url* out) {
  Url u;
  if (text.rfind("https://", 0) == 0) {
    u.tls = true;
    text.remove_prefix(8);
  } else if (text.rfind("http://", 0) == 0) {
    text.remove_prefix(7);
  } else {
    return false;
  }
  std::size_t slash = text.find('/');
  std::string_view authority = text.substr(0, slash);
  u.path = slash == std::string_view::npos ? "" : std::string(text.substr(slash));
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  std::size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
    u.port = u.tls ? "443" : "80";
  }
  if (u.host.empty() || u.port.empty()) return false;
  for (char c : u.port) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::move(u);
  return true;
}

namespace {
std::string Hex(const unsigned char* data, std::size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}
}  // namespace

std::string NewId(std::string_view prefix) {
  // Ids must be unique, not secret: a per-thread generator seeded once from
  // OpenSSL (no lock on the hot path).
  thread_local std::mt19937_64 rng = [] {
    uint64_t seed[2] = {0, 0};
    if (RAND_bytes(reinterpret_cast<unsigned char*>(seed), sizeof seed) != 1) {
      seed[0] = static_cast<uint64_t>(MonoMicros());
      seed[1] = std::hash<std::thread::id>()(std::this_thread::get_id());
    }
    std::seed_seq seq{seed[0], seed[0] >> 32, seed[1], seed[1] >> 32};
    return std::mt19937_64(seq);
  }();
  uint64_t words[2] = {rng(), rng()};
  unsigned char bytes[16];
  std::memcpy(bytes, words, sizeof bytes);
  return std::string(prefix) + Hex(bytes, sizeof bytes);
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return Hex(digest, sizeof digest);
}

std::string KeyFingerprint(std::string_view key) {
  if (key.empty()) return "";
  return "sha256:" + Sha256Hex(key).substr(0, 16);
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t MonoMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

nlohmann::json ErrorEnvelope(std::string_view type, std::string_view code, std::string_view message,
                             std::string_view request_id, std::string_view policy) {
  nlohmann::json error = {{"type", type}, {"code", code}, {"message", message}};
  if (!policy.empty()) error["policy"] = policy;
  error["request_id"] = request_id;
  return {{"error", std::move(error)}};
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

std::string BearerToken(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() > kBearer.size() &&
      (authorization.substr(0, kBearer.size()) == kBearer ||
       authorization.substr(0, kBearer.size()) == "bearer ")) {
    return std::string(authorization.substr(kBearer.size()));
  }
  return "";
}

namespace {

// A SAX consumer that builds the document with an explicit stack, refusing
// duplicate keys and depth past the bound as they are met.
class StrictDom {
 public:
  using Json = nlohmann::json;
  StrictDom(Json* root, std::size_t max_depth) : root_(root), max_depth_(max_depth) {}
  const std::string& error() const { return error_; }

  bool null() { return Put(Json(nullptr)) != nullptr; }
  bool boolean(bool v) { return Put(Json(v)) != nullptr; }
  bool number_integer(Json::number_integer_t v) { return Put(Json(v)) != nullptr; }
  bool number_unsigned(Json::number_unsigned_t v) { return Put(Json(v)) != nullptr; }
  bool number_float(Json::number_float_t v, const std::string& /*text*/) {
    return Put(Json(v)) != nullptr;
  }
  bool string(std::string& v) { return Put(Json(std::move(v))) != nullptr; }
  bool binary(Json::binary_t& /*v*/) { return false; }  // never produced by text JSON
  bool start_object(std::size_t /*n*/) { return Open(Json::object()); }
  bool start_array(std::size_t /*n*/) { return Open(Json::array()); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(std::string& k) {
    if (stack_.back()->contains(k)) {
      error_ = "duplicate key `" + k.substr(0, 64) + "`";
      return false;
    }
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t /*pos*/, const std::string& /*token*/,
                   const nlohmann::detail::exception& e) {
    error_ = e.what();
    // "[json.exception.parse_error.101] parse error at …": keep what a user reads.
    if (std::size_t at = error_.find("] "); at != std::string::npos) error_.erase(0, at + 2);
    return false;
  }

 private:
  // Places a value where the parse is; a pointer to it (stable: a container
  // on the stack is not written to while a child of it is open).
  Json* Put(Json v) {
    if (stack_.empty()) {
      *root_ = std::move(v);
      return root_;
    }
    Json* top = stack_.back();
    if (top->is_object()) {
      Json& slot = (*top)[key_];
      slot = std::move(v);
      return &slot;
    }
    top->push_back(std::move(v));
    return &top->back();
  }
  bool Open(Json v) {
    if (stack_.size() >= max_depth_) {
      error_ = "nesting deeper than " + std::to_string(max_depth_) + " levels";
      return false;
    }
    stack_.push_back(Put(std::move(v)));
    return true;
  }
  bool Close() {
    stack_.pop_back();
    return true;
  }
  Json* root_;
  std::size_t max_depth_;
  std::vector<Json*> stack_;
  std::string key_;
  std::string error_;
};

}  // namespace

bool ParseJsonStrict(std::string_view text, nlohmann::json* out, std::string* error,
                     std::size_t max_depth) {
  *out = nullptr;
  StrictDom dom(out, max_depth);
  bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &dom);
  if (!ok) {
    *error = dom.error().empty() ? "not valid JSON" : dom.error();
    *out = nullptr;
  }
  return ok;
}

const nlohmann::json* FieldOf(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string StringField(const nlohmann::json& object, std::string_view key) {
  const nlohmann::json* v = FieldOf(object, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : "";
}

bool ReadToolCallDelta(const nlohmann::json& entry, int64_t position, ToolCallDelta* out) {
  if (!entry.is_object()) return false;
  out->index = position;
  if (const nlohmann::json* i = FieldOf(entry, "index")) {
    if (!i->is_number_integer()) return false;
    out->index = i->get<int64_t>();
  }
  out->id = StringField(entry, "id");
  if (const nlohmann::json* fn = FieldOf(entry, "function")) {
    out->name = StringField(*fn, "name");
    out->arguments = StringField(*fn, "arguments");
  }
  return true;
}

}  // namespace kt::gateway
