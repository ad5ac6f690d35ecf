#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of the frame parser and of the
# receiver's handling of a connection, under AddressSanitizer and UBSan, for a
# bounded time: both fuzzers at once, FUZZ_SECONDS each (default 60), from
# seed corpora and a dictionary of frames written by fuzz_seeds. Fails when a
# fuzzer finds a crash, a leak, undefined behaviour, a hang or a broken
# invariant; the input that did it is kept in build/fuzz/artifacts (replay:
# build/fuzz/tests/c/NAME FILE). Needs clang with libFuzzer (scripts/setup.sh
# installs it as root).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
cc=${FUZZ_CC:-clang}
out=build/fuzz

if ! command -v "$cc" >/dev/null; then
    echo "== fuzzing SKIPPED: $cc not found" \
         "(install clang and libclang-rt-dev, or run scripts/setup.sh as root)"
    exit 0
fi
mkdir -p "$out"
probe='int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }'
if ! echo "$probe" | "$cc" -fsanitize=fuzzer -x c - -o "$out/probe" 2>"$out/probe.log"; then
    echo "== fuzzing SKIPPED: $cc cannot link libFuzzer (install libclang-rt-dev):" \
         "$(head -1 "$out/probe.log")"
    exit 0
fi
rm -f "$out/probe" "$out/probe.log"

cmake -S . -B "$out" -DCMAKE_C_COMPILER="$cc" -DCAUDAL_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAUDAL_BENCH=OFF -DCAUDAL_EXAMPLES=OFF >/dev/null
cmake --build "$out" -j"$(nproc)" --target fuzz_protocol fuzz_receiver fuzz_seeds >/dev/null

# Fresh corpora each time: the seeds, and what this run's fuzzing adds to them.
rm -rf "$out/corpus" "$out/artifacts" "$out/tmp"
mkdir -p "$out/corpus/fuzz_protocol" "$out/corpus/fuzz_receiver" "$out/artifacts" "$out/tmp"
"$out/tests/c/fuzz_seeds" "$out/corpus/fuzz_protocol" "$out/corpus/fuzz_receiver" \
    "$out/frames.dict"

# A rank may declare blocks of any size, and the receiver allocates an inline
# block's buffer before its bytes come; ASan would commit an eighth of it as
# shadow. Larger than 256 MiB, an allocation fails instead, as it can on any
# machine, and the receiver must cope.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:max_allocation_size_mb=256
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TMPDIR="$PWD/$out/tmp" # the receiver's socket directory, if the path is short
run() {
    "$out/tests/c/$1" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/artifacts/$1-" \
        -dict="$out/frames.dict" \
        "$out/corpus/$1" >"$out/$1.log" 2>&1
}
echo "== fuzzing the frame parser and the receiver, ${seconds}s each"
run fuzz_protocol &
pid_protocol=$!
run fuzz_receiver &
pid_receiver=$!
rc_protocol=0
rc_receiver=0
wait "$pid_protocol" || rc_protocol=$?
wait "$pid_receiver" || rc_receiver=$?

failed=0
for f in fuzz_protocol fuzz_receiver; do
    rc_var=rc_${f#fuzz_}
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$f.log")
    cov=$(grep -o 'cov: [0-9]*' "$out/$f.log" | tail -1 || true)
    if [ "${!rc_var}" = 0 ]; then
        echo "$f: ok, ${runs:-?} inputs, $cov, corpus $(ls "$out/corpus/$f" | wc -l) inputs"
    else
        failed=1
        echo "$f: FAILED (exit ${!rc_var}):"
        grep -E "^fuzz_[a-z]+: |ERROR|SUMMARY" "$out/$f.log" | head -n 5 || true
        echo "-- the end of $out/$f.log:"
        tail -n 50 "$out/$f.log"
        for a in "$out/artifacts/$f-"*; do
            [ -e "$a" ] || continue
            echo "-- input $a ($(wc -c <"$a") bytes), first 256 bytes:"
            od -A d -t x1 "$a" | head -n 17
        done
    fi
done
rm -rf "$out/tmp"
exit "$failed"
