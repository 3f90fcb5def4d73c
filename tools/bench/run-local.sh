#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tools/bench/run-local.sh: benchmark the local backend against the reference
# programs (perf-anchors §9-10) and write the local-backend section of
# BENCHMARKS.md.
#
# For every workload it runs OURS (bench-local, through the backend
# interface) and the REFERENCE alternately, five pairs (A B A B ...), on the
# same filesystem with the same record size, and reports the median of each
# side, the median of the five pair ratios and their min-max.  A goal is met
# only if the median ratio meets it.  Every run prints one JSON line; all of
# them are kept in the log next to the report.
#
# Usage: tools/bench/run-local.sh [--quick|--full] [--build DIR] [--dir DIR]
#                                 [--pairs N] [--out FILE]
#   --quick   ~2 s per run, smaller replay channel (default; < 5 minutes)
#   --full    5 s per run, 1 GiB replay channel
#   --seconds seconds per run, overriding the mode's (run-all.sh --quick)
#   --build   meson build directory holding tools/bench (default: build-bench,
#             configured with -Dbuildtype=release if missing)
#   --dir     where data files go (default: a fresh directory under /var/tmp,
#             the same ext4 filesystem as the work tree here)
#   --out     the markdown file to update (default: BENCHMARKS.md at the root)
#   --only    a space-separated subset of: sync1 writers bulk async replay
#   --backend another registered backend for bench-local (a check of the
#             driver itself; "replay" needs a persistent one)
#   --commit  the commit the sources are (for a tree exported with git
#             archive, which has no .git); else read from git, with "+dirty"
#             when the library's folders have uncommitted changes

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=quick
build=
data=
pairs=5
out="$root/BENCHMARKS.md"
only="sync1 writers async bulk replay"
commit=
backend=local
secs_opt=
cmdline="tools/bench/run-local.sh $*"

while [ $# -gt 0 ]; do
        case "$1" in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --build) build=$2; shift ;;
        --dir) data=$2; shift ;;
        --pairs) pairs=$2; shift ;;
        --out) out=$2; shift ;;
        --only) only=$2; shift ;;
        --backend) backend=$2; shift ;;
        --commit) commit=$2; shift ;;
        --seconds) secs_opt=$2; shift ;;
        *) echo "run-local.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done

if [ "$mode" = quick ]; then
        secs=2; replay_bytes=256m; fio_size=2g
else
        secs=5; replay_bytes=1g; fio_size=4g
fi
[ -n "$secs_opt" ] && secs=$secs_opt

if [ -z "$build" ]; then
        build="$root/build-bench"
        if [ ! -f "$build/build.ninja" ]; then
                meson setup "$build" "$root" -Dbuildtype=release -Dtests=disabled \
                        -Dredis=disabled -Dkafka=disabled >/dev/null
        fi
fi
ninja -C "$build" tools/bench/bench-local tools/bench/ref-sync tools/bench/ref-gc \
        tools/bench/ref-scan >/dev/null
bin="$build/tools/bench"

if [ -z "$data" ]; then
        data=$(mktemp -d /var/tmp/libwal-bench.XXXXXX)
        trap 'rm -rf "$data"' EXIT
fi
mkdir -p "$data"
log="$data/results.jsonl"
: >"$log"

# Counting fdatasyncs: io_uring FSYNC submissions (opcode 3) plus fdatasync
# system calls, by kernel tracepoints, when perf may read them.  Used on both
# sides of the many-writer workloads (records per sync, perf-anchors §10).
perf_ok=
if command -v perf >/dev/null 2>&1 &&
        perf stat -x, -o /dev/null -e io_uring:io_uring_submit_req --filter 'opcode == 3' \
                -e syscalls:sys_enter_fdatasync true >/dev/null 2>&1; then
        perf_ok=1
fi

# run TAG CMD...: run one benchmark, tag its JSON line, append it to the log.
# With COUNT_SYNCS=1 in the environment, the syncs field is the kernel's count.
run() {
        local tag=$1; shift
        local line syncs
        if [ -n "${COUNT_SYNCS:-}" ] && [ -n "$perf_ok" ]; then
                line=$(perf stat -x, -o "$data/perf.txt" \
                        -e io_uring:io_uring_submit_req --filter 'opcode == 3' \
                        -e syscalls:sys_enter_fdatasync -- "$@" | tail -n 1)
                syncs=$(awk -F, '/^[0-9]/ { s += $1 } END { print s + 0 }' "$data/perf.txt")
                line=$(echo "$line" | jq -c --argjson s "$syncs" '.syncs = $s')
        else
                line=$("$@" | tail -n 1)
        fi
        echo "$line" | jq -c --arg tag "$tag" '. + {tag: $tag}' >>"$log"
        echo "  $tag: $(echo "$line" | jq -r '"\(.records_per_s|floor) rec/s, \(.mb_per_s) MB/s, p50 \(.p50_us) us, p99 \(.p99_us) us, syncs \(.syncs)"')" >&2
}

# Fresh directory per run of ours, so no run inherits another's segments.
ours() {
        local tag=$1; shift
        local d="$data/ours.$RANDOM"
        mkdir -p "$d"
        run "$tag" "$bin/bench-local" --backend "$backend" --dir "$d" --seconds "$secs" "$@"
        rm -rf "$d"
}

# fio, one job; the JSON result is converted to the common line.
fio_run() {
        local tag=$1 bs=$2 size=$3
        local f="$data/fio.dat"
        fio --name=w --filename="$f" --rw=write --ioengine=sync --fdatasync=1 \
                --bs="$bs" --size="$size" --time_based=0 --runtime="$secs" \
                --output-format=json >"$data/fio.json" 2>/dev/null
        rm -f "$f"
        jq -c --arg tag "$tag" --argjson bs "$(numfmt --from=iec "${bs^^}")" \
                '.jobs[0] as $j | {program: "fio", workload: $tag, tag: $tag,
                  record_bytes: $bs, records: $j.write.total_ios,
                  seconds: ($j.write.runtime / 1000),
                  records_per_s: $j.write.iops, mb_per_s: ($j.write.bw_bytes / 1e6),
                  p50_us: ($j.sync.lat_ns.percentile["50.000000"] / 1000),
                  p99_us: ($j.sync.lat_ns.percentile["99.000000"] / 1000),
                  p999_us: ($j.sync.lat_ns.percentile["99.900000"] / 1000)}' \
                "$data/fio.json" >>"$log"
        echo "  $tag: $(tail -n 1 "$log" | jq -r '"\(.mb_per_s) MB/s, fdatasync p50 \(.p50_us) us"')" >&2
}

echo "run-local.sh: $mode mode, $pairs pairs, data in $data" >&2
start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# The disk, as fio sees it: 4 KiB writes + fdatasync (its p50 identifies the disk).
fio_run machine-fio-4k 4k 32m

want() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

want sync1 && for i in $(seq "$pairs"); do
        echo "pair $i: sync1" >&2
        ours ours-sync1 --workload writers --writers 1
        run ref-sync1 "$bin/ref-sync" --dir "$data" --seconds "$secs"
done
# The same, with the plain-syscall write path (local.io=sync): shows what
# the io_uring path's extra hand-offs cost a lone writer.
want sync1 && for i in $(seq "$pairs"); do
        echo "pair $i: sync1, local.io=sync" >&2
        ours ours-sync1-iosync --workload writers --writers 1 -X local.io=sync
        run ref-sync1-iosync "$bin/ref-sync" --dir "$data" --seconds "$secs"
done
want writers && for n in 16 64; do
        for i in $(seq "$pairs"); do
                echo "pair $i: writers$n" >&2
                COUNT_SYNCS=1 ours "ours-writers$n" --workload writers --writers "$n"
                COUNT_SYNCS=1 run "ref-writers$n" "$bin/ref-gc" --dir "$data" --seconds "$secs" \
                        --writers "$n"
        done
done
want async && for i in $(seq "$pairs"); do
        echo "run $i: async" >&2
        ours ours-async --workload async --inflight 4096
done
want bulk && for i in $(seq "$pairs"); do
        echo "pair $i: bulk 1 MiB" >&2
        ours ours-bulk1m --workload writers --writers 1 --record-bytes 1m
        fio_run ref-bulk1m 1m "$fio_size"
done

# Replay: prepare a channel of $replay_bytes of payload once, replay it once
# untimed (it is then in the page cache, as REF-SCAN's untimed first pass
# puts its file there; and bench-local reports the bytes the channel's
# frames take), then alternate its replay with REF-SCAN over a file of
# exactly that many bytes: the ratio is REF-SCAN's time over ours for the
# same bytes (a 100-byte payload takes a 128-byte frame).
want replay && for rec in 100 65536; do
        cdir="$data/replay-$rec"
        mkdir -p "$cdir"
        echo "preparing a $replay_bytes channel of $rec-byte records" >&2
        "$bin/bench-local" --backend "$backend" --dir "$cdir" --workload prepare --record-bytes "$rec" \
                --total-bytes "$replay_bytes" >/dev/null
        "$bin/bench-local" --backend "$backend" --dir "$cdir" --workload replay >"$data/replay.out"
        cbytes=$(head -n 1 "$data/replay.out" | jq '.stored_bytes // 0')
        if [ "$cbytes" -le 0 ]; then
                # a backend that cannot tell: the payload size
                cbytes=$(numfmt --from=iec "${replay_bytes^^}")
        fi
        echo "the channel's frames: $cbytes bytes; REF-SCAN reads a file of that size" >&2
        for i in $(seq "$pairs"); do
                echo "pair $i: replay $rec" >&2
                "$bin/bench-local" --backend "$backend" --dir "$cdir" --workload replay >"$data/replay.out"
                head -n 1 "$data/replay.out" | jq -c --arg tag "ours-replay$rec" '. + {tag: $tag}' >>"$log"
                tail -n 1 "$data/replay.out" | jq -c --arg tag "ours-recovery$rec" '. + {tag: $tag}' >>"$log"
                echo "  ours-replay$rec: $(head -n 1 "$data/replay.out" | jq -r '"\(.seconds) s, \(.mb_per_s) MB/s payload, \(.records_per_s|floor) rec/s"')" >&2
                run "ref-replay$rec" "$bin/ref-scan" --dir "$data" --file-bytes "$cbytes" --keep 1
        done
        rm -rf "$cdir"
done
rm -f "$data/ref-scan.dat"
elapsed=$(( $(date +%s) - start ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Report ----

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
ncpu=$(nproc)
kernel=$(uname -r)
fsinfo=$(df -T "$data" | awk 'NR == 2 { print $2 " on " $1 }')
if [ -z "$commit" ]; then
        commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
        if [ -n "$(git -C "$root" status --porcelain -- impls utility wal walimpls registry \
                2>/dev/null)" ]; then
                commit="$commit+dirty"
        fi
fi

python3 - "$log" "$out" "$mode" "$pairs" "$cmdline" "$cpu" "$ncpu" "$kernel" "$fsinfo" \
        "$commit" "$elapsed" "$replay_bytes" "$backend" "$load_start" "$load_end" \
        "$here/local-notes.md" <<'PY'
import json, os, statistics, sys, datetime

(log, out, mode, pairs, cmdline, cpu, ncpu, kernel, fsinfo, commit, elapsed,
 replay_bytes, backend, load_start, load_end, notes_path) = sys.argv[1:]
rows = [json.loads(l) for l in open(log) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["tag"], []).append(r)

def vals(tag, key):
    return [r[key] for r in by.get(tag, [])]

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def fmt(x, unit):
    if unit == "rec/s":
        return f"{x:,.0f} rec/s"
    return f"{x:,.1f} MB/s"

# workload, ours tag, ref tag, reference name, metric key, unit, goal ratio, p99 rule
table = [
    ("1 writer, blocking, 100 B", "ours-sync1", "ref-sync1", "REF-SYNC",
     "records_per_s", "rec/s", 0.95, False),
    ("1 writer, blocking, 100 B, local.io=sync", "ours-sync1-iosync", "ref-sync1-iosync",
     "REF-SYNC", "records_per_s", "rec/s", 0.95, False),
    ("16 writers, blocking, 100 B", "ours-writers16", "ref-writers16", "REF-GC 16",
     "records_per_s", "rec/s", 2.0, True),
    ("64 writers, blocking, 100 B", "ours-writers64", "ref-writers64", "REF-GC 64",
     "records_per_s", "rec/s", 2.0, True),
    ("1 thread async, 4096 in flight, 100 B", "ours-async", None, "absolute",
     "records_per_s", "rec/s", 1_000_000, False),
    ("1 MiB appends, 1 writer", "ours-bulk1m", "ref-bulk1m", "fio bs=1m fdatasync=1",
     "mb_per_s", "MB/s", 0.9, False),
    # Replays: MB/s of the bytes stored (the channel's frames; REF-SCAN reads a
    # file of exactly that size), so the ratio is REF-SCAN's time over ours.
    ("replay, 100 B records (CRC checked); MB/s of the channel's bytes, "
     "ratio = REF-SCAN's time / ours over the same bytes",
     "ours-replay100", "ref-replay100", "REF-SCAN", "stored_mb_per_s", "stored", 0.6, False),
    ("replay, 64 KiB records (CRC checked); MB/s of the channel's bytes, "
     "ratio = REF-SCAN's time / ours over the same bytes",
     "ours-replay65536", "ref-replay65536", "REF-SCAN", "stored_mb_per_s", "stored", 0.6,
     False),
]

lines = []
lines.append("<!-- local-backend:begin (written by tools/bench/run-local.sh) -->")
lines.append("## Local backend" if backend == "local" else
             f"## Local backend (driver check: bench-local on the {backend} backend)")
lines.append("")
lines.append(f"Command: `{cmdline.strip()}` ({mode} mode, {pairs} alternating pairs per "
             f"workload, {elapsed} s in all), commit `{commit}`, "
             f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.")
lines.append("")
fio4k = by.get("machine-fio-4k", [{}])[0]
lines.append(f"Machine: {cpu}, {ncpu} vCPUs; kernel {kernel}; filesystem {fsinfo}; "
             f"fio 4 KiB write+fdatasync: {fio4k.get('records_per_s', 0):,.0f} ops/s, "
             f"fdatasync p50 {fio4k.get('p50_us', 0):.0f} µs, "
             f"p99 {fio4k.get('p99_us', 0):.0f} µs; load average {load_start} at the "
             f"start, {load_end} at the end (anything else running on the machine "
             "shows there).")
lines.append("")
lines.append("Ours = `bench-local` driving the local backend through the backend "
             "interface (registry → build → open → append/read), durable "
             "acknowledgements only. Each cell is the median of the runs; ratio = "
             "median of the per-pair ratios ours/reference, with their min–max. "
             "A goal is met when the median ratio meets it.")
lines.append("")
lines.append("| workload | ours | reference | ratio (min–max) | p50 / p99 ours | "
             "p50 / p99 reference | goal | met |")
lines.append("|---|---|---|---|---|---|---|---|")
for (name, ot, rt, rname, key, unit, goal, p99rule) in table:
    o = vals(ot, key)
    if not o:
        lines.append(f"| {name} | not run | | | | | | no |")
        continue
    om = med(o)
    op50, op99 = med(vals(ot, "p50_us")), med(vals(ot, "p99_us"))
    lat_o = f"{op50:,.0f} / {op99:,.0f} µs" if op99 else "–"
    if rt is None:
        met = om >= goal
        lines.append(f"| {name} | {fmt(om, unit)} | – | – | {lat_o} | – | "
                     f"≥ {goal:,.0f} {unit} | {'yes' if met else '**no**'} |")
        continue
    rv = vals(rt, key)
    ratios = [a / b for a, b in zip(o, rv) if b]
    rm = med(rv)
    ratio = med(ratios)
    rp50, rp99 = med(vals(rt, "p50_us")), med(vals(rt, "p99_us"))
    lat_r = f"{rp50:,.0f} / {rp99:,.0f} µs" if rp99 else "–"
    met = ratio >= goal
    goal_s = f"≥ {goal}× {rname}"
    if p99rule:
        met = met and op99 < rp99
        goal_s += ", lower p99"
    ours_s, ref_s = fmt(om, unit), fmt(rm, unit)
    if unit == "stored":
        ours_s += (f" ({med(vals(ot, 'mb_per_s')):,.1f} MB/s of payload, "
                   f"{med(vals(ot, 'seconds')) * 1000:,.0f} ms)")
        ref_s += f" ({med(vals(rt, 'seconds')) * 1000:,.0f} ms)"
    lines.append(f"| {name} | {ours_s} | {ref_s} ({rname}) | "
                 f"{ratio:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {lat_o} | {lat_r} | "
                 f"{goal_s} | {'yes' if met else '**no**'} |")
lines.append("")
rps = []
for n in (16, 64):
    for side, tag in (("ours", f"ours-writers{n}"), ("REF-GC", f"ref-writers{n}")):
        recs, syn = vals(tag, "records"), vals(tag, "syncs")
        per = [a / b for a, b in zip(recs, syn) if b]
        if per:
            rps.append(f"{n} writers {side}: {med(per):.1f}")
if rps:
    lines.append("Records per fdatasync (medians; counted by kernel tracepoints on both "
                 "sides: io_uring FSYNC submissions plus fdatasync calls): " +
                 "; ".join(rps) + ".")
    lines.append("")
lines.append("For the fio row the latency columns are fio's fdatasync latencies; for every "
             "other cell they are the time from the append call to its durable "
             "completion (REF-*: from the write call to the end of its fdatasync).")
lines.append("")
# Replay CPU time beside wall time (information): the local scanner reads
# ahead on a helper thread, so its wall time can be less than its CPU time.
cpuparts = []
for r in ("100", "65536"):
    ot, rt = f"ours-replay{r}", f"ref-replay{r}"
    oc, rc = vals(ot, "cpu_seconds"), vals(rt, "cpu_seconds")
    if oc and any(oc):
        part = (f"{r}-byte records: ours {med(oc)*1000:,.0f} ms of CPU for "
                f"{med(vals(ot, 'seconds'))*1000:,.0f} ms of wall time")
        if rc and any(rc):
            part += (f", REF-SCAN {med(rc)*1000:,.0f} ms of CPU for "
                     f"{med(vals(rt, 'seconds'))*1000:,.0f} ms")
        cpuparts.append(part)
if cpuparts:
    lines.append("Replay CPU time (information; medians, every thread of the process, "
                 "the local scanner's read-ahead helper included): " +
                 "; ".join(cpuparts) + ".")
    lines.append("")
rec = [(k, med(vals(k, "seconds")), med(vals(k, "bytes"))) for k in
       ("ours-recovery100", "ours-recovery65536") if k in by]
scan = {k: med(vals(k, "seconds")) for k in ("ref-replay100", "ref-replay65536") if k in by}
if rec:
    parts = []
    for k, s, b in rec:
        r = k.replace("ours-recovery", "")
        ref = scan.get("ref-replay" + r)
        parts.append(f"{r}-byte records: open {s*1000:.0f} ms"
                     + (f" ({s/ref:.2f}× the REF-SCAN time)" if ref else ""))
    lines.append(f"Recovery (read-only open of the {replay_bytes} replay channel, "
                 "medians): " + "; ".join(parts) + ".")
    lines.append("")
# The engineers' reading of these tables lives beside this script, not in
# the generated page: every figure on the page comes from this run.
if backend == "local" and os.path.exists(notes_path):
    lines.append("Where the misses come from, read from profiles and counters of earlier "
                 "runs (hand-written; its figures are from those runs, not this one): "
                 "[tools/bench/local-notes.md](tools/bench/local-notes.md).")
    lines.append("")
lines.append("<!-- local-backend:end -->")
section = "\n".join(lines) + "\n"

try:
    text = open(out).read()
except FileNotFoundError:
    text = "# Benchmarks\n\nEvery figure is a ratio to a reference program run in the same job " \
           "on the same disk, alternating A/B (perf-anchors §9-10).\n\n"
b = text.find("<!-- local-backend:begin")
e = text.find("<!-- local-backend:end -->")
if b >= 0 and e >= 0:
    e += len("<!-- local-backend:end -->")
    if text[e:e+1] == "\n":
        e += 1
    text = text[:b] + section + text[e:]
else:
    if not text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n\n"
    text += section
open(out, "w").write(text)
print(section)
PY
cp "$log" "$build/bench-local-results.jsonl"
echo "run-local.sh: done in $elapsed s; raw results: $build/bench-local-results.jsonl" >&2
