#!/bin/sh
# The documentation against the tree:
#   - README.md gives the minimum Rust version of Cargo.toml (rust-version)
#     and the packages .ci/run installs;
#   - every repository path the docs name (src/..., tests/..., c-tests/...)
#     exists, and none points outside the repository;
#   - sentences that described unfinished work and are no longer true do
#     not come back;
#   - the module graph in docs/conventions.md is the one in the code
#     (tools/modgraph.sh).
set -eu
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
docs="README.md CHANGELOG.md BENCHMARKS.md docs/*.md c-tests/dragonfly/README.md"

rv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
grep -q "Rust $rv or newer" README.md && ok "README names Rust $rv (rust-version)" ||
	bad "README.md does not say 'Rust $rv or newer' (Cargo.toml rust-version = $rv)"

ci=$(sed -n 's/^packages=(\(.*\))/\1/p' .ci/run | tr ' ' '\n' | sort | tr '\n' ' ')
readme=$(tr '\n' ' ' < README.md | sed -n 's/.*On Debian: `apt-get install \([^`]*\)`.*/\1/p' |
	tr -s ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
[ -n "$ci" ] && [ "$ci" = "$readme" ] && ok "README lists the packages .ci/run installs: $ci" ||
	bad "README packages '$readme' differ from .ci/run's '$ci'"

# Paths: words like src/caps/sys.rs or c-tests/caps_s.c in the docs.
# shellcheck disable=SC2086 # the list of files
# (Not after a '/': DragonFly's /usr/src/test/caps is not ours; NAME is a
# placeholder.)
missing=$(cat $docs | sed 's/^/ /' |
	grep -o '[^/A-Za-z0-9_.-]\(src\|tests\|c-tests\|benches\|examples\|include\|tools\|docs\|abi-test\)/[A-Za-z0-9_./-]*[A-Za-z0-9_]' |
	cut -c2- | grep -v 'NAME' | sort -u | while read -r p; do
		[ -e "$p" ] || [ -e "include/$p" ] || echo "$p"
	done)
[ -z "$missing" ] && ok "every path the docs name exists" || bad "the docs name missing paths: $missing"
# shellcheck disable=SC2086
outside=$(grep -n '\.\./shared\|/work/' $docs || true)
[ -z "$outside" ] && ok "no doc points outside the repository" || bad "outside the repository: $outside"

# shellcheck disable=SC2086
stale=$(grep -n 'not implemented yet\|512-byte placeholder\|Until virtual cpus are merged' $docs || true)
[ -z "$stale" ] && ok "no stale 'not implemented yet' / placeholder sentences" || bad "stale: $stale"

# The table between the modgraph markers of docs/conventions.md against
# the edges the code has: an edge added or gone shows as a diff.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n '/^<!-- modgraph/,/^<!-- \/modgraph -->/p' docs/conventions.md | sed '1d;$d' >"$tmp/doc"
if ! sh tools/modgraph.sh --table >"$tmp/code"; then
	bad "tools/modgraph.sh failed"
elif [ ! -s "$tmp/doc" ]; then
	bad "docs/conventions.md has no modgraph table"
elif diff -u "$tmp/doc" "$tmp/code" >"$tmp/diff"; then
	ok "the module graph of docs/conventions.md is the code's ($(grep -c '^| `' "$tmp/code") modules)"
else
	bad "docs/conventions.md's module graph differs from the code's (- doc, + code; refresh with tools/modgraph.sh --table):
$(sed '1,2d' "$tmp/diff")"
fi

echo "docs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
