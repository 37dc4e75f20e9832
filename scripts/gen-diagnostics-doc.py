#!/usr/bin/env python3
"""Regenerates docs/diagnostics.md from compiler/internal/diagnostic_codes.def
and the golden cases in tests/golden/diagnostics (one example per code)."""
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
defs = re.findall(r'^KT_DIAG\((\w+), "(\w+)", (\w+), "([^"]+)"\)',
                  (root / "compiler/internal/diagnostic_codes.def").read_text(), re.M)
goldens = sorted((root / "tests/golden/diagnostics").glob("*.case"))
out = ["# kt diagnostics", "",
       "Every diagnostic `kt policy lint` can report, with an example taken from the golden",
       "tests (`tests/golden/diagnostics/`, regenerated with `KT_UPDATE_GOLDENS=1`). Codes are",
       "stable: `E00xx` input limits, `E01xx` syntax, `E02xx` names and scoping, `E03xx`",
       "types and clause rules, `E04xx` patterns, `W05xx` warnings. A diagnostic is data:",
       "`{severity, code, message, span, labels, help}`; `--format json` and `--format sarif`",
       "carry the same fields.", "",
       "Exit codes of `kt policy lint`: 0 clean, 1 warnings under `--strict`, 2 errors.", ""]
for _, code, sev, title in defs:
    out.append(f"## {code}")
    out.append("")
    out.append(f"**{title}** ({sev[1:].lower()})")
    out.append("")
    case = next((g for g in goldens if g.stem.upper().startswith(code)), None)
    if case is not None:
        src = case.read_bytes().decode("utf-8", "replace")
        if len(src) > 600:
            src = src[:300] + "\n…\n"
        expected = case.with_suffix(".txt").read_text(errors="replace")
        if len(expected) > 1200:
            expected = expected[:1200] + "\n…\n"
        out += ["```ktp", src.rstrip("\n"), "```", "", "```text", expected.rstrip("\n"), "```", ""]
(root / "docs/diagnostics.md").write_text("\n".join(out) + "\n")
