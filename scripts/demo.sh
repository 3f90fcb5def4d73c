#!/bin/sh
# The main job: install what is missing, build, then append to and read back
# a channel on the local backend (the embedded default), showing throughput.
set -eu
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
meson compile -C build

data=$(mktemp -d "${TMPDIR:-/tmp}/wal-demo.XXXXXX")
trap 'rm -rf "$data"' EXIT INT TERM

echo "== local backend in $data"
echo "== 4 writer threads, blocking durable appends of 100-byte records, 5 s"
./build/tools/bench/bench-local --dir "$data" --channel demo-a --workload writers --writers 4 --seconds 5
echo "== 1 thread, 4096 asynchronous appends in flight, 5 s"
./build/tools/bench/bench-local --dir "$data" --channel demo-b --workload async --inflight 4096 --seconds 5
echo "== the README example: append three records and read them back"
(cd "$data" && "$OLDPWD/build/tools/examples/embed-example")
