// The compiler driver: file discovery, module loading and import resolution,
// then the checker. Implements the facade's `Lint`.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "compiler/compiler.h"
#include "compiler/internal/automata.h"
#include "compiler/internal/checker.h"
#include "compiler/internal/codegen.h"
#include "compiler/internal/driver.h"
#include "compiler/internal/pir.h"
#include "compiler/internal/test_runner.h"
#include "compiler/internal/diagnostics.h"
#include "compiler/internal/parser.h"

namespace kt {

namespace fs = std::filesystem;
using internal::DiagId;

std::string_view Version() { return KT_VERSION; }

const SourceMap::File* SourceMap::Add(std::string path, std::string text) {
  auto file = std::make_unique<File>();
  file->path = path;
  file->text = std::move(text);
  file->line_starts.push_back(0);
  for (std::size_t i = 0; i < file->text.size(); ++i) {
    if (file->text[i] == '\n') file->line_starts.push_back(static_cast<uint32_t>(i + 1));
  }
  const File* raw = file.get();
  files_[path] = std::move(file);
  return raw;
}

const SourceMap::File* SourceMap::Find(std::string_view path) const {
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : it->second.get();
}

SourceMap::Position SourceMap::PositionOf(const File& file, uint32_t offset) {
  auto it = std::upper_bound(file.line_starts.begin(), file.line_starts.end(), offset);
  uint32_t line = static_cast<uint32_t>(it - file.line_starts.begin());
  uint32_t start = file.line_starts[line - 1];
  uint32_t column = 1;
  for (uint32_t i = start; i < offset && i < file.text.size(); ++i) {
    if ((static_cast<unsigned char>(file.text[i]) & 0xC0) != 0x80) ++column;
  }
  return Position{line, column};
}

std::string_view SourceMap::LineText(const File& file, uint32_t line) {
  if (line == 0 || line > file.line_starts.size()) return {};
  uint32_t start = file.line_starts[line - 1];
  uint32_t end = line < file.line_starts.size() ? file.line_starts[line] - 1
                                                : static_cast<uint32_t>(file.text.size());
  std::string_view text(file.text);
  std::string_view l = text.substr(start, end - start);
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  return l;
}

std::vector<std::string> CollectPolicyFiles(const std::vector<std::string>& paths,
                                            std::vector<Diagnostic>* diagnostics) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (fs::recursive_directory_iterator it(p, ec), end; it != end && !ec; it.increment(ec)) {
        if (it->is_regular_file(ec) && it->path().extension() == ".ktp") {
          found.push_back(it->path().lexically_normal().string());
        }
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(fs::path(p).lexically_normal().string());
    } else {
      Diagnostic d;
      d.code = "E0005";
      d.message = "no such file or directory `" + p + "`";
      d.file = p;
      diagnostics->push_back(std::move(d));
    }
  }
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

class Loader {
 public:
  Loader(const Options& options, SourceMap* sources, internal::DiagnosticSink* sink,
         internal::Program* program)
      : options_(options), sources_(sources), sink_(sink), program_(program) {}

  // Loads `path` and, depth first, its imports. Dependencies are appended to
  // the program before their dependents.
  internal::Module* Load(const std::string& path, bool is_root, const std::string& importer,
                         Span import_span) {
    std::error_code ec;
    std::string key = fs::weakly_canonical(path, ec).string();
    if (ec) key = path;
    if (auto it = by_key_.find(key); it != by_key_.end()) {
      if (loading_.count(key)) {
        sink_->Report(DiagId::kImportCycle, importer, import_span,
                      "import cycle: `" + path + "` is already being imported",
                      "move the shared declarations into a third module");
        return nullptr;
      }
      if (is_root) it->second->is_root = true;
      return it->second;
    }
    auto module = std::make_unique<internal::Module>();
    module->path = path;
    module->key = key;
    module->is_root = is_root;
    internal::Module* raw = module.get();
    by_key_[key] = raw;

    std::string text;
    if (auto mem = in_memory_.find(path); mem != in_memory_.end()) {
      text = mem->second;
    } else if (!ReadBounded(path, importer, import_span, &text)) {
      program_->modules.push_back(std::move(module));
      return raw;
    }
    if (text.size() > options_.max_file_bytes) {
      sources_->Add(path, "");
      sink_->Report(DiagId::kFileTooLarge, path, Span{},
                    "file is " + std::to_string(text.size()) + " bytes; the limit is " +
                        std::to_string(options_.max_file_bytes),
                    "split the policies into several files");
      program_->modules.push_back(std::move(module));
      return raw;
    }
    const SourceMap::File* file = sources_->Add(path, std::move(text));
    module->ast = internal::ParseFile(path, file->text, options_, sink_);

    loading_.insert(key);
    if (module->ast != nullptr) {
      for (const internal::Decl& d : module->ast->decls) {
        if (d.kind != internal::DeclKind::kImport) continue;
        const internal::Import& im = *d.import;
        std::string target = Resolve(path, im);
        if (target.empty()) {
          std::string help = im.is_file ? "paths are relative to the importing file"
                                        : "the standard library is searched in: " + StdlibList();
          sink_->Report(DiagId::kUnknownModule, path, im.target_span,
                        "module `" + im.target + "` not found", help);
          module->imports[im.alias] = nullptr;
          continue;
        }
        if (module->imports.count(im.alias)) {
          sink_->Report(DiagId::kDuplicateName, path, im.alias_span,
                        "`" + im.alias + "` is imported twice");
          continue;
        }
        internal::Module* dep = Load(target, false, path, im.target_span);
        module->imports[im.alias] = dep;
      }
    }
    loading_.erase(key);
    program_->modules.push_back(std::move(module));
    if (is_root) program_->roots.push_back(raw);
    return raw;
  }

  // Serves `path` from memory instead of the file system (no imports).
  void AddInMemory(const std::string& path, std::string text) {
    in_memory_[path] = std::move(text);
  }

 private:
  // Reads at most one byte past the size limit: enough to know the limit is
  // exceeded without reading a 50 MB file into memory. The size reported is
  // the file's real size.
  bool ReadBounded(const std::string& path, const std::string& importer, Span import_span,
                   std::string* text) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      sink_->Report(DiagId::kUnreadableFile, importer.empty() ? path : importer,
                    importer.empty() ? Span{} : import_span, "cannot read `" + path + "`");
      return false;
    }
    text->resize(options_.max_file_bytes + 1);
    in.read(text->data(), static_cast<std::streamsize>(text->size()));
    text->resize(static_cast<std::size_t>(in.gcount()));
    if (text->size() > options_.max_file_bytes) {
      in.clear();
      in.seekg(0, std::ios::end);
      text->resize(static_cast<std::size_t>(in.tellg()), ' ');
    }
    return true;
  }

  std::string StdlibList() const {
    std::string s;
    for (const std::string& p : options_.stdlib_paths) s += (s.empty() ? "" : ", ") + p;
    return s.empty() ? "(no stdlib path configured)" : s;
  }

  std::string Resolve(const std::string& importer, const internal::Import& im) const {
    std::error_code ec;
    if (im.is_file) {
      fs::path p = fs::path(importer).parent_path() / im.target;
      return fs::is_regular_file(p, ec) ? p.lexically_normal().string() : std::string();
    }
    std::string rel = im.target;
    std::replace(rel.begin(), rel.end(), '.', '/');
    for (const std::string& root : options_.stdlib_paths) {
      fs::path p = fs::path(root) / (rel + ".ktp");
      if (fs::is_regular_file(p, ec)) return p.lexically_normal().string();
    }
    return {};
  }

  const Options& options_;
  SourceMap* sources_;
  internal::DiagnosticSink* sink_;
  internal::Program* program_;
  std::map<std::string, internal::Module*> by_key_;
  std::set<std::string> loading_;
  std::map<std::string, std::string> in_memory_;
};

// The files of one policy set, loaded with their imports.
struct LoadedFiles {
  // `in_memory` (path, text) pairs are served instead of the file system.
  LoadedFiles(const std::vector<std::string>& files, const Options& options, SourceMap* sources,
              const std::vector<std::pair<std::string, std::string>>& in_memory = {}) {
    Loader loader(options, sources, &sink, &program);
    for (const auto& [path, text] : in_memory) loader.AddInMemory(path, text);
    for (const std::string& f : files) loader.Load(f, true, "", Span{});
  }
  internal::DiagnosticSink sink;
  internal::Program program;
};

LintResult Finish(internal::Program* program, internal::DiagnosticSink* sink,
                  const std::vector<std::string>& files, const Options& options,
                  std::shared_ptr<internal::PirProgram>* pir = nullptr,
                  std::shared_ptr<internal::Resolution>* resolution = nullptr) {
  internal::CheckResult checked = internal::CheckProgram(program, options, sink, pir != nullptr);
  if (pir != nullptr) *pir = checked.pir;
  if (resolution != nullptr) *resolution = checked.resolution;
  LintResult result;
  result.files = files;
  result.policies = std::move(checked.policies);
  result.diagnostics = std::move(sink->diagnostics());
  internal::SortAndCap(&result.diagnostics, options.max_errors, &result.suppressed_count);
  for (const Diagnostic& d : result.diagnostics) {
    if (d.severity == Severity::kError) ++result.error_count;
    if (d.severity == Severity::kWarning) ++result.warning_count;
  }
  return result;
}

}  // namespace

std::string DefaultObjectCacheDir() {
  if (const char* dir = std::getenv("KT_CACHE_DIR")) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != 0) {
    return std::string(xdg) + "/kt";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != 0) {
    return std::string(home) + "/.cache/kt";
  }
  return "";
}

LintResult Lint(const std::vector<std::string>& files, const Options& options,
                SourceMap* sources) {
  LoadedFiles loaded(files, options, sources);
  internal::DiagnosticSink& sink = loaded.sink;
  internal::Program& program = loaded.program;
  return Finish(&program, &sink, files, options);
}

ExplainResult Explain(const std::vector<std::string>& files, const Options& options,
                      SourceMap* sources, bool llvm) {
  LoadedFiles loaded(files, options, sources);
  internal::DiagnosticSink& sink = loaded.sink;
  internal::Program& program = loaded.program;
  ExplainResult result;
  std::shared_ptr<internal::PirProgram> pir;
  std::shared_ptr<internal::Resolution> program_resolution;
  result.lint = Finish(&program, &sink, files, options, &pir, &program_resolution);
  if (pir == nullptr || result.lint.error_count > 0) return result;
  result.ir_problems = internal::VerifyPir(*pir);
  internal::AutomataLimits limits;
  limits.dfa_memory_budget = options.dfa_memory_budget;
  for (internal::PirStage& stage : pir->stages) {
    for (std::size_t i = 0; i < stage.sets.size(); ++i) {
      internal::PirPatternSet& set = stage.sets[i];
      std::vector<const internal::RegexNode*> trees;
      for (const internal::PirPattern& p : set.patterns) {
        trees.insert(trees.end(), p.trees.begin(), p.trees.end());
      }
      internal::AutomataResult built = internal::BuildAutomata(trees, limits);
      set.dfa_states = built.stats.dfa_states_minimized;
      set.memory_bytes = built.stats.memory_bytes;
      set.lazy = built.stats.lazy;
      PatternSetReport report;
      report.stage = stage.name;
      report.name = "S" + std::to_string(i);
      report.subject = set.subject;
      report.patterns = set.patterns.size();
      report.dfa_states = set.dfa_states;
      report.memory_bytes = set.memory_bytes;
      report.lazy = set.lazy;
      report.compile_ms = built.stats.compile_ms;
      result.sets.push_back(report);
      if (llvm && built.ok) {
        PatternSet compiled(std::move(built.tables));
        std::string error;
        result.llvm += "; ---- stage " + stage.name + ", set S" + std::to_string(i) + " (" +
                       set.subject + "), " + std::to_string(set.patterns.size()) + " patterns\n";
        result.llvm += compiled.Jit(&error) ? compiled.jit_ir() : "; JIT failed: " + error + "\n";
      }
    }
  }
  result.pir = internal::PrintPir(*pir);
  if (llvm) {
    // The policy program first: the code every request runs.
    internal::KtMatcher matcher(options, /*jit=*/true);
    std::string error;
    internal::ProgramOptions po;
    po.keep_ir = true;
    auto code = internal::PolicyProgram::Build(program, *program_resolution, &matcher, po, &error);
    result.llvm = "; ---- policy program\n" +
                  (code != nullptr ? code->ir() : "; code generation failed: " + error + "\n") +
                  result.llvm;
  }
  return result;
}

CompiledRedactions CompileRedactions(const std::vector<std::string>& files,
                                     const std::string& stage_name, const Options& options,
                                     SourceMap* sources) {
  LoadedFiles loaded(files, options, sources);
  internal::DiagnosticSink& sink = loaded.sink;
  internal::Program& program = loaded.program;
  std::shared_ptr<internal::PirProgram> pir;
  LintResult lint = Finish(&program, &sink, files, options, &pir);
  CompiledRedactions out;
  if (pir == nullptr || lint.error_count > 0) return out;
  std::vector<const internal::RegexNode*> trees;
  for (const internal::PirStage& stage : pir->stages) {
    if (stage.name != stage_name) continue;
    for (const internal::PirRule& rule : stage.rules) {
      for (const internal::PirRedaction& r : rule.redactions) {
        // A pattern name may stand for several trees (a union): each is an
        // entry with the same replacement.
        const internal::PirPattern& p = stage.sets[r.set].patterns[r.slot];
        for (const internal::RegexNode* tree : p.trees) {
          trees.push_back(tree);
          out.replacements.push_back(r.replacement);
          out.policies.push_back(rule.policy);
          out.labels.push_back(p.label);
        }
      }
    }
  }
  internal::AutomataLimits limits;
  limits.dfa_memory_budget = options.dfa_memory_budget;
  internal::AutomataResult built = internal::BuildAutomata(trees, limits);
  if (!built.ok) return out;
  out.tables = std::move(built.tables);
  out.tables.lazy_cache_bytes = options.dfa_memory_budget;
  out.ok = true;
  return out;
}

namespace internal {

struct CheckedSet::Storage {
  Storage(const std::vector<std::string>& files, const Options& options, SourceMap* sources)
      : loaded(files, options, sources) {}
  LoadedFiles loaded;
};

CheckedSet LoadAndCheck(const std::vector<std::string>& files, const Options& options,
                        SourceMap* sources) {
  CheckedSet set;
  set.storage = std::make_shared<CheckedSet::Storage>(files, options, sources);
  set.program = &set.storage->loaded.program;
  set.checked = CheckProgram(&set.storage->loaded.program, options, &set.storage->loaded.sink);
  set.error_count = set.storage->loaded.sink.error_count();
  set.lint.files = files;
  set.lint.policies = set.checked.policies;
  set.lint.diagnostics = set.storage->loaded.sink.diagnostics();
  SortAndCap(&set.lint.diagnostics, options.max_errors, &set.lint.suppressed_count);
  for (const Diagnostic& d : set.lint.diagnostics) {
    if (d.severity == Severity::kError) ++set.lint.error_count;
    if (d.severity == Severity::kWarning) ++set.lint.warning_count;
  }
  return set;
}

}  // namespace internal

TestRun RunPolicyTestsOnText(const std::string& path, std::string_view text,
                             const Options& options, SourceMap* sources) {
  return RunPolicyTests({path}, options, sources, {{path, std::string(text)}});
}

TestRun RunPolicyTests(const std::vector<std::string>& files, const Options& options,
                       SourceMap* sources,
                       const std::vector<std::pair<std::string, std::string>>& in_memory) {
  LoadedFiles loaded(files, options, sources, in_memory);
  internal::CheckResult checked = internal::CheckProgram(&loaded.program, options, &loaded.sink);
  TestRun run;
  if (loaded.sink.HasErrors()) {
    run.lint.files = files;
    run.lint.diagnostics = std::move(loaded.sink.diagnostics());
    internal::SortAndCap(&run.lint.diagnostics, options.max_errors, &run.lint.suppressed_count);
    for (const Diagnostic& d : run.lint.diagnostics) {
      if (d.severity == Severity::kError) ++run.lint.error_count;
    }
    return run;
  }
  // The tests run on the engine the gateway runs: the compiled program.
  internal::KtMatcher matcher(options, /*jit=*/true);
  std::unique_ptr<internal::PolicyProgram> code;
  if (options.native) {
    internal::ProgramOptions po;
    po.cache_dir = options.object_cache_dir;
    std::string error;
    code = internal::PolicyProgram::Build(loaded.program, *checked.resolution, &matcher, po, &error);
    if (code == nullptr) {
      Diagnostic d;
      d.severity = Severity::kError;
      d.code = "E0406";
      d.message = "the policy program could not be compiled: " + error;
      run.lint.files = files;
      run.lint.diagnostics.push_back(d);
      run.lint.error_count = 1;
      return run;
    }
  }
  TestRun tests = internal::RunTests(loaded.program, *checked.resolution, options, *sources,
                                     code != nullptr ? &matcher : nullptr, code.get());
  tests.lint.files = files;
  tests.lint.policies = std::move(checked.policies);
  return tests;
}

EvalResult EvalPolicies(const std::vector<std::string>& files, const std::string& stage,
                        const std::string& body, const Options& options, SourceMap* sources) {
  LoadedFiles loaded(files, options, sources);
  internal::CheckResult checked = internal::CheckProgram(&loaded.program, options, &loaded.sink);
  EvalResult result;
  if (loaded.sink.HasErrors()) {
    result.lint.diagnostics = std::move(loaded.sink.diagnostics());
    internal::SortAndCap(&result.lint.diagnostics, options.max_errors, &result.lint.suppressed_count);
    for (const Diagnostic& d : result.lint.diagnostics) {
      if (d.severity == Severity::kError) ++result.lint.error_count;
    }
    return result;
  }
  internal::RequestEvaluator evaluator(loaded.program, *checked.resolution, options);
  result.decision_json = evaluator.Evaluate(stage, body, &result.error);
  return result;
}

struct PolicyInterpreter::State {
  State(const std::vector<std::string>& files, const Options& opts, SourceMap* sources)
      : options(opts), loaded(files, options, sources) {}
  Options options;
  LoadedFiles loaded;
  internal::CheckResult checked;
  std::unique_ptr<internal::RequestEvaluator> evaluator;
};

PolicyInterpreter::PolicyInterpreter() = default;
PolicyInterpreter::~PolicyInterpreter() = default;

std::unique_ptr<PolicyInterpreter> PolicyInterpreter::Load(const std::vector<std::string>& files,
                                                           const Options& options,
                                                           SourceMap* sources, LintResult* lint) {
  std::unique_ptr<PolicyInterpreter> p(new PolicyInterpreter());
  p->state_ = std::make_unique<State>(files, options, sources);
  State& st = *p->state_;
  st.checked = internal::CheckProgram(&st.loaded.program, st.options, &st.loaded.sink);
  lint->diagnostics = st.loaded.sink.diagnostics();
  for (const Diagnostic& d : lint->diagnostics) {
    if (d.severity == Severity::kError) ++lint->error_count;
  }
  if (lint->error_count > 0) return nullptr;
  st.evaluator = std::make_unique<internal::RequestEvaluator>(st.loaded.program,
                                                              *st.checked.resolution, st.options);
  return p;
}

std::string PolicyInterpreter::Evaluate(const std::string& stage, const std::string& body,
                                        std::string* error) {
  return state_->evaluator->Evaluate(stage, body, error);
}

LintResult LintText(const std::string& path, std::string_view text, const Options& options,
                    SourceMap* sources) {
  internal::DiagnosticSink sink;
  internal::Program program;
  Loader loader(options, sources, &sink, &program);
  loader.AddInMemory(path, std::string(text));
  loader.Load(path, true, "", Span{});
  return Finish(&program, &sink, {path}, options);
}

}  // namespace kt
