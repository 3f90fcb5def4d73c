#!/bin/sh
# registry/prelink-static.sh: make libwal.a hold ONE relocatable object.
#
# A static link only takes the objects of an archive that resolve a symbol
# the program needs, and nothing names a built-in backend's object: linked
# from an ordinary archive, every WAL_REGISTER_BACKEND entry of libwal would
# vanish (wal/wal-registry.h, "Static linking").  `ld -r --whole-archive`
# merges every internal static library into one object first, so a program
# that references any libwal symbol gets all of libwal, linker sets included.
#
# Usage: prelink-static.sh LD AR OUTPUT.a INPUT.a...
set -eu
ld=$1 ar=$2 out=$3
shift 3
obj="$out.prelink.o"
rm -f "$out" "$obj"
"$ld" -r -o "$obj" --whole-archive "$@" --no-whole-archive
"$ar" rcs "$out" "$obj"
rm -f "$obj"
