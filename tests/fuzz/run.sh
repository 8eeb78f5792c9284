#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR [SECONDS] -- the `./run fuzz` entry: fuzz
# bundle parsing for SECONDS (default 60), starting from a seed corpus made
# from a real small bundle (recorded with textgen-v1 and exported). Crashes
# and leaks land in BUILD_DIR/fuzz-work/ as crash-* / leak-* files; the exit
# status is libFuzzer's (0 when nothing was found).
#
# FUZZ_RUNS=N instead runs exactly N inputs from a fixed seed in a fresh
# work folder (FUZZ_WORK, default BUILD_DIR/fuzz-smoke): the ctest fuzz_smoke,
# which is repeatable and takes no time limit.
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
echo "fuzz: fuzzing bundle parsing (${limit[*]}, corpus $corpus)" >&2
exec "$build/bin/fuzz_bundle" "${limit[@]}" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$work/" -print_final_stats=1 "$corpus"
