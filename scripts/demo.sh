#!/bin/sh
# The main job: install what is missing, build, then a short demo of walctl on
# the local backend (the embedded default) in a temporary data directory:
# writers and a tailing reader on three channels with a live progress line
# (on a terminal) and a summary, then a few records appended and read back.
# About 15 s after the build.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

./scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
meson compile -C build

walctl="$top/build/tools/walctl/walctl"
data=$(mktemp -d "${TMPDIR:-/tmp}/wal-demo.XXXXXX")
trap 'rm -rf "$data"' EXIT INT TERM
# No configuration at all: walctl uses the local backend in ./wal-data.
cd "$data"

echo "== local backend in $data/wal-data"
echo "== walctl bench: 3 channels, 4 writer threads (blocking durable appends),"
echo "   1 reader tailing bench-0, 100-byte records, 10 s"
"$walctl" bench --channels 3 --writers 4 --readers 1 --seconds 10

echo
echo "== the channels now on disk"
"$walctl" channels | sort

echo
echo "== append three records (-J: one ack per record once durable)"
printf 'first order\nsecond order\nthird order\n' | "$walctl" append -J -H source=demo orders

echo
echo "== walctl read orders"
"$walctl" read orders

echo
echo "== walctl read --format json -o -2 orders (the last two)"
"$walctl" read --format json -o -2 orders

echo
echo "== a bench record as JSON: its payload starts with binary time stamp bytes,"
echo "   so it travels as payload_b64"
"$walctl" read --format json -c 1 bench-0

echo
echo "== walctl info bench-0"
"$walctl" info bench-0

if [ -x "$top/build/tools/examples/embed-example" ]; then
  echo
  echo "== the README example: append three records and read them back in C"
  "$top/build/tools/examples/embed-example"
fi
