// Policy evaluation latency: median and p99 per call for the quickstart
// policies and the stdlib pack on 200 B, 1 KB and 16 KB requests.
//
// First table: `kt policy eval`'s path (PolicyInterpreter): the body is
// OpenAI JSON text, so each call includes parsing it and printing the
// decision. Second table: the gateway's path (PolicyEngine) on an already
// parsed request, with the policy program as native code and with the
// interpreter: the input and output stages, and the streamed output per
// 16-byte chunk (OutputStream::Feed). Third table: the load time (parse,
// check, pattern sets, policy program), cold and from the object cache.
//
//   build/bench/kt_bench_eval
//   KT_BENCH_PROFILE=1024 perf record build/bench/kt_bench_eval
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compiler/compiler.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string Prose(std::size_t size) {
  static const char* kWords[] = {"please", "summarise", "the", "attached", "report", "about",
                                 "quarterly", "sales", "and", "list", "three", "risks", "for",
                                 "our", "team", "in", "plain", "words"};
  std::mt19937 rng(3);
  std::string t;
  while (t.size() < size) {
    t += kWords[rng() % 18];
    t += ' ';
  }
  t.resize(size);
  return t;
}

}  // namespace

int main() {
  // KT_BENCH_PROFILE=<bytes>: only the stdlib pack's input stage on a request
  // of that size, in a loop for 3 s, for a profiler (perf record).
  if (const char* prof = std::getenv("KT_BENCH_PROFILE")) {
    std::string root = KT_SOURCE_DIR;
    kt::Options options;
    options.stdlib_paths = {root + "/stdlib"};
    kt::SourceMap sources;
    kt::LintResult lint;
    auto engine = kt::PolicyEngine::Load({root + "/stdlib/std/pii_test.ktp", root + "/stdlib/std/secrets_test.ktp",
                       root + "/stdlib/std/injection_test.ktp"}, options, &sources, &lint);
    std::string text = Prose(std::atoi(prof));
    nlohmann::json req = {{"model", "gpt-4o"},
                          {"messages", {{{"role", "system"}, {"content", "You are helpful."}},
                                        {{"role", "user"}, {"content", text}}}}};
    kt::EvalContext ctx;
    auto t0 = Clock::now();
    long n = 0;
    while (Clock::now() - t0 < std::chrono::seconds(3)) {
      nlohmann::json forward;
      engine->EvaluateInput(req, ctx, &forward);
      ++n;
    }
    std::printf("%.2f us\n", 3e6 / n);
    return 0;
  }
  struct Set {
    const char* name;
    std::vector<std::string> files;
  };
  std::string root = KT_SOURCE_DIR;
  std::vector<Set> sets = {
      {"quickstart", {root + "/examples/policies/quickstart.ktp"}},
      {"stdlib pack", {root + "/stdlib/std/pii_test.ktp", root + "/stdlib/std/secrets_test.ktp",
                       root + "/stdlib/std/injection_test.ktp"}},
  };
  std::printf("| set | stage | request | median µs | p99 µs |\n|---|---|---|---|---|\n");
  for (const Set& set : sets) {
    kt::Options options;
    options.stdlib_paths = {root + "/stdlib"};
    kt::SourceMap sources;
    kt::LintResult lint;
    auto t0 = Clock::now();
    auto interp = kt::PolicyInterpreter::Load(set.files, options, &sources, &lint);
    double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (interp == nullptr) {
      std::fprintf(stderr, "%s: policies have errors\n", set.name);
      return 1;
    }
    for (std::size_t size : {std::size_t{200}, std::size_t{1024}, std::size_t{16384}}) {
      std::string text = Prose(size);
      nlohmann::json req = {{"model", "gpt-4o"},
                            {"messages", {{{"role", "system"}, {"content", "You are helpful."}},
                                          {{"role", "user"}, {"content", text}}}}};
      nlohmann::json resp = {{"model", "gpt-4o"},
                             {"choices", {{{"index", 0},
                                           {"finish_reason", "stop"},
                                           {"message", {{"role", "assistant"}, {"content", text}}}}}}};
      for (const char* stage : {"input", "output"}) {
        std::string body = std::string(stage) == "input" ? req.dump() : resp.dump();
        std::string error;
        for (int i = 0; i < 20; ++i) interp->Evaluate(stage, body, &error);  // warm up
        std::vector<double> us;
        for (int i = 0; i < 2000; ++i) {
          auto a = Clock::now();
          std::string d = interp->Evaluate(stage, body, &error);
          us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
          if (d.empty()) return 1;
        }
        std::sort(us.begin(), us.end());
        std::printf("| %s | %s | %zu B | %.1f | %.1f |\n", set.name, stage, size, us[us.size() / 2],
                    us[us.size() * 99 / 100]);
      }
    }
    std::printf("| %s | load (parse, check, compile) | | %.1f ms | |\n", set.name, load_ms);
  }

  std::printf("\nThe engine (the gateway's path), native code and the interpreter:\n\n");
  std::printf("| set | engine | stage | request | median µs | p99 µs |\n|---|---|---|---|---|---|\n");
  for (const Set& set : sets) {
    for (bool native : {true, false}) {
      kt::Options options;
      options.stdlib_paths = {root + "/stdlib"};
      options.native = native;
      kt::SourceMap sources;
      kt::LintResult lint;
      auto engine = kt::PolicyEngine::Load(set.files, options, &sources, &lint);
      if (engine == nullptr || engine->program_info().native != native) return 1;
      const char* kind = native ? "native" : "interpreter";
      auto measure = [](auto&& fn) {
        for (int i = 0; i < 20; ++i) fn();
        std::vector<double> us;
        for (int i = 0; i < 2000; ++i) {
          auto a = Clock::now();
          double per = fn();  // the number of units the call covered
          us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count() / per);
        }
        std::sort(us.begin(), us.end());
        return std::make_pair(us[us.size() / 2], us[us.size() * 99 / 100]);
      };
      for (std::size_t size : {std::size_t{200}, std::size_t{1024}, std::size_t{16384}}) {
        std::string text = Prose(size);
        nlohmann::json req = {{"model", "gpt-4o"},
                              {"messages", {{{"role", "system"}, {"content", "You are helpful."}},
                                            {{"role", "user"}, {"content", text}}}}};
        kt::EvalContext ctx;
        auto in = measure([&] {
          nlohmann::json forward;
          kt::Decision d = engine->EvaluateInput(req, ctx, &forward);
          return d.error ? 0.0 : 1.0;
        });
        std::printf("| %s | %s | input | %zu B | %.2f | %.2f |\n", set.name, kind, size, in.first,
                    in.second);
        auto out = measure([&] {
          std::string t = text;
          kt::Decision d = engine->EvaluateOutput(req, &t, "stop", ctx);
          return d.error ? 0.0 : 1.0;
        });
        std::printf("| %s | %s | output | %zu B | %.2f | %.2f |\n", set.name, kind, size, out.first,
                    out.second);
        auto chunk = measure([&] {
          auto stream = engine->StartOutput(req, ctx, {});
          std::string released;
          std::size_t chunks = 0;
          for (std::size_t i = 0; i < text.size(); i += 16, ++chunks) {
            stream->Feed(std::string_view(text).substr(i, 16), &released);
          }
          return static_cast<double>(chunks);
        });
        std::printf("| %s | %s | stream, per 16 B chunk | %zu B | %.2f | %.2f |\n", set.name, kind,
                    size, chunk.first, chunk.second);
      }
    }
  }

  // Load: parse, check, pattern sets and the policy program, with an empty
  // object cache (cold) and again with the cache it filled (a restart).
  std::printf("\nLoad (PolicyEngine::Load), cold and from the object cache:\n\n");
  std::printf("| set | cache | load ms | parse + check ms | patterns + program ms | program compile ms |\n"
              "|---|---|---|---|---|---|\n");
  char dir_template[] = "/tmp/kt-bench-cache-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) return 1;
  // And a large set: 1,000 generated policies (compile time must grow
  // linearly with the number of rules).
  {
    std::string big;
    for (int i = 0; i < 1000; ++i) {
      big += "policy \"p" + std::to_string(i) + "\" {\n  on input\n  when any m in input.messages: "
             "m.role == \"user\" and (lower(m.content) contains \"w" + std::to_string(i) +
             "\" or len(m.content) > " + std::to_string(1000 + i) + ")\n  then block \"no\" code \"c" +
             std::to_string(i) + "\"\n}\n\n";
    }
    std::string path = std::string(dir) + "/generated_1000.ktp";
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return 1;
    std::fwrite(big.data(), 1, big.size(), f);
    std::fclose(f);
    sets.push_back({"1,000 generated policies", {path}});
  }
  for (const Set& set : sets) {
    for (int run = 0; run < 2; ++run) {
      kt::Options options;
      options.stdlib_paths = {root + "/stdlib"};
      options.object_cache_dir = std::string(dir) + "/cache-" + std::to_string(&set - sets.data());
      kt::SourceMap sources;
      kt::LintResult lint;
      auto engine = kt::PolicyEngine::Load(set.files, options, &sources, &lint);
      if (engine == nullptr) return 1;
      const kt::PolicyEngine::ProgramInfo& p = engine->program_info();
      std::printf("| %s | %s | %.1f | %.1f | %.1f | %.1f |\n", set.name,
                  p.from_cache ? "warm (compilation skipped)" : "cold", p.load_ms, p.check_ms,
                  p.load_ms - p.check_ms, p.compile_ms);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
