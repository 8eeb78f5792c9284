#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR [SECONDS] -- the `./run fuzz` entry: fuzz
# each target: bundle parsing, starting from a seed corpus made from a real
# small bundle (recorded with textgen-v1 and exported), then request lines,
# store records, and import plus printing, starting from their corpus in
# tests/fuzz/corpus/, each for SECONDS (default 60). Crashes and leaks land
# in BUILD_DIR/fuzz-work/ as TARGET-crash-* / TARGET-leak-* files; the exit
# status is 0 when no target found anything.
#
# FUZZ_RUNS=N instead runs exactly N inputs of the bundle target from a
# fixed seed in a fresh work folder (FUZZ_WORK, default
# BUILD_DIR/fuzz-smoke): the ctest fuzz_smoke, which is repeatable and takes
# no time limit (the other targets have their smoke_fuzz_* tests).
set -euo pipefail
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR [SECONDS]}
secs=${2:-60}
build=$(cd "$build" && pwd)
if [ -n "${FUZZ_RUNS:-}" ]; then
    work=${FUZZ_WORK:-$build/fuzz-smoke}
    rm -rf "$work"
    limit=(-runs="$FUZZ_RUNS" -seed=1)
else
    work=$build/fuzz-work
    limit=(-max_total_time="$secs")
fi
corpus=$work/corpus
for exe in deja fuzz_bundle fuzz_bundle_seed; do
    [ -x "$build/bin/$exe" ] || { echo "fuzz: $build/bin/$exe is missing (build with -DDEJA_FUZZ=ON)" >&2; exit 2; }
done
mkdir -p "$corpus"
rm -rf "$work/seed.store" "$work/seed.deja"
export DEJA_PLUGIN_PATH=$build/lib
"$build/bin/deja" --store "$work/seed.store" run --model textgen-v1 >/dev/null <<'REQ'
{"inputs": {"prompt": "The fox"}, "params": {"max_tokens": 12}}
{"inputs": {"prompt": "A lion lay"}, "params": {"temperature": 1.3, "max_tokens": 8}}
REQ
"$build/bin/deja" --store "$work/seed.store" export -o "$work/seed.deja" >/dev/null
"$build/bin/fuzz_bundle_seed" "$work/seed.deja" "$corpus"
status=0
echo "fuzz: fuzzing bundle parsing (${limit[*]}, corpus $corpus)" >&2
"$build/bin/fuzz_bundle" "${limit[@]}" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$work/bundle-" -print_final_stats=1 "$corpus" || status=$?
[ -n "${FUZZ_RUNS:-}" ] && exit $status
# The other targets start from the corpus kept in the repository (copied:
# what libFuzzer adds stays in the work directory).
src=$(cd "$(dirname "$0")" && pwd)/corpus
for target in request record import; do
    [ -x "$build/bin/fuzz_$target" ] || { echo "fuzz: $build/bin/fuzz_$target is missing" >&2; exit 2; }
    mkdir -p "$work/corpus-$target"
    cp -n "$src/$target"/* "$work/corpus-$target/"
    echo "fuzz: fuzzing $target (${limit[*]}, corpus $work/corpus-$target)" >&2
    "$build/bin/fuzz_$target" "${limit[@]}" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$work/$target-" -print_final_stats=1 \
        "$work/corpus-$target" || status=$?
done
exit $status
