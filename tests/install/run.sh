#!/usr/bin/env bash
# Install the build in BUILD_DIR to a scratch prefix, build the consumer
# project against it both ways (with FLAGS, for a sanitized build), and run
# both programs.
set -euo pipefail
build=$1; flags=${2:-}; src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$work/prefix/lib64/pkgconfig" \
    cmake -S "$src" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
        -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer_cmake"
"$work/consumer/consumer_pkgconfig"
