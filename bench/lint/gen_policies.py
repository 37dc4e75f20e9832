#!/usr/bin/env python3
"""Prints a .ktp file with N realistic, varied policies (all valid)."""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
print("import std.pii\nimport std.injection\n")
print('let tools = ["get_account_balance", "lookup_order", "issue_refund"]\n')
for i in range(n):
    k = i % 5
    if k == 0:
        body = (f'  on input\n  when any m in input.messages: m.role == "user" and '
                f'm.content matches /forbidden-{i}-[a-z]+/i\n  then block "blocked {i}" code "input_blocked"')
    elif k == 1:
        body = f'  on input, output\n  then redact std.pii.email with "[E{i}]", /ID-{i}-[0-9]{{4}}/ with "[ID]"'
    elif k == 2:
        body = (f'  on tool_call\n  when tool.name not in tools or tool.args.amount as float > {i}.5\n'
                f'  then block "tool {i}" code "tool_blocked"')
    elif k == 3:
        body = (f'  on output\n  mode observe\n  when count(/word{i}/ in output.text) >= 3 or '
                f'output.text contains "x{i}"\n  then flag "seen {i}"')
    else:
        body = (f'  on input\n  when header("X-Request-Source") ?? "" == "svc-{i}" and '
                f'any m in input.messages: m.content matches std.injection.attack\n  then block')
    print(f'policy "p-{i}" {{\n{body}\n}}\n')
