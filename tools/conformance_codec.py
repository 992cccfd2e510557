#!/usr/bin/env python3
"""Prints the codec rows of docs/conformance.md: each DecodeError constant in
src/protocol/error.rs, the statements it enforces, and the tests in tests/codec/ that assert it.
Run after changing the error table and paste the output over the codec section."""
import glob, re

src = open("src/protocol/error.rs").read()
rules = re.findall(
    r'\n    (\w+) = ([\w:]+),\s*(?:None|Some\("([^"]+)"\)),\s*(?:None|Some\("([^"]+)"\)),\s*"([^"]+)"',
    src,
)
tests = {}
for path in sorted(glob.glob("tests/codec/*.rs")):
    current = None
    for line in open(path):
        m = re.match(r"\s*(?:pub )?fn (\w+)\(", line)
        if m:
            current = "codec::" + path.split("/")[-1][:-3] + "::" + m.group(1)
        for m in re.finditer(r"error::([A-Z_0-9]+)", line):
            tests.setdefault(m.group(1), []).append(current)
reason_of = {"MALFORMED": "0x81", "PROTOCOL": "0x82"}
print("| 3.1.1 | 5.0 | rule (`error::` constant) | v5 answer | tests |")
print("|---|---|---|---|---|")
for name, reason, v3, v5, msg in rules:
    r = reason_of.get(reason, reason.replace("ReasonCode::", "").lower())
    t = ", ".join(f"`{x}`" for x in sorted(set(tests.get(name, []))) if x)
    print(f"| {v3 or '-'} | {v5 or '-'} | {msg} (`{name}`) | {r} | {t or '**untested**'} |")
