// Native scan loops for pattern-set DFAs.
//
// The ABI tables are re-laid for the generated code: states are renumbered
// so that every state that reports a match comes after every state that does
// not, and transitions hold premultiplied row offsets (state * classes). One
// step is then: load the byte, load its class, add, load the next offset,
// and compare it with the first match offset; no multiply, no flag table.
// The main loop does four steps per bounds check.
//
// Quiescent states left by at most six byte values get a skip loop over 16
// bytes at a time: one vector compare per exit byte, then a count of
// trailing zeros finds the first exit. (A nibble-table "shufti" variant for
// larger exit sets was tried and measured slower on ordinary text, where
// such states are left every few bytes.)
#include "runtime/internal/jit.h"

#include "runtime/abi/request_view.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <map>
#include <mutex>

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Bitcode/BitcodeWriter.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/ExecutionEngine/Orc/ThreadSafeModule.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Intrinsics.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

namespace kt {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxVectorExits = 6;
constexpr unsigned kVectorWidth = 16;

class Engine {
 public:
  static Engine* Get(std::string* error) {
    static Engine* engine = [] {
      auto* e = new Engine();
      llvm::InitializeNativeTarget();
      llvm::InitializeNativeTargetAsmPrinter();
      auto jit = llvm::orc::LLJITBuilder().create();
      if (!jit) {
        e->error_ = llvm::toString(jit.takeError());
      } else {
        e->jit_ = std::move(*jit);
      }
      return e;
    }();
    if (engine->jit_ == nullptr) {
      *error = engine->error_;
      return nullptr;
    }
    return engine;
  }
  llvm::orc::LLJIT& jit() { return *jit_; }
  std::mutex& mutex() { return mutex_; }

 private:
  std::unique_ptr<llvm::orc::LLJIT> jit_;
  std::string error_;
  std::mutex mutex_;
};

std::atomic<uint64_t> next_module_id{0};

// The scan function's signature, shared by both loop kinds (ScanFn).
struct ScanArgs {
  llvm::Function* fn;
  llvm::Value* p;
  llvm::Value* n;
  llvm::Value* state_ptr;
  llvm::Value* next_tab;
  llvm::Value* cls_tab;
};

ScanArgs DeclareScan(llvm::Module& m, const std::string& name) {
  llvm::LLVMContext& ctx = m.getContext();
  auto* ptr = llvm::PointerType::getUnqual(ctx);
  auto* i64 = llvm::Type::getInt64Ty(ctx);
  auto* fty = llvm::FunctionType::get(i64, {ptr, i64, ptr, ptr, ptr, ptr}, false);
  auto* fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, name, m);
  for (unsigned a : {0u, 2u, 3u, 4u}) fn->addParamAttr(a, llvm::Attribute::NoAlias);
  return ScanArgs{fn, fn->getArg(0), fn->getArg(1), fn->getArg(2), fn->getArg(3), fn->getArg(4)};
}

// Emits `uint64_t name(p, n, state*, next, byte_class, unused)`. The loop
// stops *before* a byte whose transition is special (enters a match state;
// for lazy tables also: not built yet), leaving the state before it in
// *state; the caller takes that one step itself. States are row addresses.
// Eager tables mark matches by the renumbering threshold; lazy tables flag
// specials (a match, or a row not built yet) in the entry's top bit.
void EmitScan(llvm::Module& m, const JitTables& t, bool lazy, const std::string& name) {
  llvm::LLVMContext& ctx = m.getContext();
  llvm::IRBuilder<> b(ctx);
  auto* i8 = b.getInt8Ty();
  auto* i16 = b.getInt16Ty();
  auto* i64 = b.getInt64Ty();
  // States are row addresses. The code holds no address: the first row's
  // (`base`, passed in) is added at entry, so the object is relocatable and
  // can be cached across processes.
  auto [fn, p, n, state_ptr, base_ptr, cls_tab] = DeclareScan(m, name);
  auto* entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  b.SetInsertPoint(entry);
  llvm::Value* base = b.CreatePtrToInt(base_ptr, i64, "base");
  llvm::Value* threshold =
      lazy ? b.getInt64(0)
           : b.CreateAdd(base, b.getInt64(uint64_t{t.match_threshold} * sizeof(uint64_t)), "threshold");
  auto special = [&](llvm::Value* s2) {
    return lazy ? b.CreateICmpSLT(s2, b.getInt64(0)) : b.CreateICmpUGE(s2, threshold);
  };

  auto* loop = llvm::BasicBlock::Create(ctx, "loop", fn);
  auto* dispatch = llvm::BasicBlock::Create(ctx, "dispatch", fn);
  auto* step = llvm::BasicBlock::Create(ctx, "step", fn);
  auto* unrolled = llvm::BasicBlock::Create(ctx, "step4", fn);
  auto* single = llvm::BasicBlock::Create(ctx, "step1", fn);
  auto* found = llvm::BasicBlock::Create(ctx, "found", fn);
  auto* exit = llvm::BasicBlock::Create(ctx, "exit", fn);

  llvm::Value* s0 = b.CreateLoad(i64, state_ptr, "s0");
  b.CreateBr(loop);

  b.SetInsertPoint(loop);
  auto* i_phi = b.CreatePHI(i64, 3, "i");
  auto* s_phi = b.CreatePHI(i64, 3, "s");
  i_phi->addIncoming(b.getInt64(0), entry);
  s_phi->addIncoming(s0, entry);
  b.CreateCondBr(b.CreateICmpULT(i_phi, n), dispatch, exit);

  // Found: the byte at `found_i`, from state `found_s`, is special.
  b.SetInsertPoint(found);
  auto* found_i = b.CreatePHI(i64, 5, "found.i");
  auto* found_s = b.CreatePHI(i64, 5, "found.s");
  b.CreateStore(found_s, state_ptr);
  b.CreateRet(found_i);

  b.SetInsertPoint(step);
  auto* step_i = b.CreatePHI(i64, 1 + 2 * t.accels.size(), "step.i");
  step_i->addIncoming(i_phi, dispatch);

  b.SetInsertPoint(dispatch);
  auto* sw = b.CreateSwitch(b.CreateSub(s_phi, base), step, t.accels.size());
  auto* vty = llvm::FixedVectorType::get(i8, kVectorWidth);
  llvm::Function* cttz = llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::cttz, {i16});
  for (const Accel& a : t.accels) {
    auto* head = llvm::BasicBlock::Create(ctx, "accel", fn);
    auto* body = llvm::BasicBlock::Create(ctx, "accel.body", fn);
    auto* hit = llvm::BasicBlock::Create(ctx, "accel.hit", fn);
    auto* done = llvm::BasicBlock::Create(ctx, "accel.done", fn);
    sw->addCase(b.getInt64(uint64_t{a.state} * sizeof(uint64_t)), head);
    b.SetInsertPoint(head);
    auto* ai = b.CreatePHI(i64, 2, "ai");
    ai->addIncoming(i_phi, dispatch);
    b.CreateCondBr(b.CreateICmpULE(b.CreateAdd(ai, b.getInt64(kVectorWidth)), n), body, done);
    b.SetInsertPoint(body);
    llvm::Value* v = b.CreateAlignedLoad(vty, b.CreateGEP(i8, p, ai), llvm::MaybeAlign(1), "v");
    llvm::Value* any = nullptr;
    for (uint8_t e : a.exits) {
      llvm::Value* eq = b.CreateICmpEQ(v, b.CreateVectorSplat(kVectorWidth, b.getInt8(e)));
      any = any == nullptr ? eq : b.CreateOr(any, eq);
    }
    llvm::Value* bits = b.CreateBitCast(any, i16);
    llvm::Value* next_ai = b.CreateAdd(ai, b.getInt64(kVectorWidth));
    ai->addIncoming(next_ai, body);
    b.CreateCondBr(b.CreateICmpNE(bits, b.getInt16(0)), hit, head);
    b.SetInsertPoint(hit);
    llvm::Value* tz = b.CreateCall(cttz, {bits, b.getTrue()});
    llvm::Value* hit_i = b.CreateAdd(ai, b.CreateZExt(tz, i64));
    b.CreateBr(step);
    step_i->addIncoming(hit_i, hit);
    b.SetInsertPoint(done);
    b.CreateBr(step);
    step_i->addIncoming(ai, done);
  }

  // One transition from `s` on the byte at `i`.
  auto transition = [&](llvm::Value* s, llvm::Value* i) -> llvm::Value* {
    llvm::Value* byte = b.CreateLoad(i8, b.CreateGEP(i8, p, i));
    llvm::Value* c = b.CreateZExt(b.CreateLoad(i8, b.CreateGEP(i8, cls_tab, b.CreateZExt(byte, i64))), i64);
    llvm::Value* row = b.CreateIntToPtr(s, b.getPtrTy());
    return b.CreateLoad(i64, b.CreateGEP(i64, row, c));
  };

  // Four steps per bounds check while at least four bytes remain.
  b.SetInsertPoint(step);
  llvm::Value* room4 = b.CreateICmpULE(b.CreateAdd(step_i, b.getInt64(4)), n);
  b.CreateCondBr(room4, unrolled, single);

  b.SetInsertPoint(unrolled);
  llvm::Value* s = s_phi;
  for (int k = 0; k < 4; ++k) {
    llvm::Value* i = b.CreateAdd(step_i, b.getInt64(k));
    llvm::Value* s2 = transition(s, i);
    auto* cont = llvm::BasicBlock::Create(ctx, "step4.cont", fn);
    b.CreateCondBr(special(s2), found, cont);
    found_i->addIncoming(i, b.GetInsertBlock());
    found_s->addIncoming(s, b.GetInsertBlock());
    b.SetInsertPoint(cont);
    s = s2;
  }
  i_phi->addIncoming(b.CreateAdd(step_i, b.getInt64(4)), b.GetInsertBlock());
  s_phi->addIncoming(s, b.GetInsertBlock());
  b.CreateBr(loop);

  b.SetInsertPoint(single);
  auto* single_body = llvm::BasicBlock::Create(ctx, "step1.body", fn);
  b.CreateCondBr(b.CreateICmpULT(step_i, n), single_body, exit);
  b.SetInsertPoint(single_body);
  llvm::Value* s1 = transition(s_phi, step_i);
  auto* single_cont = llvm::BasicBlock::Create(ctx, "step1.cont", fn);
  b.CreateCondBr(special(s1), found, single_cont);
  found_i->addIncoming(step_i, single_body);
  found_s->addIncoming(s_phi, single_body);
  b.SetInsertPoint(single_cont);
  i_phi->addIncoming(b.CreateAdd(step_i, b.getInt64(1)), single_cont);
  s_phi->addIncoming(s1, single_cont);
  b.CreateBr(loop);

  b.SetInsertPoint(exit);
  auto* exit_s = b.CreatePHI(i64, 2, "exit.s");
  exit_s->addIncoming(s_phi, loop);
  exit_s->addIncoming(s_phi, single);
  b.CreateStore(exit_s, state_ptr);
  b.CreateRet(n);
}

std::string Hex(const std::array<uint8_t, 32>& digest, std::size_t bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    out += kDigits[digest[i] >> 4];
    out += kDigits[digest[i] & 15];
  }
  return out;
}

// Optimises the module and emits a relocatable object (position-independent,
// so it links wherever the JIT maps it, in this process or a later one).
bool CompileObject(llvm::Module* module, llvm::TargetMachine* tm, bool quick, std::string* object,
                   std::string* error) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = quick ? pb.buildO0DefaultPipeline(llvm::OptimizationLevel::O0)
                                       : pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O2);
  mpm.run(*module, mam);

  llvm::SmallVector<char, 0> buffer;
  llvm::raw_svector_ostream os(buffer);
  llvm::legacy::PassManager pm;
  if (tm->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile)) {
    *error = "the target cannot emit object files";
    return false;
  }
  pm.run(*module);
  object->assign(buffer.begin(), buffer.end());
  return true;
}

bool ReadFile(const fs::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return static_cast<bool>(in) || in.eof();
}

// The host target, position-independent, for objects that may be cached.
std::unique_ptr<llvm::TargetMachine> HostTarget(bool quick, std::string* error) {
  auto jtmb = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!jtmb) {
    *error = llvm::toString(jtmb.takeError());
    return nullptr;
  }
  jtmb->setRelocationModel(llvm::Reloc::PIC_);
  jtmb->setCodeModel(llvm::CodeModel::Small);
  jtmb->setCodeGenOptLevel(quick ? llvm::CodeGenOptLevel::None : llvm::CodeGenOptLevel::Default);
  auto tm = jtmb->createTargetMachine();
  if (!tm) {
    *error = llvm::toString(tm.takeError());
    return nullptr;
  }
  return std::move(*tm);
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::unique_ptr<NativeObject> NativeObject::Build(llvm::Module& module, const std::string& cache_dir,
                                                  const Symbols& symbols, bool quick,
                                                  BuildInfo* info, std::string* ir,
                                                  std::string* error) {
  if (Engine::Get(error) == nullptr) return nullptr;  // initialises the native target
  std::unique_ptr<llvm::TargetMachine> tm = HostTarget(quick, error);
  if (tm == nullptr) return nullptr;
  module.setDataLayout(tm->createDataLayout());
  module.setTargetTriple(tm->getTargetTriple().str());
  // The key: everything the object depends on. The module is hashed as
  // bitcode (deterministic, and a fraction of the cost of printing it: a
  // 2,000-policy program is tens of megabytes of IR text).
  std::string keyed;
  {
    llvm::raw_string_ostream out(keyed);
    llvm::WriteBitcodeToFile(module, out);
  }
  keyed += "\ntarget=" + tm->getTargetTriple().str() +
                      " cpu=" + tm->getTargetCPU().str() +
                      " features=" + tm->getTargetFeatureString().str() +
                      " llvm=" LLVM_VERSION_STRING " abi=" + std::to_string(abi::kAbiVersion) +
                      (quick ? " quick" : "");
  info->key = Hex(llvm::SHA256::hash(llvm::ArrayRef<uint8_t>(
                      reinterpret_cast<const uint8_t*>(keyed.data()), keyed.size())),
                  16);
  if (ir != nullptr) {
    llvm::raw_string_ostream out(*ir);
    module.print(out, nullptr);
  }

  fs::path cached;
  std::string object;
  if (!cache_dir.empty()) {
    cached = fs::path(cache_dir) / (info->key + ".o");
    if (ReadFile(cached, &object) && !object.empty()) {
      auto t = std::chrono::steady_clock::now();
      std::string why;
      std::unique_ptr<NativeObject> linked = Load(object, symbols, &why);
      info->link_ms = MsSince(t);
      if (linked != nullptr) {
        info->from_cache = true;
        return linked;
      }
      // A damaged entry is recompiled and replaced, never trusted.
      info->cache_error = "the cached object " + cached.string() + " did not link (" + why +
                          "); recompiled";
    }
  }
  auto t = std::chrono::steady_clock::now();
  if (!CompileObject(&module, tm.get(), quick, &object, error)) return nullptr;
  info->compile_ms = MsSince(t);
  if (!cached.empty()) {
    std::string why;
    if (!WriteCacheFile(cached.string(), object, &why)) info->cache_error = why;
  }
  t = std::chrono::steady_clock::now();
  std::unique_ptr<NativeObject> linked = Load(object, symbols, error);
  info->link_ms = MsSince(t);
  return linked;
}

JitTables JitTables::From(const abi::Dfa& d) {
  JitTables t;
  const uint32_t n = d.num_states;
  const uint32_t k = d.num_classes;
  // Non-match states first, then match states.
  t.to_old.reserve(n);
  for (uint32_t s = 0; s < n; ++s) {
    if (!d.HasMatch(s)) t.to_old.push_back(s);
  }
  uint32_t first_match = static_cast<uint32_t>(t.to_old.size());
  for (uint32_t s = 0; s < n; ++s) {
    if (d.HasMatch(s)) t.to_old.push_back(s);
  }
  std::vector<uint32_t> to_new(n);
  for (uint32_t i = 0; i < n; ++i) to_new[t.to_old[i]] = i;
  t.num_classes = k;
  t.match_threshold = first_match * k;
  t.next.resize(static_cast<std::size_t>(n) * k);
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t old = t.to_old[i];
    for (uint32_t c = 0; c < k; ++c) t.next[i * k + c] = to_new[d.Next(old, c)] * k;
  }
  t.byte_class = d.byte_class;
  t.start = to_new[d.start[abi::kCtxText]] * k;
  t.rows.resize(t.next.size());
  for (std::size_t i = 0; i < t.next.size(); ++i) t.rows[i] = t.Row(t.next[i]);
  for (uint32_t s = 0; s < n; ++s) {
    if (!d.quiescent[s]) continue;
    std::vector<uint8_t> exits;
    for (int byte = 0; byte < 256; ++byte) {
      if (d.Next(s, d.byte_class[byte]) != s) exits.push_back(static_cast<uint8_t>(byte));
    }
    // Worth it only when exits are rare: with more exit bytes, ordinary text
    // leaves the state every few bytes and the skip loop's setup costs more
    // than it saves (bench/patterns sets b-d; docs/performance.md).
    if (exits.empty() || exits.size() > kMaxVectorExits) continue;
    t.accels.push_back(Accel{to_new[s] * k, std::move(exits)});
  }
  return t;
}

struct PatternJit::Handle {
  std::unique_ptr<NativeObject> object;  // the set's loops, under their own tracker
};

// Direct-coded loop: one basic block per state, a switch on the byte class
// jumping straight to the next state's block. No transition table loads,
// but code size grows with states x classes; used only for small DFAs.
static void EmitDirect(llvm::Module& m, const JitTables& t, const std::string& name) {
  llvm::LLVMContext& ctx = m.getContext();
  llvm::IRBuilder<> b(ctx);
  auto* i8 = b.getInt8Ty();
  auto* i32 = b.getInt32Ty();
  auto* i64 = b.getInt64Ty();
  auto [fn, p, n, state_ptr, next_tab, cls_tab] = DeclareScan(m, name);
  (void)next_tab;  // direct code has no table
  const uint32_t k = t.num_classes;
  const uint32_t states = static_cast<uint32_t>(t.to_old.size());
  auto* entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  std::vector<llvm::BasicBlock*> blocks(states);
  std::vector<llvm::PHINode*> phis(states);
  for (uint32_t s = 0; s < states; ++s) {
    blocks[s] = llvm::BasicBlock::Create(ctx, "s" + std::to_string(s), fn);
    b.SetInsertPoint(blocks[s]);
    phis[s] = b.CreatePHI(i64, 2, "i");
  }
  b.SetInsertPoint(entry);
  llvm::Value* s0 = b.CreateLoad(i64, state_ptr);
  auto* bad = llvm::BasicBlock::Create(ctx, "bad", fn);
  auto* sw0 = b.CreateSwitch(s0, bad, states);
  for (uint32_t s = 0; s < states; ++s) {
    sw0->addCase(b.getInt64(t.Row(s * k)), blocks[s]);
    phis[s]->addIncoming(b.getInt64(0), entry);
  }
  b.SetInsertPoint(bad);
  b.CreateRet(n);
  for (uint32_t s = 0; s < states; ++s) {
    b.SetInsertPoint(blocks[s]);
    llvm::Value* i = phis[s];
    auto* body = llvm::BasicBlock::Create(ctx, "s" + std::to_string(s) + ".body", fn);
    auto* end = llvm::BasicBlock::Create(ctx, "s" + std::to_string(s) + ".end", fn);
    b.CreateCondBr(b.CreateICmpULT(i, n), body, end);
    b.SetInsertPoint(end);
    b.CreateStore(b.getInt64(t.Row(s * k)), state_ptr);
    b.CreateRet(n);
    b.SetInsertPoint(body);
    llvm::Value* byte = b.CreateLoad(i8, b.CreateGEP(i8, p, i));
    llvm::Value* c = b.CreateLoad(i8, b.CreateGEP(i8, cls_tab, b.CreateZExt(byte, i64)));
    llvm::Value* i1 = b.CreateAdd(i, b.getInt64(1));
    // Classes into match states share one exit block per state.
    llvm::BasicBlock* match_block = nullptr;
    auto* sw = b.CreateSwitch(b.CreateZExt(c, i32), bad, k);
    for (uint32_t cls = 0; cls + 1 < k; ++cls) {
      uint32_t target = t.next[s * k + cls];
      llvm::BasicBlock* dest;
      if (target >= t.match_threshold) {
        auto*& mb = match_block;
        if (mb == nullptr) {
          mb = llvm::BasicBlock::Create(ctx, "m", fn);
          llvm::IRBuilder<> mbld(mb);
          // Stop before the byte, from this state: the caller steps it.
          mbld.CreateStore(mbld.getInt64(t.Row(s * k)), state_ptr);
          mbld.CreateRet(i);
        }
        dest = mb;
      } else {
        dest = blocks[target / k];
        // One phi entry per switch edge, as LLVM requires for repeated predecessors.
        phis[target / k]->addIncoming(i1, body);
      }
      sw->addCase(b.getInt32(cls), dest);
    }
  }
}

std::unique_ptr<PatternJit> PatternJit::Compile(const abi::PatternSetTables& tables,
                                                const JitOptions& options, std::string* error) {
  Engine* engine = Engine::Get(error);
  if (engine == nullptr) return nullptr;
  std::unique_ptr<PatternJit> result(new PatternJit());
  result->tables_ = &tables;
  auto ctx = std::make_unique<llvm::LLVMContext>();
  // Names are the same in every process (each object has a JITDylib of its
  // own), so identical sets give identical IR: one cache entry.
  auto module = std::make_unique<llvm::Module>("kt_patterns", *ctx);
  std::vector<std::string> names(tables.groups.size());
  for (std::size_t g = 0; g < tables.groups.size(); ++g) {
    result->jt_.emplace_back();
    if (tables.groups[g].lazy) {
      // Tables are built at scan time; the loop reads them through the
      // pointer it is given, and the flag bit marks entries to handle.
      names[g] = "kt_scan_" + std::to_string(g);
      EmitScan(*module, result->jt_.back(), true, names[g]);
      continue;
    }
    result->jt_.back() = JitTables::From(tables.groups[g].forward);
    if (!options.accelerate) result->jt_.back().accels.clear();
    names[g] = "kt_scan_" + std::to_string(g);
    if (options.loop == JitOptions::Loop::kDirect) {
      if (result->jt_.back().to_old.size() > 4096) {
        *error = "direct-coded loops are limited to 4096 states";
        return nullptr;
      }
      EmitDirect(*module, result->jt_.back(), names[g]);
    } else {
      EmitScan(*module, result->jt_.back(), false, names[g]);
    }
  }
  std::string verify_errors;
  llvm::raw_string_ostream verify_out(verify_errors);
  if (llvm::verifyModule(*module, &verify_out)) {
    *error = "generated IR does not verify: " + verify_errors;
    return nullptr;
  }
  // Direct-coded loops embed row addresses: never cached.
  const std::string cache_dir = options.loop == JitOptions::Loop::kTable ? options.cache_dir : "";
  result->handle_ = std::make_unique<Handle>();
  NativeObject::BuildInfo info;
  result->handle_->object =
      NativeObject::Build(*module, cache_dir, {}, /*quick=*/false, &info, &result->ir_, error);
  if (result->handle_->object == nullptr) return nullptr;
  for (const std::string& name : names) {
    if (name.empty()) {
      result->fns_.push_back(nullptr);
      continue;
    }
    const void* fn = result->handle_->object->Lookup(name, error);
    if (fn == nullptr) return nullptr;
    result->fns_.push_back(reinterpret_cast<ScanFn>(const_cast<void*>(fn)));
  }
  return result;
}

PatternJit::~PatternJit() = default;

struct NativeObject::Handle {
  llvm::orc::JITDylib* dylib = nullptr;
  llvm::orc::ResourceTrackerSP tracker;
};

std::unique_ptr<NativeObject> NativeObject::Load(
    std::string_view object, const std::vector<std::pair<std::string, const void*>>& symbols,
    std::string* error) {
  Engine* engine = Engine::Get(error);
  if (engine == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(engine->mutex());
  llvm::orc::LLJIT& jit = engine->jit();
  // A JITDylib per object: the same policy set loaded twice (a reload that
  // changed nothing) defines the same symbol names, which must not clash.
  auto dylib = jit.createJITDylib("kt.object." + std::to_string(next_module_id++));
  if (!dylib) {
    *error = llvm::toString(dylib.takeError());
    return nullptr;
  }
  // Failures below undo the dylib here, under the lock (the destructor
  // would take it again).
  llvm::orc::ResourceTrackerSP tracker;
  auto fail = [&](llvm::Error err) -> std::unique_ptr<NativeObject> {
    *error = llvm::toString(std::move(err));
    if (tracker) {
      // Released after its dylib is gone, the tracker would hand its
      // resources to a fresh default tracker of that dylib: a leak.
      llvm::consumeError(tracker->remove());
      tracker.reset();
    }
    llvm::consumeError(jit.getExecutionSession().removeJITDylib(*dylib));
    return nullptr;
  };
  llvm::orc::SymbolMap map;
  for (const auto& [name, address] : symbols) {
    map[jit.mangleAndIntern(name)] = {llvm::orc::ExecutorAddr::fromPtr(address),
                                      llvm::JITSymbolFlags::Exported};
  }
  if (auto err = dylib->define(llvm::orc::absoluteSymbols(std::move(map)))) return fail(std::move(err));
  tracker = dylib->createResourceTracker();
  if (auto err = jit.addObjectFile(tracker, llvm::MemoryBuffer::getMemBufferCopy(
                                                llvm::StringRef(object.data(), object.size()),
                                                "kt-object"))) {
    return fail(std::move(err));
  }
  std::unique_ptr<NativeObject> result(new NativeObject());
  result->handle_ = std::make_unique<Handle>();
  result->handle_->dylib = &*dylib;
  result->handle_->tracker = std::move(tracker);
  return result;
}

const void* NativeObject::Lookup(const std::string& name, std::string* error) const {
  std::string ignored;
  Engine* engine = Engine::Get(&ignored);
  std::lock_guard<std::mutex> lock(engine->mutex());
  auto sym = engine->jit().lookup(*handle_->dylib, name);
  if (!sym) {
    *error = llvm::toString(sym.takeError());
    return nullptr;
  }
  return sym->toPtr<const void*>();
}

NativeObject::~NativeObject() {
  if (handle_ == nullptr || handle_->dylib == nullptr) return;
  std::string ignored;
  Engine* engine = Engine::Get(&ignored);
  if (engine == nullptr) return;
  std::lock_guard<std::mutex> lock(engine->mutex());
  if (handle_->tracker) llvm::consumeError(handle_->tracker->remove());
  llvm::consumeError(engine->jit().getExecutionSession().removeJITDylib(*handle_->dylib));
}

// Written to a temporary name and renamed, so a concurrent reader sees the
// old entry or the new one. The directory is bounded: past kMaxEntries
// files, the least recently written quarter goes (a cache, not a store).
bool WriteCacheFile(const std::string& file, std::string_view bytes, std::string* error) {
  constexpr std::size_t kMaxEntries = 4096;
  const fs::path path(file);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) {
    *error = "cannot create " + path.parent_path().string() + ": " + ec.message();
    return false;
  }
  // Unique per process and per write: two threads storing the same entry
  // must not share a temporary file.
  static std::atomic<uint64_t> writes{0};
  fs::path tmp = path;
  tmp += ".tmp" + std::to_string(::getpid()) + "." + std::to_string(writes++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      *error = "cannot write " + tmp.string();
      fs::remove(tmp, ec);
      return false;
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    *error = "cannot rename into " + path.string() + ": " + ec.message();
    fs::remove(tmp, ec);
    return false;
  }
  std::vector<std::pair<fs::file_time_type, fs::path>> entries;
  for (const auto& e : fs::directory_iterator(path.parent_path(), ec)) {
    if (e.is_regular_file(ec) && e.path().string().find(".tmp") == std::string::npos) {
      entries.emplace_back(e.last_write_time(ec), e.path());
    }
  }
  if (entries.size() > kMaxEntries) {
    std::sort(entries.begin(), entries.end());
    for (std::size_t i = 0; i < entries.size() / 4; ++i) fs::remove(entries[i].second, ec);
  }
  return true;
}

}  // namespace kt
