#!/usr/bin/env bash
# tests/mutations/run.sh [--baseline] [NAME...]
#
# Shows that tests can fail: for each NAME (every patch listed in
# tests/mutations/README.md when none is given), copies the current tree
# (tracked and untracked files, uncommitted edits included; not target/) to
# a throwaway directory, applies tests/mutations/NAME.patch there, builds and
# runs the test that the README's row for NAME names, and reports
#   caught        the test failed, as it must against the broken build
#   MISSED        the test passed: it cannot see the break
#   patch-failed  the patch no longer applies to this tree
#   build-failed  the broken tree does not compile (the test never ran)
#   no-test       the README's test arguments matched no test
#   baseline-failed  (--baseline) the test already fails on the unbroken
#                 tree, so its failure proves nothing
# then prints a table. Exit status 0 only when every mutation was caught.
#
# --baseline first runs each named test on an unpatched copy of the tree
# (once per distinct test), so `caught` also means "and passes without the
# break". It costs one more build and run per test.
#
# The README's table has one row per mutation:
#   | `NAME` | what it breaks | `CARGO TEST ARGS` | `tests/mutations/run.sh NAME` |
# where CARGO TEST ARGS are what follows `cargo test --locked`, e.g.
# `--test abuse proxy_keeps_serving` or `--lib upstream::resolve::tests::a_busy`.
#
# Builds go to their own target dir, $MUTATIONS_TARGET (default
# target/mutations), seeded once with hard links from target/debug, so the
# real target/ is never rebuilt or disturbed. The copy of the tree sits at a
# fixed path per checkout (outside the repository, so cargo and git see a
# standalone crate), which keeps the crate's build hashes stable from one
# run to the next: dependencies are reused, beam-edge itself is rebuilt.
set -euo pipefail

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
here="$root/tests/mutations"
readme="$here/README.md"
target=${MUTATIONS_TARGET:-$root/target/mutations}
tree=${MUTATIONS_TREE:-${TMPDIR:-/tmp}/beam-edge-mutations-$(id -u)-$(printf '%s' "$root" | cksum | cut -d' ' -f1)}

# NAME -> cargo test arguments, from the README's table.
declare -A args_of=()
names_in_readme=()
while IFS= read -r line; do
    # Rows whose first cell is a backticked name; the header and rule have none.
    [[ $line =~ ^\|[[:space:]]*\`([A-Za-z0-9_.-]+)\`[[:space:]]*\|[^|]*\|[^\`|]*\`([^\`]+)\` ]] || continue
    names_in_readme+=("${BASH_REMATCH[1]}")
    args_of[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
done <"$readme"

baseline=0
if [[ ${1:-} == --baseline ]]; then
    baseline=1
    shift
fi
if [[ $# -eq 0 ]]; then
    set -- "${names_in_readme[@]}"
fi
if [[ $# -eq 0 ]]; then
    echo "run.sh: no mutations listed in $readme" >&2
    exit 2
fi
for name in "$@"; do
    if [[ ! -f $here/$name.patch ]]; then
        echo "run.sh: no patch $here/$name.patch" >&2
        exit 2
    fi
    if [[ -z ${args_of[$name]:-} ]]; then
        echo "run.sh: $name has no row (with test arguments) in $readme" >&2
        exit 2
    fi
done

mkdir -p "$target"
# One run at a time per target: runs share the tree copy.
exec 9>"$target/.lock"
if ! flock -n 9; then
    echo "run.sh: another run holds $target/.lock; waiting" >&2
    flock 9
fi
if [[ ! -e $target/debug && -d $root/target/debug ]]; then
    # Hard links, as the worktrees are seeded: cargo replaces outputs rather
    # than writing into them, so target/debug keeps its own files.
    cp -al "$root/target/debug" "$target/debug"
fi
# Cargo writes its fingerprints and dep-info files in place, not by
# replacing them: hard-linked, a broken build's fingerprint became
# target/debug's too, and cargo then took target/debug's stale binary for
# fresh (a mutation's binary, seen once). Each run gives this target its own
# copies of them.
if [[ -d $target/debug ]]; then
    find "$target/debug" -type f -links +1 \( -path '*/.fingerprint/*' -o -name '*.d' \) \
        -exec sh -c 'for f; do cp -p "$f" "$f.own" && mv -f "$f.own" "$f"; done' sh {} +
fi
# Cargo locks a target by flock(2) on debug/.cargo-lock; a hard-linked copy
# shares that inode, and with it the lock, with every other copy, so builds
# in unrelated targets would wait on each other. Give this target its own.
if [[ -e $target/debug/.cargo-lock && $(stat -c %h "$target/debug/.cargo-lock") -gt 1 ]]; then
    rm -f "$target/debug/.cargo-lock"
fi

# Copies the current tree (as `git ls-files` sees it, with uncommitted
# edits) over $tree. Every file gets a fresh mtime (`tar -m`): the copy a
# previous mutation left behind was built after the original files' mtimes,
# so kept mtimes would let cargo reuse that mutant's build.
copy_tree() {
    rm -rf "$tree"
    mkdir -p "$tree"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xmf - -C "$tree"
}

declare -A result=()
declare -A baseline_of=()
logs="$target/logs"
mkdir -p "$logs"
for name in "$@"; do
    log="$logs/$name.log"
    read -r -a cargo_args <<<"${args_of[$name]}"
    echo "== $name: cargo test --locked ${cargo_args[*]}" >&2
    if [[ $baseline -eq 1 && -z ${baseline_of[${args_of[$name]}]:-} ]]; then
        copy_tree
        if (cd "$tree" && CARGO_TARGET_DIR=$target cargo test --locked "${cargo_args[@]}") >"$logs/$name.baseline.log" 2>&1; then
            baseline_of[${args_of[$name]}]=passes
        else
            baseline_of[${args_of[$name]}]=fails
        fi
        echo "   without the break: the test ${baseline_of[${args_of[$name]}]}" >&2
    fi
    if [[ ${baseline_of[${args_of[$name]}]:-} == fails ]]; then
        result[$name]=baseline-failed
        continue
    fi
    copy_tree
    # GIT_CEILING_DIRECTORIES: apply to the copy as plain files, never to a
    # repository found above it.
    if ! (cd "$tree" && GIT_CEILING_DIRECTORIES=$(dirname "$tree") git apply "$here/$name.patch") >"$log" 2>&1; then
        result[$name]=patch-failed
        echo "   patch-failed (see $log)" >&2
        continue
    fi
    if ! (cd "$tree" && CARGO_TARGET_DIR=$target cargo test --locked --no-run "${cargo_args[@]}") >>"$log" 2>&1; then
        result[$name]=build-failed
        echo "   build-failed (see $log)" >&2
        continue
    fi
    set +e
    (cd "$tree" && CARGO_TARGET_DIR=$target cargo test --locked "${cargo_args[@]}") >>"$log" 2>&1
    status=$?
    set -e
    # Tests that ran (passed or failed) across every test binary.
    ran=$(grep -E '^test result: ' "$log" |
        sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' |
        awk '{n += $1 + $2} END {print n + 0}')
    if [[ $status -ne 0 ]]; then
        result[$name]=caught
    elif [[ $ran -eq 0 ]]; then
        result[$name]=no-test
    else
        result[$name]=MISSED
    fi
    echo "   ${result[$name]} ($ran tests ran; log: $log)" >&2
done
rm -rf "$tree"

echo
echo "| mutation | result | test (cargo test --locked …) |"
echo "|---|---|---|"
all_caught=0
for name in "$@"; do
    echo "| $name | ${result[$name]} | ${args_of[$name]} |"
    [[ ${result[$name]} == caught ]] || all_caught=1
done
exit $all_caught
