#include "gateway/internal/util.h"

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

bool GlobMatch(std::string_view glob, std::string_view text) {
  // Iterative matcher with one backtrack point: linear for one `*`, and
  // O(glob × text) at worst, on names a few dozen bytes long.
  std::size_t g = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (g < glob.size() && (glob[g] == '?' || glob[g] == text[t])) {
      ++g;
      ++t;
    } else if (g < glob.size() && glob[g] == '*') {
      star = g++;
      mark = t;
    } else if (star != std::string_view::npos) {
      g = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
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

}  // namespace kt::gateway
