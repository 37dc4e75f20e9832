#!/usr/bin/env python3
"""The route census in docs/gateway.md is exactly what `kt gateway routes` prints.

  routes_doc_test.py path/to/kt docs/gateway.md
"""
import subprocess
import sys

BEGIN, END = "<!-- routes:begin -->\n", "<!-- routes:end -->"


def main():
    kt, doc = sys.argv[1], sys.argv[2]
    printed = subprocess.run([kt, "gateway", "routes"], check=True, capture_output=True,
                             text=True).stdout
    text = open(doc, encoding="utf-8").read()
    if BEGIN not in text or END not in text:
        print(f"{doc}: the route table markers are missing")
        return 1
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0]
    if documented != printed:
        print(f"{doc} and `kt gateway routes` differ; the table should read:\n{printed}")
        return 1
    rows = [l for l in printed.splitlines() if l.startswith("| `")]
    print(f"route census: {len(rows)} routes, docs and table agree")
    return 0


sys.exit(main())
