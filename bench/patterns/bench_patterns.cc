// Pattern-set scanning: kt (JIT and table interpreter) against RE2::Set,
// PCRE2-JIT (one alternation) and Hyperscan (block mode), in one run.
//
// The question each engine answers is "which patterns occur in this text":
// kt, RE2::Set and Hyperscan (HS_FLAG_SINGLEMATCH) report the set of pattern
// ids; PCRE2 can only say whether the alternation matches, so it stops at
// its first match, which favours it.
//
//   build/bench/kt_bench_patterns [--quick]
#include <hs/hs.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "compiler/compiler.h"
#include "runtime/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Pattern {
  std::string regex;
  bool caseless = false;
};

struct Set {
  std::string name;
  std::vector<Pattern> patterns;
};

std::vector<Pattern> StdlibPatterns() {
  std::vector<Pattern> out;
  std::regex decl(R"(^pattern [a-z_]+ = /(.*)/([a-z]*)$)");
  for (const char* f : {"pii", "secrets", "injection"}) {
    std::ifstream in(std::string(KT_SOURCE_DIR) + "/stdlib/std/" + f + ".ktp");
    std::string line;
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_match(line, m, decl)) {
        std::string re = m[1];
        // The .ktp literal escapes `/` as `\/`; the engines take plain `/`.
        for (std::size_t p; (p = re.find("\\/")) != std::string::npos;) re.replace(p, 2, "/");
        out.push_back(Pattern{re, m[2].str().find('i') != std::string::npos});
      }
    }
  }
  return out;
}

std::vector<Set> Sets() {
  std::vector<Set> sets;
  sets.push_back({"(a) 1 literal", {{"ignore previous instructions", false}}});
  Set b{"(b) 20 caseless literals", {}};
  for (const char* w : {"password", "credit card", "social security", "bank account", "wire transfer",
                        "api key", "private key", "confidential", "internal only", "do not share",
                        "salary", "diagnosis", "prescription", "passport", "driver license",
                        "home address", "date of birth", "mother maiden", "pin code", "routing number"}) {
    b.patterns.push_back({w, true});
  }
  sets.push_back(b);
  sets.push_back({"(c) stdlib pii+secrets+injection", StdlibPatterns()});
  // (d) 100 mixed regexes of the shapes policies use: literals, identifiers
  // with fixed formats, keyword phrases, number formats.
  Set d{"(d) 100 mixed regexes", {}};
  std::mt19937 rng(42);
  const char* words[] = {"refund", "invoice", "ticket", "order", "account", "token", "session",
                         "employee", "patient", "contract"};
  for (int i = 0; i < 100; ++i) {
    std::string w = std::string(words[i % 10]) + std::to_string(i);
    switch (i % 5) {
      case 0: d.patterns.push_back({w, false}); break;
      case 1: d.patterns.push_back({w + "-[0-9]{4,8}", false}); break;
      case 2: d.patterns.push_back({"\\b" + w + "\\b", true}); break;
      case 3: d.patterns.push_back({"[A-Z]{2}" + std::to_string(i) + "[0-9]{6}", false}); break;
      default: d.patterns.push_back({w + "\\s+(id|number|no)\\s*[:#]?\\s*[0-9]+", true}); break;
    }
  }
  sets.push_back(d);
  return sets;
}

std::string Text(std::size_t size) {
  static const char* kWords[] = {"the", "model", "should", "answer", "customer", "questions",
                                 "about", "their", "order", "status", "and", "never", "share",
                                 "details", "with", "anyone", "please", "summarise", "this",
                                 "document", "in", "three", "bullet", "points", "thanks"};
  std::mt19937 rng(7);
  std::string t;
  while (t.size() < size) {
    t += kWords[rng() % 25];
    t += (rng() % 13 == 0) ? ".\n" : " ";
  }
  t.resize(size);
  return t;
}

struct Engine {
  std::string name;
  std::function<bool(const Set&, double* compile_ms)> compile;
  std::function<int(const std::string&)> scan;  // returns a count to keep the work observable
};

double MedianNsPerCall(const std::function<int(const std::string&)>& scan, const std::string& text,
                       double budget_s, int* sink) {
  std::vector<double> samples;
  auto start = Clock::now();
  int batch = text.size() >= (1 << 20) ? 1 : text.size() >= (64 << 10) ? 4 : 256;
  while (samples.size() < 7 ||
         std::chrono::duration<double>(Clock::now() - start).count() < budget_s) {
    auto t0 = Clock::now();
    for (int i = 0; i < batch; ++i) *sink += scan(text);
    auto t1 = Clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / batch);
    if (samples.size() > 2000) break;
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  double budget = quick ? 0.05 : 0.3;
  std::vector<Set> sets = Sets();
  std::vector<std::size_t> sizes = {1 << 10, 64 << 10, 1 << 20};

  // State shared by the engine lambdas; rebuilt per set.
  std::unique_ptr<kt::PatternSet> kt_jit, kt_interp;
  std::unique_ptr<RE2::Set> re2_set;
  pcre2_code* pcre = nullptr;
  pcre2_match_data* pcre_md = nullptr;
  hs_database_t* hs_db = nullptr;
  hs_scratch_t* hs_scratch = nullptr;
  std::vector<bool> kt_matched;
  std::vector<int> re2_ids;

  std::unique_ptr<kt::PatternSet> kt_direct, kt_table_noskip;
  auto kt_compile_opts = [&](const Set& s, double* ms, kt::JitOptions o,
                             std::unique_ptr<kt::PatternSet>* out) {
    std::vector<kt::PatternSource> src;
    for (const Pattern& p : s.patterns) src.push_back({p.regex, p.caseless ? "i" : ""});
    auto t0 = Clock::now();
    kt::CompiledPatterns c = kt::CompilePatterns(src, kt::Options{});
    if (!c.ok) return false;
    auto set = std::make_unique<kt::PatternSet>(std::move(c.tables));
    std::string err;
    if (!set->Jit(&err, o)) {
      std::fprintf(stderr, "kt jit: %s\n", err.c_str());
      return false;
    }
    *ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    *out = std::move(set);
    return true;
  };
  auto kt_compile = [&](const Set& s, double* ms, bool jit) {
    std::vector<kt::PatternSource> src;
    for (const Pattern& p : s.patterns) src.push_back({p.regex, p.caseless ? "i" : ""});
    auto t0 = Clock::now();
    kt::CompiledPatterns c = kt::CompilePatterns(src, kt::Options{});
    if (!c.ok) {
      std::fprintf(stderr, "kt: %s\n", c.error.c_str());
      return false;
    }
    auto set = std::make_unique<kt::PatternSet>(std::move(c.tables));
    if (jit && !set->Jit()) return false;
    *ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    (jit ? kt_jit : kt_interp) = std::move(set);
    return true;
  };

  std::vector<Engine> engines;
  engines.push_back({"kt (JIT)", [&](const Set& s, double* ms) { return kt_compile(s, ms, true); },
                     [&](const std::string& t) { return kt_jit->Scan(t, &kt_matched) ? 1 : 0; }});
  engines.push_back({"kt (interpreter)",
                     [&](const Set& s, double* ms) { return kt_compile(s, ms, false); },
                     [&](const std::string& t) { return kt_interp->Scan(t, &kt_matched) ? 1 : 0; }});
  engines.push_back({"kt (JIT, table, no skip loop)",
                     [&](const Set& s, double* ms) {
                       kt::JitOptions o;
                       o.accelerate = false;
                       return kt_compile_opts(s, ms, o, &kt_table_noskip);
                     },
                     [&](const std::string& t) { return kt_table_noskip->Scan(t, &kt_matched) ? 1 : 0; }});
  engines.push_back({"kt (JIT, direct-coded, no skip loop)",
                     [&](const Set& s, double* ms) {
                       kt::JitOptions o;
                       o.loop = kt::JitOptions::Loop::kDirect;
                       o.accelerate = false;
                       return kt_compile_opts(s, ms, o, &kt_direct);
                     },
                     [&](const std::string& t) { return kt_direct->Scan(t, &kt_matched) ? 1 : 0; }});
  engines.push_back(
      {"RE2::Set",
       [&](const Set& s, double* ms) {
         auto t0 = Clock::now();
         RE2::Options o;
         o.set_log_errors(false);
         o.set_max_mem(64 << 20);
         re2_set = std::make_unique<RE2::Set>(o, RE2::UNANCHORED);
         for (const Pattern& p : s.patterns) {
           if (re2_set->Add((p.caseless ? "(?i)" : "") + p.regex, nullptr) < 0) return false;
         }
         bool ok = re2_set->Compile();
         std::vector<int> warm;
         re2_set->Match("warm up the lazy DFA", &warm);
         *ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
         return ok;
       },
       [&](const std::string& t) {
         re2_ids.clear();
         return re2_set->Match(t, &re2_ids) ? static_cast<int>(re2_ids.size()) : 0;
       }});
  engines.push_back(
      {"PCRE2-JIT (alternation)",
       [&](const Set& s, double* ms) {
         auto t0 = Clock::now();
         std::string alt;
         for (const Pattern& p : s.patterns) {
           alt += (alt.empty() ? "" : "|") + std::string("(?:") + (p.caseless ? "(?i)" : "") +
                  p.regex + ")";
         }
         int err = 0;
         PCRE2_SIZE off = 0;
         if (pcre != nullptr) pcre2_code_free(pcre);
         pcre = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(alt.c_str()), alt.size(),
                              PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
         if (pcre == nullptr || pcre2_jit_compile(pcre, PCRE2_JIT_COMPLETE) != 0) return false;
         if (pcre_md != nullptr) pcre2_match_data_free(pcre_md);
         pcre_md = pcre2_match_data_create_from_pattern(pcre, nullptr);
         *ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
         return true;
       },
       [&](const std::string& t) {
         return pcre2_jit_match(pcre, reinterpret_cast<PCRE2_SPTR>(t.data()), t.size(), 0, 0,
                                pcre_md, nullptr) > 0
                    ? 1
                    : 0;
       }});
  engines.push_back(
      {"Hyperscan (block)",
       [&](const Set& s, double* ms) {
         auto t0 = Clock::now();
         std::vector<const char*> exprs;
         std::vector<unsigned> flags, ids;
         for (std::size_t i = 0; i < s.patterns.size(); ++i) {
           exprs.push_back(s.patterns[i].regex.c_str());
           flags.push_back(HS_FLAG_SINGLEMATCH | HS_FLAG_UTF8 |
                           (s.patterns[i].caseless ? HS_FLAG_CASELESS : 0));
           ids.push_back(static_cast<unsigned>(i));
         }
         hs_compile_error_t* cerr = nullptr;
         if (hs_db != nullptr) hs_free_database(hs_db);
         hs_db = nullptr;
         if (hs_compile_multi(exprs.data(), flags.data(), ids.data(),
                              static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK, nullptr, &hs_db,
                              &cerr) != HS_SUCCESS) {
           std::fprintf(stderr, "hyperscan: %s\n", cerr ? cerr->message : "?");
           hs_free_compile_error(cerr);
           return false;
         }
         if (hs_alloc_scratch(hs_db, &hs_scratch) != HS_SUCCESS) return false;
         *ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
         return true;
       },
       [&](const std::string& t) {
         int count = 0;
         hs_scan(hs_db, t.data(), static_cast<unsigned>(t.size()), 0, hs_scratch,
                 [](unsigned, unsigned long long, unsigned long long, unsigned, void* ctx) {
                   ++*static_cast<int*>(ctx);
                   return 0;
                 },
                 &count);
         return count;
       }});

  std::printf("| set | engine | compile ms | 1 KB: MB/s | 1 KB: µs/call | 64 KB: MB/s | 64 KB: µs/call | 1 MB: MB/s | 1 MB: µs/call |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  int sink = 0;
  std::map<std::size_t, std::string> texts;
  for (std::size_t size : sizes) texts[size] = Text(size);
  for (const Set& set : sets) {
    for (const Engine& e : engines) {
      double compile_ms = 0;
      if (!e.compile(set, &compile_ms)) {
        std::printf("| %s | %s | compile failed | | | | | | |\n", set.name.c_str(), e.name.c_str());
        continue;
      }
      std::printf("| %s | %s | %.2f |", set.name.c_str(), e.name.c_str(), compile_ms);
      for (std::size_t size : sizes) {
        double ns = MedianNsPerCall(e.scan, texts[size], budget, &sink);
        std::printf(" %.0f | %.2f |", size / ns * 1e3, ns / 1e3);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  std::fprintf(stderr, "(checksum %d)\n", sink);
  return 0;
}
