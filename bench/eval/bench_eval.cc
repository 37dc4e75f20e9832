// Policy evaluation latency: median and p99 per call for the quickstart
// policies and the stdlib pack on 200 B, 1 KB and 16 KB requests.
//
// First table: `kt policy eval`'s path (PolicyInterpreter): the body is
// OpenAI JSON text, so each call includes parsing it and printing the
// decision. Second table: the gateway's path (PolicyEngine) on an already
// parsed request: the input and output stages, and the streamed output per
// 16-byte chunk (OutputStream::Feed), plus the load time (parse, check,
// compile and JIT every pattern set).
//
//   build/bench/kt_bench_eval
#include <algorithm>
#include <chrono>
#include <cstdio>
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
    std::printf("| %s | load (parse + check) | | %.1f ms | |\n", set.name, load_ms);
  }

  std::printf("\nThe engine (the gateway's path):\n\n");
  std::printf("| set | stage | request | median µs | p99 µs |\n|---|---|---|---|---|\n");
  for (const Set& set : sets) {
    kt::Options options;
    options.stdlib_paths = {root + "/stdlib"};
    kt::SourceMap sources;
    kt::LintResult lint;
    auto t0 = Clock::now();
    auto engine = kt::PolicyEngine::Load(set.files, options, &sources, &lint);
    double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (engine == nullptr) return 1;
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
      std::printf("| %s | input | %zu B | %.1f | %.1f |\n", set.name, size, in.first, in.second);
      auto out = measure([&] {
        std::string t = text;
        kt::Decision d = engine->EvaluateOutput(req, &t, "stop", ctx);
        return d.error ? 0.0 : 1.0;
      });
      std::printf("| %s | output | %zu B | %.1f | %.1f |\n", set.name, size, out.first, out.second);
      auto chunk = measure([&] {
        auto stream = engine->StartOutput(req, ctx, {});
        std::string released;
        std::size_t chunks = 0;
        for (std::size_t i = 0; i < text.size(); i += 16, ++chunks) {
          stream->Feed(std::string_view(text).substr(i, 16), &released);
        }
        return static_cast<double>(chunks);
      });
      std::printf("| %s | stream, per 16 B chunk | %zu B | %.2f | %.2f |\n", set.name, size,
                  chunk.first, chunk.second);
    }
    std::printf("| %s | load (parse, check, compile + JIT) | | %.1f ms | |\n", set.name, load_ms);
  }
  return 0;
}
