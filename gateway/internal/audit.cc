#include "gateway/internal/audit.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "gateway/gateway.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {
// The last complete line of a file ("" when there is none).
std::string LastLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  std::streamoff size = in.tellg();
  std::streamoff start = size > (1 << 20) ? size - (1 << 20) : 0;
  in.seekg(start);
  std::string tail(static_cast<std::size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  std::size_t nl = tail.rfind('\n');
  return nl == std::string::npos ? tail : tail.substr(nl + 1);
}
}  // namespace

bool AuditLog::Open(const std::string& path, bool fsync_each, std::string* error) {
  std::lock_guard lock(mu_);
  path_ = path;
  fsync_ = fsync_each;
  if (path == "-") {
    file_ = stdout;
    prev_hash_ = kGenesisHash;
    return true;
  }
  std::string last = LastLine(path);
  prev_hash_ = last.empty() ? kGenesisHash : Sha256Hex(last);
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) {
    *error = "cannot open audit log " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

AuditLog::~AuditLog() {
  if (file_ != nullptr && file_ != stdout) std::fclose(file_);
}

void AuditLog::Write(nlohmann::json event) {
  std::vector<nlohmann::json> one;
  one.push_back(std::move(event));
  WriteAll(std::move(one));
}

void AuditLog::WriteAll(std::vector<nlohmann::json> events) {
  // Serialise outside the lock; only chaining and the write are serial.
  std::vector<std::string> bodies;
  bodies.reserve(events.size());
  for (nlohmann::json& e : events) {
    // The hash field goes last, appended to the serialised object, so the
    // rest can be dumped before the lock is taken. Invalid UTF-8 from a
    // client must not lose the record: it is replaced.
    std::string body = e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    body.pop_back();  // the closing brace
    bodies.push_back(std::move(body));
  }
  std::lock_guard lock(mu_);
  if (file_ == nullptr) return;
  std::string out;
  for (std::string& body : bodies) {
    std::string line = std::move(body);
    line += line.size() > 1 ? ",\"prev_hash\":\"" : "\"prev_hash\":\"";
    line += prev_hash_;
    line += "\"}";
    prev_hash_ = Sha256Hex(line);
    out += line;
    out += '\n';
  }
  written_ += bodies.size();
  std::fwrite(out.data(), 1, out.size(), file_);
  std::fflush(file_);
  if (fsync_ && file_ != stdout) fsync(fileno(file_));
}

std::string AuditLog::head() const {
  std::lock_guard lock(mu_);
  return prev_hash_;
}

uint64_t AuditLog::written() const {
  std::lock_guard lock(mu_);
  return written_;
}

bool AuditLog::Reopen(std::string* error) {
  std::lock_guard lock(mu_);
  if (path_ == "-" || path_.empty()) return true;
  std::FILE* fresh = std::fopen(path_.c_str(), "a");
  if (fresh == nullptr) {
    *error = "cannot reopen audit log " + path_ + ": " + std::strerror(errno);
    return false;  // keep writing to the old file rather than lose records
  }
  if (file_ != nullptr) std::fclose(file_);
  file_ = fresh;
  return true;
}

AuditVerification VerifyAuditLog(const std::string& path, const std::string& expected_head) {
  AuditVerification v;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    v.problem = "cannot open " + path;
    return v;
  }
  // Each line's own hash and the hash it claims for the line before it.
  std::vector<std::string> hashes, claims;
  std::string line;
  while (std::getline(in, line)) {
    ++v.lines;
    nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
    if (event.is_discarded() || !event.is_object() || !event.contains("prev_hash") ||
        !event["prev_hash"].is_string()) {
      v.bad_line = v.lines;
      v.problem = "line " + std::to_string(v.lines) + " is not an audit record with a prev_hash";
      return v;
    }
    claims.push_back(event["prev_hash"].get<std::string>());
    hashes.push_back(Sha256Hex(line));
  }
  if (!claims.empty()) v.continues = claims[0] != kGenesisHash;
  for (std::size_t k = 1; k < claims.size(); ++k) {
    if (claims[k] == hashes[k - 1]) continue;
    // The chain breaks between line k and line k+1 (1-based). If it also
    // breaks right after, line k+1 itself changed (its prev_hash field
    // included); otherwise line k's content did.
    const bool next_breaks = k + 1 < claims.size() && claims[k + 1] != hashes[k];
    const std::size_t edited = next_breaks ? k + 1 : k;
    v.bad_line = edited;
    v.problem = "line " + std::to_string(edited) +
                " was modified: the hash chain breaks between lines " + std::to_string(k) +
                " and " + std::to_string(k + 1) + " (or lines were inserted or removed there)";
    return v;
  }
  if (!expected_head.empty() && (hashes.empty() || hashes.back() != expected_head)) {
    v.bad_line = hashes.size();
    v.problem = "the last line's SHA-256 is not the recorded head " + expected_head +
                ": the log was truncated, or its last line was modified";
    return v;
  }
  v.ok = true;
  return v;
}

}  // namespace kt::gateway
