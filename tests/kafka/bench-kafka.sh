#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/kafka/bench-kafka.sh: run bench-kafka (the Kafka backend against raw
# librdkafka on one in-process mock cluster, alternating pairs) and print
# the "## Kafka backend" section of BENCHMARKS.md on stdout, between
# <!-- kafka-backend:begin ... --> and <!-- kafka-backend:end --> markers
# (as tools/bench/run-local.sh does for the local backend), with the exact
# command, the time and the load average.  Progress goes to stderr.  With
# --write FILE the section also replaces, in FILE, the marked block, or else
# the "## Kafka backend" section (up to the next "## " heading), or else is
# appended.
#
#   tests/kafka/bench-kafka.sh [--write FILE] [BUILD_DIR] [APPENDS_PER_RUN] [PAIRS]
#   (defaults: build 1000000 5; BUILD_DIR must hold tests/kafka/bench-kafka)
set -eu

write=
if [ "${1:-}" = "--write" ]; then
        write=$2
        shift 2
fi

build=${1:-build}
n=${2:-1000000}
pairs=${3:-5}
bin=$build/tests/kafka/bench-kafka
if [ ! -x "$bin" ]; then
        echo "bench-kafka.sh: $bin not built (ninja -C $build tests/kafka/bench-kafka)" >&2
        exit 1
fi
here=$(cd "$(dirname "$0")/../.." && pwd)
commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$here" status --porcelain -- impls/kafka tests/kafka 2>/dev/null |
        grep -v '^??' || true)" ]; then
        commit="$commit+dirty"
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
out=$("$bin" all "$n" "$pairs" 2>/dev/null)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "$out" >&2

section=$(cat <<MD
<!-- kafka-backend:begin (written by tests/kafka/bench-kafka.sh) -->
## Kafka backend

Command: \`tests/kafka/bench-kafka.sh $build $n $pairs\` (runs \`$bin all $n $pairs\`),
source tree at commit $commit, $started, $(nproc) CPUs, load average $load_start at the start, $load_end at the end.

The Kafka backend through the backend interface (walimpls) against raw librdkafka 2.0.2
on one in-process mock cluster, in $pairs alternating pairs (the order of the sides flips
every pair); ratios are per pair, reported as median (min-max).  Append: identical client
configuration on every side (enable.idempotence=true, acks=all, linger.ms=5,
socket.nagle.disable=true, queue.buffering.max.messages=1000000, batch.num.messages=10000),
100-B values.  The goal (0.9x) compares against **raw**, REF-RDK as perf-anchors 9.5 writes
it (no key, no headers): the record format is the backend's choice, so its cost counts
against the backend.  **raw+key** is the same loop also sending a record key of the bytes
our records carry (magic + envelope with time tick, term and last-confirmed ID set): the
same record format, so ours/raw+key is the backend's own overhead.  **ours** appends
through the backend interface messages made before the clock starts, as raw's value is
(1024 distinct messages with the time tick, term and last-confirmed ID the adaptor sets,
appended in turn; making them is the caller's work); pages before 2026-11-22 built and
released one message per append inside the timed loop.  Each side's clock stops when
every record is acknowledged; raw's loop ends in rd_kafka_flush and ours (since
2026-11-22) in wal.flush, both of which send the last batch without waiting out
linger.ms (before, ours waited it out).  CPU ns per record (in brackets) is the
process's CPU time (every thread, the mock broker's too) per record; the line under each
pair splits it by thread.
Replay: $(printf '%s\n' "$out" | sed -n 's/^replay: \([0-9]*\) records.*/\1/p') records
written by the backend, read by a raw consumer (assign + consumer_poll, the scanner
consumer's exact properties, starting at the low watermark as the scanner's ALL does) and
by a scanner (decoded messages), clock from creating the consumer to the last record,
in $(printf '%s\n' "$out" | sed -n 's/^replay: .*per run (written by the backend), \([0-9]*\) pairs.*/\1/p') pairs (four per append pair since 2026-11-22: a replay run takes 10-20 ms, a third of
it waiting for the first fetch, so five pairs swung the median by 0.2).

\`\`\`
$out
\`\`\`
<!-- kafka-backend:end -->
MD
)
printf '%s\n' "$section"
if [ -n "$write" ]; then
        SECTION=$section python3 - "$write" <<'PY'
import os, re, sys
path, sec = sys.argv[1], os.environ["SECTION"].rstrip() + "\n"
text = open(path).read() if os.path.exists(path) else ""
b = text.find("<!-- kafka-backend:begin")
e = text.find("<!-- kafka-backend:end -->")
if b >= 0 and e > b:
    e += len("<!-- kafka-backend:end -->")
    text = text[:b] + sec.rstrip("\n") + text[e:]
else:
    m = re.search(r"^## Kafka backend\n", text, re.M)
    if m:
        n = re.search(r"^## ", text[m.end():], re.M)
        end = m.end() + n.start() if n else len(text)
        text = text[:m.start()] + sec + "\n" + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + sec
open(path, "w").write(text)
PY
fi
