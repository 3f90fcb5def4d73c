#!/bin/sh
# Install what is missing, build, and run every test.
#
#   scripts/run-tests.sh            normal build in ./build
#   scripts/run-tests.sh --asan     ASan + UBSan build in ./build-asan
#                                   (UBSan halts on the first error)
#
# Ends with one line "N passed, N failed" counting every test case (each
# criterion case and each TAP subtest counts once).  Exit status is 0 only
# when nothing failed.
set -eu
cd "$(dirname "$0")/.."

mode=normal
for arg in "$@"; do
  case "$arg" in
    --asan) mode=asan ;;
    *) echo "usage: $0 [--asan]" >&2; exit 64 ;;
  esac
done

./scripts/install-deps.sh

if [ "$mode" = asan ]; then
  builddir=build-asan
  setup_opts="-Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=undefined -Dbuildtype=debug"
  test_opts="--timeout-multiplier 4"
else
  builddir=build
  setup_opts=""
  test_opts=""
fi

if [ -f "$builddir/build.ninja" ]; then
  # shellcheck disable=SC2086
  meson setup --reconfigure "$builddir" $setup_opts >/dev/null
else
  # shellcheck disable=SC2086
  meson setup "$builddir" $setup_opts
fi
meson compile -C "$builddir"

# Criterion's own small leaks are suppressed; ours still fail the test.
LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
export LSAN_OPTIONS

status=0
# shellcheck disable=SC2086
meson test -C "$builddir" --print-errorlogs --num-processes 2 $test_opts || status=$?
python3 scripts/test-summary.py "$builddir/meson-logs/testlog.json" || status=1
exit $status
