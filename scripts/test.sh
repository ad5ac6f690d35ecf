#!/usr/bin/env bash
# The project's test command (README, CI): set up, then run the C tests under
# AddressSanitizer and UBSan, the fuzzers for a bounded time, then the Python
# tests against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== C library and tests (AddressSanitizer + UBSan)"
cmake -S . -B build/asan -DCAUDAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build/asan -j"$(nproc)" >/dev/null
ctest --test-dir build/asan --output-on-failure -j2

echo "== Fuzzers (libFuzzer, AddressSanitizer + UBSan)"
scripts/fuzz.sh

echo "== Python tests"
# `import caudal` is the package installed in .venv (the source is under python/).
.venv/bin/python -m pytest -q tests/python
