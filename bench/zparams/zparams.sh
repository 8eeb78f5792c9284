#!/bin/sh
# bench/zparams/zparams.sh BUILD_DIR [N]: instructions per trace that zstd
# spends compressing and decompressing the store's records under each
# setting of deja-bench-zparams (bench/zparams/zparams.c), by callgrind:
# one run (one round), whose client requests dump each setting's
# compression and decompression of each workload on its own. The stores
# are recorded (outside callgrind) into a temporary directory first.
# Deterministic; needs valgrind; takes a few minutes (N: default 2000).
# With ZSTD_LIB=DIR, zstd is taken from DIR/libzstd.so.1 (a build of the
# same version with symbols, to see which of its functions the
# instructions go to: KEEP=1 keeps the dumps for callgrind_annotate).
set -eu
build=$1
n=${2:-2000}
tmp=$(mktemp -d /tmp/deja-zparams.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
"$build/bin/deja-bench-zparams" "$tmp/stores" "$n" 1 >/dev/null
if [ -n "${ZSTD_LIB:-}" ]; then
    export LD_LIBRARY_PATH="$ZSTD_LIB"
fi
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" \
    "$build/bin/deja-bench-zparams" "$tmp/stores" "$n" 1 >"$tmp/out.txt" 2>/dev/null
/usr/bin/python3 - "$tmp" <<'PY'
import glob, re, sys
tmp = sys.argv[1]
rows = {}
for path in glob.glob(f'{tmp}/cg.*.*'):
    desc = total = None
    for line in open(path):
        if line.startswith('desc: Trigger: Client Request: '):
            desc = line.split('Client Request: ', 1)[1].strip()
        m = re.match(r'(summary|totals): (\d+)', line)
        if m and total is None:
            total = int(m.group(2))
    if desc and total is not None:
        kind, work, setting, ntraces = desc.split('|')
        rows.setdefault((work, setting), {})[kind] = total / int(ntraces)
print(f'{"workload":8} {"setting":30} {"compress":>10} {"decompress":>11}  (instructions per trace)')
for (work, setting), v in sorted(rows.items(), key=lambda kv: (['small', 'chat', 'tensor'].index(kv[0][0]), kv[0][1])):
    print(f'{work:8} {setting:30} {v.get("c", 0):10,.0f} {v.get("d", 0):11,.0f}')
PY
[ -z "${KEEP:-}" ] || echo "dumps kept in $tmp"
