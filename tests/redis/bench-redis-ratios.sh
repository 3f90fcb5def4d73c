#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/redis/bench-redis-ratios.sh: the Redis backend's goals, side by side
# with its references on one private server (perf-anchors.md sections 9.6
# and 10): append throughput against `redis-benchmark -P 16` and `-P 64`
# XADD of the same 100-byte payload, and append -> delivery latency of a
# tailing scanner against the raw hiredis XADD -> XREAD BLOCK probe.
#
# Throughput is read two ways.  Matched (the goal's reading: perf-anchors
# section 10 defines the reference as `-c C -P P` with C, P = the backend's
# connections and pipeline depth): ours with redis.batch_max=P (one writer
# connection, at most P XADDs in flight) against `-c 1 -P P`.  Server
# ceiling (informational): ours with its defaults (up to 1024 in flight)
# against `-c 50 -P P`, redis-benchmark's default of 50 clients.
#
# One `redis-server --save "" --appendonly no` on a free loopback port,
# stopped by PID at the end.  PAIRS alternating pairs (reference, then
# ours); the server is flushed before every run.  Ours is the backend
# through its interface (tests/redis/bench-redis --port: one thread queues
# N asynchronous appends, one writer connection pipelines them; a scanner at
# "latest" reads paced appends).  Prints each pair, then per workload the
# median of each side and the median (min-max) of the pair ratios
# ours/reference (for latency: lower is better).
#
# Usage: tests/redis/bench-redis-ratios.sh [--build DIR] [--pairs N]
#                                          [--records N] [--latency-records N]
#                                          [-X redis.key=value ...]
# The build directory (default build-redisperf, else build) must hold
# tests/redis/bench-redis.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=
pairs=5
n=500000
lat_n=5000
props=
while [ $# -gt 0 ]; do
        case "$1" in
        --build) build=$2; shift ;;
        --pairs) pairs=$2; shift ;;
        --records) n=$2; shift ;;
        --latency-records) lat_n=$2; shift ;;
        -X) props="$props $2"; shift ;;
        *) echo "bench-redis-ratios.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done
if [ -z "$build" ]; then
        build="$root/build-redisperf"
        [ -x "$build/tests/redis/bench-redis" ] || build="$root/build"
fi
bench="$build/tests/redis/bench-redis"
[ -x "$bench" ] || { echo "no $bench (ninja -C $build tests/redis/bench-redis)" >&2; exit 2; }

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
        >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
for _ in $(seq 50); do
        redis-cli -p "$port" PING >/dev/null 2>&1 && break
        sleep 0.1
done
value=$(printf 'x%.0s' $(seq 100))
flush() { redis-cli -p "$port" FLUSHALL >/dev/null; }

# rb P [C]: -P P with C clients (default 50).
rb() {
        flush
        redis-benchmark -p "$port" -c "${2:-50}" -n "$n" -P "$1" --csv XADD rb-stream '*' f "$value" |
                tail -n 1 | awk -F, '{ gsub(/"/, ""); print $2 }'
}
# ours_append [key=value ...]: extra redis.* properties.
ours_append() {
        flush
        # shellcheck disable=SC2086
        "$bench" --port "$port" append "$n" $props "$@"
}
ours_latency() {
        flush
        # shellcheck disable=SC2086
        "$bench" --port "$port" latency "$lat_n" $props | awk '{ print $1 }'
}
probe() {
        flush
        "$bench" --port "$port" probe "$lat_n" | awk '{ print $1 }'
}

out="$dir/pairs"
: >"$out"
echo "redis-server $(redis-server --version | awk '{ print $3 }') on 127.0.0.1:$port," \
     "$n records per throughput run, $lat_n paced 100 us per latency run, $pairs pairs"
for i in $(seq "$pairs"); do
        for p in 16 64; do
                ref=$(rb "$p" 1)
                ours=$(ours_append redis.batch_max="$p")
                echo "pair $i: matched P$p redis-benchmark -c 1 $ref/s, ours batch_max=$p $ours/s"
                echo "matched-P$p $ours $ref" >>"$out"
                ref=$(rb "$p")
                ours=$(ours_append)
                echo "pair $i: ceiling P$p redis-benchmark -c 50 $ref/s, ours defaults $ours/s"
                echo "ceiling-P$p $ours $ref" >>"$out"
        done
        ref=$(probe)
        ours=$(ours_latency)
        echo "pair $i: delivery p50 probe $ref us, ours $ours us"
        echo "delivery-p50 $ours $ref" >>"$out"
done

summary() {
        grep "^$1 " "$out" | awk -v w="$1" -v unit="$2" '
                { o[NR] = $2; r[NR] = $3; q[NR] = $2 / $3 }
                function med(a, n,   i, j, t) {
                        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
                }
                END {
                        n = NR
                        mo = med(o, n); mr = med(r, n); mq = med(q, n)
                        printf "%s: ours %.1f%s, reference %.1f%s, ratio ours/ref %.2fx (%.2f-%.2f)\n",
                               w, mo, unit, mr, unit, mq, q[1], q[n]
                }'
}
echo "medians over $pairs pairs (ratio: median of the pair ratios, min-max):"
summary matched-P16 /s
summary matched-P64 /s
summary ceiling-P16 /s
summary ceiling-P64 /s
echo "(the goals, 0.85x at -P 16 and 0.9x at -P 64, are judged on the matched rows)"
summary delivery-p50 " us"
