#!/bin/sh
# The shared library exports its public API and nothing internal: lists libmproc.so's exported dynamic
# symbols (nm -D --defined-only, demangled) and fails on any name under mproc::detail that
# tests/export_test.allow does not list, on any mproc::test name, and on any exported name that is neither
# mproc's nor a C++ standard library template instantiated in it. Also fails when an allowlist line matches
# no exported name (a stale entry), and when the classes a consumer catches or calls (mproc::Error,
# mproc::SystemError, mproc::Lock) lose their type_info or members: hiding too much is as wrong as too little.
# usage: export_test.sh LIBMPROC_SO ALLOWLIST TEST_HOOKS(true|false)
set -eu
library=$1
allowlist=$2
test_hooks=$3
work=$(mktemp -d /tmp/mproc-export.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v nm >/dev/null 2>&1 || { echo "export test: nm (binutils) is not installed"; exit 77; }
# Column 3 on: the demangled name (it may hold spaces). Weak and strong definitions alike.
nm -D --defined-only -C "$library" | cut -d' ' -f3- | sort -u >"$work/exported"
[ -s "$work/exported" ] || { echo "export test: $library exports nothing"; exit 1; }

# The allowlist's prefixes (test_hooks entries only in a test_hooks build).
sed -e '/^#/d' -e '/^$/d' "$allowlist" | while IFS= read -r line; do
    prefix=${line%% *}
    case "$line" in
        *"[test_hooks]"*) [ "$test_hooks" = true ] || continue ;;
    esac
    printf '%s\n' "$prefix"
done >"$work/allowed"

# The type information of function types ("typeinfo for long (int)"), which UndefinedBehaviorSanitizer's
# function check emits in sanitized builds for every function type it sees, is not an interface anybody
# links against: left out.
grep -Ev '^typeinfo( name)? for [^(]* \(' "$work/exported" >"$work/kept" || true
mv "$work/kept" "$work/exported"

failed=0
# Strip what the compiler puts in front of a name, so that `vtable for mproc::detail::X` is judged as X.
prefixes='typeinfo name for|typeinfo for|vtable for|VTT for|construction vtable for .* in'
prefixes="$prefixes|non-virtual thunk to|virtual thunk to|guard variable for"
sed -E "s/^($prefixes) //" \
    "$work/exported" >"$work/names"
while IFS= read -r name; do
    # The name itself, not its parameter list: a public member may take a detail type.
    head=${name%%(*}
    case "$head" in
        mproc::test::*|*" mproc::test::"*)
            echo "exported test-harness name: $name"; failed=1; continue ;;
        mproc::detail::*|*" mproc::detail::"*)
            allowed=0
            while IFS= read -r prefix; do
                case "$name" in "$prefix"*|*" $prefix"*) allowed=1; break ;; esac
            done <"$work/allowed"
            [ "$allowed" = 1 ] || { echo "exported internal name not on tests/export_test.allow: $name"; failed=1; }
            continue ;;
        mproc::*|*" mproc::"*) continue ;;
        # Templates of the standard library (std::string's members, std::to_string, shared_ptr's control
        # block, ...) keep the default visibility libstdc++ gives them, wherever they are instantiated.
        std::*|*" std::"*|"typeinfo for void"*|"typeinfo name for void"*|void" "*)
            case "$head" in
                *"mproc::detail::"*)
                    # Over a detail type the allowlist exports (a line `mproc::detail::T::`), the
                    # instantiation is that type's own business (shared_ptr<T>'s control block).
                    allowed=0
                    while IFS= read -r prefix; do
                        case "$prefix" in
                            *::) type=${prefix%::}
                                 case "$head" in *"$type,"*|*"$type>"*|*"$type "*|*"$type::"*) allowed=1; break ;; esac ;;
                        esac
                    done <"$work/allowed"
                    [ "$allowed" = 1 ] || { echo "exported instantiation over an internal type: $name"; failed=1; } ;;
            esac
            continue ;;
        *) echo "exported name outside mproc: $name"; failed=1 ;;
    esac
done <"$work/names"

while IFS= read -r prefix; do
    if ! grep -qF -- "$prefix" "$work/names"; then
        echo "tests/export_test.allow lists $prefix, which is no longer exported: delete the line"; failed=1
    fi
done <"$work/allowed"

for needed in "typeinfo for mproc::Error" "typeinfo for mproc::SystemError" "typeinfo for mproc::OwnerDied" \
              "mproc::Lock::acquire(" "mproc::Process::start()" "mproc::SharedMemory::create("; do
    grep -qF -- "$needed" "$work/exported" || { echo "not exported, but the public API needs it: $needed"; failed=1; }
done

internal=$(grep -c 'mproc::detail::' "$work/names" || true)
total=$(wc -l <"$work/names")
[ "$failed" = 0 ] || exit 1
echo "export test: $total exported names, $internal of them under mproc::detail, all on the allowlist"
