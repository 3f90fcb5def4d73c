#!/bin/sh
# tests/plugins/sample-plugin.sh: the out-of-tree backend story, end to end.
#
#   1. `meson install` this build of libwal into a temporary DESTDIR;
#   2. build tools/sample-backend as its own meson project against that
#      install alone (pkg-config `wal`, PKG_CONFIG_SYSROOT_DIR), and check
#      that no include path points into the libwal source or build tree;
#   3. run the conformance suite with the plugin loaded (WAL_PLUGIN_PATH,
#      WAL_TEST_BACKEND=sample);
#   4. use the plugin through walctl: `backends` shows its file, append/read
#      round trip, loading through -X plugin.path and a -F file instead of
#      the environment.
#
# Usage: sample-plugin.sh BUILD_ROOT SOURCE_ROOT CONFORMANCE_EXE WALCTL_EXE
set -eu

build=$1 src=$2 conformance=$3 walctl=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wal-sample-plugin-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() { echo "sample-plugin: FAIL: $*" >&2; exit 1; }
step() { echo "sample-plugin: $*"; }

step "installing libwal into $tmp/root"
meson install -C "$build" --no-rebuild --destdir "$tmp/root" --quiet >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log" >&2; fail "meson install"; }
pc=$(find "$tmp/root" -name wal.pc | head -n 1)
[ -n "$pc" ] || fail "wal.pc was not installed"
[ -f "$(find "$tmp/root" -name wal-plugin.h | head -n 1)" ] || fail "wal-plugin.h not installed"

step "building tools/sample-backend against the install"
# The sample is copied out of the tree first, so nothing next to it can leak in.
cp -r "$src/tools/sample-backend" "$tmp/sample-src"
PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$(dirname "$pc")" \
        meson setup "$tmp/sample" "$tmp/sample-src" >"$tmp/setup.log" 2>&1 ||
        { cat "$tmp/setup.log" >&2; fail "meson setup of the sample"; }
ninja -C "$tmp/sample" >"$tmp/ninja.log" 2>&1 || { cat "$tmp/ninja.log" >&2; fail "ninja"; }
plugin="$tmp/sample/wal-sample.so"
[ -f "$plugin" ] || fail "no $plugin"
if grep -e "$src" -e "$build" "$tmp/sample/compile_commands.json" >/dev/null; then
        cat "$tmp/sample/compile_commands.json" >&2
        fail "the sample was compiled with paths into the libwal tree"
fi
grep -e "-I$tmp/root/" "$tmp/sample/compile_commands.json" >/dev/null ||
        fail "the sample was not compiled against the installed headers"

step "a program linked statically against the installed libwal.a"
# tools/examples/embed.c (the README's example, local backend), through
# pkg-config --static: libwal.a is one prelinked object, so the built-in
# backends come along.
if [ -f "$src/tools/examples/embed.c" ] && [ -n "$(find "$tmp/root" -name libwal.a)" ]; then
        libdir=$(dirname "$(find "$tmp/root" -name libwal.a | head -n 1)")
        export PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$(dirname "$pc")"
        # libwal.a plus the libraries of wal.pc's Requires.private (linked
        # dynamically: `--static` would ask for their own static closure).
        reqs=$(pkg-config --print-requires-private wal | awk '{print $1}')
        # A sanitizer build's libwal.a needs the sanitizer runtime at link time.
        san=""
        nm "$libdir/libwal.a" | grep -q ' U __asan_' && san="$san,address"
        nm "$libdir/libwal.a" | grep -q ' U __ubsan_' && san="$san,undefined"
        [ -z "$san" ] || san="-fsanitize=${san#,}"
        ${CC:-cc} -std=c17 $san -o "$tmp/embed-static" "$src/tools/examples/embed.c" \
                $(pkg-config --cflags wal) "$libdir/libwal.a" \
                $(pkg-config --libs $reqs) -lpthread -lm -ldl ||
                fail "static link of embed.c against the installed libwal.a"
        unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
        if ldd "$tmp/embed-static" | grep -q libwal; then fail "embed-static links libwal.so"; fi
        nm "$tmp/embed-static" | grep -q ' wal_backend_reg_walimpls_memory$' ||
                fail "the built-in memory backend's registration was dropped from libwal.a"
        # embed.c uses the local backend: run it where that is built in.
        if nm "$tmp/embed-static" | grep -q ' wal_backend_reg_walimpls_local$'; then
                (cd "$tmp" && ./embed-static >"$tmp/embed.out" 2>&1) ||
                        { cat "$tmp/embed.out" >&2; fail "embed-static did not run"; }
                grep -q "read order 2" "$tmp/embed.out" || fail "embed-static: $(cat "$tmp/embed.out")"
        fi
else
        fail "no libwal.a installed or no tools/examples/embed.c"
fi

step "conformance suite on the plugin"
WAL_PLUGIN_PATH="$tmp/sample" WAL_TEST_BACKEND=sample "$conformance" >"$tmp/conf.log" 2>&1 ||
        { cat "$tmp/conf.log" >&2; fail "conformance on the sample plugin"; }
grep "Synthesis" "$tmp/conf.log"
grep -q "Failing: 0 | Crashing: 0" "$tmp/conf.log" || fail "conformance reported failures"

step "your own backend: a renamed copy, through the generic fixture"
# What README.md tells a backend author to do: copy, rename, build against the
# install, run the suite with a properties file for the fixture.
cp -r "$tmp/sample-src" "$tmp/mine-src"
sed -i -e 's/\.name = "sample"/.name = "mine"/' -e 's/"sample\.dir"/"mine.dir"/' \
        -e 's/wal_config_get(cfg, "sample\.dir")/wal_config_get(cfg, "mine.dir")/' \
        "$tmp/mine-src/sample.c"
grep -q '.name = "mine"' "$tmp/mine-src/sample.c" || fail "rename of the copy"
PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH="$(dirname "$pc")" \
        meson setup "$tmp/mine" "$tmp/mine-src" >"$tmp/setup2.log" 2>&1 ||
        { cat "$tmp/setup2.log" >&2; fail "meson setup of the copy"; }
ninja -C "$tmp/mine" >"$tmp/ninja2.log" 2>&1 || { cat "$tmp/ninja2.log" >&2; fail "ninja (copy)"; }
printf '# one directory per test case\nmine.dir = @TMPDIR@/channels\n' >"$tmp/mine.properties"
WAL_PLUGIN_PATH="$tmp/mine" WAL_TEST_BACKEND=mine WAL_TEST_PROPERTIES="$tmp/mine.properties" \
        "$conformance" >"$tmp/conf2.log" 2>&1 ||
        { cat "$tmp/conf2.log" >&2; fail "conformance on the renamed copy"; }
grep "Synthesis" "$tmp/conf2.log"
grep -q "Failing: 0 | Crashing: 0" "$tmp/conf2.log" || fail "conformance (copy) reported failures"

step "walctl backends"
out=$(WAL_PLUGIN_PATH="$tmp/sample" "$walctl" backends) || fail "walctl backends"
printf '%s\n' "$out"
printf '%s\n' "$out" | grep -q "^sample	$plugin	persistent,fencing,list	" ||
        fail "walctl backends does not show the sample with its file"
printf '%s\n' "$out" | grep -q "^memory	builtin	" || fail "memory is not listed as builtin"

step "walctl backends with a broken plugin next to the good one"
mkdir "$tmp/broken"
echo "not a shared object" >"$tmp/broken/broken.so"
out=$(WAL_PLUGIN_PATH="$tmp/broken:$tmp/sample" "$walctl" backends 2>"$tmp/err") ||
        fail "walctl backends with a broken plugin: exit $?"
printf '%s\n' "$out" | grep -q "^sample	$plugin	" || fail "the good plugin did not load"
grep -q "$tmp/broken/broken.so refused: not a shared object" "$tmp/err" ||
        { cat "$tmp/err" >&2; fail "the refusal is not on stderr"; }
WAL_PLUGIN_PATH="$tmp/broken" "$walctl" -q backends 2>"$tmp/err" >/dev/null || fail "-q backends"
[ ! -s "$tmp/err" ] || fail "-q did not hide the warning: $(cat "$tmp/err")"
# A backend whose plugin was refused is unavailable: exit 69, naming the
# known backends, after the warning saying why.
rc=0
WAL_PLUGIN_PATH="$tmp/broken" "$walctl" -b sample info orders >/dev/null 2>"$tmp/err" || rc=$?
[ $rc -eq 69 ] || fail "-b <refused plugin>: exit $rc, want 69"
grep -q "unknown backend 'sample'" "$tmp/err" && grep -q "broken.so refused" "$tmp/err" ||
        fail "-b <refused plugin>: $(cat "$tmp/err")"

step "walctl append/read round trip"
data="$tmp/data"
printf 'one\ntwo\nthree\n' >"$tmp/in"
WAL_PLUGIN_PATH="$tmp/sample" "$walctl" -b sample -X "sample.dir=$data" append orders <"$tmp/in" ||
        fail "walctl append"
WAL_PLUGIN_PATH="$tmp/sample" "$walctl" -b sample -X "sample.dir=$data" read orders >"$tmp/out" ||
        fail "walctl read"
cmp "$tmp/in" "$tmp/out" || fail "read back differs"
[ -s "$data/orders/log" ] || fail "no log file under sample.dir"

step "walctl with -X plugin.path instead of the environment"
WAL_PLUGIN_PATH= "$walctl" -X "plugin.path=$tmp/sample" -b sample -X "sample.dir=$data" \
        read orders >"$tmp/out2" || fail "walctl -X plugin.path read"
cmp "$tmp/in" "$tmp/out2" || fail "read back (plugin.path) differs"

step "walctl with a properties file naming the backend"
printf 'plugin.path = %s\nbackend = sample\nsample.dir = %s\n' "$tmp/sample" "$data" >"$tmp/wal.conf"
WAL_PLUGIN_PATH= "$walctl" -F "$tmp/wal.conf" read orders >"$tmp/out3" ||
        fail "walctl -F read"
cmp "$tmp/in" "$tmp/out3" || fail "read back (-F) differs"
list=$(WAL_PLUGIN_PATH= "$walctl" -F "$tmp/wal.conf" config list) || fail "config list"
printf '%s\n' "$list" | grep -q "^sample.dir	string	-	$data	file	sample	" ||
        { printf '%s\n' "$list" >&2; fail "config list does not show sample.dir from the file"; }

step "ok"
