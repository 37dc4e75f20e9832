#include "runtime/internal/jit.h"

#include <atomic>
#include <mutex>

#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/ExecutionEngine/Orc/ThreadSafeModule.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Intrinsics.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

namespace kt {
namespace {

// Exit-byte sets up to this size get the vector skip loop.
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

// Emits `uint64_t name(const uint8_t* p, uint64_t n, uint32_t* state)`.
llvm::Function* EmitScan(llvm::Module& m, const abi::Dfa& d, const std::string& name) {
  llvm::LLVMContext& ctx = m.getContext();
  llvm::IRBuilder<> b(ctx);
  auto* i1 = b.getInt1Ty();
  auto* i8 = b.getInt8Ty();
  auto* i16 = b.getInt16Ty();
  auto* i32 = b.getInt32Ty();
  auto* i64 = b.getInt64Ty();
  auto* ptr = b.getPtrTy();
  (void)i1;

  auto* fty = llvm::FunctionType::get(i64, {ptr, i64, ptr, ptr, ptr, ptr}, false);
  auto* fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, name, m);
  llvm::Value* p = fn->getArg(0);
  llvm::Value* n = fn->getArg(1);
  llvm::Value* state_ptr = fn->getArg(2);
  llvm::Value* next_g = fn->getArg(3);
  llvm::Value* cls_g = fn->getArg(4);
  llvm::Value* flag_g = fn->getArg(5);
  fn->addParamAttr(0, llvm::Attribute::NoAlias);
  fn->addParamAttr(2, llvm::Attribute::NoAlias);

  auto* entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  auto* loop = llvm::BasicBlock::Create(ctx, "loop", fn);
  auto* dispatch = llvm::BasicBlock::Create(ctx, "dispatch", fn);
  auto* step = llvm::BasicBlock::Create(ctx, "step", fn);
  auto* step_body = llvm::BasicBlock::Create(ctx, "step.body", fn);
  auto* found = llvm::BasicBlock::Create(ctx, "found", fn);
  auto* exit = llvm::BasicBlock::Create(ctx, "exit", fn);

  b.SetInsertPoint(entry);
  llvm::Value* s0 = b.CreateLoad(i32, state_ptr, "s0");
  b.CreateBr(loop);

  b.SetInsertPoint(loop);
  auto* i_phi = b.CreatePHI(i64, 2, "i");
  auto* s_phi = b.CreatePHI(i32, 2, "s");
  i_phi->addIncoming(b.getInt64(0), entry);
  s_phi->addIncoming(s0, entry);
  b.CreateCondBr(b.CreateICmpULT(i_phi, n), dispatch, exit);

  // Quiescent states with few exit bytes: find the exits with a vector
  // compare of 16 bytes at a time, skipping everything else.
  struct Accel {
    uint32_t state;
    std::vector<uint8_t> exits;
  };
  std::vector<Accel> accels;
  for (uint32_t s = 0; s < d.num_states; ++s) {
    if (!d.quiescent[s]) continue;
    Accel a{s, {}};
    for (int byte = 0; byte < 256 && a.exits.size() <= kMaxVectorExits; ++byte) {
      if (d.Next(s, d.byte_class[byte]) != s) a.exits.push_back(static_cast<uint8_t>(byte));
    }
    if (!a.exits.empty() && a.exits.size() <= kMaxVectorExits) accels.push_back(std::move(a));
  }

  b.SetInsertPoint(step);
  auto* step_i = b.CreatePHI(i64, 1 + accels.size(), "step.i");
  step_i->addIncoming(i_phi, dispatch);
  b.SetInsertPoint(dispatch);
  auto* sw = b.CreateSwitch(s_phi, step, accels.size());
  auto* vty = llvm::FixedVectorType::get(i8, kVectorWidth);
  llvm::Function* cttz = llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::cttz, {i16});
  for (const Accel& a : accels) {
    auto* head = llvm::BasicBlock::Create(ctx, "accel", fn);
    auto* body = llvm::BasicBlock::Create(ctx, "accel.body", fn);
    auto* hit = llvm::BasicBlock::Create(ctx, "accel.hit", fn);
    auto* done = llvm::BasicBlock::Create(ctx, "accel.done", fn);
    sw->addCase(b.getInt32(a.state), head);
    b.SetInsertPoint(head);
    auto* ai = b.CreatePHI(i64, 2, "ai");
    ai->addIncoming(i_phi, dispatch);
    llvm::Value* room = b.CreateICmpULE(b.CreateAdd(ai, b.getInt64(kVectorWidth)), n);
    b.CreateCondBr(room, body, done);
    b.SetInsertPoint(body);
    llvm::Value* addr = b.CreateGEP(i8, p, ai);
    llvm::Value* v = b.CreateAlignedLoad(vty, addr, llvm::MaybeAlign(1), "v");
    llvm::Value* any = nullptr;
    for (uint8_t e : a.exits) {
      llvm::Value* eq = b.CreateICmpEQ(v, b.CreateVectorSplat(kVectorWidth, b.getInt8(e)));
      any = any == nullptr ? eq : b.CreateOr(any, eq);
    }
    llvm::Value* bits = b.CreateBitCast(any, i16);
    llvm::Value* has = b.CreateICmpNE(bits, b.getInt16(0));
    llvm::Value* next_ai = b.CreateAdd(ai, b.getInt64(kVectorWidth));
    ai->addIncoming(next_ai, body);
    b.CreateCondBr(has, hit, head);
    b.SetInsertPoint(hit);
    llvm::Value* tz = b.CreateCall(cttz, {bits, b.getTrue()});
    llvm::Value* hit_i = b.CreateAdd(ai, b.CreateZExt(tz, i64));
    b.CreateBr(step);
    step_i->addIncoming(hit_i, hit);
    b.SetInsertPoint(done);
    b.CreateBr(step);
    step_i->addIncoming(ai, done);
  }

  // One table-driven transition.
  b.SetInsertPoint(step);
  b.CreateCondBr(b.CreateICmpULT(step_i, n), step_body, exit);
  b.SetInsertPoint(step_body);
  llvm::Value* byte = b.CreateLoad(i8, b.CreateGEP(i8, p, step_i), "byte");
  llvm::Value* c = b.CreateLoad(i8, b.CreateGEP(i8, cls_g, b.CreateZExt(byte, i64)), "class");
  llvm::Value* row = b.CreateMul(b.CreateZExt(s_phi, i64), b.getInt64(d.num_classes));
  llvm::Value* idx = b.CreateAdd(row, b.CreateZExt(c, i64));
  llvm::Value* s2 = b.CreateLoad(i32, b.CreateGEP(i32, next_g, idx), "s2");
  llvm::Value* f = b.CreateLoad(i8, b.CreateGEP(i8, flag_g, b.CreateZExt(s2, i64)), "flag");
  llvm::Value* i_next = b.CreateAdd(step_i, b.getInt64(1));
  b.CreateCondBr(b.CreateICmpNE(f, b.getInt8(0)), found, loop);
  i_phi->addIncoming(i_next, step_body);
  s_phi->addIncoming(s2, step_body);

  b.SetInsertPoint(found);
  b.CreateStore(s2, state_ptr);
  b.CreateRet(step_i);

  b.SetInsertPoint(exit);
  auto* exit_s = b.CreatePHI(i32, 2, "exit.s");
  exit_s->addIncoming(s_phi, loop);
  exit_s->addIncoming(s_phi, step);
  b.CreateStore(exit_s, state_ptr);
  b.CreateRet(n);
  (void)i16;
  return fn;
}

}  // namespace

struct PatternJit::Handle {
  llvm::orc::ResourceTrackerSP tracker;
};

std::unique_ptr<PatternJit> PatternJit::Compile(const abi::PatternSetTables& tables,
                                                std::string* error) {
  Engine* engine = Engine::Get(error);
  if (engine == nullptr) return nullptr;
  std::unique_ptr<PatternJit> result(new PatternJit());
  result->tables_ = &tables;
  auto ctx = std::make_unique<llvm::LLVMContext>();
  uint64_t id = next_module_id++;
  auto module = std::make_unique<llvm::Module>("kt_patterns_" + std::to_string(id), *ctx);
  std::vector<std::string> names;
  for (std::size_t g = 0; g < tables.groups.size(); ++g) {
    const abi::Dfa& f = tables.groups[g].forward;
    std::vector<uint8_t> flags(f.num_states);
    for (uint32_t s = 0; s < f.num_states; ++s) flags[s] = f.HasMatch(s) ? 1 : 0;
    result->flags_.push_back(std::move(flags));
    names.push_back("kt_scan_" + std::to_string(id) + "_" + std::to_string(g));
    EmitScan(*module, tables.groups[g].forward, names.back());
  }
  std::string verify_errors;
  llvm::raw_string_ostream verify_out(verify_errors);
  if (llvm::verifyModule(*module, &verify_out)) {
    *error = "generated IR does not verify: " + verify_errors;
    return nullptr;
  }
  llvm::raw_string_ostream ir_out(result->ir_);
  module->print(ir_out, nullptr);

  std::lock_guard<std::mutex> lock(engine->mutex());
  llvm::orc::LLJIT& jit = engine->jit();
  result->handle_ = std::make_unique<Handle>();
  result->handle_->tracker = jit.getMainJITDylib().createResourceTracker();
  if (auto err = jit.addIRModule(result->handle_->tracker,
                                 llvm::orc::ThreadSafeModule(std::move(module), std::move(ctx)))) {
    *error = llvm::toString(std::move(err));
    return nullptr;
  }
  for (const std::string& name : names) {
    auto sym = jit.lookup(name);
    if (!sym) {
      *error = llvm::toString(sym.takeError());
      return nullptr;
    }
    result->fns_.push_back(sym->toPtr<ScanFn>());
  }
  return result;
}

PatternJit::~PatternJit() {
  if (handle_ != nullptr && handle_->tracker) {
    std::string ignored;
    Engine* engine = Engine::Get(&ignored);
    if (engine != nullptr) {
      std::lock_guard<std::mutex> lock(engine->mutex());
      llvm::consumeError(handle_->tracker->remove());
    }
  }
}

}  // namespace kt
