#!/usr/bin/env python3
"""Fails when a function body in the given trees is longer than the bound.

STYLE.md asks for small functions; the gateway holds to 80 lines (issue:
no function in gateway/ over 80 lines). A function is a `{` that follows a
parameter list `)` (with optional qualifiers: const, override, noexcept, an
initializer list); its length is the lines from that brace to its match.
Lambdas, control statements and class bodies are not functions. Comments and
string literals are blanked first, so braces in them do not count.

  check_function_length.py MAX DIR...      (report, exit 1 on any over MAX)
  check_function_length.py --self-test     (a planted long function is caught)
"""
import pathlib
import re
import sys
import tempfile

CONTROL = {"if", "for", "while", "switch", "catch", "return", "sizeof", "decltype"}


def blank(text):
    """Comments, string and char literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (j + 1 - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def is_function_head(before):
    """`before`: the code ahead of a `{`. True when it ends a function head."""
    head = before.rstrip()
    # Qualifiers and trailing return types between `)` and `{`.
    head = re.sub(r"(\b(const|override|final|noexcept|mutable)\b|->\s*[\w:<>,\s*&]+)\s*$", "", head).rstrip()
    head = re.sub(r"(\b(const|override|final|noexcept)\b\s*)+$", "", head).rstrip()
    if not head.endswith(")"):
        # A constructor's initializer list: `) : a_(x), b_(y) {`.
        m = re.search(r"\)\s*:\s*[\w:]+\s*[({].*[)}]\s*$", head, re.S)
        if not m:
            return False
        head = head[: m.start() + 1]
    depth, i = 0, len(head) - 1
    while i >= 0:  # back to the `(` that opens the parameter list
        if head[i] == ")":
            depth += 1
        elif head[i] == "(":
            depth -= 1
            if depth == 0:
                break
        i -= 1
    name = re.search(r"([\w:~]+|operator\s*\S+)\s*$", head[:i])
    if not name:
        return False  # a lambda: `](…) {`, or a cast
    word = name.group(1).split("::")[-1]
    return word not in CONTROL


def long_functions(path, bound):
    text = blank(path.read_text(errors="replace"))
    found, stack = [], []
    line = 1
    last = 0  # where the code ahead of the current brace starts
    for i, c in enumerate(text):
        if c == "\n":
            line += 1
        elif c == "{":
            stack.append((line, is_function_head(text[max(last, i - 2000):i])))
            last = i + 1
        elif c == "}":
            if stack:
                start, fn = stack.pop()
                if fn and line - start + 1 > bound:
                    found.append((start, line - start + 1))
            last = i + 1
        elif c == ";":
            last = i + 1
    return found


def main():
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        with tempfile.TemporaryDirectory() as tmp:
            p = pathlib.Path(tmp) / "x.cc"
            body = "\n".join(f"  int v{i} = {i};  // {{ not a brace" for i in range(85))
            p.write_text("int Long(int a) const {\n" + body + "\n  auto f = [](int x) {\n"
                         "    return x;\n  };\n  return 0;\n}\nint Short() { return 1; }\n")
            got = long_functions(p, 80)
            if len(got) != 1 or got[0][0] != 1:
                print("self-test failed: expected one long function at line 1, got", got)
                return 1
        print("self-test: a planted 90-line function is caught")
        return 0
    bound = int(args[0])
    bad = []
    for root in args[1:]:
        for path in sorted(pathlib.Path(root).rglob("*")):
            if path.suffix in {".cc", ".h"}:
                bad += [f"{path}:{start}: a function of {n} lines (over {bound})"
                        for start, n in long_functions(path, bound)]
    for b in bad:
        print(b)
    print(f"{len(bad)} functions over {bound} lines")
    return 1 if bad else 0


sys.exit(main())
