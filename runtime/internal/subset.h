// Subset construction over an abi::NfaProgram, one DFA state at a time.
//
// The same code builds DFAs eagerly at compile time (expand every state
// reachable from the starts) and lazily at scan time (expand a state the
// first time the text leaves it). A DFA state is (NFA states before closure,
// context of the previous byte, patterns that matched on entry); assertions
// are resolved while stepping, so matches are reported one symbol late and an
// end-of-text class exists (always the last class).
#ifndef KT_RUNTIME_INTERNAL_SUBSET_H_
#define KT_RUNTIME_INTERNAL_SUBSET_H_

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "runtime/abi/automaton.h"

namespace kt {

class Subset {
 public:
  struct Key {
    std::vector<uint32_t> q;
    uint8_t ctx;
    std::vector<uint32_t> matches;
    bool final_state = false;
  };

  Subset(const abi::NfaProgram& nfa, bool unanchored);

  uint32_t num_classes() const { return num_classes_; }
  const std::array<uint8_t, 256>& byte_class() const { return byte_class_; }
  std::size_t num_states() const { return keys_.size(); }

  // The start state for a context (interned on first use).
  uint32_t Start(abi::Context ctx);
  // Fills `row` (num_classes entries) with the successors of `state`,
  // interning new states as needed.
  void Expand(uint32_t state, uint32_t* row);

  const std::vector<uint32_t>& matches(uint32_t state) const { return keys_[state].matches; }
  bool quiescent(uint32_t state) const;

  // Drops every state but the dead state (a full cache). `keep` is re-interned
  // and its new id returned, so a scan can continue where it was.
  uint32_t Clear(uint32_t keep);

  Key KeyOf(uint32_t state) const { return keys_[state]; }
  uint32_t InternKey(const Key& k) { return Intern(k.q, k.ctx, k.matches, k.final_state); }

 private:
  enum Sig : uint8_t { kSigOther = 0, kSigNewline = 1, kSigWord = 2, kSigEot = 3 };
  struct Flags {
    bool begin_text, begin_line, end_text, end_line, word_boundary;
  };

  void ComputeClasses();
  uint32_t Intern(const std::vector<uint32_t>& q, uint8_t ctx,
                  const std::vector<uint32_t>& matches, bool final_state = false);
  void StepAll(const Key& k);
  void Closure(const std::vector<uint32_t>& q, const Flags& f, std::vector<uint32_t>* matches);
  void Push(uint32_t s);

  const abi::NfaProgram& nfa_;
  bool unanchored_;
  std::array<uint8_t, 256> byte_class_{};
  std::vector<uint32_t> representative_;
  std::vector<uint8_t> class_ctx_;
  std::vector<uint8_t> class_sig_;
  bool sig_present_[4] = {false, false, false, false};
  uint32_t num_classes_ = 0;
  std::vector<Key> keys_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> ids_;
  // Scratch, reused across steps.
  std::vector<std::vector<uint32_t>> q_next_;
  std::vector<uint32_t> step_matches_[4];
  std::vector<uint32_t> ranges_;
  std::vector<uint32_t> mark_;
  uint32_t generation_ = 0;
  std::vector<uint32_t> stack_;
};

}  // namespace kt

#endif  // KT_RUNTIME_INTERNAL_SUBSET_H_
