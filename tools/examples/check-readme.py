#!/usr/bin/env python3
"""Check that README.md shows tools/examples/embed.c verbatim.

The README's embedding example is the first ```c block after the heading
"## Embedding"; it must equal the file, so the example users copy is the one
CI compiles and runs.
"""
import sys

readme, source = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
start = text.find("## Embedding")
if start < 0:
    sys.exit("README.md has no '## Embedding' section")
block = text.find("```c\n", start)
if block < 0:
    sys.exit("README.md's Embedding section has no ```c block")
body_start = block + len("```c\n")
body_end = text.find("```", body_start)
shown = text[body_start:body_end]
actual = open(source, encoding="utf-8").read()
if shown != actual:
    sys.exit("README.md's example differs from tools/examples/embed.c")
print("ok 1 - README example matches tools/examples/embed.c")
print("1..1")
