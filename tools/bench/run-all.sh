#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tools/bench/run-all.sh: rerun every benchmark the issues ask for and
# regenerate BENCHMARKS.md, the raw results (bench-results/results.json) and
# the plots (bench-results/*.png).
#
# Every workload runs beside its reference program in this one job, on the
# same disk, alternating A/B for --pairs pairs (odd pairs ours first, even
# pairs the reference first); the report gives each side's median, the
# median of the pair ratios and their min-max (perf-anchors §9-10).  The
# pieces:
#
#   local    tools/bench/run-local.sh (1/16/64 writers, async, 1 MiB, replay
#            against REF-SYNC, REF-GC, fio, REF-SCAN), plus the 4-writer
#            point and REF-GC at 1 and 4 writers for the scaling plot
#   adaptor  bench-api on the memory backend against REF-SPIN (active
#            reader), REF-FUTEX (parked reader) and the raw backend
#            interface (append throughput)
#   redis    a private redis-server (--save "" --appendonly no) on a free
#            port, stopped by PID: bench-api appends against redis-benchmark
#            XADD -P 16 and -P 64, matched (redis.batch_max=P against -c 1
#            -P P, the goal's reading) and at the server's ceiling (defaults
#            against -c 50 -P P), and a parked tailing scanner against
#            REF-REDIS (ref-redis)
#   kafka    tests/kafka's bench-kafka (raw librdkafka on the same mock
#            cluster), --pairs rounds
#   walctl   tools/walctl-bench-ref/run.sh (walctl append vs ref-append)
#   latency  one bench-api "sync" run per backend (append -> durable, one
#            writer, public API) for the per-backend latency plot; Kafka
#            through a `walctl mock-kafka` cluster
#
# Usage: tools/bench/run-all.sh [--quick|--full] [--build DIR] [--pairs N]
#                               [--only "local adaptor redis kafka walctl"]
#   --quick   short runs, under 5 minutes on 2 vCPUs (the default)
#   --full    longer runs (5 s per local run, 1 GiB replay, 1M-record runs)
#   --build   meson build directory (default build-bench-all, configured
#             with -Dbuildtype=release if missing)
#   --only    a subset of the pieces; BENCHMARKS.md then says "not run" for
#             the others
#   --dir     where data files go (default: a fresh directory under
#             /var/tmp, removed at the end)
#   --commit  measure the committed tree REV instead of the working tree:
#             `git archive REV` into a temporary directory, built and run
#             there (so other people's uncommitted edits in a shared tree
#             are not measured); the report is still written here

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=quick
build="$root/build-bench-all"
pairs=5
only="local adaptor redis kafka walctl"
data=
rev=
outroot=$root
label=
cmdline="tools/bench/run-all.sh $*"
pass=()

while [ $# -gt 0 ]; do
        case "$1" in
        --quick) mode=quick; pass+=("$1") ;;
        --full) mode=full; pass+=("$1") ;;
        --build) build=$2; shift ;;
        --pairs) pairs=$2; pass+=(--pairs "$2"); shift ;;
        --only) only=$2; pass+=(--only "$2"); shift ;;
        --dir) data=$2; pass+=(--dir "$2"); shift ;;
        --commit) rev=$2; shift ;;
        # internal, for the exported copy: where the report goes, what it is
        --out-root) outroot=$2; shift ;;
        --label) label=$2; shift ;;
        --cmdline) cmdline=$2; shift ;;
        *) echo "run-all.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done

if [ -n "$rev" ]; then
        sha=$(git -C "$root" rev-parse --short "$rev^{commit}")
        src=$(mktemp -d /var/tmp/libwal-bench-src.XXXXXX)
        git -C "$root" archive "$sha" | tar -x -C "$src"
        echo "run-all.sh: measuring commit $sha, exported to $src" >&2
        rc=0
        "$src/tools/bench/run-all.sh" "${pass[@]}" --build "$src/build" --out-root "$root" \
                --label "$sha" --cmdline "$cmdline" || rc=$?
        rm -rf "$src"
        exit "$rc"
fi
want() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "$mode" = quick ]; then
        local_args="--quick --seconds 1"; secs=1
        spin_n=100000; futex_n=5000; deliver_n=2000; redis_n=200000; redis_lat_n=2000
        kafka_n=100000; walctl_n=1000000
else
        local_args="--full"; secs=5
        spin_n=200000; futex_n=20000; deliver_n=20000; redis_n=1000000; redis_lat_n=5000
        kafka_n=1000000; walctl_n=1000000
fi

# ---- Build ----

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
# A piece whose programs this build cannot have (a backend's library is
# missing) is left out, and BENCHMARKS.md says so.
have=$(ninja -C "$build" -t targets all 2>/dev/null | cut -d: -f1)
for p in "redis tools/bench/ref-redis" "kafka tests/kafka/bench-kafka" \
        "walctl tools/walctl-bench-ref/ref-append" "local tools/bench/bench-local"; do
        set -- $p
        if want "$1" && ! echo "$have" | grep -qx "$2"; then
                echo "run-all.sh: $2 is not in this build; leaving out $1" >&2
                only=$(echo " $only " | sed "s/ $1 / /")
        fi
done
targets="tools/bench/bench-local tools/bench/ref-sync tools/bench/ref-gc tools/bench/ref-scan
        tools/bench/ref-handoff tools/bench/bench-api tools/walctl/walctl"
want redis && targets="$targets tools/bench/ref-redis"
want kafka && targets="$targets tests/kafka/bench-kafka"
want walctl && targets="$targets tools/walctl-bench-ref/ref-append"
# shellcheck disable=SC2086
ninja -C "$build" $targets >/dev/null
bin="$build/tools/bench"
walctl="$build/tools/walctl/walctl"

redis_pid=
stop_redis() {
        if [ -n "$redis_pid" ]; then
                kill "$redis_pid" 2>/dev/null || true
                wait "$redis_pid" 2>/dev/null || true
                redis_pid=
        fi
}
rm_data=
if [ -z "$data" ]; then
        data=$(mktemp -d /var/tmp/libwal-bench-all.XXXXXX)
        rm_data=1
fi
cleanup() {
        stop_redis
        if [ -n "$rm_data" ]; then rm -rf "$data"; fi
}
trap cleanup EXIT
mkdir -p "$data"
log="$data/all.jsonl"
: >"$log"
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "run-all.sh: $mode mode, $pairs pairs, data in $data" >&2

# run TAG CMD...: run a program that prints one JSON result line last; tag
# the line and keep it.
# A run that fails is kept as {"tag": TAG, "failed": true}, so pairs stay
# aligned, the report counts it, and the other benchmarks still run.
run() {
        local tag=$1; shift
        local line
        if ! line=$("$@" | tail -n 1) || ! echo "$line" | jq -e . >/dev/null 2>&1; then
                echo "  $tag: FAILED" >&2
                jq -cn --arg tag "$tag" '{tag: $tag, failed: true}' >>"$log"
                return 0
        fi
        echo "$line" | jq -c --arg tag "$tag" '. + {tag: $tag}' >>"$log"
        echo "  $tag: $(echo "$line" | jq -r '"\(.records_per_s|floor)/s, p50 \(.p50_us) us, p99 \(.p99_us) us"')" >&2
}

# pair I TAG-A "CMD-A" TAG-B "CMD-B": one A/B pair, A first on odd I.
pair() {
        local i=$1 ta=$2 ca=$3 tb=$4 cb=$5
        if [ $((i % 2)) -eq 1 ]; then
                eval "run $ta $ca"; eval "run $tb $cb"
        else
                eval "run $tb $cb"; eval "run $ta $ca"
        fi
}

# ---- The machine: 4 KiB write + fdatasync, as fio sees this disk ----

fio --name=w --filename="$data/fio.dat" --rw=write --ioengine=sync --fdatasync=1 --bs=4k \
        --size=32m --output-format=json >"$data/fio.json" 2>/dev/null
rm -f "$data/fio.dat"
jq -c '.jobs[0] as $j | {program: "fio", workload: "machine-fio-4k", tag: "machine-fio-4k",
        records_per_s: $j.write.iops,
        p50_us: ($j.sync.lat_ns.percentile["50.000000"] / 1000),
        p99_us: ($j.sync.lat_ns.percentile["99.000000"] / 1000)}' "$data/fio.json" >>"$log"

# ---- Local backend ----

if want local; then
        echo "== local: run-local.sh $local_args" >&2
        mkdir -p "$data/local"
        # shellcheck disable=SC2086
        "$here/run-local.sh" $local_args --build "$build" --dir "$data/local" --pairs "$pairs" \
                --out "$data/local.md" ${label:+--commit "$label"} >/dev/null ||
                echo "run-all.sh: run-local.sh FAILED; its section is left out" >&2
        if [ -f "$data/local/results.jsonl" ]; then
                jq -c '. + {from: "run-local.sh"}' "$data/local/results.jsonl" >>"$log"
        fi
        # The scaling plot's other points: 4 writers against REF-GC, and
        # REF-GC with 1 writer beside ours with 1.
        for i in $(seq "$pairs"); do
                echo "pair $i: writers 4, writers 1 vs REF-GC" >&2
                for n in 4 1; do
                        mkdir -p "$data/w$n"
                        pair "$i" "scale-ours-writers$n" \
                                "'$bin/bench-local' --dir '$data/w$n' --workload writers --writers $n --seconds $secs" \
                                "scale-ref-gc$n" \
                                "'$bin/ref-gc' --dir '$data' --writers $n --seconds $secs"
                        rm -rf "$data/w$n"
                done
        done
        mkdir -p "$data/lat-local"
        run lat-local "$bin/bench-api" --backend local -X "local.dir=$data/lat-local" \
                --workload sync --seconds "$secs"
        rm -rf "$data/lat-local"
fi

# ---- Adaptor, memory backend ----

if want adaptor; then
        for i in $(seq "$pairs"); do
                echo "pair $i: adaptor (memory)" >&2
                pair "$i" ours-deliver "'$bin/bench-api' --backend memory --workload deliver --count $deliver_n" \
                        ref-spin "'$bin/ref-handoff' --mode spin --count $spin_n"
                # Information: the floors under the active-reader rows, a bare
                # message hand-off to a spinning reader, its blocks in fresh
                # memory and in memory faulted in ahead (tools/bench/adaptor-notes.md).
                run ref-msg "$bin/ref-handoff" --mode msg --count "$deliver_n"
                run ref-msg-warm "$bin/ref-handoff" --mode msg-warm --count "$deliver_n"
                # The parked reader's goal reference is a raw futex handoff
                # paced as ours is (the reader parked ~100 us before each
                # wake-up); the unpaced ping-pong (REF-FUTEX as perf-anchors
                # §9.3 defines it) runs beside it for information.
                pair "$i" ours-parked "'$bin/bench-api' --backend memory --workload parked --count $deliver_n --pace-us 100" \
                        ref-futex-paced "'$bin/ref-handoff' --mode futex --count $deliver_n --pace-us 100"
                run ref-futex "$bin/ref-handoff" --mode futex --count "$futex_n"
                # Both rows hand each record over (wal_append_take /
                # walimpls_append_take): the same hand-over, like for like.
                # The copying wal_append() runs beside them for information.
                pair "$i" ours-append-api "'$bin/bench-api' --backend memory --workload append --take 1 --seconds $secs" \
                        ref-append-spi "'$bin/bench-api' --backend memory --workload append --layer spi --seconds $secs"
                run ours-append-api-copy "$bin/bench-api" --backend memory --workload append --seconds "$secs"
        done
        run lat-memory "$bin/bench-api" --backend memory --workload sync --seconds "$secs"
fi

# ---- Redis ----

if want redis; then
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        mkdir -p "$data/redis"
        redis-server --bind 127.0.0.1 --port "$port" --dir "$data/redis" --save "" \
                --appendonly no >"$data/redis/server.log" 2>&1 &
        redis_pid=$!
        for _ in $(seq 50); do
                redis-cli -p "$port" PING >/dev/null 2>&1 && break
                sleep 0.1
        done
        url="redis://127.0.0.1:$port"
        value=$(printf 'x%.0s' $(seq 100))
        # redis-benchmark's CSV line -> the common JSON line.  rb P [C]:
        # -P P with C clients (default 50, redis-benchmark's default).
        rb() {
                local p=$1 c=${2:-50}
                redis-cli -p "$port" FLUSHALL >/dev/null
                redis-benchmark -p "$port" -c "$c" -n "$redis_n" -P "$p" --csv \
                        XADD rb-stream '*' f "$value" | tail -n 1 |
                        awk -F, -v p="$p" -v c="$c" '{ gsub(/"/, ""); printf "{\"program\":\"redis-benchmark\",\"workload\":\"xadd-c%s-P%s\",\"records_per_s\":%s,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", c, p, $2, $5 * 1000, $7 * 1000 }'
        }
        ours_redis() {
                redis-cli -p "$port" FLUSHALL >/dev/null
                "$bin/bench-api" --backend redis -X "redis.url=$url" --workload append \
                        --seconds "$secs" --channel "append$RANDOM" "$@"
        }
        for i in $(seq "$pairs"); do
                echo "pair $i: redis" >&2
                for p in 16 64; do
                        # Matched (perf-anchors §10: C, P = the backend's
                        # connections and pipeline depth): one writer
                        # connection with at most P XADDs in flight
                        # (redis.batch_max=P) against -c 1 -P P.  The goal
                        # is judged on this reading.
                        pair "$i" "ours-redis-matched-P$p" "ours_redis -X redis.batch_max=$p" \
                                "ref-redis-c1-P$p" "rb $p 1"
                        # Server ceiling: the backend's defaults (one
                        # connection, up to 1024 in flight) against 50
                        # clients of -P P (informational).
                        pair "$i" "ours-redis-P$p" ours_redis "ref-redis-P$p" "rb $p"
                done
                # The same appends on the backend interface, no adaptor
                # (informational: where the gap is).
                run ours-redis-spi ours_redis --layer spi
                # Both sides pinned alike: bench-api pins its writer to CPU 0
                # and its reader to CPU 1 (as against REF-SPIN/REF-FUTEX), so
                # the probe does too (--pin 1); until 2026-11 the probe ran
                # unpinned against a pinned bench-api.
                pair "$i" ours-redis-parked \
                        "'$bin/bench-api' --backend redis -X redis.url=$url --workload parked --count $redis_lat_n --pace-us 100 --channel parked$i" \
                        ref-redis-parked "'$bin/ref-redis' --port $port --count $redis_lat_n --pace-us 100 --pin 1"
        done
        redis-cli -p "$port" FLUSHALL >/dev/null
        run lat-redis "$bin/bench-api" --backend redis -X "redis.url=$url" --workload sync \
                --seconds "$secs" --channel sync
        stop_redis
fi

# ---- Kafka ----

if want kafka; then
        # bench-kafka's command line grew a first word (what to run); the
        # measured tree's source says which form its binary takes.
        kargs=("$kafka_n" "$pairs")
        if grep -q 'append|replay|latency|all' "$root/tests/kafka/bench-kafka.c"; then
                kargs=(all "$kafka_n" "$pairs")
        fi
        if [ -x "$root/tests/kafka/bench-kafka.sh" ]; then
                # Its wrapper prints the Kafka section (kept as it writes it)
                # on stdout and bench-kafka's own output on stderr (parsed here
                # for the goals table).
                echo "== kafka: tests/kafka/bench-kafka.sh $build $kafka_n $pairs" >&2
                "$root/tests/kafka/bench-kafka.sh" "$build" "$kafka_n" "$pairs" \
                        >"$data/kafka.md" 2>"$data/kafka.txt" ||
                        echo "run-all.sh: bench-kafka.sh FAILED" >&2
                cat "$data/kafka.txt" >&2
        else
                echo "== kafka: bench-kafka ${kargs[*]}" >&2
                "$build/tests/kafka/bench-kafka" "${kargs[@]}" 2>/dev/null |
                        tee "$data/kafka.txt" >&2 || echo "run-all.sh: bench-kafka FAILED" >&2
        fi
        # Per-backend latency through the public API, on a walctl-hosted mock.
        coproc MOCK { exec "$walctl" mock-kafka; }
        mock_pid=$MOCK_PID
        read -r servers <&"${MOCK[0]}"
        run lat-kafka "$bin/bench-api" --backend kafka -X "kafka.$servers" --workload sync \
                --seconds "$secs"
        kill "$mock_pid"
        wait "$mock_pid" || true
fi

# ---- walctl append ----

if want walctl; then
        echo "== walctl: run.sh --records $walctl_n --pairs $pairs" >&2
        mkdir -p "$data/walctl"
        "$root/tools/walctl-bench-ref/run.sh" --build "$build" --records "$walctl_n" \
                --pairs "$pairs" --dir "$data/walctl" | tee "$data/walctl.txt" >&2 ||
                echo "run-all.sh: walctl-bench-ref/run.sh FAILED" >&2
fi

# ---- Report ----

elapsed=$(( $(date +%s) - started ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$label" ]; then
        commit=$label
else
        commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
        if [ -n "$(git -C "$root" status --porcelain -- adaptor impls utility wal walimpls \
                registry tools 2>/dev/null | grep -v '^??' || true)" ]; then
                commit="$commit+dirty"
        fi
fi
python3 "$here/plot/report.py" \
        --log "$log" --data "$data" --root "$outroot" --mode "$mode" --pairs "$pairs" \
        --cmdline "$cmdline" --commit "$commit" --elapsed "$elapsed" \
        --load "$load_start / $load_end" --only "$only" \
        --cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        --ncpu "$(nproc)" --kernel "$(uname -r)" \
        --fs "$(df -T "$data" | awk 'NR == 2 { print $2 " on " $1 }')"
echo "run-all.sh: done in $elapsed s: BENCHMARKS.md, bench-results/" >&2
