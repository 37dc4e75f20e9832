// The audit trail: one JSON object per line, appended, each line carrying
// the SHA-256 of the line before it (`prev_hash`), so that `kt audit
// verify` can prove nothing was edited, inserted or removed.
#ifndef KT_GATEWAY_INTERNAL_AUDIT_H_
#define KT_GATEWAY_INTERNAL_AUDIT_H_

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kt::gateway {

class AuditLog {
 public:
  // "-" is stdout. Continues the hash chain of an existing file.
  bool Open(const std::string& path, bool fsync_each, std::string* error);
  ~AuditLog();
  // Appends `event` (with `prev_hash` added) and flushes it to the kernel
  // (and the disk, with fsync) before returning: callers write the record
  // before completing the response it describes.
  void Write(nlohmann::json event);
  // Several events in one write (a request's decisions and its record).
  void WriteAll(std::vector<nlohmann::json> events);
  // Reopens the file (log rotation): the chain continues from the last line
  // written.
  bool Reopen(std::string* error);
  // The SHA-256 of the last line written (the chain's head), and the lines
  // written since the gateway started. Kept off the host (from /health), the
  // head proves the last line too: `kt audit verify --head`.
  std::string head() const;
  uint64_t written() const;

 private:
  mutable std::mutex mu_;
  uint64_t written_ = 0;
  std::string path_;
  std::FILE* file_ = nullptr;
  bool fsync_ = false;
  std::string prev_hash_;
};

// The genesis value of the chain: the first line's prev_hash.
inline constexpr const char* kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

}  // namespace kt::gateway

#endif  // KT_GATEWAY_INTERNAL_AUDIT_H_
