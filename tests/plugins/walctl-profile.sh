#!/bin/sh
# tests/plugins/walctl-profile.sh: `walctl config list` names where each
# effective value came from, with deployment profiles in the picture:
# flag > env > file > profile > default.
#
# Usage: walctl-profile.sh WALCTL_EXE
set -eu
walctl=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wal-walctl-profile-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "walctl-profile: FAIL: $*" >&2; exit 1; }

# row KEY: "VALUE SOURCE" of KEY in the listing $list.
row() { printf '%s\n' "$list" | awk -F '\t' -v k="$1" '$1 == k { print $4 " " $5 }'; }
expect() {
        got=$(row "$1")
        [ "$got" = "$2" ] || { printf '%s\n' "$list" >&2; fail "$1: got '$got', want '$2' ($3)"; }
}

list=$("$walctl" config list) || fail "config list"
expect backend "local default" "no profile"
expect profile "- -" "profile unset"

list=$("$walctl" -X profile=distributed config list) || fail "config list"
expect profile "distributed flag" "profile from a flag"
expect backend "kafka profile" "profile > default"
expect cache.max_bytes "256m profile" "profile > default"
expect timetick.interval "200ms default" "untouched by the profile"

list=$("$walctl" -X profile=distributed -X cache.max_bytes=1m config list) || fail "config list"
expect cache.max_bytes "1m flag" "flag > profile"
expect backend "kafka profile" "the rest of the profile stays"

printf 'profile = distributed\ncache.max_bytes = 2m\n' >"$tmp/wal.conf"
list=$(WAL_TIMETICK_INTERVAL=1s "$walctl" -F "$tmp/wal.conf" config list) || fail "config list"
expect profile "distributed file" "profile from a file"
expect cache.max_bytes "2m file" "file > profile"
expect timetick.interval "1s env" "env"
expect backend "kafka profile" "profile from the file"

list=$(WAL_PROFILE=standalone "$walctl" -b memory config list) || fail "config list"
expect profile "standalone env" "profile from the environment"
expect backend "memory flag" "flag > profile"

# A bad profile is a usage error naming the choices.
if "$walctl" -X profile=cluster config list >/dev/null 2>"$tmp/err"; then
        fail "a bad profile was accepted"
else
        rc=$?
        [ $rc -eq 64 ] || fail "bad profile: exit $rc, want 64"
        grep -q "standalone|distributed" "$tmp/err" || fail "bad profile: $(cat "$tmp/err")"
fi
echo "walctl-profile: ok"
