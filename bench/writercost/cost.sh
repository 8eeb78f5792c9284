#!/bin/sh
# bench/writercost/cost.sh BUILD_DIR [N1 N2]: instructions per small trace,
# recording included (calling thread, writer, helpers), by callgrind: two
# runs of deja-bench-writer-cost (N1 and N2 traces, default 2000 and 6000),
# the difference of their totals, the store's one dictionary training left
# out, over N2 - N1. Prints the figure and the top functions per trace
# (self cost). Needs valgrind; takes ~40 s.
set -eu
build=$1
n1=${2:-2000}
n2=${3:-6000}
tmp=$(mktemp -d /tmp/deja-writer-cost.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
for n in "$n1" "$n2"; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" \
        "$build/bin/deja-bench-writer-cost" "$n" "$tmp/store.$n" >/dev/null 2>&1
    callgrind_annotate --auto=no --threshold=100 "$tmp/cg.$n" >"$tmp/self.$n"
    callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$tmp/cg.$n" >"$tmp/incl.$n"
done
/usr/bin/python3 - "$tmp" "$n1" "$n2" <<'PY'
import re, sys
tmp, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(path):
    d, total = {}, 0
    for line in open(path):
        m = re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$', line)
        if not m:
            continue
        v, k = int(m.group(1).replace(',', '')), m.group(2).strip()
        if 'PROGRAM TOTALS' in k:
            total = v
        else:
            d[k] = d.get(k, 0) + v
    return d, total
def train(path):
    d, _ = load(path)
    return sum(v for k, v in d.items() if k.split(' ')[0].endswith(':deja__dict_maybe_train'))
a, ta = load(f'{tmp}/self.{n1}')
b, tb = load(f'{tmp}/self.{n2}')
tra, trb = train(f'{tmp}/incl.{n1}'), train(f'{tmp}/incl.{n2}')
per = ((tb - trb) - (ta - tra)) / (n2 - n1)
print(f'instructions per trace: {per:,.0f} (dictionary training left out: {tra:,} and {trb:,})')
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / (n2 - n1), k) for k in set(a) | set(b))
for v, k in reversed(rows[-40:]):
    print(f'{v:10,.0f}  {k[-100:]}')
PY
