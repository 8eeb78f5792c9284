#!/usr/bin/env bash
# tests/check_man.sh DEJA_BIN MAN_SOURCE_DIR MAN_BUILD_DIR -- the manual pages
# stay in step with the program: deja(1) names every command `deja --help`
# lists and every global option; each command has its page deja-CMD(1), built
# by scdoc, which names every option the command's --help names; and no page
# names an option that its --help does not know (a removed option).
set -euo pipefail
deja=${1:?usage: check_man.sh DEJA_BIN MAN_SOURCE_DIR MAN_BUILD_DIR}
src=${2:?}
built=${3:?}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# The options a help text names: every --long or -x token on its usage
# lines and at the start of its option lines (the first column).
help_options() {
    { sed -n 's/^ *usage: //p; s/^       deja /deja /p' ; } <<<"$1" | grep -oE '(^|[ [|])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[ [|]//'
    grep -E '^ +-' <<<"$1" | sed -E 's/ {2,}.*//' | grep -oE '(^|[ ,])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[ ,]//'
}
# The options a page names in bold (*--opt*), as scdoc source.
page_options() {
    grep -oE '\*--?[a-zA-Z][a-zA-Z0-9-]*\*' "$1" | tr -d '*'
}

top=$("$deja" --help)
commands=$(awk '/^Commands:/ {f = 1; next} /^$/ {f = 0} f {print $1}' <<<"$top")
[ -n "$commands" ] || bad "deja --help lists no commands"

check_page() { # check_page NAME HELP_TEXT
    local name=$1 help=$2 page=$src/$1.1.scd opt
    if [ ! -f "$page" ]; then bad "$name: no manual page $page"; return; fi
    [ -s "$built/$name.1" ] || bad "$name: $built/$name.1 was not built (scdoc)"
    for opt in $(help_options "$help" | sort -u); do
        [ "$opt" = --help ] && [ "$name" != deja ] && continue
        grep -qF -- "*$opt*" "$page" || bad "$name: --help names $opt, the manual page does not"
    done
    [ "$name" = deja ] && return # deja(1) also speaks of the commands' options
    for opt in $(page_options "$page" | sort -u); do
        [ "$opt" = --store ] && continue # the global option, in every synopsis
        grep -qE -- "(^|[^a-zA-Z0-9-])$opt([^a-zA-Z0-9-]|$)" <<<"$help" \
            || bad "$name: the manual page names $opt, --help does not"
    done
}

check_page deja "$top"
for cmd in $commands; do
    grep -qF -- "*$cmd*" "$src/deja.1.scd" || bad "deja(1) does not name the command $cmd"
    check_page "deja-$cmd" "$("$deja" "$cmd" --help)"
done
for page in "$src"/deja-*.1.scd; do
    name=$(basename "$page" .1.scd)
    grep -qx "${name#deja-}" <<<"$commands" || bad "$page: no such command in deja --help"
done
[ $fail -eq 0 ] && echo "ok: deja(1) and $(wc -w <<<"$commands") command pages match --help"
exit $fail
