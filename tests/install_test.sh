#!/usr/bin/env bash
# tests/install_test.sh BUILD_DIR SOURCE_DIR EXAMPLE.c PLUGIN.c -- install deja
# into a temporary prefix and use it from outside its tree, as a user would:
# the README's API example (EXAMPLE.c) and plugin (PLUGIN.c) are built three
# ways (pkg-config; find_package(deja); add_subdirectory of the sources) and
# run with the installed `deja`. Also checks what was installed: the soname
# links, headers usable from C++, the example plugins found by bare name on
# the default plugin path, and the man pages.
set -euo pipefail
build=$(cd "${1:?usage: install_test.sh BUILD_DIR SOURCE_DIR EXAMPLE.c PLUGIN.c}" && pwd)
src=$(cd "${2:?}" && pwd)
example=${3:?}
plugin=${4:?}
work=$build/install-test
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
unset DEJA_PLUGIN_PATH DEJA_STORE
export CMAKE_BUILD_PARALLEL_LEVEL=2

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
deja=$prefix/bin/deja
for f in bin/deja include/deja.h include/deja_model.h lib/libdeja.a lib/libdeja.so \
         lib/pkgconfig/deja.pc lib/cmake/deja/dejaConfig.cmake lib/cmake/deja/dejaConfigVersion.cmake \
         lib/deja/textgen-v1.so lib/deja/textgen.model lib/deja/classifier-v6.so; do
    [ -e "$prefix/$f" ] || fail "$f is not installed"
done
[ "$(readlink "$prefix/lib/libdeja.so.0")" = "libdeja.so.$DEJA_VERSION" ] \
    || fail "lib/libdeja.so.0 does not point to libdeja.so.$DEJA_VERSION"
if [ -n "${DEJA_MAN_PAGES:-}" ]; then
    for page in $DEJA_MAN_PAGES; do
        [ -s "$prefix/share/man/man1/$page" ] || fail "man page $page is not installed"
    done
fi
"$deja" --version | grep -qx "deja $DEJA_VERSION" || fail "installed deja --version"

step "the installed deja finds its plugins by bare name, without DEJA_PLUGIN_PATH"
(cd "$work" && echo '{"inputs": {"prompt": "The fox"}, "params": {"max_tokens": 8}}' \
    | "$deja" --store plugins.store run --model textgen-v1 >/dev/null) \
    || fail "deja run --model textgen-v1 from the installed tree"

for site in "$prefix"/lib/python3*/dist-packages; do
    [ -d "$site/deja" ] || continue
    step "the installed Python package imports"
    PYTHONPATH=$site /usr/bin/python3 -c 'import deja' || fail "import deja from $site"
done

if command -v c++ >/dev/null; then
    step "the headers compile as C++"
    printf '#include "deja.h"\n#include "deja_model.h"\nint main() { return 0; }\n' \
        | c++ -std=c++11 -Wall -Wextra -Werror -pedantic -I"$prefix/include" -x c++ - \
              -o "$work/cxx_headers" || fail "deja.h and deja_model.h as C++"
fi

# check WAY EXAMPLE_BIN PLUGIN_SO: run the example (3 traces recorded), list
# them with the installed deja, and run the plugin through it.
check() {
    local way=$1 ex=$2 so=$3 store=$work/$1.store out
    rm -rf "$store"
    [ "$("$ex" "$store" | grep -c '^recorded ')" = 3 ] || fail "$way: the example did not record 3 traces"
    [ "$("$deja" --store "$store" ls | grep -c sentiment)" = 3 ] || fail "$way: deja ls does not list 3 traces"
    out=$(echo '{"inputs": {"text": "hello, deja"}}' | "$deja" --store "$store" run --model "$so" --json) \
        || fail "$way: deja run --model $so"
    echo "$out" | grep -q 'HELLO, DEJA' || fail "$way: the plugin answered '$out'"
    echo "ok: $way"
}

step "pkg-config"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion deja)" = "$DEJA_VERSION" ] || fail "pkg-config --modversion deja"
mkdir -p "$work/pc"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$example" $(pkg-config --cflags --libs deja) \
    -Wl,-rpath,"$(pkg-config --variable=libdir deja)" -o "$work/pc/example" || fail "pkg-config: example"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC "$plugin" $(pkg-config --cflags deja) \
    -o "$work/pc/shout.so" || fail "pkg-config: plugin"
check pkg-config "$work/pc/example" "$work/pc/shout.so"
unset PKG_CONFIG_PATH

for via in package subdir; do
    step "CMake: $via"
    cmake -S "$src/tests/install" -B "$work/$via" -DDEJA_VIA=$via -DDEJA_SOURCE="$src" \
        -DCMAKE_PREFIX_PATH="$prefix" -DEXAMPLE_SRC="$example" -DPLUGIN_SRC="$plugin" \
        >"$work/$via.log" 2>&1 || { cat "$work/$via.log"; fail "cmake configure ($via)"; }
    cmake --build "$work/$via" >>"$work/$via.log" 2>&1 || { cat "$work/$via.log"; fail "cmake build ($via)"; }
    check "$via" "$work/$via/example" "$work/$via/shout.so"
    check "$via-static" "$work/$via/example_static" "$work/$via/shout.so"
done
[ -x "$work/subdir/deja/bin/deja" ] || fail "add_subdirectory did not build the deja command"
echo "ok: installed, and used three ways"
