#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tools/bench/plot/report.py: turn one run of tools/bench/run-all.sh into
BENCHMARKS.md, bench-results/results.json and the PNG plots.

Input: the run's JSON lines (one per program run, tagged by run-all.sh or
run-local.sh), run-local.sh's markdown section, and the text outputs of
bench-kafka and tools/walctl-bench-ref/run.sh, which this script parses.
Pairs are recovered by position: the i-th run of a tag belongs to pair i,
so a ratio is median(ours_i / ref_i) over the pairs, reported with the
min-max of the pair ratios.  A goal is met when the median ratio meets it.
Nothing here measures anything; every number comes from the run's files.
"""
import argparse
import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys

ap = argparse.ArgumentParser()
for a in ("log", "data", "root", "mode", "pairs", "cmdline", "commit", "elapsed", "load",
          "only", "cpu", "ncpu", "kernel", "fs"):
    ap.add_argument("--" + a, required=True)
args = ap.parse_args()

rows = [json.loads(l) for l in open(args.log) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["tag"], []).append(r)
only = args.only.split()
outdir = os.path.join(args.root, "bench-results")
os.makedirs(outdir, exist_ok=True)


def vals(tag, key):
    """Per-pair values of one tag, None where that run failed."""
    return [r.get(key) for r in by.get(tag, [])]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def failed(tag):
    return sum(1 for r in by.get(tag, []) if r.get("failed"))


def read(name):
    try:
        return open(os.path.join(args.data, name)).read()
    except FileNotFoundError:
        return ""


# ---- Formatting ----

def rate(x):
    return "–" if x != x else f"{x:,.0f}/s"


def us(x):
    if x != x:
        return "–"
    if x < 1:
        return f"{x * 1000:.0f} ns"
    if x < 1000:
        return f"{x:,.1f} µs"
    return f"{x / 1000:,.2f} ms"


summary = []   # (section, workload, ratio text, goal text, met)
tables = {}    # section -> list of row dicts (results.json)


def ratio_row(section, name, ours, ref, refname, goal, higher=True, fmt=rate, key=None):
    """One table row from two lists of per-pair values (ours/ref ratios)."""
    pairs = [(a, b) for a, b in zip(ours, ref) if a is not None and b]
    ratios = [a / b for a, b in pairs]
    lost = sum(1 for a, b in zip(ours, ref) if a is None or b is None)
    row = {"workload": name, "ours": med(ours), "reference": med(ref),
           "reference_name": refname, "ratios": ratios, "goal": goal,
           "goal_kind": ">=" if higher else "<="}
    if not ratios:
        met = None
        cells = [name, "not run", refname, "–", goal_text(goal, higher, refname),
                 "–" if goal is None else "**no** (not run)"]
    else:
        rm = med(ratios)
        met = None if goal is None else (rm >= goal if higher else rm <= goal)
        row["ratio"] = rm
        cells = [name, fmt(med(ours)), f"{fmt(med(ref))} ({refname})",
                 f"{rm:.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                 + (f", {lost} pair{'s' if lost > 1 else ''} failed" if lost else ""),
                 goal_text(goal, higher, refname),
                 "–" if met is None else ("yes" if met else "**no**")]
    row["met"] = met
    tables.setdefault(section, []).append(row)
    if goal is not None:
        summary.append((section, name, cells[3], cells[4], met))
    return "| " + " | ".join(cells) + " |"


def goal_text(goal, higher, refname):
    if goal is None:
        return "–"
    return f"{'≥' if higher else '≤'} {goal:g}× {refname}"


HEAD = ("| workload | ours (median) | reference (median) | ratio ours/ref: median (min–max) "
        "| goal | met |\n|---|---|---|---|---|---|")

md = []
plots = []

# ---- Machine and run ----

fio = by.get("machine-fio-4k", [{}])[0]
now = datetime.datetime.now(datetime.timezone.utc)
machine = {"cpu": args.cpu, "vcpus": int(args.ncpu), "kernel": args.kernel,
           "filesystem": args.fs, "fio_4k_fdatasync_p50_us": fio.get("p50_us"),
           "fio_4k_fdatasync_p99_us": fio.get("p99_us"),
           "fio_4k_ops_per_s": fio.get("records_per_s")}

# ---- Local backend ----

local_md = read("local.md")
sec = []
if "local" in only and local_md:
    b = local_md.find("<!-- local-backend:begin")
    e = local_md.find("<!-- local-backend:end -->")
    sec.append(local_md[b:e + len("<!-- local-backend:end -->")].rstrip() + "\n")
    # run-local's own table, re-read for the summary and results.json
    for name, ot, rt, refname, key, goal, unitfmt in [
            ("local, 1 writer, blocking, 100 B", "ours-sync1", "ref-sync1", "REF-SYNC",
             "records_per_s", 0.95, rate),
            ("local, 16 writers, blocking, 100 B (and lower p99)", "ours-writers16",
             "ref-writers16", "REF-GC", "records_per_s", 2.0, rate),
            ("local, 64 writers, blocking, 100 B (and lower p99)", "ours-writers64",
             "ref-writers64", "REF-GC", "records_per_s", 2.0, rate),
            ("local, 1 MiB appends", "ours-bulk1m", "ref-bulk1m", "fio bs=1m fdatasync=1",
             "mb_per_s", 0.9, lambda x: f"{x:,.1f} MB/s"),
            # replays: MB/s of the channel's bytes (REF-SCAN reads a file of
            # that size), i.e. REF-SCAN's time over ours for the same bytes
            ("local, replay 100 B records (time ratio, same bytes)", "ours-replay100",
             "ref-replay100", "REF-SCAN", "stored_mb_per_s", 0.6,
             lambda x: f"{x:,.1f} MB/s"),
            ("local, replay 64 KiB records (time ratio, same bytes)", "ours-replay65536",
             "ref-replay65536", "REF-SCAN", "stored_mb_per_s", 0.6,
             lambda x: f"{x:,.1f} MB/s")]:
        ratio_row("local", name, vals(ot, key), vals(rt, key), refname, goal, fmt=unitfmt)
        # the p99 half of the many-writer goal
        if "writers" in ot and summary and summary[-1][1] == name:
            p99o, p99r = med(vals(ot, "p99_us")), med(vals(rt, "p99_us"))
            s = summary[-1]
            summary[-1] = (s[0], s[1], s[2] + f"; p99 {us(p99o)} vs {us(p99r)}", s[3],
                           bool(s[4]) and p99o < p99r)
    a = vals("ours-async", "records_per_s")
    if a:
        summary.append(("local", "local, async appender (4096 in flight)",
                        f"{med(a):,.0f}/s", "≥ 1,000,000 durable appends/s", med(a) >= 1e6))
        tables["local"].append({"workload": "async", "ours": med(a), "goal": 1e6,
                                "met": med(a) >= 1e6})

    # Writer scaling: 1, 4, 16, 64 writers.
    sec.append("### Durable appends against writer count\n")
    sec.append("Ours = `bench-local --workload writers --writers N` (local backend, 100-B "
               "records, each writer blocks until its record is durable); REF-GC = "
               "`ref-gc --writers N` (mutex + condvar group commit, perf-anchors §9.2); "
               "REF-SYNC = `ref-sync` (one pwrite + fdatasync per record, 1 writer). "
               "The 16- and 64-writer pairs are run-local.sh's (above); the 1- and "
               "4-writer pairs are run-all.sh's own, so the points of one line come from "
               "runs minutes apart on a shared machine: compare ours with REF-GC at each "
               "writer count, not one count with another. Latency columns: p99 of "
               "append → durable.\n")
    sec.append(HEAD.replace("| goal |", "| p99 ours / ref | goal |").replace(
        "|---|---|---|---|---|---|", "|---|---|---|---|---|---|---|"))
    scale = []
    for n, ot, rt in [(1, "scale-ours-writers1", "scale-ref-gc1"),
                      (4, "scale-ours-writers4", "scale-ref-gc4"),
                      (16, "ours-writers16", "ref-writers16"),
                      (64, "ours-writers64", "ref-writers64")]:
        goal = 2.0 if n >= 16 else None
        line = ratio_row("scaling", f"{n} writer{'s' if n > 1 else ''}",
                         vals(ot, "records_per_s"), vals(rt, "records_per_s"), "REF-GC",
                         goal)
        summary_pop = goal is not None and summary and summary[-1][1].startswith(f"{n} writer")
        if summary_pop:
            summary.pop()   # already in the summary from run-local's table
        p = f"{us(med(vals(ot, 'p99_us')))} / {us(med(vals(rt, 'p99_us')))}"
        cells = line.split(" | ")
        cells.insert(4, p)
        sec.append(" | ".join(cells))
        scale.append((n, med(vals(ot, "records_per_s")), med(vals(rt, "records_per_s")),
                      med(vals("ref-sync1", "records_per_s")) if n == 1 else float("nan")))
    sec.append("")
    dat = os.path.join(args.data, "writers.dat")
    with open(dat, "w") as f:
        f.write("# writers local ref_gc ref_sync\n")
        for n, a_, b_, c_ in scale:
            f.write(f"{n} {a_} {b_} {c_}\n")
    plots.append(("writers.gp", dat, "writers.png"))
    sec.append("![durable appends per second against writers](bench-results/writers.png)\n")
else:
    sec.append("## Local backend\n\nNot run (`--only` left it out, or run-local.sh "
               "failed: see the run's log).\n")
md += sec

# ---- Adaptor ----

sec = ["## Adaptor (public API, memory backend)\n"]
if "adaptor" in only:
    sec.append("Ours = `bench-api` through `wal/wal.h` on the memory backend. *Active "
               "reader*: a thread spins on `wal_scanner_next(s, 0)` over a scanner at "
               "\"latest\"; the writer appends one 100-B record, waits until the reader "
               "has it, appends the next; latency = from before `wal_append()` to the "
               "return of `next()`; writer and reader are pinned to CPU 0 and 1 as the "
               "references' threads are. REF-SPIN = `ref-handoff --mode spin` (two pinned "
               "threads ping-pong an atomic int; one-way = RTT/2). *Parked reader*: the "
               "same with the reader blocked in `wal_scanner_next(s, 1000)` and 100 µs "
               "between appends; its reference is REF-FUTEX paced = `ref-handoff --mode futex "
               "--pace-us 100` (a raw FUTEX_WAIT/WAKE handoff to a thread parked for the "
               "same 100 µs, timed the same way: clock before the store, clock after the "
               "wake-up). REF-FUTEX = the unpaced `ref-handoff --mode futex` ping-pong "
               "(perf-anchors §9.3), whose waiter has slept only one hop: on these VMs a "
               "vCPU idle for 100 µs wakes more slowly, so the goal compares like with "
               "like and the ping-pong row is information. *Append throughput*: one thread, 4096 asynchronous appends in "
               "flight, each record handed over with `wal_append_take()` (`--take 1`), "
               "against the same loop on the backend interface (`--layer spi`, no "
               "adaptor), which hands its records over with `walimpls_append_take()`: "
               "the same hand-over on both sides. The copying `wal_append()` "
               "(`--take 0`) is shown beside it for information. *Bare message "
               "hand-off* (information) = `ref-handoff --mode msg`: the writer stamps "
               "a freshly allocated message-sized block, publishes it through one slot "
               "and the pinned reader spins on the slot; the blocks are kept, as the "
               "memory backend keeps its records, so a new page is faulted in every "
               "dozen or so records. *Bare message hand-off, warm memory* "
               "(information) = `ref-handoff --mode msg-warm`: the same, with the "
               "blocks carved from one mapping faulted in before the run, as the "
               "library now keeps the records it holds (the adaptor's copies and the "
               "memory backend's records in arenas faulted in ahead of use, "
               "wal/message.c). The two are the floors under the active-reader rows "
               "(tools/bench/adaptor-notes.md). Latency ratios: lower "
               "is better.\n")
    sec.append(HEAD)
    sec.append(ratio_row("adaptor", "active reader, append → delivery p50",
                         vals("ours-deliver", "p50_us"), vals("ref-spin", "p50_us"),
                         "REF-SPIN", 3.0, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "active reader, append → delivery p99",
                         vals("ours-deliver", "p99_us"), vals("ref-spin", "p99_us"),
                         "REF-SPIN", 10.0, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "bare message hand-off p50, the floor under the active "
                         "reader (information)",
                         vals("ref-msg", "p50_us"), vals("ref-spin", "p50_us"),
                         "REF-SPIN", None, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "bare message hand-off p99, the floor under the active "
                         "reader (information)",
                         vals("ref-msg", "p99_us"), vals("ref-spin", "p99_us"),
                         "REF-SPIN", None, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "bare message hand-off, warm memory, p50 (information)",
                         vals("ref-msg-warm", "p50_us"), vals("ref-spin", "p50_us"),
                         "REF-SPIN", None, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "bare message hand-off, warm memory, p99 (information)",
                         vals("ref-msg-warm", "p99_us"), vals("ref-spin", "p99_us"),
                         "REF-SPIN", None, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "parked reader, append → wake-up p50",
                         vals("ours-parked", "p50_us"), vals("ref-futex-paced", "p50_us"),
                         "REF-FUTEX paced 100 µs", 1.2, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "parked reader, append → wake-up p99",
                         vals("ours-parked", "p99_us"), vals("ref-futex-paced", "p99_us"),
                         "REF-FUTEX paced 100 µs", None, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "parked reader p50 against the unpaced ping-pong "
                         "(information)",
                         vals("ours-parked", "p50_us"), vals("ref-futex", "p50_us"),
                         "REF-FUTEX", None, higher=False, fmt=us))
    sec.append(ratio_row("adaptor", "async append throughput, public API vs backend interface",
                         vals("ours-append-api", "records_per_s"),
                         vals("ref-append-spi", "records_per_s"), "raw SPI", 0.9))
    sec.append(ratio_row("adaptor", "async append throughput, copying wal_append() vs backend "
                         "interface (information)",
                         vals("ours-append-api-copy", "records_per_s"),
                         vals("ref-append-spi", "records_per_s"), "raw SPI", None))
    sec.append("")
    sec.append("The \"public API vs backend interface\" row's goal is the issue's \"adaptor overhead under 10 %\": "
               "ratio ≥ 0.9.\n")
else:
    sec.append("Not run (`--only` left it out).\n")
md += sec

# ---- Redis ----

sec = ["## Redis backend\n"]
if "redis" in only:
    sec.append("One private `redis-server --save \"\" --appendonly no` on a free loopback "
               "port, started and stopped (by PID) by run-all.sh, serves both sides. "
               "Ours = `bench-api --backend redis --workload append` (public API, one "
               "thread, 4096 asynchronous appends of 100 B in flight; the backend "
               "pipelines on one writer connection). Reference = `redis-benchmark -P 16` "
               "(and `-P 64`) `XADD rb-stream '*' f <100 B>`, read two ways. **Matched** "
               "(the goal rows): perf-anchors §10 defines the reference as `-c C -P P` with "
               "C, P = the backend's connections and pipeline depth, so ours runs with "
               "`-X redis.batch_max=P` (one writer connection, at most P XADDs in flight) "
               "against `-c 1 -P P`; ours keeps its window full as replies come back, "
               "redis-benchmark sends P and waits for P, which is why ours can exceed 1x. "
               "**Server ceiling** (informational): ours with its defaults (one connection, "
               "up to 1024 in flight) against `-c 50 -P P` (redis-benchmark's default client "
               "count, 50 connections in parallel): how close one channel's writer gets to "
               "what the server absorbs from many clients. The server is flushed "
               "before every run. Delivery: `bench-api --workload parked` (a tailing "
               "scanner blocked in `wal_scanner_next()`, 100 µs between appends) against "
               "REF-REDIS = `ref-redis` (hiredis: XADD on one connection, "
               "XREAD BLOCK on another, same pacing). The informational row runs ours on "
               "the backend interface (`--layer spi`, no adaptor) right after each pair "
               "and divides by that pair's `-P 16` figure.\n")
    sec.append(HEAD)
    sec.append(ratio_row("redis", "append throughput, batch_max=16 vs XADD -c 1 -P 16 (matched)",
                         vals("ours-redis-matched-P16", "records_per_s"),
                         vals("ref-redis-c1-P16", "records_per_s"),
                         "redis-benchmark -c 1 -P 16", 0.85))
    sec.append(ratio_row("redis", "append throughput, batch_max=64 vs XADD -c 1 -P 64 (matched)",
                         vals("ours-redis-matched-P64", "records_per_s"),
                         vals("ref-redis-c1-P64", "records_per_s"),
                         "redis-benchmark -c 1 -P 64", 0.9))
    sec.append(ratio_row("redis", "append throughput, defaults vs XADD -c 50 -P 16 "
                         "(server ceiling, informational)",
                         vals("ours-redis-P16", "records_per_s"),
                         vals("ref-redis-P16", "records_per_s"), "redis-benchmark -c 50 -P 16",
                         None))
    sec.append(ratio_row("redis", "append throughput, defaults vs XADD -c 50 -P 64 "
                         "(server ceiling, informational)",
                         vals("ours-redis-P64", "records_per_s"),
                         vals("ref-redis-P64", "records_per_s"), "redis-benchmark -c 50 -P 64",
                         None))
    sec.append(ratio_row("redis", "append throughput, backend interface (no adaptor), "
                         "vs XADD -c 50 -P 16 (informational)",
                         vals("ours-redis-spi", "records_per_s"),
                         vals("ref-redis-P16", "records_per_s"), "redis-benchmark -c 50 -P 16",
                         None))
    sec.append(ratio_row("redis", "tailing scanner, append → delivery p50",
                         vals("ours-redis-parked", "p50_us"),
                         vals("ref-redis-parked", "p50_us"), "REF-REDIS", 1.2,
                         higher=False, fmt=us))
    sec.append(ratio_row("redis", "tailing scanner, append → delivery p99",
                         vals("ours-redis-parked", "p99_us"),
                         vals("ref-redis-parked", "p99_us"), "REF-REDIS", None,
                         higher=False, fmt=us))
    sec.append("")
else:
    sec.append("Not run (`--only` left it out).\n")
md += sec

# ---- Kafka ----

sec = ["## Kafka backend\n"]
ktxt = read("kafka.txt")
# Two output forms of bench-kafka: "round N: append raw ..." lines (older),
# or "pair N: raw ... raw+key ... ours fencing=off ... fencing=on ..." and
# "pair N: raw consumer .../s ...; scanner .../s ..." lines.
old = [tuple(float(x) for x in m) for m in re.findall(
    r"round \d+: append raw (\d+)/s, ours fencing=off (\d+)/s \([^)]*\), "
    r"fencing=on (\d+)/s \([^)]*\); replay raw (\d+)/s, ours (\d+)/s", ktxt)]
app = [tuple(float(x) for x in m) for m in re.findall(
    r"pair \d+: raw (\d+) \[[\d.]+\]\s+raw\+key (\d+) \[[\d.]+\]\s+ours fencing=off "
    r"(\d+) \[[\d.]+\]\s+fencing=on (\d+)", ktxt)]
rep = [tuple(float(x) for x in m) for m in re.findall(
    r"pair \d+: raw consumer (\d+)/s.*?;\s+scanner (\d+)/s", ktxt)]
if old:
    raw, off, on = [r[0] for r in old], [r[1] for r in old], [r[2] for r in old]
    rraw, rours, rawkey = [r[3] for r in old], [r[4] for r in old], None
    how = ("in each round raw runs first, then ours with kafkawal fencing off and on, "
           "then the replays")
else:
    raw, rawkey = [r[0] for r in app], [r[1] for r in app]
    off, on = [r[2] for r in app], [r[3] for r in app]
    rraw, rours = [r[0] for r in rep], [r[1] for r in rep]
    how = ("the order of the sides flips every pair; raw+key is raw librdkafka also "
           "sending a record key the size of our envelope (same record format); replay "
           "is a raw consumer against a scanner over the same topic")
if "kafka" in only and (raw or rraw):
    sec.append("`tests/kafka/bench-kafka` (the Kafka backend through the backend "
               "interface against raw librdkafka with identical producer properties: "
               "enable.idempotence=true, acks=all, linger.ms=5, socket.nagle.disable=true, "
               "queue.buffering.max.messages=1000000, batch.num.messages=10000), one "
               f"in-process mock cluster, {max(len(raw), len(rraw))} pairs: {how}.\n")
    sec.append(HEAD)
    sec.append(ratio_row("kafka", "append throughput (fencing off)", off, raw,
                         "raw librdkafka", 0.9))
    sec.append(ratio_row("kafka", "append throughput (fencing on)", on, raw,
                         "raw librdkafka", 0.9))
    if rawkey:
        sec.append(ratio_row("kafka", "append throughput (fencing off) vs raw+key "
                             "(informational)", off, rawkey, "raw librdkafka + key", None))
    sec.append(ratio_row("kafka", "replay", rours, rraw, "raw consumer", 0.9))
    sec.append("")
    m = re.search(r"append->ack.*", ktxt)
    if m:
        sec.append(f"bench-kafka's latency line (one run, informational): `{m.group(0)}`\n")
    kmd = read("kafka.md")
    kb, ke = kmd.find("<!-- kafka-backend:begin"), kmd.find("<!-- kafka-backend:end -->")
    if kb >= 0 and ke >= 0:
        # tests/kafka/bench-kafka.sh's own section, from this run, as it
        # writes it; the table above is the same run read for the goals.
        wrapped = kmd[kb:ke + len("<!-- kafka-backend:end -->")].rstrip()
        wrapped = wrapped.replace("## Kafka backend", "### As tests/kafka/bench-kafka.sh reports it", 1)
        sec.append(wrapped + "\n")
    tables.setdefault("kafka", []).append({"output": ktxt.splitlines()})
elif "kafka" in only and ktxt.strip():
    sec.append("bench-kafka ran, but its output was not in a form this report reads; "
               "here it is as printed:\n")
    sec.append("```\n" + ktxt.strip() + "\n```\n")
else:
    sec.append("Not run (`--only` left it out, or bench-kafka is not built or failed).\n")
md += sec

# ---- walctl ----

sec = ["## walctl append\n"]
wtxt = read("walctl.txt")
if "walctl" in only and wtxt:
    wp = [tuple(float(x) for x in m) for m in re.findall(
        r"^(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", wtxt, re.M)]
    head = wtxt.splitlines()[0] if wtxt else ""
    sec.append("`walctl append CHANNEL` (stdin cut at newlines, asynchronous appends, "
               "acks retired in input order) against `ref-append`, the same workload "
               "written directly against libwal's asynchronous API "
               "(`tools/walctl-bench-ref/run.sh`, its own pairs alternate which side runs "
               f"first). {head}. Times are process start to exit, every record durable; "
               "both channels are checked to read back as the input.\n")
    sec.append("| pair | ref-append s | walctl append s | ratio ref/walctl |\n|---|---|---|---|")
    for p in wp:
        sec.append(f"| {p[0]:.0f} | {p[1]:.3f} | {p[2]:.3f} | {p[3]:.3f} |")
    sec.append("")
    sec.append(HEAD)
    # ratio = ref time / walctl time = walctl rate / ref rate
    sec.append(ratio_row("walctl", "walctl append, 1M lines (rate = 1 / time)",
                         [1 / p[2] for p in wp], [1 / p[1] for p in wp], "ref-append", 0.8,
                         fmt=lambda x: f"{1 / x:.3f} s"))
    sec.append("")
    tables.setdefault("walctl", []).append({"pairs": wp})
else:
    sec.append("Not run (`--only` left it out, or run.sh failed).\n")
md += sec

# ---- Latency per backend (plots) ----

sec = ["## Latency percentiles per backend\n"]
lat = [(b, by[f"lat-{b}"][0]) for b in ("memory", "local", "redis", "kafka")
       if f"lat-{b}" in by and not by[f"lat-{b}"][0].get("failed")]
if lat:
    sec.append("One `bench-api --workload sync` run per backend (one writer, "
               "`wal_append_wait()` in a loop, 100-B records, default properties: local "
               "waits for fdatasync, redis for the server's reply with no persistence, "
               "kafka (on a `walctl mock-kafka` cluster) for acks=all with linger.ms=5). "
               "Not a ratio: one run each, to show the shape.\n")
    sec.append("| backend | appends/s | p50 | p99 | p99.9 |\n|---|---|---|---|---|")
    dat = os.path.join(args.data, "latency.dat")
    with open(dat, "w") as f:
        f.write("# backend p50_us p99_us p999_us\n")
        for b, r in lat:
            sec.append(f"| {b} | {r['records_per_s']:,.0f} | {us(r['p50_us'])} | "
                       f"{us(r['p99_us'])} | {us(r['p999_us'])} |")
            f.write(f"{b} {r['p50_us']} {r['p99_us']} {r['p999_us']}\n")
    plots.append(("latency.gp", dat, "latency.png"))
    sec.append("")
    sec.append("![append latency percentiles per backend](bench-results/latency.png)\n")
dl = [(name, tag) for name, tag in [("REF-SPIN", "ref-spin"), ("memory, active reader", "ours-deliver"),
                                    ("REF-FUTEX", "ref-futex"), ("REF-FUTEX paced", "ref-futex-paced"),
                                    ("memory, parked reader", "ours-parked"),
                                    ("REF-REDIS", "ref-redis-parked"),
                                    ("redis, tailing scanner", "ours-redis-parked")] if tag in by]
if dl:
    dat = os.path.join(args.data, "delivery.dat")
    with open(dat, "w") as f:
        f.write("# name p50_us p99_us (medians over the pairs)\n")
        for name, tag in dl:
            f.write(f"\"{name}\" {med(vals(tag, 'p50_us'))} {med(vals(tag, 'p99_us'))}\n")
    plots.append(("delivery.gp", dat, "delivery.png"))
    sec.append("Append → delivery latency, ours beside each reference (medians over the "
               "pairs of the adaptor and Redis tables above):\n")
    sec.append("![append to delivery latency against the references](bench-results/delivery.png)\n")
md += sec

# ---- Plots ----

made = []
for gp, dat, png in plots:
    out = os.path.join(outdir, png)
    r = subprocess.run(["gnuplot", "-e", f"dat='{dat}'; out='{out}'",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), gp)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"report.py: gnuplot {gp}: {r.stderr}", file=sys.stderr)
    else:
        made.append(png)

# ---- The page ----

top = ["# Benchmarks", "",
       "Generated by `tools/bench/run-all.sh`; do not edit by hand. To reproduce, after "
       "the set-up in README.md (it builds a release tree in `build-bench-all` first):", "",
       "```", "tools/bench/run-all.sh --quick    # under 5 minutes on 2 vCPUs",
       "tools/bench/run-all.sh --full     # longer runs, 1 GiB replay", "```", "",
       "`--commit REV` measures a `git archive` of a commit instead of the working tree "
       "(what this page's runs use in the shared tree: others' uncommitted edits are "
       "not measured).", "",
       f"This run: `{args.cmdline.strip()}` ({args.mode} mode, {args.pairs} pair{'s' if args.pairs != '1' else ''}, "
       f"{args.elapsed} s), commit `{args.commit}`, {now:%Y-%m-%d %H:%M} UTC. "
       f"Raw results: [bench-results/results.json](bench-results/results.json).", "",
       f"**Machine:** {args.cpu}, {args.ncpu} vCPUs; kernel {args.kernel}; data directory "
       f"on {args.fs}; fio 4 KiB write + fdatasync: "
       f"{(fio.get('records_per_s') or 0):,.0f} ops/s, fdatasync p50 "
       f"{(fio.get('p50_us') or 0):.0f} µs, p99 {(fio.get('p99_us') or 0):.0f} µs; "
       f"load average {args.load} (start / end; whatever else ran on the machine shows "
       "here: absolute figures are noisy, only the side-by-side ratios mean anything). "
       "Never compare these figures with another machine's.", "",
       "**Protocol** (perf-anchors §9-10): every workload runs beside its reference "
       f"program in the same job, on the same disk, alternating A/B for {args.pairs} pair{'s' if args.pairs != '1' else ''}; "
       "each cell is a median over the pairs, the ratio is the median of the per-pair "
       "ratios ours/reference with their min–max, and a goal is met only if the "
       "median ratio meets it. For latencies the ratio is ours/reference too, so "
       "lower is better and goals read \"≤\". The page of record is the first full "
       "run after the last code change it measures, on a machine with nothing else "
       "running; it is not re-run to pick a better draw, and any other run of the "
       "same code is reported beside it as information, never in its place.", ""]
if made:
    top.append("**Plots:** " + ", ".join(f"[{p}](bench-results/{p})" for p in made) + ".")
    top.append("")
top += ["## Goals", "", "| section | workload | result | goal | met |", "|---|---|---|---|---|"]
for s, name, res, goal, met in summary:
    top.append(f"| {s} | {name} | {res} | {goal} | "
               f"{'yes' if met else ('**no**' if met is not None else '–')} |")
top.append("")
missed = [f"{s}: {name}" for s, name, res, goal, met in summary if met is False]
if missed:
    top.append(f"**Goals not met in this run ({len(missed)} of {len(summary)}):** "
               + "; ".join(missed) + ".")
else:
    top.append(f"All {len(summary)} goals met in this run.")
top.append("")

text = "\n".join(top) + "\n" + "\n".join(md).rstrip() + "\n"
open(os.path.join(args.root, "BENCHMARKS.md"), "w").write(text)


def clean(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


result = {"v": 1, "generated": f"{now:%Y-%m-%dT%H:%M:%SZ}", "command": args.cmdline.strip(),
          "mode": args.mode, "pairs": int(args.pairs), "commit": args.commit,
          "elapsed_s": int(args.elapsed), "load_average": args.load, "machine": machine,
          "goals": [{"section": s, "workload": n, "result": r, "goal": g, "met": m}
                    for s, n, r, g, m in summary],
          "tables": tables, "runs": rows}
with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump(clean(result), f, indent=1, ensure_ascii=False)
    f.write("\n")
print("\n".join(top))
