#!/bin/sh
# What libcaps exports, checked against the committed list (libcaps.map)
# and the installed headers:
#   - libcaps.so exports exactly the symbols of libcaps.map, each in the
#     version node LIBCAPS_1.0 (nm -D, readelf -V);
#   - libcaps.a has exactly those global symbols, nothing of the Rust
#     standard library or of libcaps' internals;
#   - every exported symbol is declared in an installed header, and every
#     function an installed header declares (not inline) is exported.
#
#   tests/exports.sh STAGE      (the tree `make stage` installs: STAGE/usr/...)
set -eu
stage=${1:-build/stage}
lib=$stage/usr/lib
inc=$stage/usr/include/libcaps
map=$(dirname "$0")/../libcaps.map
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
how="to change the API, edit the global: list of LIBCAPS_1.0 in libcaps.map (one symbol per line), declare the symbol in an installed header, and run make"

# The committed list: the names between "global:" and "local:".
sed -n '/global:/,/local:/p' "$map" | sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p' |
	LC_ALL=C sort > "$tmp/list"
[ -s "$tmp/list" ] && ok "libcaps.map lists $(wc -l < "$tmp/list") symbols" || bad "no symbols in $map"

# libcaps.so: names and versions.
so=$lib/libcaps.so.1.0.0
nm -D --defined-only "$so" > "$tmp/nm"
awk '$2 != "A" { print $3 }' "$tmp/nm" | sed 's/@.*//' | LC_ALL=C sort > "$tmp/so"
echo "libcaps.so: $(wc -l < "$tmp/so") symbols exported (nm -D --defined-only)"
if cmp -s "$tmp/list" "$tmp/so"; then
	ok "libcaps.so exports exactly libcaps.map"
else
	bad "libcaps.so exports differ from libcaps.map (< only in the list, > only exported); $how:"
	diff "$tmp/list" "$tmp/so" | grep '^[<>]' || true
fi
unversioned=$(awk '$2 != "A" && $3 !~ /@@LIBCAPS_1\.0$/ { print $3 }' "$tmp/nm" | wc -l)
[ "$unversioned" -eq 0 ] && ok "every export has the default version LIBCAPS_1.0" ||
	bad "$unversioned exports without version LIBCAPS_1.0"
readelf -V "$so" > "$tmp/ver"
defs=$(sed -n 's/.*Flags: none .*Name: \(.*\)$/\1/p' "$tmp/ver" | tr '\n' ' ')
[ "$defs" = "LIBCAPS_1.0 " ] && ok "readelf -V: one version defined, LIBCAPS_1.0" ||
	bad "readelf -V: versions defined: '$defs' (want LIBCAPS_1.0)"

# libcaps.a: the same globals, nothing else.
nm -g --defined-only "$lib/libcaps.a" 2> "$tmp/nm.err" | awk 'NF == 3 { print $3 }' |
	LC_ALL=C sort > "$tmp/a"
echo "libcaps.a: $(wc -l < "$tmp/a") global symbols defined"
if grep -v ': no symbols$' "$tmp/nm.err" > "$tmp/nm.err2"; then
	bad "nm cannot read libcaps.a: $(head -1 "$tmp/nm.err2")"
elif cmp -s "$tmp/list" "$tmp/a"; then
	ok "libcaps.a defines exactly the symbols of libcaps.map as globals"
else
	bad "libcaps.a globals differ from libcaps.map ($(comm -13 "$tmp/list" "$tmp/a" | wc -l) extra, e.g. $(comm -13 "$tmp/list" "$tmp/a" | head -3 | tr '\n' ' ')); $how"
fi

# Headers: what they declare. Functions from gcc -aux-info (inline ones
# are `static`); variables by name.
{
	echo '#include <libcaps/defs.h>'
	for h in $(cd "$inc" && find . -name '*.h' ! -path './libcaps/gen/*' | sed 's|^\./||' | LC_ALL=C sort); do
		echo "#include <$h>"
	done
} > "$tmp/all.c"
if cc -DSMP -fsyntax-only -I"$inc" -aux-info "$tmp/aux" "$tmp/all.c" 2> "$tmp/cc.err"; then
	grep -F "$inc/" "$tmp/aux" | grep '\*/ extern ' |
		sed 's|^.*\*/ extern [^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\) (.*|\1|' | LC_ALL=C sort -u > "$tmp/decl"
	missing=$(comm -23 "$tmp/decl" "$tmp/list" | tr '\n' ' ')
	[ -z "$missing" ] && ok "every function the headers declare is exported ($(wc -l < "$tmp/decl"))" ||
		bad "declared in a header but not in libcaps.map: $missing; $how"
	cat $(find "$inc" -name '*.h') > "$tmp/headers"
	undeclared=""
	for s in $(cat "$tmp/list"); do
		grep -qw "$s" "$tmp/headers" || undeclared="$undeclared $s"
	done
	[ -z "$undeclared" ] && ok "every exported symbol is declared in an installed header" ||
		bad "exported but in no installed header:$undeclared"
else
	bad "the installed headers do not compile together: $(head -3 "$tmp/cc.err")"
fi

echo "exports: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
