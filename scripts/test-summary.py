#!/usr/bin/env python3
"""Count test cases in one or more meson testlog.json files.

Each TAP subtest ("ok N ..." / "not ok N ...") counts once; a test that is
not TAP (or whose TAP output is missing) counts once by its own result.
Prints "N passed, N failed" and exits 1 if anything failed.
"""
import json
import re
import sys

TAP = re.compile(r"^(not ok|ok)\b(.*)$")


def count(path):
    passed = failed = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            result = t.get("result", "")
            out = t.get("stdout") or ""
            sub_pass = sub_fail = 0
            for l in out.splitlines():
                m = TAP.match(l.strip())
                if not m:
                    continue
                rest = m.group(2)
                if "# SKIP" in rest.upper():
                    # A skip is not a pass: count it as a failure so it shows.
                    sub_fail += 1
                elif m.group(1) == "ok":
                    sub_pass += 1
                else:
                    sub_fail += 1
            if sub_pass + sub_fail == 0:
                if result in ("OK", "EXPECTEDFAIL"):
                    sub_pass = 1
                else:
                    sub_fail = 1
            elif result not in ("OK", "EXPECTEDFAIL") and sub_fail == 0:
                # The binary failed (crash, timeout, bad exit) after passing
                # subtests: count the binary's failure too.
                sub_fail = 1
            passed += sub_pass
            failed += sub_fail
    return passed, failed


def main(paths):
    p = f = 0
    for path in paths:
        a, b = count(path)
        p += a
        f += b
    print(f"{p} passed, {f} failed")
    return 1 if f else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
