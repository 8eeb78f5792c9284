#!/usr/bin/env bash
# tests/check_symbols.sh LIBDEJA_SO VERSION HEADER... -- libdeja.so exports
# exactly the public API: every dynamic symbol it defines is a function
# declared DEJA_API in a public header (never an internal deja__ name, never
# a dependency's or the generated protobuf code's), every DEJA_API function
# is exported, and the soname is libdeja.so.MAJOR of a libdeja.so.VERSION.
set -euo pipefail
lib=${1:?usage: check_symbols.sh LIBDEJA_SO VERSION HEADER...}
version=${2:?}
shift 2
fail=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u > "$work/exported"
cat "$@" | tr '\n' ' ' | grep -oE 'DEJA_API[^;{]*\(' \
    | sed -E 's/\($//; s/.*[ *]//' | grep -E '^deja_' | sort -u > "$work/declared"

echo "libdeja exports $(wc -l < "$work/exported") symbols:"
sed 's/^/  /' "$work/exported"

if grep -E '^deja__' "$work/exported"; then
    echo "FAIL: internal deja__ symbols are exported (above)"; fail=1
fi
if grep -vE '^deja_' "$work/exported"; then
    echo "FAIL: symbols outside the deja_ namespace are exported (above)"; fail=1
fi
if comm -23 "$work/exported" "$work/declared" | grep .; then
    echo "FAIL: exported but not declared DEJA_API in a public header (above)"; fail=1
fi
if comm -13 "$work/exported" "$work/declared" | grep .; then
    echo "FAIL: declared DEJA_API but not exported (above)"; fail=1
fi

major=${version%%.*}
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ "$soname" != "libdeja.so.$major" ]; then
    echo "FAIL: soname is '$soname', expected libdeja.so.$major"; fail=1
fi
real=$(basename "$(readlink -f "$lib")")
if [ "$real" != "libdeja.so.$version" ]; then
    echo "FAIL: the library file is $real, expected libdeja.so.$version"; fail=1
fi
[ $fail -eq 0 ] && echo "ok: only the public API is exported; soname $soname, file $real"
exit $fail
