#!/bin/sh
# Install every Debian package libwal's build, tests and tools need.
# Idempotent and non-interactive; run as root (or with sudo available).
set -eu

PACKAGES="
  build-essential meson ninja-build pkg-config
  liburing-dev libhiredis-dev librdkafka-dev
  libprotobuf-c-dev protobuf-c-compiler
  libcriterion-dev
  redis-server redis-tools kcat fio gnuplot-nox jq
  python3 clang
"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
