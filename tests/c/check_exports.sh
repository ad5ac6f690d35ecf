#!/usr/bin/env bash
# libcaudal.so must export exactly the functions that the public headers
# mark CAUDAL_API: none of the internal cdl_* ones, none missing.
# usage: check_exports.sh LIBRARY INCLUDE_DIR
set -euo pipefail
lib=$1; inc=$2
want=$(grep -h '^CAUDAL_API' "$inc"/caudal.h "$inc"/caudal_receiver.h |
       grep -o 'caudal_[a-z0-9_]*(' | tr -d '(' | sort -u)
have=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWDdBbRr]$/ {print $3}' |
       grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u)
if [ "$want" != "$have" ]; then
    echo "exported symbols differ from the headers' CAUDAL_API list:" >&2
    diff <(echo "$want") <(echo "$have") >&2 || true
    exit 1
fi
n=$(echo "$have" | wc -l)
[ "$n" -ge 30 ] || { echo "only $n symbols found: the check read nothing" >&2; exit 1; }
echo "exports: the $n CAUDAL_API functions and nothing else"
