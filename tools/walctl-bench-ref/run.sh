#!/bin/sh
# The "walctl append" benchmark: `walctl append` against ref-append (the same
# workload written directly against libwal), on the local backend, on the
# same input, alternating A/B for several pairs (reference/perf-anchors.md
# section 9: 5 pairs, median ratio and the min-max of the pair ratios).
#
#   tools/walctl-bench-ref/run.sh [--build DIR] [--records N] [--pairs P] [--dir D]
#
# Input: N short lines ("record 0000001" ...), generated once into a file
# and fed on standard input.  Each run appends to a fresh channel in one
# data directory (D, default a new temporary directory, removed at the end)
# and is timed from start to exit (open, every record durable, close).
# Ratio = ref time / walctl time, so >= 1 means walctl is as fast as the
# reference; the goal is a median of at least 0.8.  Pairs alternate which
# side runs first, so drift on a shared machine hits both.
set -eu
cd "$(dirname "$0")/../.."

build=build
records=1000000
pairs=5
dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --records) records=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--records N] [--pairs P] [--dir D]" >&2; exit 64 ;;
  esac
done

walctl="$build/tools/walctl/walctl"
ref="$build/tools/walctl-bench-ref/ref-append"
for b in "$walctl" "$ref"; do
  [ -x "$b" ] || { echo "run.sh: $b is not built (meson compile -C $build)" >&2; exit 69; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/walctl-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -n "$dir" ] || dir="$tmp/data"
mkdir -p "$dir"
input="$tmp/input.txt"
seq -f 'record %07g' 1 "$records" > "$input"

now() { date +%s%N; }

# run_one NAME CHANNEL: time one side on the input; prints seconds.
run_one() {
  t0=$(now)
  if [ "$1" = walctl ]; then
    "$walctl" -b local -X "local.dir=$dir" append "$2" < "$input"
  else
    "$ref" "$dir" "$2" < "$input" 2>/dev/null
  fi
  t1=$(now)
  echo "$t0 $t1" | awk '{ printf "%.3f", ($2 - $1) / 1e9 }'
}

echo "walctl append vs ref-append: $records lines of $(head -1 "$input" | wc -c) bytes," \
     "local backend in $dir, $pairs pairs"
printf '%-5s %10s %10s %8s\n' pair ref_s walctl_s ratio
ratios=
i=1
while [ "$i" -le "$pairs" ]; do
  if [ $((i % 2)) -eq 1 ]; then
    tr=$(run_one ref "ref-$i"); tw=$(run_one walctl "walctl-$i")
  else
    tw=$(run_one walctl "walctl-$i"); tr=$(run_one ref "ref-$i")
  fi
  ratio=$(echo "$tr $tw" | awk '{ printf "%.3f", $1 / $2 }')
  printf '%-5s %10s %10s %8s\n' "$i" "$tr" "$tw" "$ratio"
  ratios="$ratios $ratio"
  i=$((i + 1))
done

# Every record made it, in order: the last channel of each side reads back
# as the input.
for ch in "walctl-$pairs" "ref-$pairs"; do
  if ! "$walctl" -b local -X "local.dir=$dir" read "$ch" | cmp -s - "$input"; then
    echo "run.sh: channel $ch does not read back as the input" >&2
    exit 65
  fi
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk -v goal=0.8 '
  { r[NR] = $1 }
  END {
    med = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "median ratio %.3f (min %.3f, max %.3f); goal >= %.1f: %s\n",
           med, r[1], r[NR], goal, (med >= goal ? "met" : "MISSED")
  }'
