#!/usr/bin/env python3
"""Enforces the layer rules of docs/architecture.md on #include lines.

  runtime/  never includes compiler/, gateway/, cli/, ANTLR or Boost
  compiler/ never includes gateway/ or cli/; ANTLR only in the parser facade
  gateway/  includes other layers only through their facade headers
  anything outside grammar/ and compiler/internal/parser.cc: no ANTLR headers
  anything outside gateway/: no Boost headers

With --self-test, checks that a planted violation is caught.
"""
import pathlib
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
FACADES = {"compiler/compiler.h", "runtime/runtime.h", "gateway/gateway.h"}
ANTLR = re.compile(r"^(antlr4-runtime|Ktp(Lexer|Parser))")


def violations(root: pathlib.Path):
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in {".h", ".cc", ".cpp", ".def", ".inc"}:
            continue
        rel = path.relative_to(root).as_posix()
        if rel.startswith("build") or "/build" in rel:
            continue
        layer = rel.split("/", 1)[0]
        for inc in INCLUDE.findall(path.read_text(errors="replace")):
            target_layer = inc.split("/", 1)[0]
            bad = None
            if ANTLR.match(inc) and rel not in {"compiler/internal/parser.cc"} and layer != "grammar":
                bad = "ANTLR is quarantined behind the parser facade"
            elif inc.startswith("boost/") and layer not in {"gateway", "tests", "bench"}:
                bad = "Boost stays inside gateway/"
            elif layer == "runtime" and target_layer in {"compiler", "gateway", "cli"}:
                bad = "runtime/ must not depend on " + target_layer + "/"
            elif layer == "compiler" and target_layer in {"gateway", "cli", "runtime"} and \
                    inc not in FACADES and not inc.startswith("runtime/abi"):
                bad = "compiler/ may use only runtime/abi and facades"
            elif layer == "compiler" and target_layer in {"gateway", "cli"}:
                bad = "compiler/ must not depend on " + target_layer + "/"
            elif layer in {"gateway", "cli"} and target_layer in {"compiler", "runtime"} and \
                    inc not in FACADES:
                bad = f"{layer}/ must include only the facade of {target_layer}/"
            if bad:
                found.append(f"{rel}: #include \"{inc}\": {bad}")
    return found


def main():
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        root = pathlib.Path(args[1])
        with tempfile.TemporaryDirectory() as tmp:
            t = pathlib.Path(tmp)
            (t / "runtime").mkdir()
            (t / "runtime" / "x.cc").write_text('#include "compiler/internal/ast.h"\n')
            (t / "cli").mkdir()
            (t / "cli" / "y.cc").write_text('#include "compiler/internal/checker.h"\n')
            (t / "compiler").mkdir()
            (t / "compiler" / "z.cc").write_text('#include "antlr4-runtime.h"\n')
            v = violations(t)
            if len(v) != 3:
                print("self-test failed: expected 3 violations, got", v)
                return 1
        print("self-test: planted violations detected")
        return 0
    v = violations(pathlib.Path(args[0]))
    for line in v:
        print(line)
    print(f"{len(v)} layering violations")
    return 1 if v else 0


sys.exit(main())
